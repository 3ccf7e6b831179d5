import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CONNECT_TIMEOUT_MS, MAX_PACKET_BYTES, TYPING_BURST } from '../core/rules.js';
import { type Connected, type Transport, closed, connectAs, sleep, subscribeGranted, waitForMessage } from './helpers/mqtt.js';
import {
  CONNACK_OK, CONNECT_BYTE, PUBLISH_QOS1_BYTE, Raw, chatPacketOfSize, connectPacket, fiveByteLengthHeader, publishHeader, publishPacket, puback, rawConnected,
} from './helpers/raw-mqtt.js';
import { type SeededUser, seed } from './helpers/seed.js';
import { type Json, TEST_TLS, type TestServer, startTestServer, tempDir } from './helpers/server.js';

/**
 * Protection over real sockets: the maximum packet size (TCP and WebSocket), malformed MQTT,
 * the connect timeout, typing rules, and WebSocket upgrade paths. An abusive connection is
 * closed; every other connection, of the same user or of others, keeps working.
 */

type Who = { user: Json; token: string };

const MiB = 1024 * 1024;
const ONE_MIB = Buffer.alloc(MiB, 0x61);


// ---- shared set-up ------------------------------------------------------------------------------

let srv: TestServer;
let alice: Who;
let bob: Who;
let carol: Who;
let direct: Json;
const clients: Connected[] = [];
const raws: Raw[] = [];
let idle: Raw;
let idleOpenedAt = 0;

const messagesTopic = (chatId: string) => `chats/${chatId}/messages`;
const typingTopic = (chatId: string) => `chats/${chatId}/typing`;

async function connect(who: Who, transport: Transport = 'tcp'): Promise<Connected> {
  const c = await connectAs(srv, who, { transport });
  clients.push(c);
  return c;
}

function publish(c: Connected, topic: string, payload: string | Buffer, qos: 0 | 1 = 1): Promise<Error | undefined> {
  return new Promise((resolve) => c.client.publish(topic, payload, { qos }, (err) => resolve(err ?? undefined)));
}

let textCounter = 0;
/** A chat message from `from` reaches `to` (both subscribed to the chat's messages). */
async function flows(from: Connected, to: Connected, chatId: string, senderId: string) {
  const text = `still working ${++textCounter} ${Math.random().toString(36).slice(2)}`;
  expect(await publish(from, messagesTopic(chatId), JSON.stringify({ text, clientMsgId: `m${textCounter}` }))).toBeUndefined();
  const got = await waitForMessage(to, messagesTopic(chatId), (m) => m.json?.text === text);
  expect(got.json, `the delivery of "${text}"`).toMatchObject({ type: 'message', chatId, senderId, text });
}

/** A fresh client connects, subscribes and exchanges a message with bob: the server is up and serving. */
async function serverStillServes(transport: Transport = 'tcp') {
  expect((await srv.http.get('/healthz')).status).toBe(200);
  const a = await connect(alice, transport);
  const b = await connect(bob);
  expect(await subscribeGranted(a.client, [messagesTopic(direct.id)])).toEqual([1]);
  expect(await subscribeGranted(b.client, [messagesTopic(direct.id)])).toEqual([1]);
  await flows(a, b, direct.id, alice.user.id);
  await flows(b, a, direct.id, bob.user.id);
  await a.end();
  await b.end();
}

beforeAll(async () => {
  srv = await startTestServer();
  // Opened first, never sends anything: the connect timeout test checks on it at the end, so
  // the 10 s wait overlaps with the other tests.
  idle = new Raw(srv.mqttPort);
  raws.push(idle);
  await idle.opened();
  idleOpenedAt = Date.now();
  [alice, bob, carol] = await Promise.all([srv.signUp(), srv.signUp(), srv.signUp()]);
  direct = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id] }, alice.token)).body.chat;
  expect(direct?.id).toEqual(expect.any(String));
});

