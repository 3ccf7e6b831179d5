import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { type Connected, connectAs, sleep, subscribeGranted, waitForMessage } from './helpers/mqtt.js';
import { type ReadyServer, launchServer, serverExit, serverReady } from './helpers/process.js';
import { Raw, publishPacket, publishQos0, puback, rawConnected, subackGranted, subscribePacket } from './helpers/raw-mqtt.js';
import { type SeededUser, seed } from './helpers/seed.js';
import { TEST_SECRET, tempDir } from './helpers/server.js';

/**
 * Back-pressure, over real sockets against a server process: subscribers that stop reading or
 * vanish while deliveries to them are queued delay nobody else, the server bounds what it holds
 * for them and stays up; sends beyond the pipeline's bound wait their turn.
 */

const messages = (chatId: string) => `chats/${chatId}/messages`;
const typing = (chatId: string) => `chats/${chatId}/typing`;
const presence = (userId: string) => `users/${userId}/presence`;

/** A server process on a data directory seeded by `build`, stopped and removed after the block. */
function deployment(env: Record<string, string>, build: Parameters<typeof seed>[1]) {
  const dataDir = tempDir('chat-slow-');
  let proc: ReadyServer | undefined;
  const open: Connected[] = [];
  const raws: Raw[] = [];
  afterAll(async () => {
    open.forEach((c) => c.client.end(true));
    raws.forEach((r) => r.socket.destroy());
    if (proc && proc.child.exitCode === null) {
      proc.child.kill('SIGTERM');
      await serverExit(proc);
    }
    rmSync(dataDir, { recursive: true, force: true });
  });
  return {
    open,
    raws,
    start: async () => {
      await seed(dataDir, build);
      proc = await serverReady(launchServer({ DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET, ...env }));
      return proc;
    },
  };
}

/** An authenticated raw connection subscribed to `topics` that then stops reading: the kernel
 * buffers fill, then the server's socket buffer. Spread over source addresses (connect limit). */
let rawCount = 0;
async function stopsReading(srv: ReadyServer, who: SeededUser, topics: string[]): Promise<Raw> {
  const raw = await rawConnected(srv, who, { localAddress: `127.0.${10 + (rawCount >> 8)}.${(rawCount++ & 0xff) + 1}` });
  await raw.write(subscribePacket(topics, 1));
  await raw.waitForBytes(subackGranted(1, topics.length));
  raw.socket.pause();
  return raw;
}

/** `count` QoS 1 chat messages of 1,000 characters, written in one burst; resolves with the
 * connection once it has every PUBACK. */
async function burst(srv: ReadyServer, who: SeededUser, chatId: string, count: number, tag: string) {
  const raw = await rawConnected(srv, who);
  const text = '가'.repeat(1000);
  const packets = Array.from({ length: count }, (_, i) => publishPacket(messages(chatId), Buffer.from(JSON.stringify({ text, clientMsgId: `${tag}-${i}` })), i + 1));
  void raw.write(Buffer.concat(packets));
  return { raw, acked: () => Promise.all(Array.from({ length: count }, (_, i) => raw.waitForBytes(puback(i + 1), 30_000))) };
}

/** A message from `from` reaches `to`: the server is up and delivering. */
let probeCount = 0;
async function flows(from: Connected, to: Connected, chatId: string) {
  const text = `probe ${++probeCount}`;
  await from.client.publishAsync(messages(chatId), JSON.stringify({ text, clientMsgId: `probe-${probeCount}` }), { qos: 1 });
  await waitForMessage(to, messages(chatId), (m) => m.json?.text === text, 10_000);
}

