import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SEND_BURST } from '../core/rules.js';
import { type Connected, connectAs, waitForMessage } from './helpers/mqtt.js';
import { pollUntil } from './helpers/poll.js';
import { type Json, type TestServer, type UserDto, startTestServer } from './helpers/server.js';

/**
 * What a member may publish to `chats/{chatId}/messages`, over real sockets: the JSON object
 * {"text", "clientMsgId"?} with 1–1,000 code points of text and nothing else. A refused send is
 * still PUBACKed, the sender's inbox says why, the connection stays up, and nothing reaches the
 * room or the log. Accepted sends come back as server-built envelopes, once per clientMsgId.
 */

type Who = { user: UserDto; token: string };
type Member = Who & { conn: Connected };

const messagesTopic = (chatId: string) => `chats/${chatId}/messages`;
const inboxTopic = (userId: string) => `users/${userId}/inbox`;

describe('MQTT send validation: chats/{chatId}/messages', () => {
  let srv: TestServer;
  let bob: Member; // the other member: receives, never sends in the table
  let senders: Member[]; // the table rotates senders so markers stay far below the rate limit
  let erin: Member;
  let rapid: Member;
  let room: Json; // group: senders + bob
  /** Highest seq of `room` seen so far: every test checks the log grows by exactly what it expects. */
  let roomSeq: number;

  const connect = async (who: Who, chatIds: string[]): Promise<Member> => {
    const conn = await connectAs(srv, who);
    await conn.client.subscribeAsync([inboxTopic(who.user.id), ...chatIds.map(messagesTopic)], { qos: 1 });
    return { ...who, conn };
  };

  const history = (chatId: string, token: string, after = 0) => srv.http.history(chatId, token, after);

  const publish = (m: Member, chatId: string, payload: string | Buffer) => m.conn.client.publishAsync(messagesTopic(chatId), payload, { qos: 1 });
  const send = (m: Member, chatId: string, body: Json) => publish(m, chatId, JSON.stringify(body));

  /** Publishes a refused payload and waits for its rejection: every answer to `m`'s earlier
   * publishes is in its inbox by then. Returns the inbox events since index `before`. */
  const settle = async (m: Member, chatId: string, before: number): Promise<Json[]> => {
    await publish(m, chatId, '[]');
    const inbox = inboxTopic(m.user.id);
    for (let n = before + 1; ; n++) {
      const events = (await m.conn.waitFor(n, inbox)).slice(before).map((r) => r.json);
      if (events.some((e) => e.reason === 'invalid_payload')) return events;
    }
  };

  let markers = 0;
  /** Sends a valid message from `m` and waits until `receiver` has it; returns its envelope. */
  const marker = async (m: Member, chatId: string, receiver: Member = bob): Promise<Json> => {
    const clientMsgId = `marker-${++markers}`;
    await send(m, chatId, { text: `marker ${markers}`, clientMsgId });
    return (await waitForMessage(receiver.conn, messagesTopic(chatId), (r) => r.json?.clientMsgId === clientMsgId)).json;
  };

  beforeAll(async () => {
    srv = await startTestServer();
    const [b, s1, s2, s3, e, r] = await Promise.all([
      srv.signUp(undefined, 'Bob B'), srv.signUp(undefined, 'Alice A'), srv.signUp(undefined, '카롤'), srv.signUp(undefined, 'Dave 😀'),
      srv.signUp(undefined, 'Erin'), srv.signUp(undefined, 'Rapid'),
    ]);
    room = (await srv.http.post('/api/chats', { type: 'group', name: 'validation', memberIds: [b.user.id, s2.user.id, s3.user.id] }, s1.token)).body.chat;
    const members = await Promise.all([b, s1, s2, s3].map((w) => connect(w, [room.id])));
    bob = members[0]!;
    senders = members.slice(1);
    erin = await connect(e, []);
    rapid = await connect(r, []);
    roomSeq = (await history(room.id, bob.token)).at(-1).seq; // the chat.created system message
  });
  afterAll(async () => {
    await Promise.all([bob, ...(senders ?? []), erin, rapid].filter(Boolean).map((m) => m.conn.end()));
    await srv?.stop();
  });

  describe('refused payloads: PUBACK, inbox reason, connection up, nothing delivered or stored', () => {
    type Row = { name: string; payload: string | Buffer; reason: 'too_long' | 'empty' | 'invalid_payload' };
    const json = (v: unknown) => JSON.stringify(v);
    const rows: Row[] = [
      // length, in Unicode code points
      { name: '1,001 ASCII characters', payload: json({ text: 'a'.repeat(1001) }), reason: 'too_long' },
      { name: '1,001 Hangul syllables', payload: json({ text: '가'.repeat(1001) }), reason: 'too_long' },
      { name: '1,001 emoji (2,002 UTF-16 units)', payload: json({ text: '😀'.repeat(1001) }), reason: 'too_long' },
      { name: '1,000 emoji and one more letter', payload: json({ text: `${'😀'.repeat(1000)}x` }), reason: 'too_long' },
      // empty or blank text
      { name: 'empty text', payload: json({ text: '' }), reason: 'empty' },
      { name: 'spaces only', payload: json({ text: '     ' }), reason: 'empty' },
      { name: 'only \\n and \\t', payload: json({ text: '\n\t\n' }), reason: 'empty' },
      { name: 'only \\r\\n, space and \\t', payload: json({ text: '\r\n \t' }), reason: 'empty' },
      { name: 'only no-break and ideographic spaces', payload: json({ text: '\u00a0\u3000' }), reason: 'empty' },
      // not a JSON object
      { name: 'zero-byte payload', payload: '', reason: 'invalid_payload' },
      { name: 'plain text, not JSON', payload: 'hello there', reason: 'invalid_payload' },
      { name: 'truncated JSON', payload: '{"text":"hi"', reason: 'invalid_payload' },
      { name: 'binary (invalid UTF-8)', payload: Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x80, 0xc3]), reason: 'invalid_payload' },
      { name: 'JSON text in invalid UTF-8', payload: Buffer.concat([Buffer.from('{"text":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), reason: 'invalid_payload' },
      { name: 'JSON array', payload: json(['hello']), reason: 'invalid_payload' },
      { name: 'JSON empty array', payload: '[]', reason: 'invalid_payload' },
      { name: 'JSON null', payload: 'null', reason: 'invalid_payload' },
      { name: 'JSON string', payload: json('hello'), reason: 'invalid_payload' },
      { name: 'JSON true', payload: 'true', reason: 'invalid_payload' },
      { name: 'JSON number', payload: '42', reason: 'invalid_payload' },
      { name: 'empty object (no text)', payload: '{}', reason: 'invalid_payload' },
      { name: '"Text" instead of "text"', payload: json({ Text: 'hi' }), reason: 'invalid_payload' },
      // text of the wrong type
      { name: 'text is a number', payload: json({ text: 42 }), reason: 'invalid_payload' },
      { name: 'text is null', payload: json({ text: null }), reason: 'invalid_payload' },
      { name: 'text is true', payload: json({ text: true }), reason: 'invalid_payload' },
      { name: 'text is an array', payload: json({ text: ['hi'] }), reason: 'invalid_payload' },
      { name: 'text is an object', payload: json({ text: { body: 'hi' } }), reason: 'invalid_payload' },
      // control characters and lone surrogates
      { name: 'text with \\u0000', payload: json({ text: 'nul\u0000byte' }), reason: 'invalid_payload' },
      { name: 'text with \\u0007 (bell)', payload: json({ text: 'ding\u0007' }), reason: 'invalid_payload' },
      { name: 'text with \\u001b (escape sequence)', payload: json({ text: '\u001b[31mred\u001b[0m' }), reason: 'invalid_payload' },
      { name: 'text with \\u007f (DEL)', payload: json({ text: 'del\u007f' }), reason: 'invalid_payload' },
      { name: 'text with \\u009b (C1 CSI)', payload: json({ text: 'c1\u009b' }), reason: 'invalid_payload' },
      { name: 'lone high surrogate escape "\\ud800"', payload: '{"text":"\\ud800"}', reason: 'invalid_payload' },
      { name: 'lone low surrogate escape after a letter', payload: '{"text":"a\\udc00"}', reason: 'invalid_payload' },
      // clientMsgId
      { name: 'clientMsgId of 65 characters', payload: json({ text: 'hi', clientMsgId: 'x'.repeat(65) }), reason: 'invalid_payload' },
      { name: 'clientMsgId with non-ASCII (é)', payload: json({ text: 'hi', clientMsgId: 'caf\u00e9' }), reason: 'invalid_payload' },
      { name: 'clientMsgId in Hangul', payload: json({ text: 'hi', clientMsgId: '메시지' }), reason: 'invalid_payload' },
      { name: 'clientMsgId with a tab', payload: json({ text: 'hi', clientMsgId: 'a\tb' }), reason: 'invalid_payload' },
      { name: 'clientMsgId is a number', payload: json({ text: 'hi', clientMsgId: 42 }), reason: 'invalid_payload' },
      { name: 'clientMsgId is an empty string', payload: json({ text: 'hi', clientMsgId: '' }), reason: 'invalid_payload' },
      // fields the server sets, or anything else
      { name: 'forged senderId', payload: json({ text: 'hi', senderId: 'someone-else' }), reason: 'invalid_payload' },
      { name: 'forged senderName', payload: json({ text: 'hi', senderName: 'Admin' }), reason: 'invalid_payload' },
      { name: 'forged seq', payload: json({ text: 'hi', seq: 1 }), reason: 'invalid_payload' },
      { name: 'forged createdAt', payload: json({ text: 'hi', createdAt: '2000-01-01T00:00:00.000Z' }), reason: 'invalid_payload' },
      { name: 'forged type', payload: json({ type: 'system', text: 'hi' }), reason: 'invalid_payload' },
      { name: 'forged id and chatId', payload: json({ text: 'hi', id: 'x', chatId: 'y' }), reason: 'invalid_payload' },
      { name: 'an unknown extra field', payload: json({ text: 'hi', priority: 'high' }), reason: 'invalid_payload' },
    ];

    let turn = 0;
    it.each(rows)('$name → $reason', async ({ payload, reason }) => {
      const sender = senders[turn++ % senders.length]!;
      const topic = messagesTopic(room.id);
      const inbox = inboxTopic(sender.user.id);
      const inboxBefore = sender.conn.on(inbox).length;
      const bobBefore = bob.conn.on(topic).length;
      const senderBefore = sender.conn.on(topic).length;

      // PUBACK: publishAsync resolves only when the broker acknowledged the QoS 1 publish.
      await publish(sender, room.id, payload);
      const events = await sender.conn.waitFor(inboxBefore + 1, inbox);
      expect(events[inboxBefore]!.json).toEqual({ type: 'message.rejected', chatId: room.id, clientMsgId: null, reason });

      // A later message from the same sender reaches the room; the refused one never did.
      const mark = await marker(sender, room.id);
      expect(bob.conn.on(topic).slice(bobBefore).map((m) => m.json)).toEqual([mark]);
      await waitForMessage(sender.conn, topic, (m) => m.json?.clientMsgId === mark.clientMsgId);
      expect(sender.conn.on(topic).slice(senderBefore).map((m) => m.json)).toEqual([mark]);
      expect(sender.conn.on(inbox)).toHaveLength(inboxBefore + 1); // one answer per refused send
      expect(sender.conn.client.connected).toBe(true);

      // The log holds only the marker, right after the previous seq: nothing stored, no hole.
      expect(await history(room.id, bob.token, roomSeq)).toEqual([mark]);
      expect(mark.seq).toBe(roomSeq + 1);
      roomSeq = mark.seq;
    });

    it('names the clientMsgId of a refused send in the rejection, so the client can tell which one failed', async () => {
      const sender = senders[0]!;
      const inbox = inboxTopic(sender.user.id);
      const cases = [
        { text: 'a'.repeat(1001), clientMsgId: 'corr-too-long', reason: 'too_long' },
        { text: ' \n\t ', clientMsgId: 'corr-empty', reason: 'empty' },
      ];
      for (const { text, clientMsgId, reason } of cases) {
        const before = sender.conn.on(inbox).length;
        await send(sender, room.id, { text, clientMsgId });
        const events = await sender.conn.waitFor(before + 1, inbox);
        expect(events[before]!.json).toEqual({ type: 'message.rejected', chatId: room.id, clientMsgId, reason });
      }
      expect(sender.conn.client.connected).toBe(true);
      const mark = await marker(sender, room.id);
      expect(await history(room.id, bob.token, roomSeq)).toEqual([mark]);
      roomSeq = mark.seq;
    });
  });

  describe('accepted payloads: the room gets the server-built envelope, and so does the log', () => {
    const printable64 = ` !"#$%&'()*+,-./:;<=>?@[\\]^_\`{|}~ABCDEFGHIJKLMNOPQRSTUVWXYZabcde`;
    type Row = { name: string; text: string; clientMsgId?: string };
    const rows: Row[] = [
      { name: '1,000 Hangul syllables', text: '가'.repeat(1000), clientMsgId: 'ok-hangul' },
      { name: '1,000 emoji (2,000 UTF-16 units)', text: '😀'.repeat(1000), clientMsgId: 'ok-emoji' },
      { name: 'exactly 1,000 ASCII characters', text: 'a'.repeat(1000), clientMsgId: 'ok-ascii' },
      { name: '1,000 code points mixing Hangul, ASCII, emoji and accents', text: ('한a😀\u00e9'.repeat(250)), clientMsgId: 'ok-mixed' },
      { name: '\\n, \\r and \\t inside the text', text: 'line one\r\nline two\n\tindented', clientMsgId: 'ok-whitespace' },
      { name: 'a single character', text: 'x', clientMsgId: 'ok-single' },
      { name: 'surrounding whitespace kept as sent', text: '  padded  ', clientMsgId: 'ok-padded' },
      { name: 'no clientMsgId', text: 'without an idempotency key' },
      { name: `a clientMsgId of ${printable64.length} printable ASCII characters`, text: 'long key', clientMsgId: printable64 },
    ];

    let turn = 0;
    it.each(rows)('$name', async ({ text, clientMsgId }) => {
      const sender = senders[turn++ % senders.length]!;
      const topic = messagesTopic(room.id);
      const inbox = inboxTopic(sender.user.id);
      const inboxBefore = sender.conn.on(inbox).length;
      const bobBefore = bob.conn.on(topic).length;

      await send(sender, room.id, clientMsgId === undefined ? { text } : { text, clientMsgId });
      const [got] = (await bob.conn.waitFor(bobBefore + 1, topic)).slice(bobBefore);
      expect(got!.json).toEqual({
        type: 'message', id: expect.any(String), chatId: room.id, seq: roomSeq + 1, senderId: sender.user.id,
        senderName: sender.user.displayName, text, clientMsgId: clientMsgId ?? null, createdAt: expect.any(String),
      });
      expect(got!.json.text).toBe(text);
      expect([...got!.json.text].length).toBeLessThanOrEqual(1000);
      // What the sender gets back is the same envelope; no rejection was sent.
      const own = await waitForMessage(sender.conn, topic, (m) => m.json?.id === got!.json.id);
      expect(own.json).toEqual(got!.json);
      expect(await history(room.id, bob.token, roomSeq)).toEqual([got!.json]);
      expect(sender.conn.on(inbox)).toHaveLength(inboxBefore);
      roomSeq += 1;
    });

    it('sets senderId, senderName, seq and createdAt itself; a payload that tries to set them is refused', async () => {
      const [alice, other] = [senders[0]!, senders[1]!];
      const topic = messagesTopic(room.id);
      const inbox = inboxTopic(alice.user.id);
      const inboxBefore = alice.conn.on(inbox).length;
      const forged = { text: 'I am someone else', clientMsgId: 'forged-1', senderId: other.user.id, senderName: other.user.displayName, seq: 1, createdAt: '2001-01-01T00:00:00.000Z' };
      await send(alice, room.id, forged);
      expect((await alice.conn.waitFor(inboxBefore + 1, inbox))[inboxBefore]!.json).toMatchObject({ type: 'message.rejected', chatId: room.id, reason: 'invalid_payload' });

      const t0 = Date.now();
      const bobBefore = bob.conn.on(topic).length;
      await send(alice, room.id, { text: 'honest', clientMsgId: 'honest-1' });
      const [got] = (await bob.conn.waitFor(bobBefore + 1, topic)).slice(bobBefore);
      const env = got!.json;
      expect(env).toMatchObject({ type: 'message', chatId: room.id, senderId: alice.user.id, senderName: alice.user.displayName, text: 'honest', clientMsgId: 'honest-1', seq: roomSeq + 1 });
      expect(env.senderId).not.toBe(other.user.id);
      expect(new Date(env.createdAt).toISOString()).toBe(env.createdAt);
      expect(Date.parse(env.createdAt)).toBeGreaterThanOrEqual(t0 - 1000);
      expect(Date.parse(env.createdAt)).toBeLessThanOrEqual(Date.now() + 1000);
      expect(await history(room.id, bob.token, roomSeq)).toEqual([env]);
      roomSeq = env.seq;
    });

    it('keeps the whole log of the room contiguous from seq 1, refusals leaving no hole', async () => {
      const all = await history(room.id, bob.token);
      expect(all.map((m) => m.seq)).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
      expect(all.at(-1)!.seq).toBe(roomSeq);
      expect(all[0]).toMatchObject({ type: 'system', event: 'chat.created', seq: 1 });
      expect((await srv.http.get(`/api/chats/${room.number}`, bob.token)).body.chat.lastSeq).toBe(roomSeq);
    });
  });

  describe('idempotency: one (sender, clientMsgId) is one message with one seq', () => {
    let chatA: Json;
    let chatB: Json;
    let erinB: Member; // a second device of erin

    beforeAll(async () => {
      chatA = (await srv.http.post('/api/chats', { type: 'group', name: 'dedupe A', memberIds: [bob.user.id] }, erin.token)).body.chat;
      chatB = (await srv.http.post('/api/chats', { type: 'group', name: 'dedupe B', memberIds: [bob.user.id] }, erin.token)).body.chat;
      await erin.conn.client.subscribeAsync([messagesTopic(chatA.id), messagesTopic(chatB.id)], { qos: 1 });
      await bob.conn.client.subscribeAsync([messagesTopic(chatA.id), messagesTopic(chatB.id)], { qos: 1 });
      erinB = { ...erin, conn: await connectAs(srv, erin) };
      await erinB.conn.client.subscribeAsync([inboxTopic(erin.user.id)], { qos: 1 });
    });
    afterAll(() => erinB?.conn.end());

    const ofKey = (conn: Connected, chatId: string, clientMsgId: string) => conn.on(messagesTopic(chatId)).filter((m) => m.json?.clientMsgId === clientMsgId);

    it('stores and delivers a sequential retry once, PUBACKs it, and sends no rejection', async () => {
      const inboxBefore = erin.conn.on(inboxTopic(erin.user.id)).length;
      await send(erin, chatA.id, { text: 'only once', clientMsgId: 'same-1' });
      await send(erin, chatA.id, { text: 'only once', clientMsgId: 'same-1' });
      const mark = await marker(erin, chatA.id);
      const once = ofKey(bob.conn, chatA.id, 'same-1');
      expect(once).toHaveLength(1);
      await waitForMessage(erin.conn, messagesTopic(chatA.id), (m) => m.json?.clientMsgId === mark.clientMsgId);
      expect(ofKey(erin.conn, chatA.id, 'same-1')).toHaveLength(1);
      const log = await history(chatA.id, bob.token);
      expect(log.filter((m) => m.clientMsgId === 'same-1')).toEqual([once[0]!.json]);
      expect(erin.conn.on(inboxTopic(erin.user.id))).toHaveLength(inboxBefore);
    });

    it('gives concurrent sends of one clientMsgId, from two connections of the sender, one seq', async () => {
      const payload = { text: 'raced', clientMsgId: 'same-2' };
      await Promise.all([
        ...Array.from({ length: 5 }, () => send(erin, chatA.id, payload)),
        ...Array.from({ length: 3 }, () => send(erinB, chatA.id, payload)),
      ]);
      await marker(erin, chatA.id);
      const got = ofKey(bob.conn, chatA.id, 'same-2');
      expect(got).toHaveLength(1);
      const log = await history(chatA.id, bob.token);
      expect(log.filter((m) => m.clientMsgId === 'same-2')).toEqual([got[0]!.json]);
      expect(log.map((m) => m.seq)).toEqual(Array.from({ length: log.length }, (_, i) => i + 1));
    });

    it('treats a retry after reconnecting as the same message', async () => {
      const retry = await connectAs(srv, erin);
      try {
        await retry.client.publishAsync(messagesTopic(chatA.id), JSON.stringify({ text: 'only once', clientMsgId: 'same-1' }), { qos: 1 });
        await marker(erin, chatA.id);
        expect(ofKey(bob.conn, chatA.id, 'same-1')).toHaveLength(1);
        expect((await history(chatA.id, bob.token)).filter((m) => m.clientMsgId === 'same-1')).toHaveLength(1);
      } finally {
        await retry.end();
      }
    });

    it('makes the same clientMsgId in another chat, or from another sender, a separate message', async () => {
      const lastA = (await history(chatA.id, bob.token)).at(-1).seq;
      const lastB = (await history(chatB.id, bob.token)).at(-1).seq;
      const beforeB = bob.conn.on(messagesTopic(chatB.id)).length;
      await send(erin, chatB.id, { text: 'same key, other chat', clientMsgId: 'same-1' });
      const [inB] = (await bob.conn.waitFor(beforeB + 1, messagesTopic(chatB.id))).slice(beforeB);
      expect(inB!.json).toMatchObject({ chatId: chatB.id, clientMsgId: 'same-1', text: 'same key, other chat', senderId: erin.user.id, seq: lastB + 1 });

      const beforeA = erin.conn.on(messagesTopic(chatA.id)).length;
      await send(bob, chatA.id, { text: 'same key, other sender', clientMsgId: 'same-1' });
      const [fromBob] = (await erin.conn.waitFor(beforeA + 1, messagesTopic(chatA.id))).slice(beforeA);
      expect(fromBob!.json).toMatchObject({ chatId: chatA.id, clientMsgId: 'same-1', text: 'same key, other sender', senderId: bob.user.id, seq: lastA + 1 });

      const logA = (await history(chatA.id, bob.token)).filter((m) => m.clientMsgId === 'same-1');
      expect(logA.map((m) => [m.senderId, m.text])).toEqual([[erin.user.id, 'only once'], [bob.user.id, 'same key, other sender']]);
      const logB = (await history(chatB.id, bob.token)).filter((m) => m.clientMsgId === 'same-1');
      expect(logB).toEqual([inB!.json]);
      expect(inB!.json.id).not.toBe(logA[0].id);
    });
  });

  describe('rate limit', () => {
    it(`refuses part of SEND_BURST+10 (${SEND_BURST + 10}) sends fired at once with rate_limited; exactly the accepted ones are delivered and stored`, async () => {
      const chat = (await srv.http.post('/api/chats', { type: 'group', name: 'flood', memberIds: [bob.user.id] }, rapid.token)).body.chat;
      const topic = messagesTopic(chat.id);
      const inbox = inboxTopic(rapid.user.id);
      await Promise.all([rapid.conn.client.subscribeAsync(topic, { qos: 1 }), bob.conn.client.subscribeAsync(topic, { qos: 1 })]);
      const total = SEND_BURST + 10;
      const ids = Array.from({ length: total }, (_, i) => `flood-${i}`);

      // Every publish is PUBACKed, accepted or not.
      await Promise.all(ids.map((clientMsgId, i) => send(rapid, chat.id, { text: `flood ${i}`, clientMsgId })));
      // A refused payload afterwards: its rejection comes after every earlier one.
      await settle(rapid, chat.id, 0);
      expect(rapid.conn.client.connected).toBe(true);

      const rejections = rapid.conn.on(inbox).map((m) => m.json).filter((e) => e.reason === 'rate_limited');
      for (const e of rejections) expect(e).toEqual({ type: 'message.rejected', chatId: chat.id, clientMsgId: expect.any(String), reason: 'rate_limited' });
      const refused = new Set(rejections.map((e) => e.clientMsgId as string));
      expect(refused.size).toBe(rejections.length);
      expect(refused.size).toBeGreaterThan(0);
      const accepted = ids.filter((id) => !refused.has(id));
      expect(accepted.length).toBeGreaterThanOrEqual(SEND_BURST);

      // bob gets exactly the accepted ones (a later message of bob's own closes the window).
      await marker(bob, chat.id);
      const delivered = bob.conn.on(topic).map((m) => m.json).filter((e) => e.type === 'message' && e.senderId === rapid.user.id);
      expect(delivered.map((e) => e.clientMsgId).sort()).toEqual([...accepted].sort());

      const log = await history(chat.id, rapid.token);
      expect(log.filter((m) => m.senderId === rapid.user.id).map((m) => m.clientMsgId).sort()).toEqual([...accepted].sort());
      expect(log.map((m) => m.seq)).toEqual(Array.from({ length: log.length }, (_, i) => i + 1));

      // Rate limiting is temporary: a refused clientMsgId goes through once the budget refills.
      const retryId = [...refused][0]!;
      const wentThrough = await pollUntil(async () => {
        const before = rapid.conn.on(inbox).length;
        await send(rapid, chat.id, { text: 'finally', clientMsgId: retryId });
        const answers = await settle(rapid, chat.id, before);
        return !answers.some((e) => e.reason === 'rate_limited' && e.clientMsgId === retryId);
      }, { every: 150 });
      expect(wentThrough, 'still rate limited after 5 s').toBe(true);
      const fin = await waitForMessage(bob.conn, topic, (m) => m.json?.clientMsgId === retryId);
      expect(fin.json).toMatchObject({ text: 'finally', senderId: rapid.user.id });
      expect((await history(chat.id, rapid.token)).filter((m) => m.clientMsgId === retryId)).toEqual([fin.json]);
    });
  });
});
