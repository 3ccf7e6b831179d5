import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../core/ids.js';
import { hashPassword } from '../core/passwords.js';
import type { SqliteStore } from '../core/store/sqlite.js';
import { type Connected, connectAs, waitForMessage } from './helpers/mqtt.js';
import { Seeder } from './helpers/seed.js';
import { type Json, type TestServer, type UserDto, startTestServer } from './helpers/server.js';

/**
 * Issue 12, replies, edits, deletions and catch-up after a reconnect (docs/chat-features.md,
 * "Replies", "Edits and deletions"), over real HTTP and real mqtt.js connections to the
 * embedded server.
 */
type Who = { user: Pick<UserDto, 'id' | 'username' | 'displayName'>; token: string };

const messages = (chatId: string) => `chats/${chatId}/messages`;
const inbox = (userId: string) => `users/${userId}/inbox`;

/** Applies one event of the stream to a client's view of a chat (by seq), as a client does. */
function apply(view: Map<number, Json>, ev: Json) {
  view.set(ev.seq, ev);
  const target = view.get(ev.targetSeq);
  if (ev.type === 'edit' && target && target.deleted !== true) view.set(ev.targetSeq, { ...target, text: ev.text, editedAt: ev.createdAt });
  if (ev.type === 'delete' && target) {
    const { text: _text, editedAt: _editedAt, ...kept } = target;
    view.set(ev.targetSeq, { ...kept, deleted: true });
  }
}