describe('subscribers that stop reading, then vanish at once with deliveries queued to them', () => {
  let group!: string;
  let typingChat!: string;
  let pair!: string;
  let senders: SeededUser[] = [];
  let stuck: SeededUser[] = [];
  let flooder: SeededUser | undefined;
  let probes: SeededUser[] = [];
  const d = deployment({ SEND_BURST: '1000' }, async (s) => {
    [flooder] = await s.users(1, 'flood');
    senders = await s.users(40, 'sender');
    stuck = await s.users(10, 'stuck');
    probes = await s.users(2, 'probe');
    group = (await s.group(senders[0]!, [...senders.slice(1), ...stuck])).id;
    typingChat = (await s.group(flooder!, [])).id;
    pair = (await s.direct(probes[0]!, probes[1]!)).id;
  });

  it('the server stays up: every PUBACKed message is stored once, and other users keep chatting', { timeout: 90_000 }, async () => {
    const srv = await d.start();
    const [p, q] = await Promise.all(probes.map((who) => connectAs(srv, who)));
    d.open.push(p!, q!);
    expect(await subscribeGranted(q!.client, [messages(pair)])).toEqual([1]);

    // 10 members of a group stop reading; 40 others send 40 messages of 1,000 three-byte
    // characters each into the group: the first ones fill the readers' buffers (about 4 MB per
    // socket on loopback), every later one has deliveries waiting on them.
    for (const who of stuck) d.raws.push(await stopsReading(srv, who, [messages(group)]));
    const sends = await Promise.all(senders.map((who, i) => burst(srv, who, group, 40, `s${i}`)));
    d.raws.push(...sends.map((s) => s.raw));
    await sleep(1000);

    // Meanwhile another user floods a chat nobody subscribed to with typing events (each
    // one a publish with no subscriber), from 10 connections at once.
    for (let c = 0; c < 10; c++) {
      const raw = await rawConnected(srv, flooder!);
      d.raws.push(raw);
      const event = publishQos0(typing(typingChat), Buffer.from('{"typing":true}'));
      void raw.write(Buffer.concat(Array.from({ length: 1000 }, () => event)));
    }
    await sleep(1000);

    // The 10 vanish at the same moment.
    for (const raw of d.raws.splice(0, stuck.length)) raw.destroy();
    await sleep(3000);

    expect(srv.child.exitCode, srv.output().slice(-2000)).toBeNull();
    expect(srv.output()).not.toMatch(/RangeError|Maximum call stack/);
    await flows(p!, q!, pair);
    // Every sender got all its PUBACKs, and the group's history holds each message once.
    await Promise.all(sends.map((s) => s.acked()));
    const history = await srv.http.history(group, senders[0]!.token);
    const ids = history.filter((m) => m.type === 'message').map((m) => m.clientMsgId);
    expect(ids).toHaveLength(40 * 40);
    expect(new Set(ids).size).toBe(40 * 40);
  });
});

/** Chat messages from 40 senders (40 each, 1,000 three-byte characters) into `chatId`: more
 * than the kernel buffers (about 4 MB per loopback socket) of a member that does not read. */
async function flood(srv: ReadyServer, senders: SeededUser[], chatId: string, raws: Raw[]) {
  const sends = await Promise.all(senders.map((who, i) => burst(srv, who, chatId, 40, `f${i}`)));
  raws.push(...sends.map((s) => s.raw));
  return () => Promise.all(sends.map((s) => s.acked()));
}

const metric = async (srv: ReadyServer, name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec((await srv.http.get('/metrics')).body)?.[1]);

