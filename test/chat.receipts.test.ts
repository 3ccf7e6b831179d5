import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../core/ids.js';
import { hashPassword } from '../core/passwords.js';
import type { SqliteStore } from '../core/store/sqlite.js';
import { type Connected, connectAs, subscribeGranted, waitForMessage } from './helpers/mqtt.js';
import { pollUntil } from './helpers/poll.js';
import { Seeder } from './helpers/seed.js';
import { type Json, type TestServer, type UserDto, startTestServer } from './helpers/server.js';

/**
 * Issue 12, read pointers, receipts, unread counts and the chat lists (docs/chat-features.md,
 * "Read pointers and unread counts", "Chat object and chat lists"), over real HTTP and real
 * mqtt.js connections to the embedded server.
 */
type Who = { user: Pick<UserDto, 'id' | 'username' | 'displayName'>; token: string };

const messages = (chatId: string) => `chats/${chatId}/messages`;
const receipts = (chatId: string) => `chats/${chatId}/receipts`;

/** The largest number of deliveries that arrived within any one second. */
function mostInAnySecond(times: number[]): number {
  let most = 0;
  for (let i = 0; i < times.length; i++) {
    let n = 0;
    for (let j = i; j < times.length && times[j]! - times[i]! < 1000; j++) n++;
    most = Math.max(most, n);
  }
  return most;
}

/** What `unread` must be for `userId`, computed from the REST history: messages of others
 * above the pointer, not deleted. */
const unreadFrom = (history: Json[], userId: string, readSeq: number) =>
  history.filter((m) => m.type === 'message' && m.senderId !== userId && m.seq > readSeq && m.deleted !== true).length;

