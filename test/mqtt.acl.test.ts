import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../core/ids.js';
import { MAX_CONNECTIONS_PER_USER } from '../core/rules.js';
import { issueToken } from '../core/tokens.js';
import { type Connected, closed, connackCode, connectAs, subscribeGranted, waitForMessage } from './helpers/mqtt.js';
import { pollUntil } from './helpers/poll.js';
import { connectPacket, rawConnackCode } from './helpers/raw-mqtt.js';
import { type Json, TEST_SECRET, sameBitsOtherText, type TestServer, type UserDto, startTestServer } from './helpers/server.js';

/**
 * Who may connect, subscribe and publish on the broker, over real sockets: the topic table and
 * nothing else, client ids tied to the account, tokens checked (and their connections closed at
 * logout), a per-user connection cap, and membership changes made over REST taking effect on
 * live connections at once.
 */

type Who = { user: UserDto; token: string };
type Member = Who & { conn: Connected };

const messagesTopic = (chatId: string) => `chats/${chatId}/messages`;
const typingTopic = (chatId: string) => `chats/${chatId}/typing`;
const inboxTopic = (userId: string) => `users/${userId}/inbox`;
const presenceTopic = (userId: string) => `users/${userId}/presence`;
const REFUSED = 128;

describe('MQTT access control', () => {
  let srv: TestServer;
  let alice: Who;
  let bob: Who;
  let carol: Who;
  const open: Connected[] = [];

  /** Connects, subscribes (expecting every topic granted) and remembers the connection for cleanup. */
  const connect = async (who: Who, topics: string[] = [], opts: Parameters<typeof connectAs>[2] = {}): Promise<Member> => {
    const conn = await connectAs(srv, who, opts);
    open.push(conn);
    if (topics.length > 0) expect(await subscribeGranted(conn.client, topics)).not.toContain(REFUSED);
    return { ...who, conn };
  };
  const group = async (owner: Who, name: string, members: Who[]): Promise<Json> => {
    const res = await srv.http.post('/api/chats', { type: 'group', name, memberIds: members.map((m) => m.user.id) }, owner.token);
    expect(res.status).toBe(201);
    return res.body.chat;
  };
  const direct = async (a: Who, b: Who): Promise<Json> => (await srv.http.post('/api/chats', { type: 'direct', memberIds: [b.user.id] }, a.token)).body.chat;
  const history = (chatId: string, token: string) => srv.http.history(chatId, token);
  const send = (m: Member, chatId: string, text: string, clientMsgId?: string) =>
    m.conn.client.publishAsync(messagesTopic(chatId), JSON.stringify(clientMsgId === undefined ? { text } : { text, clientMsgId }), { qos: 1 });
  let markers = 0;
  /** `from` sends a fresh message to `chatId`; resolves with its envelope once `to` has it. */
  const marker = async (from: Member, chatId: string, to: Member): Promise<Json> => {
    const id = `marker-${++markers}`;
    await send(from, chatId, `marker ${markers}`, id);
    return (await waitForMessage(to.conn, messagesTopic(chatId), (m) => m.json?.clientMsgId === id)).json;
  };
  const isContiguous = (log: Json[]) => log.every((m, i) => m.seq === i + 1);

  beforeAll(async () => {
    srv = await startTestServer();
    [alice, bob, carol] = await Promise.all([srv.signUp(undefined, 'Alice'), srv.signUp(undefined, 'Bob'), srv.signUp(undefined, 'Carol')]);
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => (c.client.connected ? c.end() : undefined)));
    await srv?.stop();
  });

  describe('subscriptions', () => {
    let room: Json; // alice + bob; carol is not in it
    let carolChat: Json; // alice + carol
    let aliceM: Member;
    let bobM: Member;

    beforeAll(async () => {
      room = await group(alice, 'no carol', [bob]);
      carolChat = await direct(alice, carol);
      aliceM = await connect(alice, [messagesTopic(room.id), messagesTopic(carolChat.id)]);
      bobM = await connect(bob, [messagesTopic(room.id), inboxTopic(bob.user.id)]);
    });

    it('answers 128 for refused topics and grants the allowed ones in the same SUBSCRIBE; the connection stays up and nothing leaks', async () => {
      const c = await connect(carol);
      const me = carol.user.id;
      const table: [string, number][] = [
        ['#', REFUSED],
        ['+/#', REFUSED],
        ['+', REFUSED],
        ['chats/+/messages', REFUSED],
        ['chats/+/typing', REFUSED],
        ['chats/+/+', REFUSED],
        ['chats/#', REFUSED],
        [`chats/${carolChat.id}/#`, REFUSED],
        [`chats/${carolChat.id}/+`, REFUSED],
        ['$SYS/#', REFUSED],
        ['$SYS/+/new/clients', REFUSED],
        [inboxTopic(bob.user.id), REFUSED],
        ['users/+/inbox', REFUSED],
        ['users/#', REFUSED],
        [`users/${me}/#`, REFUSED],
        [`users/${me}/+`, REFUSED],
        [messagesTopic(room.id), REFUSED], // a chat carol is not in
        [typingTopic(room.id), REFUSED],
        [messagesTopic(newId()), REFUSED], // no such chat
        [messagesTopic('a'.repeat(65)), REFUSED],
        ['chats//messages', REFUSED],
        [`chats/${carolChat.id}`, REFUSED],
        [`chats/${carolChat.id}/messages/extra`, REFUSED],
        [`chats/${carolChat.id}/other`, REFUSED],
        [`/chats/${carolChat.id}/messages`, REFUSED],
        [`users/${me}`, REFUSED],
        [`users/${me}/inbox/extra`, REFUSED],
        ['foo/bar', REFUSED],
        [`$share/g/${messagesTopic(carolChat.id)}`, REFUSED],
        // allowed, in the same packet
        [inboxTopic(me), 1],
        [messagesTopic(carolChat.id), 1],
        ['users/+/presence', 1],
        [presenceTopic(bob.user.id), 1],
        [presenceTopic(me), 1],
      ];
      const granted = await subscribeGranted(c.conn.client, table.map(([t]) => t), 1);
      expect(table.map(([t], i) => [t, granted[i]])).toEqual(table);
      expect(c.conn.client.connected).toBe(true);

      // Traffic carol must not see: a message in a chat she is not in, an event in bob's inbox.
      const bobInbox = bobM.conn.on(inboxTopic(bob.user.id)).length;
      await marker(aliceM, room.id, bobM);
      await bobM.conn.client.publishAsync(messagesTopic(room.id), 'not json', { qos: 1 });
      await bobM.conn.waitFor(bobInbox + 1, inboxTopic(bob.user.id));
      // Then one she must see, through a subscription granted in the same packet.
      const mark = await marker(aliceM, carolChat.id, c);
      const seen = c.conn.received.filter((m) => !m.topic.endsWith('/presence'));
      expect(seen.map((m) => [m.topic, m.json])).toEqual([[messagesTopic(carolChat.id), mark]]);
      expect(c.conn.client.connected).toBe(true);
    });

    it('refuses the same topics over WebSocket, keeping the connection', async () => {
      const c = await connect(carol, [], { transport: 'ws' });
      const granted = await subscribeGranted(c.conn.client, ['#', '$SYS/#', 'chats/+/messages', inboxTopic(bob.user.id), messagesTopic(room.id), inboxTopic(carol.user.id)]);
      expect(granted).toEqual([REFUSED, REFUSED, REFUSED, REFUSED, REFUSED, 1]);
      expect(c.conn.client.connected).toBe(true);
      expect(await subscribeGranted(c.conn.client, [messagesTopic(carolChat.id)])).toEqual([1]);
      await marker(aliceM, carolChat.id, { ...carol, conn: c.conn });
    });

    it('reports the capped QoS in the SUBACK: at most 1 for messages, inbox and presence, 0 for typing', async () => {
      const c = await connect(carol);
      const topics = [messagesTopic(carolChat.id), typingTopic(carolChat.id), inboxTopic(carol.user.id), 'users/+/presence'];
      expect(await subscribeGranted(c.conn.client, topics, 2)).toEqual([1, 0, 1, 1]);
      expect(await subscribeGranted(c.conn.client, [typingTopic(carolChat.id)], 1)).toEqual([0]);
    });

    it("lets any signed-in user subscribe to anyone's presence, but delivers (retained status included) only its own and its co-members'", async () => {
      const c = await connect(carol);
      // bob shares no chat with carol, alice does (carolChat). In one SUBSCRIBE the retained
      // values come in topic order: alice's arriving shows that bob's was held back.
      expect(await subscribeGranted(c.conn.client, [presenceTopic(bob.user.id), presenceTopic(alice.user.id)])).toEqual([1, 1]);
      const [status] = await c.conn.waitFor(1, presenceTopic(alice.user.id));
      expect(status!.json).toEqual({ userId: alice.user.id, status: 'online', lastSeenAt: expect.any(String) });
      expect(c.conn.on(presenceTopic(bob.user.id))).toEqual([]);

      const all = await connect(carol);
      expect(await subscribeGranted(all.conn.client, [presenceTopic(newId()), 'users/+/presence'])).toEqual([1, 1]);
      // carol's own value was retained after bob's (she connected after him).
      await waitForMessage(all.conn, presenceTopic(carol.user.id), (m) => m.json.status === 'online');
      expect(all.conn.on(presenceTopic(alice.user.id))).toHaveLength(1);
      expect(all.conn.on(presenceTopic(bob.user.id))).toEqual([]);
    });
  });

  describe('publishing', () => {
    let room: Json; // alice + bob
    let carolChat: Json;
    let aliceM: Member;
    let bobM: Member;
    let carolM: Member;

    beforeAll(async () => {
      room = await group(alice, 'publishing', [bob]);
      carolChat = await direct(alice, carol);
      aliceM = await connect(alice, [messagesTopic(room.id), messagesTopic(carolChat.id), presenceTopic(bob.user.id)]);
      bobM = await connect(bob, [messagesTopic(room.id), inboxTopic(bob.user.id)]);
      carolM = await connect(carol, [inboxTopic(carol.user.id), messagesTopic(carolChat.id)]);
    });

    it('acknowledges a non-member publish, answers not_member in its inbox, and delivers and stores nothing', async () => {
      const inbox = inboxTopic(carol.user.id);
      const before = carolM.conn.on(inbox).length;
      const [aliceBefore, bobBefore] = [aliceM.conn.on(messagesTopic(room.id)).length, bobM.conn.on(messagesTopic(room.id)).length];
      await send(carolM, room.id, 'let me in', 'intrude-1'); // resolves on PUBACK
      const events = await carolM.conn.waitFor(before + 1, inbox);
      expect(events[before]!.json).toEqual({ type: 'message.rejected', chatId: room.id, clientMsgId: 'intrude-1', reason: 'not_member' });

      const mark = await marker(aliceM, room.id, bobM);
      await waitForMessage(aliceM.conn, messagesTopic(room.id), (m) => m.json?.id === mark.id);
      expect(bobM.conn.on(messagesTopic(room.id)).slice(bobBefore).map((m) => m.json)).toEqual([mark]);
      expect(aliceM.conn.on(messagesTopic(room.id)).slice(aliceBefore).map((m) => m.json)).toEqual([mark]);
      const log = await history(room.id, alice.token);
      expect(log.some((m) => m.clientMsgId === 'intrude-1' || m.text === 'let me in')).toBe(false);
      expect(isContiguous(log)).toBe(true);
      expect(carolM.conn.client.connected).toBe(true);
    });

    it('answers not_member for an unknown chat id, keeping the connection', async () => {
      const inbox = inboxTopic(carol.user.id);
      const before = carolM.conn.on(inbox).length;
      const ghost = newId();
      await send(carolM, ghost, 'anyone?', 'ghost-1');
      const events = await carolM.conn.waitFor(before + 1, inbox);
      expect(events[before]!.json).toEqual({ type: 'message.rejected', chatId: ghost, clientMsgId: 'ghost-1', reason: 'not_member' });
      expect(carolM.conn.client.connected).toBe(true);
    });

    type Abuse = { name: string; topic: () => string; qos: 0 | 1 };
    const abuses: Abuse[] = [
      { name: 'my own presence', topic: () => presenceTopic(carol.user.id), qos: 1 },
      { name: "another user's presence", topic: () => presenceTopic(bob.user.id), qos: 1 },
      { name: 'my own inbox', topic: () => inboxTopic(carol.user.id), qos: 1 },
      { name: "another user's inbox", topic: () => inboxTopic(bob.user.id), qos: 1 },
      { name: '$SYS/x', topic: () => '$SYS/x', qos: 1 },
      { name: 'foo/bar', topic: () => 'foo/bar', qos: 1 },
      { name: 'chats/<id>/other', topic: () => `chats/${carolChat.id}/other`, qos: 1 },
      { name: 'chats/<id>/messages/extra', topic: () => `chats/${carolChat.id}/messages/extra`, qos: 1 },
      { name: 'chats/<id>', topic: () => `chats/${carolChat.id}`, qos: 1 },
      { name: '$discard', topic: () => '$discard', qos: 1 },
      { name: 'foo/bar at QoS 0', topic: () => 'foo/bar', qos: 0 },
      { name: "another user's inbox at QoS 0", topic: () => inboxTopic(bob.user.id), qos: 0 },
    ];
    it.each(abuses)('closes the connection of a client publishing to $name', async ({ topic, qos }) => {
      const c = await connect(carol);
      c.conn.client.publish(topic(), JSON.stringify({ text: 'hi', type: 'chat.removed', userId: bob.user.id, status: 'offline' }), { qos }, () => {});
      await closed(c.conn.client);
      expect(c.conn.client.connected).toBe(false);
    });

    it("never delivers a forged event into another user's inbox, nor a forged presence", async () => {
      const inbox = inboxTopic(bob.user.id);
      const before = bobM.conn.on(inbox).length;
      const c = await connect(carol);
      c.conn.client.publish(inbox, JSON.stringify({ type: 'chat.removed', chatId: room.id, number: room.number }), { qos: 1 });
      await closed(c.conn.client);
      const d = await connect(carol);
      d.conn.client.publish(presenceTopic(bob.user.id), JSON.stringify({ userId: bob.user.id, status: 'offline', lastSeenAt: new Date().toISOString() }), { qos: 1, retain: true });
      await closed(d.conn.client);

      // bob's next inbox event is the answer to his own refused send; nothing came before it.
      await bobM.conn.client.publishAsync(messagesTopic(room.id), '[]', { qos: 1 });
      const events = (await bobM.conn.waitFor(before + 1, inbox)).slice(before).map((m) => m.json);
      expect(events).toEqual([{ type: 'message.rejected', chatId: room.id, clientMsgId: null, reason: 'invalid_payload' }]);
      // bob is still online, for live watchers and for the retained value a new watcher gets.
      const e = await connect(alice);
      expect(await subscribeGranted(e.conn.client, [presenceTopic(bob.user.id)])).toEqual([1]);
      const [retained] = await e.conn.waitFor(1, presenceTopic(bob.user.id));
      expect(retained!.json).toMatchObject({ userId: bob.user.id, status: 'online' });
      await marker(bobM, room.id, aliceM); // alice's live view: a later message arrives, no forged status before it
      expect(aliceM.conn.on(presenceTopic(bob.user.id)).map((m) => m.json.status)).not.toContain('offline');
    });
  });

  describe('client ids', () => {
    let owner: Who;
    let other: Who;
    beforeAll(async () => {
      [owner, other] = await Promise.all([srv.signUp(), srv.signUp()]);
    });

    const rows: { name: string; clientId: (me: string, them: string) => string; expected: number }[] = [
      { name: 'empty (server-assigned), clean session', clientId: () => '', expected: 0 },
      { name: '<userId>', clientId: (me) => me, expected: 0 },
      { name: '<userId>/phone', clientId: (me) => `${me}/phone`, expected: 0 },
      { name: '<userId>/web-1.tab_2', clientId: (me) => `${me}/web-1.tab_2`, expected: 0 },
      { name: "another user's id", clientId: (_, them) => them, expected: 2 },
      { name: "another user's id with a device", clientId: (_, them) => `${them}/x`, expected: 2 },
      { name: '<userId>/ (empty device)', clientId: (me) => `${me}/`, expected: 2 },
      { name: '<userId>/a/b', clientId: (me) => `${me}/a/b`, expected: 2 },
      { name: '<userId>x', clientId: (me) => `${me}x`, expected: 2 },
      { name: '<userId>/<65-character device>', clientId: (me) => `${me}/${'d'.repeat(65)}`, expected: 2 },
      { name: 'a random id', clientId: () => `mqttjs_${Math.random().toString(16).slice(2, 10)}`, expected: 2 },
      { name: 'a prefix of the user id', clientId: (me) => me.slice(0, -1), expected: 2 },
    ];
    it.each(rows)('$name → CONNACK $expected', async ({ clientId, expected }) => {
      const code = await connackCode(srv, { username: owner.user.username, password: owner.token, clientId: clientId(owner.user.id, other.user.id), clean: true });
      expect(code).toBe(expected);
    });

    it('allows a persistent session (clean: false) under the own id, and refuses it with an empty client id (CONNACK 2)', async () => {
      expect(await connackCode(srv, { username: owner.user.username, password: owner.token, clientId: `${owner.user.id}/tablet`, clean: false })).toBe(0);
      // Raw bytes: mqtt.js will not send an empty client id with a persistent session.
      const emptyId = (clean: boolean) => connectPacket({ clientId: '', clean, username: owner.user.username, password: owner.token, keepalive: 30 });
      expect(await rawConnackCode(srv.mqttPort, emptyId(false))).toBe(2);
      expect(await rawConnackCode(srv.mqttPort, emptyId(true))).toBe(0);
    });

    it("refuses another user's client id over WebSocket too", async () => {
      expect(await connackCode(srv, { transport: 'ws', username: owner.user.username, password: owner.token, clientId: other.user.id })).toBe(2);
      expect(await connackCode(srv, { transport: 'ws', username: owner.user.username, password: owner.token, clientId: `${owner.user.id}/ws` })).toBe(0);
    });
  });

  describe('credentials', () => {
    let me: Who;
    let other: Who;
    let claims: { sub: string; sid: string; iat: number; exp: number };
    beforeAll(async () => {
      [me, other] = await Promise.all([srv.signUp(), srv.signUp()]);
      claims = JSON.parse(Buffer.from(me.token.split('.')[1]!, 'base64url').toString('utf8'));
    });
    const now = () => Math.floor(Date.now() / 1000);
    const attempt = (username: string | undefined, password: string | undefined) =>
      connackCode(srv, { username, password, clientId: `${me.user.id}/cred` } as Parameters<typeof connackCode>[1]);

    it('accepts the real token, and a token re-signed with the server secret for the same session (control)', async () => {
      expect(await attempt(me.user.username, me.token)).toBe(0);
      expect(await attempt(me.user.username, issueToken(TEST_SECRET, { ...claims, exp: now() + 3600 }))).toBe(0);
    });

    const rows: { name: string; creds: () => Promise<[string | undefined, string | undefined]> | [string | undefined, string | undefined] }[] = [
      { name: 'the account password instead of a token', creds: () => [me.user.username, 'correct horse battery'] },
      { name: 'a garbage token', creds: () => [me.user.username, 'not-a-token'] },
      { name: "another user's token with my username", creds: () => [me.user.username, other.token] },
      { name: 'my token with another username', creds: () => [other.user.username, me.token] },
      { name: 'my token with an unknown username', creds: () => ['nobody_here', me.token] },
      { name: 'a token signed with another secret', creds: () => [me.user.username, issueToken('another-secret-that-is-long-enough-000000', claims)] },
      { name: 'an expired token (real sub and sid)', creds: () => [me.user.username, issueToken(TEST_SECRET, { ...claims, iat: now() - 7200, exp: now() - 60 })] },
      { name: 'a token for an unknown session', creds: () => [me.user.username, issueToken(TEST_SECRET, { ...claims, sid: newId() })] },
      { name: "a token whose sub is another user's", creds: () => [other.user.username, issueToken(TEST_SECRET, { ...claims, sub: other.user.id })] },
      { name: 'a token with its signature cut off', creds: () => [me.user.username, me.token.split('.').slice(0, 2).join('.')] },
      // Texts that decode to the real signature (base64url decoders skip what is not in the
      // alphabet, and the last character's unused bits): one check, the same as REST's.
      { name: 'the real token with "==" appended', creds: () => [me.user.username, `${me.token}==`] },
      { name: 'the real token with "!" inserted in its signature', creds: () => [me.user.username, `${me.token.slice(0, -5)}!${me.token.slice(-5)}`] },
      { name: 'the real token with a space inserted in its signature', creds: () => [me.user.username, `${me.token.slice(0, -5)} ${me.token.slice(-5)}`] },
      { name: 'the real token with its last character changed in unused bits', creds: () => [me.user.username, sameBitsOtherText(me.token)] },
      { name: 'no password', creds: () => [me.user.username, undefined] },
      { name: 'an empty password', creds: () => [me.user.username, ''] },
      { name: 'no username and no password', creds: () => [undefined, undefined] },
      {
        name: 'a revoked token (after REST logout)',
        creds: async () => {
          const login = await srv.http.post('/api/users/login', { username: me.user.username, password: 'correct horse battery' });
          expect((await srv.http.post('/api/users/logout', undefined, login.body.token)).status).toBe(204);
          return [me.user.username, login.body.token as string];
        },
      },
    ];
    it.each(rows)('refuses $name with CONNACK 4 or 5', async ({ creds }) => {
      const [username, password] = await creds();
      expect([4, 5]).toContain(await attempt(username, password));
    });

    it('refuses a token without a username (CONNACK 4 or 5)', async () => {
      // Raw bytes: mqtt.js will not send a password without a username.
      const packet = connectPacket({ clientId: me.user.id, clean: true, password: me.token, keepalive: 30 });
      expect([4, 5]).toContain(await rawConnackCode(srv.mqttPort, packet));
    });
  });

  describe('logout', () => {
    it("closes every MQTT connection of the token within a second (TCP and WebSocket), and only that token's", async () => {
      const user = await srv.signUp();
      const second = await srv.http.post('/api/users/login', { username: user.user.username, password: 'correct horse battery' });
      const other: Who = { user: user.user, token: second.body.token };
      const tcp = await connect(user);
      const ws = await connect(user, [], { transport: 'ws' });
      const kept = await connect(other, [inboxTopic(user.user.id)]);

      expect((await srv.http.post('/api/users/logout', undefined, user.token)).status).toBe(204);
      await Promise.all([closed(tcp.conn.client, 1000), closed(ws.conn.client, 1000)]);

      // The other token's connection still works end to end.
      expect(kept.conn.client.connected).toBe(true);
      const ghost = newId();
      await kept.conn.client.publishAsync(messagesTopic(ghost), 'not json', { qos: 1 });
      const [event] = await kept.conn.waitFor(1, inboxTopic(user.user.id));
      expect(event!.json).toEqual({ type: 'message.rejected', chatId: ghost, clientMsgId: null, reason: 'invalid_payload' });
      expect(kept.conn.client.connected).toBe(true);

      // The revoked token opens nothing any more; the other one still does.
      expect([4, 5]).toContain(await connackCode(srv, { username: user.user.username, password: user.token, clientId: user.user.id }));
      expect((await srv.http.get('/api/users/me', user.token)).status).toBe(401);
      expect((await srv.http.get('/api/users/me', other.token)).status).toBe(200);
      expect(await connackCode(srv, { username: user.user.username, password: other.token, clientId: user.user.id })).toBe(0);
    });
  });

  describe('connections per user', () => {
    it(`refuses connection ${MAX_CONNECTIONS_PER_USER + 1}; a takeover of an existing client id does not count twice; a slot frees when one ends`, async () => {
      const user = await srv.signUp();
      const id = (i: number) => `${user.user.id}/d${i}`;
      const conns: Member[] = [];
      for (let i = 0; i < MAX_CONNECTIONS_PER_USER; i++) conns.push(await connect(user, [], { clientId: id(i) }));

      const creds = { username: user.user.username, password: user.token };
      expect(await connackCode(srv, { ...creds, clientId: id(MAX_CONNECTIONS_PER_USER) })).not.toBe(0);
      expect(await connackCode(srv, { ...creds, clientId: '' })).not.toBe(0);
      expect(await connackCode(srv, { ...creds, clientId: id(MAX_CONNECTIONS_PER_USER), transport: 'ws' })).not.toBe(0);
      expect(conns.every((c) => c.conn.client.connected)).toBe(true);

      // Reconnecting under d0 replaces the old d0 connection: accepted at the cap.
      const again = await connect(user, [], { clientId: id(0) });
      await closed(conns[0]!.conn.client);
      expect(again.conn.client.connected).toBe(true);
      expect(await connackCode(srv, { ...creds, clientId: id(MAX_CONNECTIONS_PER_USER) })).not.toBe(0);

      // Ending one connection frees its slot (the server notices the DISCONNECT shortly after).
      await conns[1]!.conn.end();
      const code = await pollUntil(() => connackCode(srv, { ...creds, clientId: id(MAX_CONNECTIONS_PER_USER) }), { done: (c) => c === 0 });
      expect(code).toBe(0);
    });

    it(`accepts only ${MAX_CONNECTIONS_PER_USER} of ${MAX_CONNECTIONS_PER_USER + 4} connections opened at the same moment`, async () => {
      const user = await srv.signUp();
      const attempts = await Promise.allSettled(
        Array.from({ length: MAX_CONNECTIONS_PER_USER + 4 }, (_, i) => connectAs(srv, user, { clientId: `${user.user.id}/burst${i}` })),
      );
      const up = attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
      open.push(...up);
      expect(up.length).toBe(MAX_CONNECTIONS_PER_USER);
      // The others were refused with a CONNACK return code, not dropped.
      const refusals = attempts.flatMap((a) => (a.status === 'rejected' ? [(a.reason as { code?: unknown }).code] : []));
      expect(refusals).toHaveLength(4);
      for (const code of refusals) expect([3, 4, 5]).toContain(code);
    });
  });

  describe('membership changes over REST reach live connections', () => {
    let dave: Who;
    let erin: Who;
    let team: Json; // owner alice; bob, carol, erin; dave joins later
    let carolChat: Json;
    let aliceM: Member;
    let bobM: Member;
    let carolM: Member;
    let daveM: Member;
    let erinM: Member;
    let removedSeq: number;

    beforeAll(async () => {
      [dave, erin] = await Promise.all([srv.signUp(undefined, 'Dave'), srv.signUp(undefined, 'Erin')]);
      team = await group(alice, 'team', [bob, carol, erin]);
      carolChat = await direct(alice, carol);
      aliceM = await connect(alice, [messagesTopic(team.id), messagesTopic(carolChat.id)]);
      bobM = await connect(bob, [messagesTopic(team.id)]);
      carolM = await connect(carol, [messagesTopic(team.id), messagesTopic(carolChat.id), inboxTopic(carol.user.id)]);
      daveM = await connect(dave, [inboxTopic(dave.user.id)]);
      erinM = await connect(erin, [messagesTopic(team.id), inboxTopic(erin.user.id)]);
    });

    it('a removed member stops receiving at once, without reconnecting, and is told on its inbox', async () => {
      const topic = messagesTopic(team.id);
      await send(aliceM, team.id, 'before removal', 'rm-before');
      await waitForMessage(carolM.conn, topic, (m) => m.json?.clientMsgId === 'rm-before');

      const removal = await srv.http.delete(`/api/chats/${team.number}/members/${carol.user.id}`, alice.token);
      expect(removal.status).toBe(204);
      const told = await waitForMessage(carolM.conn, inboxTopic(carol.user.id), (m) => m.json?.type === 'chat.removed');
      expect(told.json).toEqual({ type: 'chat.removed', chatId: team.id, number: team.number });
      const system = await waitForMessage(bobM.conn, topic, (m) => m.json?.type === 'system' && m.json.event === 'member.removed');
      expect(system.json).toMatchObject({ type: 'system', event: 'member.removed', chatId: team.id, userId: carol.user.id, seq: expect.any(Number) });
      removedSeq = system.json.seq;

      await send(aliceM, team.id, 'after removal', 'rm-after');
      await waitForMessage(bobM.conn, topic, (m) => m.json?.clientMsgId === 'rm-after'); // a remaining member gets it
      await marker(aliceM, carolChat.id, carolM); // carol's connection still delivers, in another chat
      const carolTeam = carolM.conn.on(topic).map((m) => m.json);
      expect(carolTeam.map((e) => e.clientMsgId)).not.toContain('rm-after');
      expect(carolTeam.every((e) => e.seq <= removedSeq)).toBe(true);
      expect(carolM.conn.client.connected).toBe(true);
    });

    it('the removed member can no longer publish into the chat or subscribe to it; its connection stays up', async () => {
      const inbox = inboxTopic(carol.user.id);
      const before = carolM.conn.on(inbox).length;
      const bobBefore = bobM.conn.on(messagesTopic(team.id)).length;
      await send(carolM, team.id, 'still here?', 'rm-publish');
      const events = await carolM.conn.waitFor(before + 1, inbox);
      expect(events[before]!.json).toEqual({ type: 'message.rejected', chatId: team.id, clientMsgId: 'rm-publish', reason: 'not_member' });
      const mark = await marker(aliceM, team.id, bobM);
      expect(bobM.conn.on(messagesTopic(team.id)).slice(bobBefore).map((m) => m.json)).toEqual([mark]);
      expect(await subscribeGranted(carolM.conn.client, [messagesTopic(team.id), typingTopic(team.id)])).toEqual([REFUSED, REFUSED]);
      expect(carolM.conn.client.connected).toBe(true);
    });

    it('a member added later is told on its inbox, and can then subscribe, receive and send', async () => {
      const topic = messagesTopic(team.id);
      expect(await subscribeGranted(daveM.conn.client, [topic])).toEqual([REFUSED]);
      const added = await srv.http.post(`/api/chats/${team.number}/members`, { userIds: [dave.user.id] }, alice.token);
      expect(added.status).toBe(200);
      const told = await waitForMessage(daveM.conn, inboxTopic(dave.user.id), (m) => m.json?.type === 'chat.added');
      expect(told.json).toEqual({ type: 'chat.added', chatId: team.id, number: team.number });

      expect(await subscribeGranted(daveM.conn.client, [topic])).toEqual([1]);
      await send(aliceM, team.id, 'welcome dave', 'add-welcome');
      const got = await waitForMessage(daveM.conn, topic, (m) => m.json?.clientMsgId === 'add-welcome');
      expect(got.json).toMatchObject({ type: 'message', senderId: alice.user.id, text: 'welcome dave' });
      await send(daveM, team.id, 'hello all', 'add-hello');
      const fromDave = await waitForMessage(bobM.conn, topic, (m) => m.json?.clientMsgId === 'add-hello');
      expect(fromDave.json).toMatchObject({ type: 'message', senderId: dave.user.id, senderName: 'Dave', text: 'hello all' });
    });

    it('a member who leaves is told, and the others see member.left', async () => {
      const topic = messagesTopic(team.id);
      expect((await srv.http.delete(`/api/chats/${team.number}/members/${erin.user.id}`, erin.token)).status).toBe(204);
      const told = await waitForMessage(erinM.conn, inboxTopic(erin.user.id), (m) => m.json?.type === 'chat.removed');
      expect(told.json).toEqual({ type: 'chat.removed', chatId: team.id, number: team.number });
      const left = await waitForMessage(bobM.conn, topic, (m) => m.json?.event === 'member.left');
      expect(left.json).toMatchObject({ type: 'system', event: 'member.left', chatId: team.id, userId: erin.user.id });
      await send(aliceM, team.id, 'after erin left', 'left-after');
      await waitForMessage(bobM.conn, topic, (m) => m.json?.clientMsgId === 'left-after');
      await marker(aliceM, team.id, aliceM); // alice too has everything by now
      expect(erinM.conn.on(topic).map((m) => m.json.clientMsgId)).not.toContain('left-after');
    });

    it('a re-added member must subscribe again: the removal ended its subscription', async () => {
      const topic = messagesTopic(team.id);
      expect((await srv.http.post(`/api/chats/${team.number}/members`, { userIds: [carol.user.id] }, alice.token)).status).toBe(200);
      await waitForMessage(carolM.conn, inboxTopic(carol.user.id), (m) => m.json?.type === 'chat.added');
      await send(aliceM, team.id, 'before resubscribing', 'readd-1');
      await waitForMessage(bobM.conn, topic, (m) => m.json?.clientMsgId === 'readd-1');
      await marker(aliceM, carolChat.id, carolM);
      expect(carolM.conn.on(topic).map((m) => m.json.clientMsgId)).not.toContain('readd-1');

      expect(await subscribeGranted(carolM.conn.client, [topic])).toEqual([1]);
      await send(aliceM, team.id, 'after resubscribing', 'readd-2');
      await waitForMessage(carolM.conn, topic, (m) => m.json?.clientMsgId === 'readd-2');
    });

    it('shows the system envelopes in the stream, in seq order with the messages, as the log has them', async () => {
      await marker(aliceM, team.id, bobM);
      const stream = bobM.conn.on(messagesTopic(team.id)).map((m) => m.json);
      const log = await history(team.id, alice.token);
      expect(isContiguous(log)).toBe(true);
      // bob subscribed after chat.created and stayed a member throughout: he saw the rest of the log, in order.
      expect(stream).toEqual(log.slice(log.length - stream.length));
      expect(stream.map((e) => e.seq)).toEqual(Array.from({ length: stream.length }, (_, i) => stream[0].seq + i));
      expect(log[0]).toMatchObject({ type: 'system', event: 'chat.created' });

      const summary = stream.map((e) => (e.type === 'system' ? `${e.event}:${e.userId}` : `message:${e.clientMsgId}`));
      const at = (s: string) => summary.indexOf(s);
      const order = [
        'message:rm-before', `member.removed:${carol.user.id}`, 'message:rm-after', `member.joined:${dave.user.id}`, 'message:add-welcome',
        'message:add-hello', `member.left:${erin.user.id}`, 'message:left-after', `member.joined:${carol.user.id}`, 'message:readd-1', 'message:readd-2',
      ];
      expect(order.map(at).every((i) => i >= 0)).toBe(true);
      expect(order.map(at)).toEqual([...order.map(at)].sort((a, b) => a - b));
      for (const e of stream.filter((x) => x.type === 'system')) {
        expect(e).toEqual(expect.objectContaining({ type: 'system', id: expect.any(String), chatId: team.id, seq: expect.any(Number), userId: expect.any(String), createdAt: expect.any(String) }));
      }
    });
  });
});