// Each test's connections end with it (a user may hold at most 10); the idle socket stays.
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => (c.client.connected ? c.end() : (c.client.end(true), undefined))));
  for (const r of raws.splice(0)) if (r !== idle) r.socket.destroy();
  raws.push(idle);
});

afterAll(async () => {
  idle.socket.destroy();
  await srv.stop();
});

// ---- packet size --------------------------------------------------------------------------------

describe('maximum packet size: a 1 MiB publish closes only that connection', () => {
  /** Alice's other device and bob, both subscribed to the direct chat. */
  async function bystanders(transport: Transport) {
    const aliceOther = await connect(alice, transport);
    const bobConn = await connect(bob, transport);
    expect(await subscribeGranted(aliceOther.client, [messagesTopic(direct.id)])).toEqual([1]);
    expect(await subscribeGranted(bobConn.client, [messagesTopic(direct.id)])).toEqual([1]);
    return { aliceOther, bobConn };
  }

  async function stillWorking({ aliceOther, bobConn }: { aliceOther: Connected; bobConn: Connected }) {
    expect(aliceOther.client.connected).toBe(true);
    expect(bobConn.client.connected).toBe(true);
    await flows(aliceOther, bobConn, direct.id, alice.user.id);
    await flows(bobConn, aliceOther, direct.id, bob.user.id);
  }

  for (const transport of ['tcp', 'ws'] as const) {
    it(`mqtt.js over ${transport}: a 1 MiB PUBLISH closes that connection; the user's other device and other users keep working`, async () => {
      const others = await bystanders(transport);
      const victim = await connect(alice, transport);
      const victimClosed = closed(victim.client, 10_000);
      const result = publish(victim, messagesTopic(direct.id), ONE_MIB);
      await victimClosed;
      // Never acknowledged: no PUBACK (the callback fails with the closed connection, or never fires).
      const settled = await Promise.race([result, sleep(300).then(() => 'pending' as const)]);
      expect(settled).not.toBeUndefined();
      // Nothing of it reached the room.
      expect(others.bobConn.on(messagesTopic(direct.id)).filter((m) => m.raw.length > MAX_PACKET_BYTES)).toHaveLength(0);
      await stillWorking(others);
    });
  }

  it('raw TCP: CONNECT + token, then a PUBLISH announcing 1 MiB followed by its bytes: closed before the body is taken in', async () => {
    const others = await bystanders('tcp');
    const raw = await rawConnected(srv, alice);
    raws.push(raw);
    const header = publishHeader(messagesTopic(direct.id), MiB, 1);
    // The header and the first 64 KiB of the body; the rest is sent only if the server is still reading.
    await raw.write(Buffer.concat([header, ONE_MIB.subarray(0, 64 * 1024)]));
    await raw.closedWithin(5000);
    expect(raw.closedByUs).toBe(false);
    // The server closed it with 960 KiB of the announced packet still unsent: it did not wait
    // for (nor buffer) the body. Nothing more can be sent.
    expect(await raw.write(ONE_MIB.subarray(64 * 1024))).not.toBeNull();
    expect(raw.data.includes(puback(1))).toBe(false);
    await stillWorking(others);

    // The whole 1 MiB in one write: closed as well.
    const raw2 = await rawConnected(srv, alice);
    raws.push(raw2);
    void raw2.write(Buffer.concat([header, ONE_MIB]));
    await raw2.closedWithin(5000);
    expect(raw2.closedByUs).toBe(false);
    expect(raw2.data.includes(puback(1))).toBe(false);
    await stillWorking(others);
  });

  it(`boundary: a chat PUBLISH of exactly ${MAX_PACKET_BYTES} bytes gets its PUBACK (rejected as too_long, connection stays); one just over closes the connection`, async () => {
    const watcher = await connect(alice); // alice's inbox, on another device
    expect(await subscribeGranted(watcher.client, [`users/${alice.user.id}/inbox`])).toEqual([1]);
    const bobConn = await connect(bob);
    expect(await subscribeGranted(bobConn.client, [messagesTopic(direct.id)])).toEqual([1]);

    const raw = await rawConnected(srv, alice);
    raws.push(raw);
    const atMax = chatPacketOfSize(messagesTopic(direct.id), MAX_PACKET_BYTES, 'edge-at-max', 7);
    expect(atMax.length).toBe(MAX_PACKET_BYTES);
    await raw.write(atMax);
    await raw.waitForBytes(puback(7));
    const [rejected] = await watcher.waitFor(1, `users/${alice.user.id}/inbox`);
    // (Whether the rejection echoes the clientMsgId is covered by the validation tests.)
    expect(rejected!.json).toMatchObject({ type: 'message.rejected', chatId: direct.id, reason: 'too_long' });
    // The connection stays up and still sends.
    expect(raw.isClosed).toBe(false);
    const ok = publishPacket(messagesTopic(direct.id), Buffer.from(JSON.stringify({ text: 'after the big one', clientMsgId: 'edge-ok' })), 8);
    await raw.write(ok);
    await raw.waitForBytes(puback(8));
    const got = await bobConn.waitFor(1, messagesTopic(direct.id));
    expect(got.map((m) => m.json.text)).toEqual(['after the big one']);

    // Just over the limit: remaining length MAX + 1 (the packet is larger than MAX however counted).
    const over = chatPacketOfSize(messagesTopic(direct.id), MAX_PACKET_BYTES + 1 + 4, 'edge-over', 9);
    expect(over.length - 4).toBe(MAX_PACKET_BYTES + 1); // fixed header: 1 type byte + 3 length bytes
    await raw.write(over);
    await raw.closedWithin(5000);
    expect(raw.closedByUs).toBe(false);
    expect(raw.data.includes(puback(9))).toBe(false);
    // Not stored, not delivered, no inbox event for it.
    await flows(watcher, bobConn, direct.id, alice.user.id);
    expect(bobConn.on(messagesTopic(direct.id)).map((m) => m.json.clientMsgId)).not.toContain('edge-over');
    expect(watcher.on(`users/${alice.user.id}/inbox`).map((m) => m.json.clientMsgId)).not.toContain('edge-over');
    const history = await srv.http.get(`/api/messages/${direct.id}?limit=100`, bob.token);
    expect((history.body.messages as Json[]).map((m) => m.clientMsgId)).not.toContain('edge-over');
  });

  it(`boundary over WebSocket: ${MAX_PACKET_BYTES} bytes are acknowledged, one just over closes that WebSocket`, async () => {
    const watcher = await connect(alice, 'ws');
    expect(await subscribeGranted(watcher.client, [`users/${alice.user.id}/inbox`])).toEqual([1]);
    const sender = await connect(alice, 'ws');
    const topic = messagesTopic(direct.id);
    // mqtt.js writes the same bytes as the raw builder: reuse its payload.
    const atMaxPayload = chatPacketOfSize(topic, MAX_PACKET_BYTES, 'ws-at-max', 1).subarray(publishHeader(topic, 0, 1).length + 1);
    expect(await publish(sender, topic, atMaxPayload)).toBeUndefined(); // PUBACK
    const inbox = await watcher.waitFor(1, `users/${alice.user.id}/inbox`);
    expect(inbox[0]!.json).toMatchObject({ type: 'message.rejected', chatId: direct.id, reason: 'too_long' });
    expect(sender.client.connected).toBe(true);

    const overPayload = chatPacketOfSize(topic, MAX_PACKET_BYTES + 5, 'ws-over', 1).subarray(publishHeader(topic, 0, 1).length + 2);
    const senderClosed = closed(sender.client, 5000);
    void publish(sender, topic, overPayload);
    await senderClosed;
    expect(watcher.client.connected).toBe(true);
    await serverStillServes('ws');
  });
});