describe('read pointers, receipts and unread counts', () => {
  let srv: TestServer;
  const open: Connected[] = [];
  let counter = 0;
  let seeder: Seeder;
  /** `n` new users (at most 5 named by destructuring). */
  const people = async (n: number) => (await seeder.users(n, 'rcpt')) as Who[] & [Who, Who, Who, Who, Who];

  beforeAll(async () => {
    // The 200-send spec sends ~67 messages per user at once: above the default burst of 30.
    srv = await startTestServer({ SEND_BURST: '1000' });
    // Users and login tokens written through the store seam (as test/helpers/seed.ts does): a
    // sign-up over REST costs two scrypt hashes, and this file needs many users.
    seeder = new Seeder(srv.store as SqliteStore, await hashPassword('seeded-password'));
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await srv.stop();
  });

  const connect = async (who: Who, device?: string, subscribe: string[] = []) => {
    const c = await connectAs(srv, who, device === undefined ? {} : { clientId: `${who.user.id}/${device}` });
    open.push(c);
    if (subscribe.length > 0) await c.client.subscribeAsync(subscribe, { qos: 1 });
    return c;
  };
  const group = async (owner: Who, members: Who[], visibility: 'private' | 'public' = 'private') => {
    const res = await srv.http.post('/api/chats', { type: 'group', name: `g${++counter}`, memberIds: members.map((m) => m.user.id), visibility }, owner.token);
    expect(res.status).toBe(201);
    return res.body.chat as Json;
  };
  /** Sends over MQTT (QoS 1) and resolves with the envelope as delivered back to the sender
   * (`c` must be subscribed to the chat's messages). */
  const send = async (c: Connected, chatId: string, text = `m${counter}`) => {
    const clientMsgId = `s${++counter}`;
    await c.client.publishAsync(messages(chatId), JSON.stringify({ text, clientMsgId }), { qos: 1 });
    return (await waitForMessage(c, messages(chatId), (m) => m.json.clientMsgId === clientMsgId)).json as Json;
  };
  /** A receipt over MQTT at QoS 1: its PUBACK comes once the pointer is durable. */
  const receipt = (c: Connected, chatId: string, payload: unknown) =>
    c.client.publishAsync(receipts(chatId), Buffer.isBuffer(payload) ? payload : JSON.stringify(payload), { qos: 1 });
  const view = async (number: number, who: Who) => {
    const res = await srv.http.get(`/api/chats/${number}`, who.token);
    expect(res.status).toBe(200);
    return res.body.chat as Json;
  };
  const readRest = (number: number, who: Who, readSeq: unknown) => srv.http.post(`/api/chats/${number}/read`, { readSeq }, who.token);
  const pointers = async (number: number, who: Who) => {
    const res = await srv.http.get(`/api/chats/${number}/receipts`, who.token);
    expect(res.status).toBe(200);
    return res.body.receipts as Json[];
  };

  describe('the pointer', () => {
    let alice: Who;
    let bob: Who;
    let chat: Json;
    let a: Connected;
    let b: Connected;

    beforeAll(async () => {
      [alice, bob] = await people(2);
      chat = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id] }, alice.token)).body.chat;
      a = await connect(alice, 'a', [messages(chat.id)]);
      b = await connect(bob, 'b', [messages(chat.id)]);
      for (let i = 0; i < 4; i++) await send(b, chat.id, `from bob ${i}`); // seqs 2..5
    });

    it('starts at 0 for the members a chat is created with: its chat.created message is not unread', async () => {
      const fresh = await group(alice, [bob]);
      expect(await view(fresh.number, bob)).toMatchObject({ lastSeq: 1, readSeq: 0, unread: 0, lastMessage: null });
    });

    it('moves forward with a receipt over MQTT; a lower readSeq leaves it where it is', async () => {
      await receipt(a, chat.id, { readSeq: 4 });
      expect(await view(chat.number, alice)).toMatchObject({ lastSeq: 5, readSeq: 4, unread: 1 });
      await receipt(a, chat.id, { readSeq: 2 });
      await receipt(a, chat.id, { readSeq: 0 });
      expect(await view(chat.number, alice)).toMatchObject({ readSeq: 4, unread: 1 });
      // REST: the same rule, and its answer is the pointer after the move.
      const lower = await readRest(chat.number, alice, 3);
      expect([lower.status, lower.body]).toEqual([200, { readSeq: 4, unread: 1 }]);
    });

    it('is lowered to lastSeq when a readSeq is past it (MQTT and REST), so a later message is unread', async () => {
      const past = await readRest(chat.number, alice, 1_000_000);
      expect([past.status, past.body]).toEqual([200, { readSeq: 5, unread: 0 }]);
      const later = await send(b, chat.id, 'after the pointer');
      expect(await view(chat.number, alice)).toMatchObject({ lastSeq: later.seq, readSeq: 5, unread: 1 });
      await receipt(a, chat.id, { readSeq: Number.MAX_SAFE_INTEGER });
      expect(await view(chat.number, alice)).toMatchObject({ readSeq: later.seq, unread: 0 });
    });

    it("is moved by the member's own send to its message's seq; its own messages are never unread", async () => {
      await send(b, chat.id, 'unread one');
      await send(b, chat.id, 'unread two');
      const before = await view(chat.number, alice);
      expect(before.unread).toBe(2);
      const mine = await send(a, chat.id, 'alice answers');
      expect(await view(chat.number, alice)).toMatchObject({ readSeq: mine.seq, unread: 0, lastSeq: mine.seq });
      const more = [await send(a, chat.id, 'alice again'), await send(a, chat.id, 'and again')];
      expect(await view(chat.number, alice)).toMatchObject({ readSeq: more[1]!.seq, unread: 0 });
      // Bob has read up to his own last message: alice's three are unread for him.
      expect(await view(chat.number, bob)).toMatchObject({ readSeq: mine.seq - 1, unread: 3 });
      const listed = (await pointers(chat.number, bob)).find((p) => p.userId === alice.user.id);
      expect(listed).toEqual({ userId: alice.user.id, readSeq: more[1]!.seq, at: expect.any(String) });
    });

    it('set over REST: POST /api/chats/:number/read answers {readSeq, unread}; bad bodies 400, non-members 403', async () => {
      const last = await send(a, chat.id, 'for bob to read');
      const res = await readRest(chat.number, bob, last.seq - 1);
      expect([res.status, res.body]).toEqual([200, { readSeq: last.seq - 1, unread: 1 }]);
      expect((await readRest(chat.number, bob, last.seq)).body).toEqual({ readSeq: last.seq, unread: 0 });
      for (const bad of ['3', -1, 1.5, null]) {
        const refused = await readRest(chat.number, bob, bad);
        expect([bad, refused.status, refused.body.error?.code]).toEqual([bad, 400, 'invalid_input']);
      }
      const extra = await srv.http.post(`/api/chats/${chat.number}/read`, { readSeq: 1, also: true }, bob.token);
      expect([extra.status, extra.body.error.code]).toEqual([400, 'invalid_input']);
      const [outsider] = await people(1);
      const foreign = await readRest(chat.number, outsider, 1);
      expect([foreign.status, foreign.body.error.code]).toEqual([403, 'not_member']);
      expect((await readRest(999_999, bob, 1)).status).toBe(404);
    });
  });

  it('of two devices of one user publishing receipts at once is the max of what they published', async () => {
    const [alice, bob] = await people(2);
    const chat = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id] }, alice.token)).body.chat;
    const b = await connect(bob, 'x', [messages(chat.id)]);
    await Promise.all(Array.from({ length: 30 }, (_, i) => send(b, chat.id, `n${i}`))); // seqs 2..31
    const phone = await connect(alice, 'a');
    const laptop = await connect(alice, 'b');
    // Each round: the two devices publish interleaved, one ascending, one descending, at once.
    for (const top of [12, 25, 19, 28]) {
      const ups = Array.from({ length: top - 1 }, (_, i) => i + 2);
      await Promise.all([
        ...ups.map((n) => receipt(phone, chat.id, { readSeq: n })),
        ...[...ups].reverse().map((n) => receipt(laptop, chat.id, { readSeq: n })),
      ]);
    }
    // 28 is the highest published and below lastSeq (31): neither lowered nor taken back.
    expect(await view(chat.number, alice)).toMatchObject({ lastSeq: 31, readSeq: 28, unread: 3 });
    expect((await pointers(chat.number, bob)).find((p) => p.userId === alice.user.id)?.readSeq).toBe(28);
    expect(phone.client.connected && laptop.client.connected).toBe(true);
  });

  it('drops bad receipts (a string, a negative, a fraction, extra fields, binary, not an object) and keeps the connection up', async () => {
    const [alice, bob] = await people(2);
    const chat = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id] }, alice.token)).body.chat;
    const b = await connect(bob, 'b', [messages(chat.id), receipts(chat.id)]);
    for (let i = 0; i < 5; i++) await send(b, chat.id); // seqs 2..6
    const a = await connect(alice, 'a', [messages(chat.id)]);
    const bad: unknown[] = [
      { readSeq: '3' }, { readSeq: -1 }, { readSeq: 2.5 }, { readSeq: 3, extra: 1 }, { readseq: 3 }, {}, [3], 3, null,
      Buffer.from([0xff, 0xfe, 0x00, 0x01]), Buffer.from('{"readSeq": 3'),
    ];
    for (const payload of bad) await receipt(a, chat.id, payload); // each one PUBACKed
    expect(a.client.connected).toBe(true);
    expect(await view(chat.number, alice)).toMatchObject({ readSeq: 0, unread: 5 });
    // A good one after them works, and it is the first (and only) receipt bob receives: no bad
    // one moved the pointer, and none was forwarded as published.
    await receipt(a, chat.id, { readSeq: 4 });
    const first = await waitForMessage(b, receipts(chat.id), () => true);
    expect(first.json).toEqual({ type: 'read', chatId: chat.id, userId: alice.user.id, readSeq: 4, at: expect.any(String) });
    expect(await view(chat.number, alice)).toMatchObject({ readSeq: 4, unread: 2 });
    const after = await send(a, chat.id, 'still connected');
    expect(after.senderId).toBe(alice.user.id);
    expect(b.on(receipts(chat.id)).map((m) => m.json)).toEqual([first.json]);
  });

  it("ignores a non-member's receipts: no member's pointer changes and the non-member gets none", async () => {
    const [alice, bob, eve] = await people(3);
    const chat = await group(alice, [bob], 'public');
    const b = await connect(bob, 'b', [messages(chat.id), receipts(chat.id)]);
    await send(b, chat.id);
    await send(b, chat.id);
    const before = await pointers(chat.number, alice);
    const e = await connect(eve, 'e');
    expect(await subscribeGranted(e.client, [receipts(chat.id)], 0)).toEqual([128]);
    await receipt(e, chat.id, { readSeq: 2 });
    await receipt(e, chat.id, { readSeq: 3 });
    expect(e.client.connected).toBe(true);
    expect(await pointers(chat.number, alice)).toEqual(before);
    expect(before.map((p) => p.userId).sort()).toEqual([alice.user.id, bob.user.id].sort());
    // A non-member of a public group sees the chat, with no pointer, nothing unread, no message.
    expect(await view(chat.number, eve)).toMatchObject({ readSeq: 0, unread: 0, lastMessage: null, lastSeq: 3 });
    // The next receipt bob gets is alice's, not one of eve's.
    const a = await connect(alice, 'a');
    await receipt(a, chat.id, { readSeq: 3 });
    const got = await waitForMessage(b, receipts(chat.id), () => true);
    expect(got.json).toMatchObject({ userId: alice.user.id, readSeq: 3 });
  });

  describe('delivery to members', () => {
    it('sends members subscribed to chats/{id}/receipts {type:"read", chatId, userId, readSeq, at}, granted at QoS 0', async () => {
      const [alice, bob, carol] = await people(3);
      const chat = await group(alice, [bob, carol]);
      const a = await connect(alice, 'a', [messages(chat.id)]);
      await send(a, chat.id, 'hello both');
      const b = await connect(bob, 'b');
      expect(await subscribeGranted(b.client, [receipts(chat.id)], 1)).toEqual([0]);
      const c = await connect(carol, 'c', [receipts(chat.id)]);
      await receipt(b, chat.id, { readSeq: 2 });
      const toCarol = await waitForMessage(c, receipts(chat.id), () => true);
      const toBob = await waitForMessage(b, receipts(chat.id), () => true);
      expect(toCarol.json).toEqual({ type: 'read', chatId: chat.id, userId: bob.user.id, readSeq: 2, at: expect.any(String) });
      expect(toBob.json).toEqual(toCarol.json);
      expect(Math.abs(Date.parse(toCarol.json.at) - Date.now())).toBeLessThan(60_000);
      // The receipt lists agree with what was announced.
      expect((await pointers(chat.number, carol)).find((p) => p.userId === bob.user.id)).toEqual({ userId: bob.user.id, readSeq: 2, at: toCarol.json.at });
    });

    it('coalesces a burst of 20 receipts by one user within a second: at most 2 deliveries in that second, the last with the final pointer', async () => {
      const [alice, bob] = await people(2);
      const chat = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id] }, alice.token)).body.chat;
      const b = await connect(bob, 'b', [messages(chat.id), receipts(chat.id)]);
      await Promise.all(Array.from({ length: 21 }, () => send(b, chat.id))); // seqs 2..22
      const a = await connect(alice, 'a');
      const times: number[] = [];
      b.client.on('message', (topic) => {
        if (topic === receipts(chat.id)) times.push(performance.now());
      });
      // The first of the 20 is announced at once; the 19 after it come within its second.
      await receipt(a, chat.id, { readSeq: 2 });
      await waitForMessage(b, receipts(chat.id), (m) => m.json.readSeq === 2);
      await Promise.all(Array.from({ length: 19 }, (_, i) => receipt(a, chat.id, { readSeq: i + 3 }))); // 3..21
      await waitForMessage(b, receipts(chat.id), (m) => m.json.readSeq === 21, 5000);
      // A later receipt (22) is a marker: whatever the burst still had to deliver comes before it.
      await receipt(a, chat.id, { readSeq: 22 });
      await waitForMessage(b, receipts(chat.id), (m) => m.json.readSeq === 22, 5000);
      const got = b.on(receipts(chat.id)).map((m) => m.json);
      const ofBurst = got.slice(0, got.findIndex((r) => r.readSeq === 22));
      expect(ofBurst.length).toBeLessThanOrEqual(2);
      expect(ofBurst.map((r) => r.readSeq)).toEqual([2, 21]);
      expect(got.every((r) => r.userId === alice.user.id && r.type === 'read')).toBe(true);
      const seqs = got.map((r) => r.readSeq);
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y)); // never backwards
      expect(mostInAnySecond(times)).toBeLessThanOrEqual(2);
    });

    it("GET /api/chats/:number/receipts lists every member's pointer; a non-member gets 403 not_member", async () => {
      const [owner, m1, m2, eve] = await people(4);
      const chat = await group(owner, [m1, m2], 'public');
      const o = await connect(owner, 'o', [messages(chat.id)]);
      const c1 = await connect(m1, 'm', [messages(chat.id)]);
      await send(o, chat.id); // 2
      await send(o, chat.id); // 3
      const own = await send(c1, chat.id); // 4: moves m1's pointer
      await send(o, chat.id); // 5
      await readRest(chat.number, owner, 3); // lower than the owner's own send at 5: stays 5
      const listed = await pointers(chat.number, m2);
      const byUser = Object.fromEntries(listed.map((p) => [p.userId, p]));
      expect(listed).toHaveLength(3);
      expect(byUser[owner.user.id]).toEqual({ userId: owner.user.id, readSeq: 5, at: expect.any(String) });
      expect(byUser[m1.user.id]).toEqual({ userId: m1.user.id, readSeq: own.seq, at: expect.any(String) });
      expect(byUser[m2.user.id]).toMatchObject({ userId: m2.user.id, readSeq: 0 });
      // Also for a public group, which eve may see: its receipts are for members only.
      expect((await srv.http.get(`/api/chats/${chat.number}`, eve.token)).status).toBe(200);
      const foreign = await srv.http.get(`/api/chats/${chat.number}/receipts`, eve.token);
      expect([foreign.status, foreign.body.error.code]).toEqual([403, 'not_member']);
      expect((await srv.http.get('/api/chats/999999/receipts', eve.token)).status).toBe(404);
    });
  });

  describe('unread', () => {
    it('stays exact for every member through 200 concurrent sends by 3 members (MQTT, QoS 1) and reads', async () => {
      const members = await people(3);
      const chat = await group(members[0]!, members.slice(1));
      const conns = await Promise.all(members.map((p, i) => connect(p, `d${i}`, [messages(chat.id)])));
      // What each member asked its pointer to be (receipts over MQTT, reads over REST), and
      // the seqs of its own messages: its pointer must end at the highest of them.
      const asked = members.map(() => 0);
      const highestSeen = (c: Connected) => Math.max(0, ...c.on(messages(chat.id)).map((m) => m.json.seq as number));
      const sends: Promise<unknown>[] = [];
      for (let i = 0; i < 200; i++) {
        const who = i % 3;
        const c = conns[who]!;
        const sent = c.client.publishAsync(messages(chat.id), JSON.stringify({ text: `load ${i}`, clientMsgId: `load-${i}` }), { qos: 1 }).then(async () => {
          if (i % 4 === 0) return; // not every send is followed by a read
          const readSeq = highestSeen(c);
          asked[who] = Math.max(asked[who]!, readSeq);
          if (i % 5 === 0) {
            const res = await readRest(chat.number, members[who]!, readSeq);
            expect(res.status).toBe(200);
          } else await receipt(c, chat.id, { readSeq });
        });
        sends.push(sent);
      }
      await Promise.all(sends);
      const history = await srv.http.history(chat.id, members[0]!.token);
      const sent = history.filter((m) => m.type === 'message');
      expect(sent).toHaveLength(200);

      const check = async (log: Json[]) => {
        for (let who = 0; who < 3; who++) {
          const me = members[who]!;
          const ownSeqs = log.filter((m) => m.type === 'message' && m.senderId === me.user.id).map((m) => m.seq as number);
          const chatView = await view(chat.number, me);
          expect(chatView.readSeq).toBe(Math.max(asked[who]!, ...ownSeqs));
          expect(chatView.unread).toBe(unreadFrom(log, me.user.id, chatView.readSeq));
          // The chat list says the same.
          const listed = (await srv.http.get(`/api/chats/group/${me.user.id}?order=activity`, me.token)).body.chats.find((c: Json) => c.id === chat.id);
          expect([listed.readSeq, listed.unread]).toEqual([chatView.readSeq, chatView.unread]);
        }
      };
      await check(history);
      // Someone has something unread (else the spec would prove little).
      const unreadSum = (await Promise.all(members.map((p) => view(chat.number, p)))).reduce((s, v) => s + v.unread, 0);
      expect(unreadSum).toBeGreaterThan(0);

      // Deletions (by their senders, some above and some below each pointer) keep it exact.
      const doomed = [sent[10]!, sent[100]!, sent[150]!, sent[190]!, sent[199]!];
      for (const m of doomed) {
        const owner = members.find((p) => p.user.id === m.senderId)!;
        expect((await srv.http.delete(`/api/messages/${chat.id}/${m.seq}`, owner.token)).status).toBe(204);
      }
      await check(await srv.http.history(chat.id, members[0]!.token));
    });

    it('drops by one when an unread message is deleted, and not when a read one is; edits change nothing', async () => {
      const [alice, bob] = await people(2);
      const chat = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id] }, alice.token)).body.chat;
      const b = await connect(bob, 'b', [messages(chat.id)]);
      const sent = [await send(b, chat.id), await send(b, chat.id), await send(b, chat.id), await send(b, chat.id)]; // 2..5
      await readRest(chat.number, alice, 3);
      expect(await view(chat.number, alice)).toMatchObject({ readSeq: 3, unread: 2 });
      expect((await srv.http.delete(`/api/messages/${chat.id}/${sent[3]!.seq}`, bob.token)).status).toBe(204);
      expect(await view(chat.number, alice)).toMatchObject({ readSeq: 3, unread: 1 });
      expect((await srv.http.delete(`/api/messages/${chat.id}/${sent[0]!.seq}`, bob.token)).status).toBe(204);
      expect(await view(chat.number, alice)).toMatchObject({ readSeq: 3, unread: 1 });
      const edited = await srv.http.request('PATCH', `/api/messages/${chat.id}/${sent[2]!.seq}`, { body: { text: 'changed' }, token: bob.token });
      expect(edited.status).toBe(200);
      // The edit and delete events have seqs above alice's pointer, but are not messages.
      expect(await view(chat.number, alice)).toMatchObject({ readSeq: 3, unread: 1, lastSeq: 8 });
      // ... and they do not move bob's pointer (his last send, 5).
      expect(await view(chat.number, bob)).toMatchObject({ readSeq: 5, unread: 0 });
    });

    it('starts a member who joins a group at the lastSeq of its joining: earlier history is not unread', async () => {
      const [owner, late] = await people(2);
      const chat = await group(owner, []);
      const o = await connect(owner, 'o', [messages(chat.id)]);
      for (let i = 0; i < 3; i++) await send(o, chat.id);
      expect((await srv.http.post(`/api/chats/${chat.number}/members`, { userIds: [late.user.id] }, owner.token)).status).toBe(200);
      const joined = await view(chat.number, late);
      expect(joined.unread).toBe(0);
      await send(o, chat.id, 'welcome');
      expect(await view(chat.number, late)).toMatchObject({ unread: 1, readSeq: joined.readSeq });
      expect(joined.readSeq).toBeGreaterThanOrEqual(4);
    });
  });

  describe('chat object and chat lists', () => {
    it('carries lastMessage: the newest message in its current state (after an edit, after a deletion), or null', async () => {
      const [alice, bob] = await people(2);
      const chat = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id] }, alice.token)).body.chat;
      expect(chat.lastMessage).toBeNull();
      expect((await view(chat.number, bob)).lastMessage).toBeNull();
      const a = await connect(alice, 'a', [messages(chat.id)]);
      await send(a, chat.id, 'first');
      const second = await send(a, chat.id, 'second');
      expect((await view(chat.number, bob)).lastMessage).toEqual(second);
      const patched = await srv.http.request('PATCH', `/api/messages/${chat.id}/${second.seq}`, { body: { text: 'second, edited' }, token: alice.token });
      expect((await view(chat.number, bob)).lastMessage).toEqual({ ...second, text: 'second, edited', editedAt: patched.body.message.editedAt });
      // A system message is activity, not a message: lastMessage stays.
      expect((await srv.http.delete(`/api/messages/${chat.id}/${second.seq}`, alice.token)).status).toBe(204);
      const { text: _t, ...rest } = second;
      expect((await view(chat.number, bob)).lastMessage).toEqual({ ...rest, deleted: true });
      const history = await srv.http.history(chat.id, bob.token);
      expect((await view(chat.number, bob)).lastMessage).toEqual(history.filter((m) => m.type === 'message').at(-1));
    });

    it('lists own chats newest activity first with order=activity (group and one-to-one), paging with cursor/nextCursor over every chat once', async () => {
      const [alice, b1, b2, b3, other] = await people(5);
      // Each step at a later millisecond than the one before: activity is kept in ms.
      let last = 0;
      const tick = async () => {
        await pollUntil(() => Date.now() > last + 1, { every: 1 });
        last = Date.now();
      };
      const g0 = await group(other, [b1]); // alice is added later
      await tick();
      const d: Json[] = [];
      for (const peer of [b1, b2, b3]) {
        d.push((await srv.http.post('/api/chats', { type: 'direct', memberIds: [peer.user.id] }, alice.token)).body.chat);
        await tick();
      }
      const g: Json[] = [];
      for (let i = 0; i < 3; i++) {
        g.push(await group(alice, [b2]));
        await tick();
      }
      const a = await connect(alice, 'a', [...d, ...g].map((c) => messages(c.id)));
      for (const c of [d[1], g[2], d[0], g[0]]) {
        await send(a, c.id);
        await tick();
      }
      // Being added to a group is activity too (its member.joined system message).
      expect((await srv.http.post(`/api/chats/${g0.number}/members`, { userIds: [alice.user.id] }, other.token)).status).toBe(200);

      const list = async (path: string, query: string) => {
        const res = await srv.http.get(`/api/chats/${path}/${alice.user.id}?${query}`, alice.token);
        expect(res.status).toBe(200);
        return res.body;
      };
      const groups = await list('group', 'order=activity');
      expect(groups.chats.map((c: Json) => c.number)).toEqual([g0.number, g[0].number, g[2].number, g[1].number]);
      expect(groups.hasMore).toBe(false);
      expect(groups.nextCursor).toBeUndefined();
      const at = groups.chats.map((c: Json) => Date.parse(c.lastActivityAt));
      expect(at).toEqual([...at].sort((x, y) => y - x));
      const directs = await list('one-to-one', 'order=activity');
      expect(directs.chats.map((c: Json) => c.number)).toEqual([d[0].number, d[1].number, d[2].number]);
      expect(directs.chats[0].lastMessage).toMatchObject({ type: 'message', senderId: alice.user.id });
      expect(directs.chats[2].lastMessage).toBeNull();

      // Paging one chat at a time covers the same list, each chat once.
      for (const [path, whole] of [['group', groups.chats], ['one-to-one', directs.chats]] as const) {
        const seen: number[] = [];
        let cursor: string | undefined;
        for (let page = 0; page < 10; page++) {
          const body = await list(path, `order=activity&limit=1${cursor ? `&cursor=${cursor}` : ''}`);
          seen.push(...body.chats.map((c: Json) => c.number));
          if (!body.hasMore) {
            expect(body.nextCursor).toBeUndefined();
            break;
          }
          expect(body.nextCursor).toMatch(/^\d+\.\d+$/);
          cursor = body.nextCursor;
        }
        expect(seen).toEqual(whole.map((c: Json) => c.number));
      }
      // The default order is unchanged: by number.
      const byNumber = await list('group', '');
      expect(byNumber.chats.map((c: Json) => c.number)).toEqual([g0.number, ...g.map((c) => c.number)].sort((x, y) => x - y));
      // Cursors go with order=activity, after with order=number; nobody lists another's chats.
      expect((await srv.http.get(`/api/chats/group/${alice.user.id}?order=activity&after=1`, alice.token)).status).toBe(400);
      expect((await srv.http.get(`/api/chats/group/${alice.user.id}?cursor=1.1`, alice.token)).status).toBe(400);
      expect((await srv.http.get(`/api/chats/group/${alice.user.id}?order=activity`, b1.token)).status).toBe(403);
    });

    it('pages through chats of the same activity time (a tie) each exactly once', async () => {
      const [alice] = await people(1);
      // Set-up through the store seam: seven groups created in the same millisecond, no envelope.
      const at = Date.now();
      const made = [];
      for (let i = 0; i < 7; i++) {
        made.push(await srv.store.createGroupChat({ id: newId(), name: `tie ${i}`, visibility: 'private', ownerId: alice.user.id, memberIds: [alice.user.id], createdAt: at }));
      }
      const seen: number[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < 10; page++) {
        const res = await srv.http.get(`/api/chats/group/${alice.user.id}?order=activity&limit=2${cursor ? `&cursor=${cursor}` : ''}`, alice.token);
        expect(res.status).toBe(200);
        seen.push(...res.body.chats.map((c: Json) => c.number));
        for (const c of res.body.chats) expect(Date.parse(c.lastActivityAt)).toBe(at);
        if (!res.body.hasMore) break;
        cursor = res.body.nextCursor;
      }
      expect([...seen].sort((x, y) => x - y)).toEqual(made.map((c) => c.number).sort((x, y) => x - y));
      expect(new Set(seen).size).toBe(seen.length);
    });
  });
});