describe('a member that stops reading delays nobody', () => {
  let chat!: string;
  let pair!: string;
  let senders: SeededUser[] = [];
  let reader: SeededUser | undefined;
  let probes: SeededUser[] = [];
  // Bounds so wide that the server never closes the reader during this test: what is
  // checked is that everyone else is served while it is stalled, not that it gets closed.
  const d = deployment({ SEND_BURST: '1000', OUTGOING_QUEUE_BYTES: String(1 << 30), OUTGOING_QUEUE_PACKETS: '1000000', OUTGOING_QUEUE_GRACE_MS: '600000' }, async (s) => {
    [reader] = await s.users(1, 'reader');
    senders = await s.users(40, 'sender');
    probes = await s.users(2, 'probe');
    chat = (await s.group(reader!, senders)).id;
    pair = (await s.direct(probes[0]!, probes[1]!)).id;
  });

  it('while its deliveries back up, the senders in its chat get every PUBACK and an unrelated chat is served', { timeout: 90_000 }, async () => {
    const srv = await d.start();
    const [p, q] = await Promise.all(probes.map((who) => connectAs(srv, who)));
    d.open.push(p!, q!);
    expect(await subscribeGranted(q!.client, [messages(pair)])).toEqual([1]);
    d.raws.push(await stopsReading(srv, reader!, [messages(chat)]));

    const acked = await flood(srv, senders, chat, d.raws);
    await acked();
    // The reader's socket is full (it has read nothing of 1,600 messages, 4.8 MB): a message in
    // another chat still arrives, more than once.
    for (let i = 0; i < 3; i++) await flows(p!, q!, pair);
    // The reader is still connected: nothing above waited for it to go.
    expect(await metric(srv, 'chat_mqtt_slow_closed_total')).toBe(0);
    // Asked by a sender: the online list shows co-members only.
    const online = (await srv.http.get('/api/users', senders[0]!.token)).body.users.map((u: { id: string }) => u.id);
    expect(online).toContain(reader!.user.id);
  });
});

describe('a connection past its outgoing bound for longer than the grace time is closed', () => {
  let chat!: string;
  let senders: SeededUser[] = [];
  let reader: SeededUser | undefined;
  let watcher: SeededUser | undefined;
  const d = deployment({ SEND_BURST: '1000', OUTGOING_QUEUE_BYTES: '65536', OUTGOING_QUEUE_PACKETS: '100', OUTGOING_QUEUE_GRACE_MS: '1000' }, async (s) => {
    [reader, watcher] = await s.users(2, 'reader');
    senders = await s.users(40, 'sender');
    chat = (await s.group(reader!, senders)).id;
    await s.direct(watcher!, reader!); // presence reaches only those who share a chat
  });

  it('the reader goes offline, the senders are served throughout, and on reconnecting it finds every message in history', { timeout: 90_000 }, async () => {
    const srv = await d.start();
    const w = await connectAs(srv, watcher!);
    d.open.push(w);
    expect(await subscribeGranted(w.client, [presence(reader!.user.id)])).toEqual([1]);
    d.raws.push(await stopsReading(srv, reader!, [messages(chat)]));
    await waitForMessage(w, presence(reader!.user.id), (m) => m.json.status === 'online');

    const acked = await flood(srv, senders, chat, d.raws);
    await waitForMessage(w, presence(reader!.user.id), (m) => m.json.status === 'offline', 30_000);
    expect(await metric(srv, 'chat_mqtt_slow_closed_total')).toBe(1);
    expect(srv.output()).toMatch(/does not read what is sent to it: connection closed/);
    await acked();

    const back = await connectAs(srv, reader!);
    d.open.push(back);
    const history = await srv.http.history(chat, reader!.token);
    expect(history.filter((m) => m.type === 'message')).toHaveLength(40 * 40);
  });
});

describe('sends beyond MAX_SENDS_IN_FLIGHT wait for room', () => {
  let chat!: string;
  let senders: SeededUser[] = [];
  const d = deployment({ SEND_BURST: '1000', MAX_SENDS_IN_FLIGHT: '1' }, async (s) => {
    senders = await s.users(5, 'sender');
    chat = (await s.group(senders[0]!, senders.slice(1))).id;
  });

  it('200 sends at once through a pipeline of one: each acknowledged, stored once, seqs contiguous', { timeout: 60_000 }, async () => {
    const srv = await d.start();
    const sends = await Promise.all(senders.map((who, i) => burst(srv, who, chat, 40, `w${i}`)));
    d.raws.push(...sends.map((s) => s.raw));
    await Promise.all(sends.map((s) => s.acked()));
    const history = (await srv.http.history(chat, senders[0]!.token)).filter((m) => m.type === 'message');
    expect(history).toHaveLength(200);
    expect(new Set(history.map((m) => m.clientMsgId)).size).toBe(200);
    const seqs = history.map((m) => m.seq);
    expect(seqs).toEqual(Array.from({ length: 200 }, (_, i) => seqs[0] + i));
  });
});