describe('maximum packet size over TLS (MQTTS)', () => {
  let secure: TestServer;
  let who: SeededUser;
  let chatId: string;
  let ca: Buffer;
  const dir = tempDir('chat-tls-guard-');

  beforeAll(async () => {
    const { cert, key } = TEST_TLS;
    ca = readFileSync(cert);
    await seed(dir, async (s) => {
      who = (await s.users(1))[0]!;
      chatId = (await s.group(who!, [])).id;
    });
    secure = await startTestServer({ TLS_CERT: cert, TLS_KEY: key, DATA_DIR: dir });
  });
  afterAll(async () => {
    await secure.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`a PUBLISH announcing 1 MiB is closed before its body is taken in; one of exactly ${MAX_PACKET_BYTES} bytes gets its PUBACK`, async () => {
    const chat = { id: chatId };
    const raw = await rawConnected(secure, who, { tls: { ca } });
    raws.push(raw);
    await raw.write(chatPacketOfSize(messagesTopic(chat.id), MAX_PACKET_BYTES, 'tls-at-max', 3));
    await raw.waitForBytes(puback(3));

    await raw.write(Buffer.concat([publishHeader(messagesTopic(chat.id), MiB, 4), ONE_MIB.subarray(0, 64 * 1024)]));
    await raw.closedWithin(5000);
    expect(raw.closedByUs).toBe(false);
    expect(raw.data.includes(puback(4))).toBe(false);
    // The server still serves TLS clients.
    const again = await rawConnected(secure, who, { tls: { ca } });
    raws.push(again);
    await again.write(publishPacket(messagesTopic(chat.id), Buffer.from(JSON.stringify({ text: 'over TLS' })), 5));
    await again.waitForBytes(puback(5));
  });
});

// ---- memory ---------------------------------------------------------------------------------------

/** Garbage collection on demand without --expose-gc. */
function collector(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describe('memory does not grow with oversize publishes', () => {
  it('30 × 1 MiB publishes on fresh authenticated sockets: each closed early, heap + buffers grow far less than 30 MiB', async () => {
    const gc = collector();
    const header = publishHeader(messagesTopic(direct.id), MiB, 1);
    const packet = Buffer.concat([header, ONE_MIB]);
    const attempt = async () => {
      const raw = await rawConnected(srv, alice);
      raws.push(raw);
      let written = false;
      raw.socket.write(packet, (err) => (written = !err));
      await raw.closedWithin(5000);
      raws.splice(raws.indexOf(raw), 1);
      return { byServer: !raw.closedByUs, errors: raw.errors, written, unsent: raw.socket.writableLength, acked: raw.data.includes(puback(1)) };
    };
    const usage = () => {
      gc();
      gc();
      const m = process.memoryUsage();
      return { heap: m.heapUsed, buffers: m.arrayBuffers, rss: m.rss };
    };

    await attempt(); // warm-up: code paths compiled, pools allocated
    await attempt();
    const before = usage();
    const outcomes = [];
    for (let i = 0; i < 30; i++) outcomes.push(await attempt());
    const after = usage();

    for (const o of outcomes) {
      expect(o.byServer).toBe(true);
      expect(o.acked).toBe(false);
      // Cut off before the client could finish: the server reset the connection (unread data)
      // or the client still had bytes it could not write.
      expect(o.errors.some((e) => e === 'ECONNRESET' || e === 'EPIPE') || !o.written || o.unsent > 0, JSON.stringify(o)).toBe(true);
    }
    const growth = after.heap + after.buffers - (before.heap + before.buffers);
    expect(growth, `heap+buffers before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`).toBeLessThan(10 * MiB);
    expect(after.rss - before.rss).toBeLessThan(30 * MiB);
    await serverStillServes();
  });
});

// ---- malformed MQTT -------------------------------------------------------------------------------

describe('malformed MQTT closes the connection and the server stays up', () => {
  it('random bytes', async () => {
    const raw = new Raw(srv.mqttPort);
    raws.push(raw);
    await raw.opened();
    // Packet type 0 is reserved in MQTT 3.1.1; random bytes follow.
    await raw.write(Buffer.concat([Buffer.from([0x00, 0x7f]), randomBytes(512)]));
    await raw.closedWithin(5000);
    expect(raw.closedByUs).toBe(false);
    expect(raw.data.includes(CONNACK_OK)).toBe(false);
    await serverStillServes();
  });

  it('a CONNECT with a bad protocol name', async () => {
    const raw = new Raw(srv.mqttPort);
    raws.push(raw);
    await raw.opened();
    await raw.write(connectPacket({ clientId: `${alice.user.id}/bad`, username: alice.user.username, password: alice.token, protocol: 'MQTX' }));
    await raw.closedWithin(5000);
    expect(raw.closedByUs).toBe(false);
    expect(raw.data.includes(CONNACK_OK)).toBe(false);
    await serverStillServes();
  });

  // MQTT-3.1.2-2: an unsupported protocol level gets CONNACK 0x01, then the connection closes.
  const CONNACK_UNACCEPTABLE_PROTOCOL = Buffer.from([0x20, 0x02, 0x00, 0x01]);
  for (const level of [0, 1, 2, 6, 7, 127, 0x80, 0x85, 255]) {
    it(`a CONNECT with protocol level ${level} gets CONNACK 0x01 (unacceptable protocol level) and is closed`, async () => {
      const raw = new Raw(srv.mqttPort);
      raws.push(raw);
      await raw.opened();
      const packet = connectPacket({ clientId: `${alice.user.id}/level`, username: alice.user.username, password: alice.token, level });
      // Split inside the protocol name: the level arrives in a second chunk.
      await raw.write(packet.subarray(0, 5));
      await sleep(20);
      await raw.write(packet.subarray(5));
      await raw.closedWithin(5000);
      expect(raw.closedByUs).toBe(false);
      expect(raw.data.toString('hex')).toBe(CONNACK_UNACCEPTABLE_PROTOCOL.toString('hex'));
    });
  }

  it('the bytes of the report (level 6, MQTT name, no credentials) get CONNACK 0x01; levels 3 and 4 are still read', async () => {
    const raw = new Raw(srv.mqttPort);
    raws.push(raw);
    await raw.opened();
    const reported = connectPacket({ clientId: '', level: 6 });
    expect(reported.toString('hex')).toBe('100c00044d5154540602003c0000'); // byte for byte the report's
    await raw.write(reported);
    await raw.closedWithin(5000);
    expect(raw.data.toString('hex')).toBe('20020001');
    // Level 3 ('MQIsdp'), without a token: refused as not authorized (0x04 here: bad credentials), not as a level.
    const v31 = new Raw(srv.mqttPort);
    raws.push(v31);
    await v31.opened();
    await v31.write(connectPacket({ clientId: 'x', protocol: 'MQIsdp', level: 3 }));
    await v31.closedWithin(5000);
    expect(v31.data[3]).not.toBe(0x01);
    const ok = await rawConnected(srv, alice);
    raws.push(ok);
    // 3.1.1 with the bridge flag (0x84) is read as 3.1.1.
    const bridge = new Raw(srv.mqttPort);
    raws.push(bridge);
    await bridge.opened();
    await bridge.write(connectPacket({ clientId: `${alice.user.id}/bridge`, username: alice.user.username, password: alice.token, level: 0x84 }));
    await bridge.waitForBytes(CONNACK_OK);
    await serverStillServes();
  });

  it('over WebSocket too: protocol level 6 gets CONNACK 0x01 and the WebSocket closes', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/mqtt`, 'mqtt');
    const got: Buffer[] = [];
    ws.on('message', (data: Buffer) => got.push(data));
    const closed = new Promise<void>((resolve) => ws.on('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => resolve());
      ws.on('error', reject);
    });
    ws.send(connectPacket({ clientId: `${alice.user.id}/ws-level`, username: alice.user.username, password: alice.token, level: 6 }));
    await Promise.race([closed, sleep(5000).then(() => Promise.reject(new Error('the WebSocket stayed open')))]);
    expect(Buffer.concat(got).toString('hex')).toBe('20020001');
  });

  it('a fifth remaining-length byte (after a valid CONNECT)', async () => {
    const raw = await rawConnected(srv, alice);
    raws.push(raw);
    await raw.write(Buffer.concat([fiveByteLengthHeader(PUBLISH_QOS1_BYTE), Buffer.from([0x00])]));
    await raw.closedWithin(5000);
    expect(raw.closedByUs).toBe(false);
    await serverStillServes();
  });

  it('a fifth remaining-length byte as the very first packet', async () => {
    const raw = new Raw(srv.mqttPort);
    raws.push(raw);
    await raw.opened();
    // CONNECT whose length field never ends within 4 bytes (value 0 so far: not an oversize packet).
    await raw.write(fiveByteLengthHeader(CONNECT_BYTE));
    await raw.closedWithin(5000);
    expect(raw.closedByUs).toBe(false);
    await serverStillServes();
  });
});

// ---- typing ---------------------------------------------------------------------------------------

describe('typing: chats/{id}/typing', () => {
  /** A fresh group chat of alice and bob (carol is not a member), with both connected. */
  async function room() {
    const res = await srv.http.post('/api/chats', { type: 'group', name: `typing ${Math.random().toString(36).slice(2, 8)}`, memberIds: [bob.user.id] }, alice.token);
    expect(res.status).toBe(201);
    const chat = res.body.chat as Json;
    const a = await connect(alice);
    const b = await connect(bob);
    const granted = await subscribeGranted(b.client, [typingTopic(chat.id), messagesTopic(chat.id)], 0);
    expect(granted).toEqual([0, 0]);
    return { chat, a, b };
  }

  const history = async (chatId: string) => {
    const res = await srv.http.get(`/api/messages/${chatId}?limit=100`, bob.token);
    expect(res.status).toBe(200);
    return res.body.messages as Json[];
  };

  it('reaches other members as {userId, typing} with the server-stamped userId, and is never stored', async () => {
    const { chat, a, b } = await room();
    const storedBefore = await history(chat.id);
    const lastSeqBefore = (await srv.http.get(`/api/chats/${chat.number}`, alice.token)).body.chat.lastSeq;

    expect(await publish(a, typingTopic(chat.id), JSON.stringify({ typing: true }), 0)).toBeUndefined();
    const [first] = await b.waitFor(1, typingTopic(chat.id));
    expect(first!.json).toEqual({ userId: alice.user.id, typing: true });
    expect(await publish(a, typingTopic(chat.id), JSON.stringify({ typing: false }), 0)).toBeUndefined();
    const got = await b.waitFor(2, typingTopic(chat.id));
    expect(got[1]!.json).toEqual({ userId: alice.user.id, typing: false });

    // Typing is never stored: history and lastSeq are unchanged.
    expect(await history(chat.id)).toEqual(storedBefore);
    expect((await srv.http.get(`/api/chats/${chat.number}`, alice.token)).body.chat.lastSeq).toBe(lastSeqBefore);
    expect(b.on(messagesTopic(chat.id))).toHaveLength(0);
  });

  it('a payload with a forged userId is dropped; invalid payloads are dropped without closing the connection', async () => {
    const { chat, a, b } = await room();
    const bad: (string | Buffer)[] = [
      JSON.stringify({ typing: true, userId: bob.user.id }),
      JSON.stringify({ userId: bob.user.id, typing: false }),
      'typing',
      JSON.stringify({ typing: 'yes' }),
      JSON.stringify({ typing: 1 }),
      JSON.stringify([true]),
      JSON.stringify({}),
      'true',
      JSON.stringify({ typing: true, extra: 1 }),
      Buffer.from([0xff, 0xfe, 0x00, 0x01]),
      '',
    ];
    for (const payload of bad) expect(await publish(a, typingTopic(chat.id), payload, 0)).toBeUndefined();
    // A valid one afterwards is the marker: it is the only thing bob receives.
    expect(await publish(a, typingTopic(chat.id), JSON.stringify({ typing: true }), 0)).toBeUndefined();
    await b.waitFor(1, typingTopic(chat.id));
    await sleep(200); // anything else in flight would arrive too
    expect(b.on(typingTopic(chat.id)).map((m) => m.json)).toEqual([{ userId: alice.user.id, typing: true }]);
    expect(a.client.connected).toBe(true);
    await flows(a, b, chat.id, alice.user.id);
  });

  it("a non-member's typing is dropped (its connection stays up)", async () => {
    const { chat, a, b } = await room();
    const c = await connect(carol);
    expect(await subscribeGranted(c.client, [typingTopic(chat.id)], 0)).toEqual([128]);
    expect(await publish(c, typingTopic(chat.id), JSON.stringify({ typing: true }), 0)).toBeUndefined();
    // Marker from a member.
    expect(await publish(a, typingTopic(chat.id), JSON.stringify({ typing: false }), 0)).toBeUndefined();
    await b.waitFor(1, typingTopic(chat.id));
    await sleep(200);
    expect(b.on(typingTopic(chat.id)).map((m) => m.json)).toEqual([{ userId: alice.user.id, typing: false }]);
    expect(c.client.connected).toBe(true);
    expect(await subscribeGranted(c.client, [`users/${alice.user.id}/presence`])).toEqual([1]); // still served
  });

  it('typing is QoS 0: a QoS 1 subscription is delivered at QoS 0 and the SUBACK grants 0', async () => {
    const { chat, a } = await room();
    const b2 = await connect(bob);
    const granted = await subscribeGranted(b2.client, [typingTopic(chat.id)], 1);
    const qos: number[] = [];
    b2.client.on('message', (topic, _raw, packet) => topic === typingTopic(chat.id) && qos.push(packet.qos));
    expect(await publish(a, typingTopic(chat.id), JSON.stringify({ typing: true }), 1)).toBeUndefined();
    await b2.waitFor(1, typingTopic(chat.id));
    expect(qos).toEqual([0]);
    // MQTT 3.1.1 §3.9.3: the SUBACK reports the maximum QoS granted.
    expect(granted).toEqual([0]);
  });

  it(`a burst over TYPING_BURST (${TYPING_BURST}) in a second is throttled, without closing the connection`, async () => {
    const { chat, a, b } = await room();
    const sent = 12;
    for (let i = 0; i < sent; i++) a.client.publish(typingTopic(chat.id), JSON.stringify({ typing: i % 2 === 0 }), { qos: 0 });
    // Marker: a chat message sent after the burst.
    await flows(a, b, chat.id, alice.user.id);
    await sleep(300);
    const delivered = b.on(typingTopic(chat.id));
    expect(delivered.length).toBeGreaterThanOrEqual(1);
    expect(delivered.length).toBeLessThan(sent);
    for (const m of delivered) expect(m.json).toEqual({ userId: alice.user.id, typing: expect.any(Boolean) });
    expect(a.client.connected).toBe(true);
  });
});

// ---- WebSocket upgrade paths ----------------------------------------------------------------------

describe('WebSocket upgrades', () => {
  const upgradeStatus = (path: string) =>
    new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${srv.port}${path}`, 'mqtt');
      ws.on('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.on('open', () => {
        ws.terminate();
        reject(new Error(`upgrade to ${path} was accepted`));
      });
      ws.on('error', () => {});
    });

  it('a path other than /mqtt gets 404 and the server stays up', async () => {
    for (const path of ['/', '/other', '/mqtt/extra', '/api/users', '/MQTT']) expect(await upgradeStatus(path), path).toBe(404);
    await serverStillServes('ws');
  });
});

// ---- connect timeout (last: its socket was opened before everything else) ------------------------

describe('connect timeout', () => {
  it(`a connection that never sends CONNECT is closed by the server within ${CONNECT_TIMEOUT_MS} ms`, { timeout: 20_000 }, async () => {
    const left = Math.max(0, idleOpenedAt + CONNECT_TIMEOUT_MS + 5_000 - Date.now());
    await idle.closedWithin(left);
    expect(idle.closedByUs).toBe(false);
    expect(idle.data.length).toBe(0);
    await serverStillServes();
  });
});
