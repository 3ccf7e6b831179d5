import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Envelope, MessageEnvelope, SystemEnvelope } from '../../core/envelope.js';
import { AppError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { type ChatRecord, SEARCH_CANDIDATES, type Store, type UserRecord } from '../../core/store/store.js';

/**
 * The store contract: every Store implementation runs this suite against itself, e.g.
 *
 *   storeContract('sqlite', async () => {
 *     const store = new SqliteStore(file);
 *     return { store, cleanup: () => store.close() };
 *   });
 *
 * `open` must give a fresh, empty store each time.
 */
export function storeContract(name: string, open: () => Promise<{ store: Store; cleanup: () => Promise<void> }>) {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ store, cleanup } = await open());
    });
    afterEach(async () => {
      await cleanup();
    });

    const user = (username: string, displayName = username) =>
      store.createUser({ id: newId(), username, displayName, passwordHash: 'scrypt$x', createdAt: Date.now() });
    const users = async (n: number, prefix = 'u') => {
      const out: UserRecord[] = [];
      for (let i = 0; i < n; i++) out.push(await user(`${prefix}${String(i).padStart(3, '0')}`));
      return out;
    };
    const group = (ownerId: string, memberIds: string[], visibility: 'public' | 'private' = 'private', name = 'g') =>
      store.createGroupChat({ id: newId(), name, visibility, ownerId, memberIds: [ownerId, ...memberIds], createdAt: Date.now() });
    const code = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (err) {
        if (err instanceof AppError) return err.code;
        throw err;
      }
      return 'no error';
    };
    const message = (chatId: string, seq: number, text = `m${seq}`): MessageEnvelope => ({
      type: 'message', id: newId(), chatId, seq, senderId: 'sender', senderName: 'Sender', text, clientMsgId: null,
      createdAt: new Date().toISOString(),
    });

    describe('users', () => {
      it('creates a user and finds it by id and by username', async () => {
        const u = await user('alice', 'Alice Liddell');
        expect(u.lastSeenAt).toBeNull();
        expect(await store.getUser(u.id)).toEqual(u);
        expect(await store.getUserByUsername('alice')).toEqual(u);
        expect(await store.getUser(newId())).toBeNull();
        expect(await store.getUserByUsername('nobody')).toBeNull();
      });

      it('refuses a taken username with username_taken and keeps the first account', async () => {
        const first = await user('bob');
        expect(await code(user('bob', 'Other Bob'))).toBe('username_taken');
        expect(await store.getUserByUsername('bob')).toEqual(first);
      });

      it('getUsers returns the existing users among the ids and skips unknown ones', async () => {
        const [a, b] = await users(2);
        const got = await store.getUsers([a!.id, newId(), b!.id]);
        expect(got.map((u) => u.id).sort()).toEqual([a!.id, b!.id].sort());
        expect(await store.getUsers([])).toEqual([]);
      });

      it('search matches literal text in username or display name, case-insensitively, by username', async () => {
        await user('carol', 'Carol Ärger');
        await user('dave_100', '100% Dave');
        await user('erin', 'Erin a.b');
        await user('frank', 'Frank');
        const names = async (q: string) => (await store.searchUsers(q, { limit: 50 })).items.map((u) => u.username);
        expect(await names('CAR')).toEqual(['carol']);
        expect(await names('ärg')).toEqual(['carol']);
        expect(await names('ÄRG')).toEqual(['carol']);
        expect(await names('%')).toEqual(['dave_100']);
        expect(await names('_')).toEqual(['dave_100']);
        expect(await names('a.b')).toEqual(['erin']);
        expect(await names('.*')).toEqual([]);
        expect(await names("' OR 1=1 --")).toEqual([]);
        expect(await names('$username')).toEqual([]);
        expect(await names('{"$gt":""}')).toEqual([]);
        expect(await names('r')).toEqual(['carol', 'erin', 'frank']);
      });

      it('search treats operator-like text as text', async () => {
        await user('hal', 'Costs $5 {"$ne":1}');
        await user('ida');
        const names = async (q: string) => (await store.searchUsers(q, { limit: 50 })).items.map((u) => u.username);
        expect(await names('$5')).toEqual(['hal']);
        expect(await names('{"$ne":1}')).toEqual(['hal']);
        expect(await names('$displayName')).toEqual([]);
      });

      it('search pages by username with after and hasMore', async () => {
        await users(5, 'pager');
        const p1 = await store.searchUsers('pager', { limit: 2 });
        expect(p1.items.map((u) => u.username)).toEqual(['pager000', 'pager001']);
        expect(p1.hasMore).toBe(true);
        const p3 = await store.searchUsers('pager', { limit: 2, after: 'pager003' });
        expect(p3.items.map((u) => u.username)).toEqual(['pager004']);
        expect(p3.hasMore).toBe(false);
      });

      it('listUsersAmong pages the users among the ids by username, each once, skipping unknown ids', async () => {
        const [u0, u1, u2, u3, u4] = await users(5, 'among');
        await user('among_outside');
        const ids = [u3!.id, u0!.id, newId(), u4!.id, u1!.id, u3!.id]; // not u2, one unknown, u3 twice
        const names = (p: { items: UserRecord[] }) => p.items.map((u) => u.username);
        const p1 = await store.listUsersAmong(ids, { limit: 2 });
        expect(names(p1)).toEqual(['among000', 'among001']);
        expect(p1.hasMore).toBe(true);
        expect(p1.items[0]).toEqual(u0);
        const p2 = await store.listUsersAmong(ids, { limit: 2, after: 'among001' });
        expect(names(p2)).toEqual(['among003', 'among004']);
        expect(p2.hasMore).toBe(false);
        expect(names(await store.listUsersAmong(ids, { limit: 50 }))).toEqual(['among000', 'among001', 'among003', 'among004']);
        // `after` need not be one of the usernames.
        expect(names(await store.listUsersAmong(ids, { limit: 50, after: 'among002' }))).toEqual(['among003', 'among004']);
        expect(await store.listUsersAmong(ids, { limit: 50, after: 'among004' })).toEqual({ items: [], hasMore: false });
        expect(await store.listUsersAmong([], { limit: 50 })).toEqual({ items: [], hasMore: false });
        expect(await store.listUsersAmong([u2!.id], { limit: 1 })).toEqual({ items: [u2], hasMore: false });
      });

      it('listUsersAmong pages through many ids, most of them unknown, with no gap and no repeat', async () => {
        const many = await users(30, 'crowd');
        const ids = [...many.map((u) => u.id).reverse(), ...Array.from({ length: 2000 }, () => newId())];
        const seen: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.listUsersAmong(ids, { limit: 7, after });
          expect(page.items.length).toBeLessThanOrEqual(7);
          seen.push(...page.items.map((u) => u.username));
          if (!page.hasMore) break;
          after = page.items.at(-1)!.username;
        }
        expect(seen).toEqual(many.map((u) => u.username));
      });

      it('records last seen', async () => {
        const u = await user('gina');
        await store.setLastSeen(u.id, 1_700_000_000_000);
        expect((await store.getUser(u.id))!.lastSeenAt).toBe(1_700_000_000_000);
      });

      it('records last seen for many users at once (a burst of connects); for one user the last call wins', async () => {
        const users = await Promise.all(Array.from({ length: 20 }, (_, i) => user(`seen${i}`)));
        await Promise.all([...users.map((u, i) => store.setLastSeen(u.id, 1_700_000_000_000 + i)), store.setLastSeen(users[0]!.id, 1_800_000_000_000)]);
        const seen = await Promise.all(users.map(async (u) => (await store.getUser(u.id))!.lastSeenAt));
        expect(seen).toEqual([1_800_000_000_000, ...users.slice(1).map((_, i) => 1_700_000_000_000 + i + 1)]);
      });
    });

    describe('sessions', () => {
      it('creates, reads and revokes a session once', async () => {
        const u = await user('hank');
        const s = { id: newId(), userId: u.id, createdAt: 1000, expiresAt: Date.now() + 60_000, revokedAt: null };
        await store.createSession(s);
        expect(await store.getSession(s.id)).toEqual(s);
        expect(await store.revokeSession(s.id, 2000)).toBe(true);
        expect(await store.revokeSession(s.id, 3000)).toBe(false);
        expect((await store.getSession(s.id))!.revokedAt).toBe(2000);
        expect(await store.revokeSession(newId(), 1)).toBe(false);
        expect(await store.getSession(newId())).toBeNull();
      });

      it('deletes only expired sessions', async () => {
        const u = await user('ivan');
        const now = Date.now();
        await store.createSession({ id: 'old', userId: u.id, createdAt: 0, expiresAt: now - 1, revokedAt: null });
        await store.createSession({ id: 'live', userId: u.id, createdAt: 0, expiresAt: now + 60_000, revokedAt: null });
        expect(await store.deleteExpiredSessions(now)).toBe(1);
        expect(await store.getSession('old')).toBeNull();
        expect(await store.getSession('live')).not.toBeNull();
      });
    });

    describe('chats', () => {
      it('keeps one direct chat per unordered pair', async () => {
        const [a, b, c] = await users(3);
        const first = await store.createDirectChat({ id: newId(), userIds: [a!.id, b!.id], createdAt: 1 });
        expect(first.created).toBe(true);
        expect(first.chat).toMatchObject({ type: 'direct', name: null, ownerId: null, number: 1, lastSeq: 0 });
        expect([...first.chat.memberIds].sort()).toEqual([a!.id, b!.id].sort());
        const again = await store.createDirectChat({ id: newId(), userIds: [b!.id, a!.id], createdAt: 2 });
        expect(again).toEqual({ chat: first.chat, created: false });
        const other = await store.createDirectChat({ id: newId(), userIds: [a!.id, c!.id], createdAt: 3 });
        expect(other.created).toBe(true);
        expect(other.chat.number).toBe(2);
      });

      it('returns one chat to 10 concurrent creations of the same direct chat', async () => {
        const [a, b] = await users(2);
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.createDirectChat({ id: newId(), userIds: i % 2 ? [a!.id, b!.id] : [b!.id, a!.id], createdAt: i })),
        );
        expect(new Set(results.map((r) => r.chat.id)).size).toBe(1);
        expect(results.filter((r) => r.created)).toHaveLength(1);
        expect((await store.listChatsOfMember(a!.id, 'direct', { limit: 50 })).items).toHaveLength(1);
      });

      it('numbers 30 concurrent group creations 1..30 with no hole or repeat', async () => {
        const [owner] = await users(1);
        const chats = await Promise.all(Array.from({ length: 30 }, (_, i) => group(owner!.id, [], 'private', `g${i}`)));
        expect(chats.map((c) => c.number).sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
      });

      it('creates a group with its owner and members in order, found by id and number', async () => {
        const [o, m1, m2] = await users(3);
        const chat = await group(o!.id, [m1!.id, m2!.id], 'public', 'Friends');
        expect(chat).toMatchObject({ type: 'group', name: 'Friends', visibility: 'public', ownerId: o!.id, lastSeq: 0 });
        expect(chat.memberIds).toEqual([o!.id, m1!.id, m2!.id]);
        expect(await store.getChat(chat.id)).toEqual(chat);
        expect(await store.getChatByNumber(chat.number)).toEqual(chat);
        expect(await store.getChat(newId())).toBeNull();
        expect(await store.getChatByNumber(999)).toBeNull();
      });

      it("lists a member's chats by type and number, in pages", async () => {
        const [me, other] = await users(2);
        const d = await store.createDirectChat({ id: newId(), userIds: [me!.id, other!.id], createdAt: 1 });
        const groups: ChatRecord[] = [];
        for (let i = 0; i < 3; i++) groups.push(await group(me!.id, [other!.id]));
        await group(other!.id, []); // not mine
        const direct = await store.listChatsOfMember(me!.id, 'direct', { limit: 50 });
        expect(direct.items.map((c) => c.id)).toEqual([d.chat.id]);
        const p1 = await store.listChatsOfMember(me!.id, 'group', { limit: 2 });
        expect(p1.items.map((c) => c.id)).toEqual([groups[0]!.id, groups[1]!.id]);
        expect(p1.hasMore).toBe(true);
        const p2 = await store.listChatsOfMember(me!.id, 'group', { limit: 2, after: p1.items[1]!.number });
        expect(p2.items.map((c) => c.id)).toEqual([groups[2]!.id]);
        expect(p2.hasMore).toBe(false);
      });

      it('lists only public groups', async () => {
        const [a, b] = await users(2);
        const pub = await group(a!.id, [], 'public');
        await group(a!.id, [], 'private');
        await store.createDirectChat({ id: newId(), userIds: [a!.id, b!.id], createdAt: 1 });
        const pub2 = await group(b!.id, [], 'public');
        const page = await store.listPublicGroups({ limit: 50 });
        expect(page.items.map((c) => c.id)).toEqual([pub.id, pub2.id]);
        expect((await store.listPublicGroups({ limit: 1, after: pub.number })).items.map((c) => c.id)).toEqual([pub2.id]);
      });
    });

    describe('members', () => {
      it('adds only users not yet members', async () => {
        const [o, a, b] = await users(3);
        const chat = await group(o!.id, [a!.id]);
        const res = await store.addMembers(chat.id, [a!.id, b!.id, b!.id], 100, Date.now());
        expect(res.added).toEqual([b!.id]);
        expect(res.chat.memberIds).toEqual([o!.id, a!.id, b!.id]);
      });

      it('refuses to pass the cap with group_full and adds nobody', async () => {
        const us = await users(6);
        const chat = await group(us[0]!.id, [us[1]!.id, us[2]!.id]);
        expect(await code(store.addMembers(chat.id, [us[3]!.id, us[4]!.id, us[5]!.id], 5, Date.now()))).toBe('group_full');
        expect((await store.getChat(chat.id))!.memberIds).toHaveLength(3);
        expect((await store.addMembers(chat.id, [us[3]!.id, us[4]!.id], 5, Date.now())).chat.memberIds).toHaveLength(5);
      });

      it('holds the cap under concurrent additions', async () => {
        const us = await users(12);
        const chat = await group(us[0]!.id, []);
        const outcomes = await Promise.all(us.slice(1).map((u) => code(store.addMembers(chat.id, [u.id], 5, Date.now()))));
        expect(outcomes.filter((o) => o === 'no error')).toHaveLength(4);
        expect(outcomes.filter((o) => o === 'group_full')).toHaveLength(7);
        expect((await store.getChat(chat.id))!.memberIds).toHaveLength(5);
      });

      it('treats a member id that looks like an operator or a field path as an id', async () => {
        const [o, a] = await users(2);
        const chat = await group(o!.id, [a!.id]);
        const res = await store.removeMember(chat.id, '$ownerId');
        expect(res).toEqual({ chat, removed: false });
        expect((await store.getChat(chat.id))!.ownerId).toBe(o!.id);
      });

      it('raises membersVersion by one with each change of the members, with the members of that change', async () => {
        const [o, a, b] = await users(3);
        const chat = await group(o!.id, [a!.id]);
        const v = chat.membersVersion;
        const added = await store.addMembers(chat.id, [b!.id], 100, Date.now());
        expect(added.chat).toMatchObject({ membersVersion: v + 1, memberIds: [o!.id, a!.id, b!.id] });
        // Nothing changed: the version stays.
        expect((await store.addMembers(chat.id, [b!.id], 100, Date.now())).chat.membersVersion).toBe(v + 1);
        expect((await store.removeMember(chat.id, newId()))!.chat.membersVersion).toBe(v + 1);
        const removed = await store.removeMember(chat.id, a!.id);
        expect(removed!.chat).toMatchObject({ membersVersion: v + 2, memberIds: [o!.id, b!.id] });
        expect((await store.getChat(chat.id))!.membersVersion).toBe(v + 2);
        const direct = await store.createDirectChat({ id: newId(), userIds: [o!.id, a!.id], createdAt: Date.now() });
        expect(direct.chat.membersVersion).toBeGreaterThanOrEqual(0);
      });

      it('gives concurrent changes of one chat distinct versions, the highest with the final members', async () => {
        const us = await users(9);
        const chat = await group(us[0]!.id, us.slice(1, 5).map((u) => u.id));
        const results = await Promise.all([
          ...us.slice(5).map((u) => store.addMembers(chat.id, [u.id], 100, Date.now()).then((r) => r.chat)),
          ...us.slice(1, 5).map((u) => store.removeMember(chat.id, u.id).then((r) => r!.chat)),
        ]);
        const versions = results.map((c) => c.membersVersion).sort((x, y) => x - y);
        expect(versions).toEqual(Array.from({ length: 8 }, (_, i) => chat.membersVersion + 1 + i));
        const last = results.find((c) => c.membersVersion === versions.at(-1))!;
        expect(new Set(last.memberIds)).toEqual(new Set([us[0]!.id, ...us.slice(5).map((u) => u.id)]));
        expect((await store.getChat(chat.id))!.membersVersion).toBe(versions.at(-1));
      });

      it('answers not_found for a chat that does not exist', async () => {
        const [a] = await users(1);
        expect(await code(store.addMembers(newId(), [a!.id], 100, 1))).toBe('not_found');
        expect(await store.removeMember(newId(), a!.id)).toBeNull();
      });

      it('removes a member, and passes ownership to the longest-standing member when the owner leaves', async () => {
        const [o, a, b] = await users(3);
        const chat = await group(o!.id, [a!.id, b!.id]);
        const notThere = await store.removeMember(chat.id, newId());
        expect(notThere!.removed).toBe(false);
        const left = await store.removeMember(chat.id, o!.id);
        expect(left!.removed).toBe(true);
        expect(left!.chat.ownerId).toBe(a!.id);
        expect(left!.chat.memberIds).toEqual([a!.id, b!.id]);
        await store.removeMember(chat.id, a!.id);
        const last = await store.removeMember(chat.id, b!.id);
        expect(last!.chat).toMatchObject({ ownerId: null, memberIds: [] });
      });

      it('coMemberIds gives the users sharing a chat with the user, each once, never itself, and follows removals', async () => {
        const [me, a, b, c, stranger, other] = await users(6, 'co');
        const sorted = async (p: Promise<string[]>) => (await p).sort();
        expect(await store.coMemberIds(me!.id)).toEqual([]);
        await store.createDirectChat({ id: newId(), userIds: [me!.id, a!.id], createdAt: 1 });
        const g = await group(b!.id, [me!.id, a!.id]); // a shares two chats with me: listed once
        await group(c!.id, [stranger!.id]); // a chat without me
        await group(other!.id, [stranger!.id, c!.id], 'public');
        expect(await sorted(store.coMemberIds(me!.id))).toEqual([a!.id, b!.id].sort());
        expect(await sorted(store.coMemberIds(a!.id))).toEqual([me!.id, b!.id].sort());
        expect(await sorted(store.coMemberIds(stranger!.id))).toEqual([c!.id, other!.id].sort());
        // Among given ids: only those, unknown and repeated ids, and the user itself, change nothing.
        expect(await store.coMemberIds(me!.id, [b!.id, stranger!.id, newId(), me!.id, b!.id])).toEqual([b!.id]);
        expect(await sorted(store.coMemberIds(me!.id, [a!.id, b!.id, c!.id]))).toEqual([a!.id, b!.id].sort());
        expect(await store.coMemberIds(me!.id, [])).toEqual([]);
        expect(await store.coMemberIds(newId())).toEqual([]);
        // An id that looks like an operator is an id.
        expect(await store.coMemberIds(me!.id, ['{"$ne":""}', '$members.userId'])).toEqual([]);
        // b leaves the group: no longer a co-member; a still is, through the direct chat.
        await store.removeMember(g.id, b!.id);
        expect(await sorted(store.coMemberIds(me!.id))).toEqual([a!.id]);
        await store.removeMember(g.id, me!.id);
        expect(await store.coMemberIds(me!.id, [a!.id, b!.id])).toEqual([a!.id]);
      });
    });

    describe('message log', () => {
      it('appends idempotently on (chatId, seq), says what became of each envelope, and raises lastSeq', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        const batch: Envelope[] = [message(chat.id, 1), message(chat.id, 2)];
        expect(await store.appendMessages(batch)).toEqual(['stored', 'stored']);
        expect(await store.appendMessages(batch)).toEqual(['present', 'present']);
        expect(await store.appendMessages([message(chat.id, 2, 'different'), message(chat.id, 3)])).toEqual([{ seqHeldBy: batch[1]!.id }, 'stored']);
        expect((await store.getChat(chat.id))!.lastSeq).toBe(3);
        expect(await store.maxSeq(chat.id)).toBe(3);
        const { messages } = await store.listMessages(chat.id, { limit: 50 });
        expect(messages.map((m) => m.seq)).toEqual([1, 2, 3]);
        expect((messages[1] as MessageEnvelope).text).toBe('m2');
        expect(await store.appendMessages([])).toEqual([]);
      });

      it('stores each envelope once when overlapping batches are appended concurrently', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        const all = Array.from({ length: 30 }, (_, i) => ({ ...message(chat.id, i + 1), clientMsgId: `c-${i + 1}` }));
        // Five writers (think: a worker redelivering batches), each with a window of 10 that
        // overlaps its neighbours'.
        const outcomes = (await Promise.all([0, 5, 10, 15, 20].map((from) => store.appendMessages(all.slice(from, from + 10))))).flat();
        expect(outcomes.filter((o) => o === 'stored')).toHaveLength(30);
        expect(outcomes.filter((o) => o === 'present')).toHaveLength(20);
        const { messages } = await store.listMessages(chat.id, { limit: 100 });
        expect(messages).toEqual(all);
        expect((await store.getChat(chat.id))!.lastSeq).toBe(30);
      });

      it('refuses a batch naming a chat that does not exist, storing none of it', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        await expect(store.appendMessages([message(chat.id, 1), message(newId(), 1)])).rejects.toThrow();
        expect((await store.listMessages(chat.id, { limit: 10 })).messages).toEqual([]);
        expect((await store.getChat(chat.id))!.lastSeq).toBe(0);
      });

      it('returns envelopes exactly as appended, system events included', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        const sys: SystemEnvelope = { type: 'system', id: newId(), chatId: chat.id, seq: 1, event: 'chat.created', userId: o!.id, createdAt: new Date().toISOString() };
        const msg = { ...message(chat.id, 2, '안녕하세요 👋\n"quoted"'), clientMsgId: 'c-1' };
        await store.appendMessages([sys, msg]);
        expect((await store.listMessages(chat.id, { limit: 10 })).messages).toEqual([sys, msg]);
      });

      it('stores one message per idempotency key (chat, sender, clientMsgId), and names the holder of a repeated key', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        const other = await group(o!.id, []);
        const first = { ...message(chat.id, 1), clientMsgId: 'k-1' };
        const held = { keyHeldBy: { id: first.id, seq: 1 } };
        expect(
          await store.appendMessages([
            first,
            { ...message(chat.id, 2), clientMsgId: 'k-1' }, // the same key in the same batch
            { ...message(other.id, 1), clientMsgId: 'k-1' }, // another chat: another key
            { ...message(chat.id, 3), senderId: 'someone else', clientMsgId: 'k-1' }, // another sender
            { ...message(chat.id, 4), clientMsgId: 'k-2' },
          ]),
        ).toEqual(['stored', held, 'stored', 'stored', 'stored']);
        // In a later batch, also when it comes with a seq that is free.
        expect(await store.appendMessages([{ ...message(chat.id, 5), clientMsgId: 'k-1' }])).toEqual([held]);
        expect((await store.listMessages(chat.id, { limit: 10 })).messages.map((m) => m.seq)).toEqual([1, 3, 4]);
      });

      it('lists the idempotency keys of the newest messages, newest first', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        const at = Date.now();
        const sent = Array.from({ length: 5 }, (_, i) => ({ ...message(chat.id, i + 1), id: newId(at + i), clientMsgId: `r-${i}` }));
        const system: SystemEnvelope = { type: 'system', id: newId(at + 5), chatId: chat.id, seq: 6, event: 'member.joined', userId: o!.id, createdAt: new Date().toISOString() };
        const keyless = { ...message(chat.id, 7), id: newId(at + 6) };
        await store.appendMessages([...sent, system, keyless]);
        const recent = await store.recentSends(3);
        expect(recent).toEqual([4, 3, 2].map((i) => ({ chatId: chat.id, senderId: 'sender', clientMsgId: `r-${i}`, sent: { id: sent[i]!.id, seq: i + 1 } })));
      });

      it('pages by seq: latest page without after, catch-up with after, bounded by before', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        const other = await group(o!.id, []);
        await store.appendMessages(Array.from({ length: 10 }, (_, i) => message(chat.id, i + 1)));
        await store.appendMessages([message(other.id, 1)]);
        const seqs = async (r: { after?: number; before?: number; limit: number }) => {
          const page = await store.listMessages(chat.id, r);
          return [page.messages.map((m) => m.seq), page.hasMore];
        };
        expect(await seqs({ limit: 3 })).toEqual([[8, 9, 10], true]);
        expect(await seqs({ limit: 20 })).toEqual([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], false]);
        expect(await seqs({ after: 0, limit: 3 })).toEqual([[1, 2, 3], true]);
        expect(await seqs({ after: 7, limit: 3 })).toEqual([[8, 9, 10], false]);
        expect(await seqs({ after: 10, limit: 3 })).toEqual([[], false]);
        expect(await seqs({ before: 4, limit: 2 })).toEqual([[2, 3], true]);
        expect(await seqs({ after: 2, before: 6, limit: 10 })).toEqual([[3, 4, 5], false]);
        expect(await seqs({ after: 2, before: 6, limit: 2 })).toEqual([[3, 4], true]);
        expect((await store.listMessages(newId(), { limit: 5 })).messages).toEqual([]);
        expect(await store.maxSeq(newId())).toBe(0);
      });
    });

    describe('read pointers and chat states', () => {
      const from = (senderId: string, chatId: string, seq: number, text = `m${seq}`): MessageEnvelope => ({ ...message(chatId, seq, text), senderId });

      it('moves a pointer forward only, and answers null for a non-member', async () => {
        const [a, b, stranger] = await users(3);
        const chat = await group(a!.id, [b!.id]);
        expect(await store.readPointers(chat.id)).toEqual([
          { userId: a!.id, readSeq: 0, at: null },
          { userId: b!.id, readSeq: 0, at: null },
        ]);
        expect(await store.setReadPointer(chat.id, b!.id, 5, 1000)).toEqual({ userId: b!.id, readSeq: 5, at: 1000, moved: true });
        expect(await store.setReadPointer(chat.id, b!.id, 3, 2000)).toEqual({ userId: b!.id, readSeq: 5, at: 1000, moved: false });
        expect(await store.setReadPointer(chat.id, b!.id, 5, 3000)).toEqual({ userId: b!.id, readSeq: 5, at: 1000, moved: false });
        expect(await store.setReadPointer(chat.id, stranger!.id, 1, 1000)).toBeNull();
        expect(await store.setReadPointer(newId(), b!.id, 1, 1000)).toBeNull();
      });

      it('keeps the highest of concurrent moves', async () => {
        const [a, b] = await users(2);
        const chat = await group(a!.id, [b!.id]);
        await Promise.all(Array.from({ length: 50 }, (_, i) => store.setReadPointer(chat.id, b!.id, (i * 37) % 50 + 1, 1000 + i)));
        expect((await store.readPointers(chat.id)).find((p) => p.userId === b!.id)!.readSeq).toBe(50);
      });

      it("moves a sender's pointer with its message, never back, and counts unread messages of others only", async () => {
        const [a, b] = await users(2);
        const chat = await group(a!.id, [b!.id]);
        await store.appendMessages([from(a!.id, chat.id, 1), from(a!.id, chat.id, 2), from(b!.id, chat.id, 3), from(a!.id, chat.id, 4)]);
        const pointers = Object.fromEntries((await store.readPointers(chat.id)).map((p) => [p.userId, p.readSeq]));
        expect(pointers).toEqual({ [a!.id]: 4, [b!.id]: 3 });
        const states = await store.chatStates(b!.id, [chat.id]);
        expect(states.get(chat.id)).toMatchObject({ readSeq: 3, unread: 1 });
        expect(states.get(chat.id)!.lastMessage).toMatchObject({ seq: 4, senderId: a!.id, text: 'm4' });
        expect((await store.chatStates(a!.id, [chat.id])).get(chat.id)).toMatchObject({ readSeq: 4, unread: 0 });
        // A redelivered message changes nothing; an older own message does not move the pointer back.
        await store.setReadPointer(chat.id, b!.id, 4, 5000);
        await store.appendMessages([from(b!.id, chat.id, 3)]);
        expect((await store.chatStates(b!.id, [chat.id])).get(chat.id)).toMatchObject({ readSeq: 4, unread: 0 });
      });

      it('starts a member added later at the last seq, and leaves out chats it is not in', async () => {
        const [a, b, c] = await users(3);
        const chat = await group(a!.id, [b!.id]);
        await store.appendMessages([from(a!.id, chat.id, 1), from(b!.id, chat.id, 2)]);
        await store.addMembers(chat.id, [c!.id], 100, Date.now());
        await store.appendMessages([from(a!.id, chat.id, 3)]);
        const other = await group(a!.id, []);
        const states = await store.chatStates(c!.id, [chat.id, other.id, newId()]);
        expect([...states.keys()]).toEqual([chat.id]);
        expect(states.get(chat.id)).toMatchObject({ readSeq: 2, unread: 1 });
      });

      it('gives an empty chat no last message and its creation time as activity', async () => {
        const [a] = await users(1);
        const chat = await group(a!.id, []);
        const state = (await store.chatStates(a!.id, [chat.id])).get(chat.id)!;
        expect(state).toEqual({ readSeq: 0, unread: 0, lastMessage: null, lastActivityAt: chat.createdAt });
      });

      it('lists chats by newest activity, in keyset pages, by type', async () => {
        const [a, b] = await users(2);
        const chats: ChatRecord[] = [];
        for (let i = 0; i < 5; i++) chats.push(await group(a!.id, [b!.id], 'private', `g${i}`));
        const direct = await store.createDirectChat({ id: newId(), userIds: [a!.id, b!.id], createdAt: Date.now() });
        // Activity: chats[3] newest, then [1], then the rest by creation (all created before).
        const t = Date.now() + 10_000;
        await store.appendMessages([{ ...from(a!.id, chats[1]!.id, 1), createdAt: new Date(t).toISOString() }]);
        await store.appendMessages([{ ...from(a!.id, chats[3]!.id, 1), createdAt: new Date(t + 1000).toISOString() }]);
        const first = await store.listChatsOfMemberByActivity(b!.id, 'group', { limit: 2 });
        expect(first.items.map((c) => c.id)).toEqual([chats[3]!.id, chats[1]!.id]);
        expect(first.items[0]!.lastActivityAt).toBe(t + 1000);
        expect(first.hasMore).toBe(true);
        const last = first.items[1]!;
        const rest = await store.listChatsOfMemberByActivity(b!.id, 'group', { after: { at: last.lastActivityAt, number: last.number }, limit: 10 });
        const restIds = rest.items.map((c) => c.id);
        expect(new Set(restIds)).toEqual(new Set([chats[0]!.id, chats[2]!.id, chats[4]!.id]));
        expect(rest.items.map((c) => [c.lastActivityAt, c.number])).toEqual(
          [...rest.items].sort((x, y) => y.lastActivityAt - x.lastActivityAt || y.number - x.number).map((c) => [c.lastActivityAt, c.number]),
        );
        expect(rest.hasMore).toBe(false);
        expect((await store.listChatsOfMemberByActivity(b!.id, 'direct', { limit: 10 })).items.map((c) => c.id)).toEqual([direct.chat.id]);
        expect(new Set(await store.chatIdsOfMember(b!.id))).toEqual(new Set([...chats.map((c) => c.id), direct.chat.id]));
      });
    });

    describe('replies, edits and deletions', () => {
      const edit = (chatId: string, seq: number, targetSeq: number, text: string, senderId = 'sender'): Envelope => ({
        type: 'edit', id: newId(), chatId, seq, targetSeq, text, senderId, createdAt: new Date(1_800_000_000_000 + seq).toISOString(),
      });
      const del = (chatId: string, seq: number, targetSeq: number, actorId = 'sender'): Envelope => ({
        type: 'delete', id: newId(), chatId, seq, targetSeq, actorId, createdAt: new Date().toISOString(),
      });

      it('keeps replyTo, and shows an edited message with its latest text and editedAt', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        await store.appendMessages([message(chat.id, 1), { ...message(chat.id, 2, 'answer'), replyTo: 1 }]);
        expect(await store.appendMessages([edit(chat.id, 3, 1, 'first edit'), edit(chat.id, 4, 1, 'second edit')])).toEqual(['stored', 'stored']);
        const got = await store.getMessage(chat.id, 1);
        expect(got).toMatchObject({ type: 'message', seq: 1, text: 'second edit', editedAt: new Date(1_800_000_000_004).toISOString() });
        expect(await store.getMessage(chat.id, 2)).toMatchObject({ text: 'answer', replyTo: 1 });
        const history = (await store.listMessages(chat.id, { limit: 10 })).messages;
        expect(history.map((m) => m.type)).toEqual(['message', 'message', 'edit', 'edit']);
        expect(history[0]).toEqual(got);
        expect(history[3]).toMatchObject({ type: 'edit', targetSeq: 1, text: 'second edit' });
      });

      it('applies an older edit arriving after a newer one not at all', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        await store.appendMessages([message(chat.id, 1)]);
        await store.appendMessages([edit(chat.id, 3, 1, 'newer')]);
        await store.appendMessages([edit(chat.id, 2, 1, 'older')]);
        expect(await store.getMessage(chat.id, 1)).toMatchObject({ text: 'newer' });
      });

      it('shows a deleted message without text, takes it out of unread, and never edits it again', async () => {
        const [a, b] = await users(2);
        const chat = await group(a!.id, [b!.id]);
        await store.appendMessages([{ ...message(chat.id, 1), senderId: a!.id }, { ...message(chat.id, 2), senderId: a!.id }]);
        expect((await store.chatStates(b!.id, [chat.id])).get(chat.id)!.unread).toBe(2);
        await store.appendMessages([edit(chat.id, 3, 2, 'edited', a!.id), del(chat.id, 4, 2, a!.id)]);
        await store.appendMessages([edit(chat.id, 5, 2, 'too late', a!.id)]);
        const gone = await store.getMessage(chat.id, 2);
        expect(gone).toMatchObject({ type: 'message', seq: 2, deleted: true, senderId: a!.id });
        expect(gone).not.toHaveProperty('text');
        expect(gone).not.toHaveProperty('editedAt');
        const log = (await store.listMessages(chat.id, { after: 2, limit: 10 })).messages;
        expect(log.map((e) => [e.seq, e.type])).toEqual([[3, 'edit'], [4, 'delete'], [5, 'edit']]);
        // Its text is gone from its edits too; they keep their place.
        expect(log.filter((e) => 'text' in e)).toEqual([]);
        const state = (await store.chatStates(b!.id, [chat.id])).get(chat.id)!;
        expect(state.unread).toBe(1);
        expect(state.lastMessage).toMatchObject({ seq: 2, deleted: true });
      });

      it('stores an edit or delete of a missing or non-message target and changes nothing else', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        const created: SystemEnvelope = { type: 'system', id: newId(), chatId: chat.id, seq: 1, event: 'chat.created', userId: o!.id, createdAt: new Date().toISOString() };
        await store.appendMessages([created]);
        expect(await store.appendMessages([edit(chat.id, 2, 1, 'x'), del(chat.id, 3, 99)])).toEqual(['stored', 'stored']);
        expect(await store.getMessage(chat.id, 1)).toBeNull();
        expect((await store.listMessages(chat.id, { limit: 10 })).messages[0]).toEqual(created);
        expect(await store.maxSeq(chat.id)).toBe(3);
      });

      it('applies a redelivered edit or delete once', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        await store.appendMessages([message(chat.id, 1)]);
        const e = edit(chat.id, 2, 1, 'once');
        expect(await store.appendMessages([e])).toEqual(['stored']);
        expect(await store.appendMessages([e])).toEqual(['present']);
        expect(await store.getMessage(chat.id, 1)).toMatchObject({ text: 'once' });
      });
    });

    describe('message search', () => {
      const find = async (q: string, chatIds: string[], page: { before?: string; limit: number } = { limit: 50 }) =>
        (await store.searchMessages(q, chatIds, page)).messages.map((m) => ('text' in m ? m.text : null));

      it('finds literal substrings in scripts without spaces, case-insensitively, newest first', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        const texts = ['모두들 안녕하세요', '東京都に行きます', 'Une école', 'nothing here', '안녕', 'ÉCOLE normale', '100% sure_thing'];
        await store.appendMessages(texts.map((t, i) => message(chat.id, i + 1, t)));
        expect(await find('안녕', [chat.id])).toEqual(['안녕', '모두들 안녕하세요']);
        expect(await find('東京', [chat.id])).toEqual(['東京都に行きます']);
        expect(await find('école', [chat.id])).toEqual(['ÉCOLE normale', 'Une école']);
        expect(await find('0%', [chat.id])).toEqual(['100% sure_thing']);
        expect(await find('e_t', [chat.id])).toEqual(['100% sure_thing']);
        expect(await find('녕하', [chat.id])).toEqual(['모두들 안녕하세요']);
        expect(await find('하안', [chat.id])).toEqual([]);
        expect(await find('here nothing', [chat.id])).toEqual([]);
      });

      it('treats operator-like text as text', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        const texts = ['a NEAR b', 'say "hi" (now)', 'star * here', 'x AND y', 'plain words'];
        await store.appendMessages(texts.map((t, i) => message(chat.id, i + 1, t)));
        for (const q of ['near', '"hi"', '(now', '* ', 'and', '" OR "', 'NEAR(', '%%', '__']) {
          const expected = texts.filter((t) => t.toLowerCase().includes(q.toLowerCase())).reverse();
          expect(await find(q.toLowerCase(), [chat.id]), q).toEqual(expected);
        }
      });

      it('searches only the given chats, pages newest first with before, and follows edits and deletions', async () => {
        const [o] = await users(1);
        const mine = await group(o!.id, []);
        const theirs = await group(o!.id, []);
        await store.appendMessages(Array.from({ length: 7 }, (_, i) => message(mine.id, i + 1, `hello ${i + 1}`)));
        await store.appendMessages([message(theirs.id, 1, 'hello there')]);
        const first = await store.searchMessages('hello', [mine.id], { limit: 3 });
        expect(first.messages.map((m) => m.seq)).toEqual([7, 6, 5]);
        expect(first.hasMore).toBe(true);
        const second = await store.searchMessages('hello', [mine.id], { before: first.messages[2]!.id, limit: 10 });
        expect(second.messages.map((m) => m.seq)).toEqual([4, 3, 2, 1]);
        expect(second.hasMore).toBe(false);
        expect(await store.searchMessages('hello', [mine.id], { before: newId(), limit: 10 })).toEqual({ messages: [], hasMore: false });
        expect(await find('hello', [])).toEqual([]);
        await store.appendMessages([
          { type: 'edit', id: newId(), chatId: mine.id, seq: 8, targetSeq: 2, text: 'goodbye', senderId: 'sender', createdAt: new Date().toISOString() },
          { type: 'delete', id: newId(), chatId: mine.id, seq: 9, targetSeq: 3, actorId: 'sender', createdAt: new Date().toISOString() },
        ]);
        expect((await store.searchMessages('hello', [mine.id], { limit: 10 })).messages.map((m) => m.seq)).toEqual([7, 6, 5, 4, 1]);
        expect(await find('goodbye', [mine.id])).toEqual(['goodbye']);
        expect((await store.searchMessages('hello', [mine.id, theirs.id], { limit: 1 })).messages[0]!.chatId).toBe(theirs.id);
      });

      it('matches a long query in full, not by its beginning: 64 × "a" in 1,000 × "a", not in 63 × "a" + "b"', async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        const texts = ['a'.repeat(1000), `${'a'.repeat(63)}b`, 'the quick brown fox jumps', 'the quick brown cat jumps', 'the quick brown'];
        await store.appendMessages(texts.map((t, i) => message(chat.id, i + 1, t)));
        expect(await find('a'.repeat(64), [chat.id])).toEqual([texts[0]]);
        expect(await find(`${'a'.repeat(63)}b`, [chat.id])).toEqual([texts[1]]);
        expect(await find('quick brown fox', [chat.id])).toEqual([texts[2]]);
        expect(await find('the quick brown', [chat.id])).toEqual([texts[4], texts[3], texts[2]]);
      });

      it(`looks at no more than SEARCH_CANDIDATES (${SEARCH_CANDIDATES}) candidates a call: the page holds what they gave, hasMore only if that is anything`, async () => {
        const [o] = await users(1);
        const chat = await group(o!.id, []);
        // The decoys hold every pair of q, and its first nine characters, but not q: candidates
        // for either store's index, each refused when its text is confirmed.
        const q = 'aaaaaaaaaab';
        const decoys = Array.from({ length: SEARCH_CANDIDATES }, (_, i) => message(chat.id, i + 2, 'aaaaaaaaaa ab'));
        await store.appendMessages([message(chat.id, 1, 'old aaaaaaaaaab'), ...decoys, message(chat.id, SEARCH_CANDIDATES + 2, 'new aaaaaaaaaab')]);
        const first = await store.searchMessages(q, [chat.id], { limit: 10 });
        expect({ texts: first.messages.map((m) => ('text' in m ? m.text : null)), hasMore: first.hasMore }).toEqual({ texts: ['new aaaaaaaaaab'], hasMore: true });
        // From there the budget runs out on the decoys: the oldest is past it, and nothing more is offered.
        expect(await store.searchMessages(q, [chat.id], { before: first.messages[0]!.id, limit: 10 })).toEqual({ messages: [], hasMore: false });
        // Within the budget it is found.
        expect(await find('old aaaa', [chat.id])).toEqual(['old aaaaaaaaaab']);
      });
    });
  });
}