describe('replies, edits and deletions', () => {
  let srv: TestServer;
  let seeder: Seeder;
  const open: Connected[] = [];
  let counter = 0;

  beforeAll(async () => {
    srv = await startTestServer({ SEND_BURST: '1000' });
    // Users and tokens through the store seam (as test/helpers/seed.ts does): fast set-up.
    seeder = new Seeder(srv.store as SqliteStore, await hashPassword('seeded-password'));
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await srv.stop();
  });

  const people = async (n: number) => (await seeder.users(n, 'edit')) as Who[] & [Who, Who, Who, Who];
  const connect = async (who: Who, subscribe: string[] = []) => {
    const c = await connectAs(srv, who);
    open.push(c);
    if (subscribe.length > 0) await c.client.subscribeAsync(subscribe, { qos: 1 });
    return c;
  };
  const direct = async (a: Who, b: Who) => (await srv.http.post('/api/chats', { type: 'direct', memberIds: [b.user.id] }, a.token)).body.chat as Json;
  const group = async (owner: Who, members: Who[]) =>
    (await srv.http.post('/api/chats', { type: 'group', name: `g${++counter}`, memberIds: members.map((m) => m.user.id) }, owner.token)).body.chat as Json;
  /** Sends over MQTT and resolves with the envelope delivered back (c subscribed). */
  const send = async (c: Connected, chatId: string, text = `text ${counter}`, extra: Record<string, unknown> = {}) => {
    const clientMsgId = `e${++counter}`;
    await c.client.publishAsync(messages(chatId), JSON.stringify({ text, clientMsgId, ...extra }), { qos: 1 });
    return (await waitForMessage(c, messages(chatId), (m) => m.json.clientMsgId === clientMsgId)).json as Json;
  };
  const patch = (chatId: string, seq: number | string, body: unknown, who: Who) => srv.http.request('PATCH', `/api/messages/${chatId}/${seq}`, { body, token: who.token });
  const del = (chatId: string, seq: number | string, who: Who) => srv.http.delete(`/api/messages/${chatId}/${seq}`, who.token);
  const history = (chatId: string, who: Who) => srv.http.history(chatId, who.token);
  const code = (res: { status: number; body: Json }) => [res.status, res.body?.error?.code];

  describe('replies', () => {
    let alice: Who;
    let bob: Who;
    let chat: Json;
    let a: Connected;
    let b: Connected;
    let question: Json;

    beforeAll(async () => {
      [alice, bob] = await people(2);
      chat = await direct(alice, bob);
      a = await connect(alice, [messages(chat.id), inbox(alice.user.id)]);
      b = await connect(bob, [messages(chat.id)]);
      question = await send(b, chat.id, 'lunch?');
    });

    it('carries replyTo of an existing message in the envelope, live to every member and in history', async () => {
      const answer = await send(a, chat.id, 'yes!', { replyTo: question.seq });
      expect(answer).toEqual({
        type: 'message', id: expect.any(String), chatId: chat.id, seq: question.seq + 1, senderId: alice.user.id, senderName: alice.user.displayName,
        text: 'yes!', clientMsgId: answer.clientMsgId, replyTo: question.seq, createdAt: expect.any(String),
      });
      const toBob = await waitForMessage(b, messages(chat.id), (m) => m.json.seq === answer.seq);
      expect(toBob.json).toEqual(answer);
      const log = await history(chat.id, bob);
      expect(log.find((m) => m.seq === answer.seq)).toEqual(answer);
      // A message sent without replyTo has none.
      expect(log.find((m) => m.seq === question.seq)).not.toHaveProperty('replyTo');
    });

    // Each refused send: PUBACKed, the sender's inbox says why, nothing reaches the room.
    const refused: [string, (lastSeq: number, editSeq: number) => unknown][] = [
      ['a future seq', (last) => last + 5],
      ["a system message's seq (chat.created)", () => 1],
      ["an edit event's seq", (_last, editSeq) => editSeq],
      ['0', () => 0],
      ['a string "1"', () => '1'],
      ['1.5', () => 1.5],
      ['-1', () => -1],
      ['null', () => null],
      ['an object', () => ({ seq: 2 })],
    ];
    it.each(refused)('refuses replyTo of %s with message.rejected invalid_payload, and nothing reaches the room', async (_what, value) => {
      const edited = await send(a, chat.id, 'to be edited');
      const edit = await patch(chat.id, edited.seq, { text: 'edited' }, alice);
      expect(edit.status).toBe(200);
      const editEvent = await waitForMessage(b, messages(chat.id), (m) => m.json.type === 'edit' && m.json.targetSeq === edited.seq);
      const lastSeq = editEvent.json.seq as number;
      const seenByBob = b.on(messages(chat.id)).length;

      const clientMsgId = `bad-${++counter}`;
      await a.client.publishAsync(messages(chat.id), JSON.stringify({ text: 'a bad reply', clientMsgId, replyTo: value(lastSeq, editEvent.json.seq) }), { qos: 1 });
      const marker = await send(a, chat.id, 'marker');
      await waitForMessage(b, messages(chat.id), (m) => m.json.seq === marker.seq);
      expect(b.on(messages(chat.id)).slice(seenByBob).map((m) => m.json.clientMsgId)).toEqual([marker.clientMsgId]);
      expect(marker.seq).toBe(lastSeq + 1); // the refused send took no seq
      expect((await history(chat.id, bob)).some((m) => m.clientMsgId === clientMsgId)).toBe(false);
      const rejected = await waitForMessage(a, inbox(alice.user.id), (m) => m.json.clientMsgId === clientMsgId, 2000);
      expect(rejected.json).toEqual({ type: 'message.rejected', chatId: chat.id, clientMsgId, reason: 'invalid_payload' });
      expect(a.client.connected).toBe(true);
    });

    it('refuses replyTo naming a seq that exists only in another chat', async () => {
      const [small, big] = [await group(alice, [bob]), await group(alice, [bob])];
      const c = await connect(alice, [messages(small.id), messages(big.id)]);
      const there = [await send(c, big.id, 'elsewhere'), await send(c, big.id, 'elsewhere'), await send(c, big.id, 'elsewhere')];
      const clientMsgId = `bad-${++counter}`;
      await c.client.publishAsync(messages(small.id), JSON.stringify({ text: 'wrong chat', clientMsgId, replyTo: there[2]!.seq }), { qos: 1 });
      const rejected = await waitForMessage(a, inbox(alice.user.id), (m) => m.json.clientMsgId === clientMsgId);
      expect(rejected.json).toEqual({ type: 'message.rejected', chatId: small.id, clientMsgId, reason: 'invalid_payload' });
      expect((await history(small.id, bob)).map((m) => m.type)).toEqual(['system']);
    });
  });

  describe('edits', () => {
    let alice: Who;
    let bob: Who;
    let eve: Who;
    let chat: Json;
    let a: Connected;
    let b: Connected;

    beforeAll(async () => {
      [alice, bob, eve] = await people(3);
      chat = await direct(alice, bob);
      a = await connect(alice, [messages(chat.id)]);
      b = await connect(bob, [messages(chat.id)]);
    });

    it('PATCH by the sender answers 200 {message} with the new text and editedAt; an edit event with its own seq goes live and into history', async () => {
      const original = await send(a, chat.id, 'helo wrold');
      const res = await patch(chat.id, original.seq, { text: 'hello world' }, alice);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ message: { ...original, text: 'hello world', editedAt: expect.any(String) } });
      const live = await waitForMessage(b, messages(chat.id), (m) => m.json.type === 'edit' && m.json.targetSeq === original.seq);
      expect(live.json).toEqual({
        type: 'edit', id: expect.any(String), chatId: chat.id, seq: original.seq + 1, targetSeq: original.seq, text: 'hello world', senderId: alice.user.id,
        createdAt: res.body.message.editedAt,
      });
      expect((await waitForMessage(a, messages(chat.id), (m) => m.json.type === 'edit' && m.json.targetSeq === original.seq)).json).toEqual(live.json);
      const log = await history(chat.id, bob);
      expect(log.find((m) => m.seq === original.seq)).toEqual({ ...original, text: 'hello world', editedAt: res.body.message.editedAt });
      expect(log.find((m) => m.seq === live.json.seq)).toEqual(live.json);

      // A second edit: a second event; the message shows the latest text and time.
      const again = await patch(chat.id, original.seq, { text: 'hello, world' }, alice);
      expect(again.status).toBe(200);
      const after = await history(chat.id, bob);
      expect(after.find((m) => m.seq === original.seq)).toMatchObject({ text: 'hello, world', editedAt: again.body.message.editedAt });
      expect(after.filter((m) => m.type === 'edit' && m.targetSeq === original.seq).map((m) => m.text)).toEqual(['hello world', 'hello, world']);
    });

    it('is for the sender only: another member 403 forbidden, a non-member 403 not_member', async () => {
      const original = await send(a, chat.id, "alice's words");
      expect(code(await patch(chat.id, original.seq, { text: "bob's words" }, bob))).toEqual([403, 'forbidden']);
      expect(code(await patch(chat.id, original.seq, { text: "eve's words" }, eve))).toEqual([403, 'not_member']);
      expect((await history(chat.id, alice)).find((m) => m.seq === original.seq).text).toBe("alice's words");
    });

    it('answers 404 for a seq that holds no message (unknown, a system message, an edit event) and for an unknown chat', async () => {
      const original = await send(a, chat.id, 'x');
      const edit = await patch(chat.id, original.seq, { text: 'y' }, alice);
      const editSeq = (await waitForMessage(b, messages(chat.id), (m) => m.json.type === 'edit' && m.json.targetSeq === original.seq)).json.seq;
      expect(edit.status).toBe(200);
      expect(code(await patch(chat.id, 999_999, { text: 'z' }, alice))).toEqual([404, 'not_found']);
      expect(code(await patch(chat.id, 1, { text: 'z' }, alice))).toEqual([404, 'not_found']);
      expect(code(await patch(chat.id, editSeq, { text: 'z' }, alice))).toEqual([404, 'not_found']);
      expect(code(await del(chat.id, 999_999, alice))).toEqual([404, 'not_found']);
      expect(code(await del(chat.id, 1, alice))).toEqual([404, 'not_found']);
      expect((await patch(newId(), 2, { text: 'z' }, alice)).status).toBe(404);
      expect(code(await patch(chat.id, 'two', { text: 'z' }, alice))).toEqual([400, 'invalid_input']);
      expect(code(await patch(chat.id, 0, { text: 'z' }, alice))).toEqual([400, 'invalid_input']);
    });

    it('applies the same text rules as a send: empty, blank, 1,001 code points, control characters, not a string → 400 invalid_input; 1,000 emoji pass', async () => {
      const original = await send(a, chat.id, 'rules');
      const bad: unknown[] = [{ text: '' }, { text: ' \n\t ' }, { text: '가'.repeat(1001) }, { text: '😀'.repeat(1001) }, { text: 'bell\u0007' }, { text: 5 }, {}, { text: 'ok', extra: 1 }];
      for (const body of bad) expect([JSON.stringify(body).slice(0, 40), ...code(await patch(chat.id, original.seq, body, alice))]).toEqual([JSON.stringify(body).slice(0, 40), 400, 'invalid_input']);
      expect((await history(chat.id, alice)).find((m) => m.seq === original.seq)).toEqual(original); // unchanged, no editedAt
      const long = await patch(chat.id, original.seq, { text: '😀'.repeat(1000) }, alice);
      expect(long.status).toBe(200);
      expect(long.body.message.text).toBe('😀'.repeat(1000));
    });
  });

  describe('deletions', () => {
    let owner: Who;
    let m1: Who;
    let m2: Who;
    let eve: Who;
    let chat: Json;
    let o: Connected;
    let c1: Connected;

    beforeAll(async () => {
      [owner, m1, m2, eve] = await people(4);
      chat = await group(owner, [m1, m2]);
      o = await connect(owner, [messages(chat.id)]);
      c1 = await connect(m1, [messages(chat.id)]);
    });

    it('DELETE by the sender answers 204; a delete event goes live; history shows the target deleted: true without text', async () => {
      const question = await send(c1, chat.id, 'first');
      const target = await send(c1, chat.id, 'oops', { replyTo: question.seq });
      expect((await patch(chat.id, target.seq, { text: 'oops, edited' }, m1)).status).toBe(200);
      const res = await del(chat.id, target.seq, m1);
      expect([res.status, res.body]).toEqual([204, null]);
      const live = await waitForMessage(o, messages(chat.id), (m) => m.json.type === 'delete' && m.json.targetSeq === target.seq);
      expect(live.json).toEqual({ type: 'delete', id: expect.any(String), chatId: chat.id, seq: target.seq + 2, targetSeq: target.seq, actorId: m1.user.id, createdAt: expect.any(String) });
      const log = await history(chat.id, m2);
      const { text: _text, ...kept } = target;
      // Its seq, id, sender and replyTo stay; no text, no editedAt.
      expect(log.find((m) => m.seq === target.seq)).toEqual({ ...kept, deleted: true });
      expect(log.find((m) => m.seq === live.json.seq)).toEqual(live.json);
      // A reply to a deleted message is still allowed.
      const reply = await send(o, chat.id, 'what did you say?', { replyTo: target.seq });
      expect(reply.replyTo).toBe(target.seq);
    });

    it("lets a group's owner delete another member's message, and not another member; nor edit it, even the owner", async () => {
      const target = await send(c1, chat.id, 'by m1');
      expect(code(await del(chat.id, target.seq, m2))).toEqual([403, 'forbidden']);
      expect(code(await del(chat.id, target.seq, eve))).toEqual([403, 'not_member']);
      expect(code(await patch(chat.id, target.seq, { text: 'by the owner' }, owner))).toEqual([403, 'forbidden']);
      expect((await del(chat.id, target.seq, owner)).status).toBe(204);
      const live = await waitForMessage(c1, messages(chat.id), (m) => m.json.type === 'delete' && m.json.targetSeq === target.seq);
      expect(live.json.actorId).toBe(owner.user.id);
      expect((await history(chat.id, m1)).find((m) => m.seq === target.seq)).toMatchObject({ deleted: true, senderId: m1.user.id });
    });

    it('in a direct chat, the other member may not delete (no owner)', async () => {
      const [x, y] = await people(2);
      const d = await direct(x, y);
      const cx = await connect(x, [messages(d.id)]);
      const mine = await send(cx, d.id, 'mine');
      expect(code(await del(d.id, mine.seq, y))).toEqual([403, 'forbidden']);
      expect((await del(d.id, mine.seq, x)).status).toBe(204);
    });

    it('deleting twice, one after the other and five at once, makes exactly one delete event each', async () => {
      const once = await send(c1, chat.id, 'delete me twice');
      expect((await del(chat.id, once.seq, m1)).status).toBe(204);
      expect((await del(chat.id, once.seq, m1)).status).toBe(204);
      const racing = await send(c1, chat.id, 'delete me five times at once');
      const answers = await Promise.all([m1, owner, m1, owner, m1].map((who) => del(chat.id, racing.seq, who)));
      expect(answers.map((r) => r.status)).toEqual([204, 204, 204, 204, 204]);
      const marker = await send(c1, chat.id, 'after the deletions');
      await waitForMessage(o, messages(chat.id), (m) => m.json.seq === marker.seq);
      const log = await history(chat.id, owner);
      for (const target of [once, racing]) {
        expect(log.filter((m) => m.type === 'delete' && m.targetSeq === target.seq)).toHaveLength(1);
        expect(o.on(messages(chat.id)).filter((m) => m.json.type === 'delete' && m.json.targetSeq === target.seq)).toHaveLength(1);
      }
      // Seqs stay contiguous: no seq was taken by a deletion that did not happen.
      expect(log.map((m) => m.seq)).toEqual(Array.from({ length: log.length }, (_, i) => i + 1));
    });

    it('refuses to edit a deleted message: 409 message_deleted', async () => {
      const target = await send(c1, chat.id, 'gone soon');
      expect((await del(chat.id, target.seq, owner)).status).toBe(204);
      expect(code(await patch(chat.id, target.seq, { text: 'back?' }, m1))).toEqual([409, 'message_deleted']);
      expect((await history(chat.id, m1)).find((m) => m.seq === target.seq)).not.toHaveProperty('text');
    });
  });

  it('catch-up after a reconnect: GET ?after=<last seq seen> brings messages, edits and deletions in seq order, no duplicate, and applying them gives history', async () => {
    const [alice, bob] = await people(2);
    const chat = await direct(alice, bob);
    const a = await connect(alice, [messages(chat.id)]);
    // Bob's client: history first, then live.
    const view = new Map<number, Json>();
    let b = await connect(bob, [messages(chat.id)]);
    for (const ev of await history(chat.id, bob)) apply(view, ev);
    const early = [await send(a, chat.id, 'one'), await send(a, chat.id, 'two'), await send(a, chat.id, 'three')];
    await waitForMessage(b, messages(chat.id), (m) => m.json.seq === early[2]!.seq);
    for (const m of b.on(messages(chat.id))) apply(view, m.json);
    const lastSeen = Math.max(...view.keys());
    await b.end();

    // Meanwhile: new messages, edits of a seen and an unseen message, deletions of both kinds,
    // a reply.
    const four = await send(a, chat.id, 'four');
    const five = await send(a, chat.id, 'five');
    expect((await patch(chat.id, early[1]!.seq, { text: 'two, edited' }, alice)).status).toBe(200);
    expect((await patch(chat.id, four.seq, { text: 'four, edited' }, alice)).status).toBe(200);
    expect((await del(chat.id, early[0]!.seq, alice)).status).toBe(204);
    expect((await patch(chat.id, five.seq, { text: 'five, edited' }, alice)).status).toBe(200);
    expect((await del(chat.id, five.seq, alice)).status).toBe(204);
    await send(a, chat.id, 'six', { replyTo: early[1]!.seq });

    b = await connect(bob, [messages(chat.id)]);
    // Small pages, to catch a duplicate or a gap at a page boundary.
    const fetched: Json[] = [];
    for (let after = lastSeen; ;) {
      const res = await srv.http.get(`/api/messages/${chat.id}?after=${after}&limit=3`, bob.token);
      expect(res.status).toBe(200);
      fetched.push(...res.body.messages);
      if (!res.body.hasMore) break;
      after = res.body.messages.at(-1).seq;
    }
    const full = await history(chat.id, bob);
    const seqs = fetched.map((m) => m.seq);
    expect(seqs).toEqual(Array.from({ length: full.at(-1).seq - lastSeen }, (_, i) => lastSeen + 1 + i));
    expect(fetched.map((m) => m.type)).toEqual(['message', 'message', 'edit', 'edit', 'delete', 'edit', 'delete', 'message']);
    for (const ev of fetched) apply(view, ev);
    expect([...view.values()].sort((x, y) => x.seq - y.seq)).toEqual(full);
    expect(full.find((m) => m.seq === early[0]!.seq)).toMatchObject({ deleted: true });
    expect(full.find((m) => m.seq === five.seq)).not.toHaveProperty('text');
  });
});
