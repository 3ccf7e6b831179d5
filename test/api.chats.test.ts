import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UserRecord } from '../core/store/store.js';
import { type Json, type TestServer, type UserDto, startTestServer } from './helpers/server.js';

describe('REST chats: /api/chats', () => {
  let srv: TestServer;
  let alice: { user: UserDto; token: string };
  let bob: { user: UserDto; token: string };
  let carol: { user: UserDto; token: string };

  beforeAll(async () => {
    srv = await startTestServer();
    [alice, bob, carol] = await Promise.all([srv.signUp('alice', 'Alice'), srv.signUp('bob', 'Bob'), srv.signUp('carol', 'Carol')]);
  });
  afterAll(() => srv.stop());

  const createGroup = (token: string, body: Json) => srv.http.post('/api/chats', { type: 'group', ...body }, token);
  const ids = (chats: Json[]) => chats.map((c) => c.id);

  describe('direct chats', () => {
    it('creates one with 201, and returns the same chat with 200 afterwards, from either side', async () => {
      const first = await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id] }, alice.token);
      expect(first.status).toBe(201);
      expect(first.body.chat).toEqual({
        id: expect.any(String), number: expect.any(Number), type: 'direct', name: null, visibility: 'private', ownerId: null,
        // seq 1 is the chat.created system message
        members: [alice.user, bob.user], memberCount: 2, lastSeq: 1, createdAt: expect.any(String),
        // nothing read, nothing unread: a system message is not a message
        readSeq: 0, unread: 0, lastMessage: null, lastActivityAt: expect.any(String),
      });
      const again = await srv.http.post('/api/chats', { type: 'direct', memberIds: [alice.user.id] }, bob.token);
      expect(again.status).toBe(200);
      expect(again.body.chat).toEqual(first.body.chat);
    });

    it('gives 10 concurrent creations of the same pair one chat', async () => {
      const [x, y] = await Promise.all([srv.signUp(), srv.signUp()]);
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          i % 2 ? srv.http.post('/api/chats', { type: 'direct', memberIds: [y.user.id] }, x.token) : srv.http.post('/api/chats', { type: 'direct', memberIds: [x.user.id] }, y.token),
        ),
      );
      expect(new Set(results.map((r) => r.body.chat.id)).size).toBe(1);
      expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 201]);
      expect((await srv.http.get(`/api/chats/one-to-one/${x.user.id}`, x.token)).body.chats).toHaveLength(1);
    });

    it('refuses a chat with oneself, several members, a name, or an unknown user', async () => {
      const self = await srv.http.post('/api/chats', { type: 'direct', memberIds: [alice.user.id] }, alice.token);
      expect([self.status, self.body.error.code]).toEqual([400, 'invalid_input']);
      const two = await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id, carol.user.id] }, alice.token);
      expect([two.status, two.body.error.code]).toEqual([400, 'invalid_input']);
      const named = await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id], name: 'x' }, alice.token);
      expect([named.status, named.body.error.code]).toEqual([400, 'invalid_input']);
      const ghost = await srv.http.post('/api/chats', { type: 'direct', memberIds: ['01a21796-0000-7000-8000-000000000000'] }, alice.token);
      expect([ghost.status, ghost.body.error.code]).toEqual([404, 'not_found']);
    });
  });

  describe('groups', () => {
    it('creates a private group by default with the creator as owner and first member', async () => {
      const res = await createGroup(alice.token, { name: '  Book club  ', memberIds: [bob.user.id, alice.user.id, bob.user.id] });
      expect(res.status).toBe(201);
      expect(res.body.chat).toMatchObject({ type: 'group', name: 'Book club', visibility: 'private', ownerId: alice.user.id, memberCount: 2, lastSeq: 1 });
      expect(res.body.chat.members).toEqual([alice.user, bob.user]);
    });

    it('gives 30 concurrent creations 30 unique numbers with no hole', async () => {
      const before = await createGroup(alice.token, { name: 'marker', memberIds: [] });
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => createGroup(alice.token, { name: `g${i}`, memberIds: [] })));
      expect(results.every((r) => r.status === 201)).toBe(true);
      const numbers = results.map((r) => r.body.chat.number as number).sort((a, b) => a - b);
      expect(numbers).toEqual(Array.from({ length: 30 }, (_, i) => before.body.chat.number + 1 + i));
    });

    it('allows 100 members including the creator and refuses 101 with 422 group_full', async () => {
      const seeded: UserRecord[] = await srv.seedUsers(100, 'cap');
      const ok = await createGroup(alice.token, { name: 'hundred', memberIds: seeded.slice(0, 99).map((u) => u.id) });
      expect(ok.status).toBe(201);
      expect(ok.body.chat.memberCount).toBe(100);
      expect(ok.body.chat.members).toHaveLength(100);

      const tooMany = await createGroup(alice.token, { name: 'too many', memberIds: seeded.map((u) => u.id) });
      expect(tooMany.status).toBe(422);
      expect(tooMany.body.error.code).toBe('group_full');

      const add101st = await srv.http.post(`/api/chats/${ok.body.chat.number}/members`, { userIds: [seeded[99]!.id] }, alice.token);
      expect(add101st.status).toBe(422);
      expect(add101st.body.error.code).toBe('group_full');
      expect((await srv.http.get(`/api/chats/${ok.body.chat.number}`, alice.token)).body.chat.memberCount).toBe(100);
    });

    it('shows a private group to members only (403 not_member), a public group to everyone', async () => {
      const priv = (await createGroup(alice.token, { name: 'secret', memberIds: [bob.user.id] })).body.chat;
      const pub = (await createGroup(alice.token, { name: 'open', memberIds: [], visibility: 'public' })).body.chat;
      expect((await srv.http.get(`/api/chats/${priv.number}`, bob.token)).body.chat.id).toBe(priv.id);
      const refused = await srv.http.get(`/api/chats/${priv.number}`, carol.token);
      expect([refused.status, refused.body.error.code]).toEqual([403, 'not_member']);
      expect((await srv.http.get(`/api/chats/${pub.number}`, carol.token)).body.chat.id).toBe(pub.id);
      const missing = await srv.http.get('/api/chats/987654', carol.token);
      expect([missing.status, missing.body.error.code]).toEqual([404, 'not_found']);
    });

    it('lists public groups only, in pages by number', async () => {
      const pubs = [];
      for (let i = 0; i < 3; i++) pubs.push((await createGroup(bob.token, { name: `pub${i}`, memberIds: [], visibility: 'public' })).body.chat);
      await createGroup(bob.token, { name: 'hidden', memberIds: [] });
      const all: Json[] = [];
      let after = 0;
      for (;;) {
        const page = await srv.http.get(`/api/chats?limit=2&after=${after}`, carol.token);
        expect(page.status).toBe(200);
        all.push(...page.body.chats);
        if (!page.body.hasMore) break;
        after = page.body.chats.at(-1).number;
      }
      expect(all.every((c) => c.type === 'group' && c.visibility === 'public')).toBe(true);
      expect(ids(all)).toEqual(expect.arrayContaining(ids(pubs)));
      expect(all.map((c) => c.name)).not.toContain('hidden');
    });
  });

  describe('my chat lists', () => {
    it("lists the caller's direct and group chats, and refuses another user's with 403 forbidden", async () => {
      const [dan, erin] = await Promise.all([srv.signUp(), srv.signUp()]);
      const direct = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [erin.user.id] }, dan.token)).body.chat;
      const g1 = (await createGroup(dan.token, { name: 'g1', memberIds: [erin.user.id] })).body.chat;
      const g2 = (await createGroup(erin.token, { name: 'g2', memberIds: [dan.user.id] })).body.chat;
      await createGroup(erin.token, { name: 'g3 without dan', memberIds: [] });

      const mineDirect = await srv.http.get(`/api/chats/one-to-one/${dan.user.id}`, dan.token);
      expect(mineDirect.status).toBe(200);
      expect(ids(mineDirect.body.chats)).toEqual([direct.id]);
      expect(ids((await srv.http.get(`/api/chats/group/${dan.user.id}`, dan.token)).body.chats)).toEqual([g1.id, g2.id]);
      const paged = await srv.http.get(`/api/chats/group/${dan.user.id}?limit=1`, dan.token);
      expect([ids(paged.body.chats), paged.body.hasMore]).toEqual([[g1.id], true]);

      for (const path of [`/api/chats/one-to-one/${erin.user.id}`, `/api/chats/group/${erin.user.id}`]) {
        const res = await srv.http.get(path, dan.token);
        expect([res.status, res.body.error.code]).toEqual([403, 'forbidden']);
      }
    });
  });

  describe('members', () => {
    it('lets the owner add and remove members; others may not', async () => {
      const g = (await createGroup(alice.token, { name: 'managed', memberIds: [bob.user.id] })).body.chat;
      const byBob = await srv.http.post(`/api/chats/${g.number}/members`, { userIds: [carol.user.id] }, bob.token);
      expect([byBob.status, byBob.body.error.code]).toEqual([403, 'forbidden']);

      const added = await srv.http.post(`/api/chats/${g.number}/members`, { userIds: [carol.user.id, bob.user.id] }, alice.token);
      expect(added.status).toBe(200);
      expect(added.body.chat.members.map((u: UserDto) => u.username)).toEqual(['alice', 'bob', 'carol']);

      const bobRemovesCarol = await srv.http.delete(`/api/chats/${g.number}/members/${carol.user.id}`, bob.token);
      expect([bobRemovesCarol.status, bobRemovesCarol.body.error.code]).toEqual([403, 'forbidden']);
      expect((await srv.http.delete(`/api/chats/${g.number}/members/${carol.user.id}`, alice.token)).status).toBe(204);
      const gone = await srv.http.get(`/api/chats/${g.number}`, carol.token);
      expect([gone.status, gone.body.error.code]).toEqual([403, 'not_member']);
      const again = await srv.http.delete(`/api/chats/${g.number}/members/${carol.user.id}`, alice.token);
      expect([again.status, again.body.error.code]).toEqual([404, 'not_found']);
    });

    it('lets anyone join a public group by adding itself, but not a private one', async () => {
      const pub = (await createGroup(alice.token, { name: 'joinable', memberIds: [], visibility: 'public' })).body.chat;
      const priv = (await createGroup(alice.token, { name: 'closed', memberIds: [] })).body.chat;
      const joined = await srv.http.post(`/api/chats/${pub.number}/members`, { userIds: [carol.user.id] }, carol.token);
      expect(joined.status).toBe(200);
      expect(joined.body.chat.memberCount).toBe(2);
      const refused = await srv.http.post(`/api/chats/${priv.number}/members`, { userIds: [carol.user.id] }, carol.token);
      expect(refused.status).toBe(403);
    });

    it('lets a member leave; when the owner leaves, the longest-standing member becomes owner', async () => {
      const g = (await createGroup(alice.token, { name: 'succession', memberIds: [bob.user.id, carol.user.id] })).body.chat;
      expect((await srv.http.delete(`/api/chats/${g.number}/members/${alice.user.id}`, alice.token)).status).toBe(204);
      const after = (await srv.http.get(`/api/chats/${g.number}`, bob.token)).body.chat;
      expect(after.ownerId).toBe(bob.user.id);
      expect(after.members.map((u: UserDto) => u.id)).toEqual([bob.user.id, carol.user.id]);
    });

    it('keeps direct chats fixed', async () => {
      const d = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [carol.user.id] }, bob.token)).body.chat;
      const add = await srv.http.post(`/api/chats/${d.number}/members`, { userIds: [alice.user.id] }, bob.token);
      expect([add.status, add.body.error.code]).toEqual([403, 'forbidden']);
      const leave = await srv.http.delete(`/api/chats/${d.number}/members/${bob.user.id}`, bob.token);
      expect([leave.status, leave.body.error.code]).toEqual([403, 'forbidden']);
    });
  });
});
