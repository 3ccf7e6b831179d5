import { type Socket, connect as netConnect } from 'node:net';
import WebSocket from 'ws';
import { connectPacket, publishPacket, publishQos0, str, subscribePacket, varint } from '../helpers/raw-mqtt.js';

/**
 * A seeded MQTT fuzzer: sessions of valid MQTT 3.1.1 packets (a CONNECT with a real token,
 * then SUBSCRIBE, UNSUBSCRIBE, PUBLISH at QoS 0 and 1, PUBACK, PINGREQ, DISCONNECT, and now and
 * then every other packet type: QoS 2 PUBLISH, PUBREC, PUBREL, PUBCOMP, and the server-only
 * CONNACK, SUBACK, UNSUBACK, PINGRESP), one of them mutated, written in random chunks over TCP or WebSocket. Case `i` of seed `s` is built
 * from its own generator (`caseRng(s, i)`), so any case replays alone.
 *
 * The oracle per case: the server never sends the fuzzing user anything it may not see (only
 * its own chat, its own inbox, and the presence of itself and of its chat's members, never a
 * stranger's). The caller checks the rest between batches: the
 * server is up and two legitimate users still exchange messages, and nothing reached them
 * that should not.
 */

export interface FuzzUser {
  id: string;
  username: string;
  token: string;
  /** The one chat the user is a member of. */
  chatId: string;
  /** The members of that chat (the user included): the only users whose presence it may see. */
  memberIds: string[];
}

export interface FuzzTarget {
  mqttPort: number;
  httpPort: number;
  /** Users to fuzz as, one per concurrent case. */
  users: FuzzUser[];
  /** A chat none of `users` is in, and a user who is not one of them. */
  foreignChatId: string;
  foreignUserId: string;
}

/** One case: what was sent, how it was mutated, and anything forbidden it received. */
export interface CaseResult {
  index: number;
  mutation: string;
  transport: 'tcp' | 'ws';
  packets: number;
  bytes: number;
  closedByServer: boolean;
  forbidden: string[];
  /** Where the protocol prescribes the answer (CONNACK 0x01 to an unsupported level), what differed. */
  wrongAnswer: string | undefined;
  /** The protocol prescribed the answer and it came. */
  answered: boolean;
}

const CONNACK_UNACCEPTABLE_PROTOCOL = Buffer.from([0x20, 0x02, 0x00, 0x01]);

/** mulberry32: small, fast, and the same on every machine. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const caseRng = (seed: number, index: number) => rng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, items: readonly T[]): T => items[int(r, items.length)]!;

function packetWithId(first: number, id: number, rest: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from([id >> 8, id & 0xff]), rest]);
  return Buffer.concat([Buffer.from([first]), varint(body.length), body]);
}

const unsubscribePacket = (topics: string[], id: number) => packetWithId(0xa2, id, Buffer.concat(topics.map((t) => str(t))));
const pubackPacket = (id: number) => Buffer.from([0x40, 0x02, id >> 8, id & 0xff]);
const PINGREQ = Buffer.from([0xc0, 0x00]);
const DISCONNECT = Buffer.from([0xe0, 0x00]);

/** Topics a session uses: its own (allowed) and everyone else's (refused, or dropped). */
function topicPool(t: FuzzTarget, u: FuzzUser): string[] {
  return [
    `chats/${u.chatId}/messages`, `chats/${u.chatId}/messages`, `chats/${u.chatId}/typing`, `chats/${u.chatId}/receipts`, `users/${u.id}/inbox`,
    `users/${u.id}/presence`, 'users/+/presence', `chats/${t.foreignChatId}/messages`, `chats/${t.foreignChatId}/typing`, `chats/${t.foreignChatId}/receipts`,
    `users/${t.foreignUserId}/inbox`, `users/${t.foreignUserId}/presence`, 'chats/+/messages', 'chats/#', '#', '+/+/+',
    '$SYS/broker/clients', 'chats//messages', 'chats/not-an-id/messages', `chats/${u.chatId}/messages/extra`, '',
  ];
}

function payload(r: Rand): Buffer {
  switch (int(r, 10)) {
    case 8: return Buffer.from(JSON.stringify({ readSeq: pick(r, [0, 1, int(r, 1e6), -1, 1.5, '2', null, 2 ** 60]) }));
    case 9: return Buffer.from(JSON.stringify({ text: 'fuzz reply', replyTo: pick(r, [1, 2, 0, -3, 'x', 1e300, null]) }));
    case 0: return Buffer.from(JSON.stringify({ text: 'fuzz', clientMsgId: `f${int(r, 1e6)}` }));
    case 1: return Buffer.from(JSON.stringify({ text: 'x'.repeat(int(r, 1200)) }));
    case 2: return Buffer.from(JSON.stringify({ typing: r() < 0.5 }));
    case 3: return Buffer.from('{"text":');
    case 4: return Buffer.from('{"text":"a","senderId":"forged","seq":1,"__proto__":{"admin":true},"constructor":{"prototype":{}}}');
    case 5: return Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28]);
    case 6: return Buffer.alloc(0);
    default: return Buffer.from(JSON.stringify({ text: '\u0000\u202e🙂', clientMsgId: 'x'.repeat(int(r, 80)) }));
  }
}

/** Well-formed packets of the types a client has no business sending, or that this server does
 * not serve (QoS 2): each must be refused or ignored like any other bad input. */
function otherPacket(r: Rand, topics: string[], id: number): Buffer {
  switch (int(r, 8)) {
    case 0: { const q = publishPacket(pick(r, topics) || 'a', payload(r), id); q[0] = 0x34; return q; } // QoS 2 PUBLISH
    case 1: return Buffer.from([0x50, 0x02, id >> 8, id & 0xff]); // PUBREC
    case 2: return Buffer.from([0x62, 0x02, id >> 8, id & 0xff]); // PUBREL
    case 3: return Buffer.from([0x70, 0x02, id >> 8, id & 0xff]); // PUBCOMP
    case 4: return Buffer.from([0x20, 0x02, 0x00, 0x00]); // CONNACK, server to client only
    case 5: return Buffer.from([0x90, 0x03, id >> 8, id & 0xff, 0x01]); // SUBACK
    case 6: return Buffer.from([0xb0, 0x02, id >> 8, id & 0xff]); // UNSUBACK
    default: return Buffer.from([0xd0, 0x00]); // PINGRESP
  }
}

/** A valid packet after CONNECT. */
function validPacket(r: Rand, topics: string[]): Buffer {
  const id = 1 + int(r, 65535);
  if (r() < 0.12) return otherPacket(r, topics, id);
  switch (int(r, 7)) {
    case 0: return subscribePacket([pick(r, topics)].filter((t) => t !== ''), id);
    case 1: return unsubscribePacket([pick(r, topics) || 'a'], id);
    case 2: return publishQos0(pick(r, topics) || 'a', payload(r));
    case 3: return publishPacket(pick(r, topics) || 'a', payload(r), id);
    case 4: return pubackPacket(id);
    case 5: return PINGREQ;
    default: return publishPacket(topics[0]!, payload(r), id);
  }
}

/** Where a packet's remaining-length field ends (the header's length). */
function headerLength(p: Buffer): number {
  let i = 1;
  while (i < p.length && i < 5 && p[i]! & 0x80) i++;
  return Math.min(i + 1, p.length);
}

const INVALID_UTF8 = [Buffer.from([0xc3, 0x28]), Buffer.from([0xff]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('a\u0000b')];

/** The mutations, each making a list of packets from a valid session. */
const MUTATIONS: Record<string, (r: Rand, s: Buffer[], ctx: { connect: (o?: Partial<Parameters<typeof connectPacket>[0]>) => Buffer; topics: string[] }) => Buffer[]> = {
  'bit flips': (r, s) => {
    const i = int(r, s.length);
    const p = Buffer.from(s[i]!);
    for (let n = 1 + int(r, 8); n > 0; n--) p[int(r, p.length)]! ^= 1 << int(r, 8);
    s[i] = p;
    return s;
  },
  truncation: (r, s) => {
    const all = Buffer.concat(s);
    return [all.subarray(0, int(r, all.length))];
  },
  'wrong remaining length': (r, s) => {
    const i = int(r, s.length);
    const p = s[i]!;
    const h = headerLength(p);
    const body = p.subarray(h);
    const claimed = Math.max(0, body.length + pick(r, [-3, -1, 1, 2, 100, 16_000, 268_435_455 - body.length]));
    s[i] = Buffer.concat([p.subarray(0, 1), varint(Math.min(claimed, 268_435_455)), body]);
    return s;
  },
  'five-byte remaining length': (r, s) => {
    const i = int(r, s.length);
    const p = s[i]!;
    s[i] = Buffer.concat([p.subarray(0, 1), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]), p.subarray(headerLength(p))]);
    return s;
  },
  'invalid UTF-8 in a topic': (r, s, { topics }) => {
    const bad = Buffer.concat([Buffer.from('chats/'), pick(r, INVALID_UTF8), Buffer.from('/messages')]);
    const id = 1 + int(r, 65535);
    const which = int(r, 3);
    const p = which === 0
      ? Buffer.concat([Buffer.from([0x30]), varint(bad.length + 2 + 4), str(bad), Buffer.from('{"a"')])
      : which === 1
        ? packetWithId(0x82, id, Buffer.concat([str(bad), Buffer.from([1])]))
        : packetWithId(0xa2, id, str(bad));
    s.splice(1 + int(r, s.length), 0, p);
    void topics;
    return s;
  },
  'empty or wildcard topic in PUBLISH': (r, s) => {
    const topic = pick(r, ['', '#', '+', 'chats/+/messages', 'chats/#', '+/+/+', '/']);
    s.splice(1 + int(r, s.length), 0, r() < 0.5 ? publishQos0(topic, payload(r)) : publishPacket(topic, payload(r), 1 + int(r, 65535)));
    return s;
  },
  'QoS 3': (r, s, { topics }) => {
    const p = r() < 0.5
      ? (() => { const q = publishPacket(topics[0]!, payload(r), 7); q[0] = 0x36; return q; })()
      : packetWithId(0x82, 9, Buffer.concat([str(topics[0]!), Buffer.from([3])]));
    s.splice(1 + int(r, s.length), 0, p);
    return s;
  },
  'reserved flags': (r, s, { topics }) => {
    const which = int(r, 5);
    let p: Buffer;
    if (which === 0) p = Buffer.from([0x80 | int(r, 16), ...subscribePacket([topics[0]!], 3).subarray(1)]); // SUBSCRIBE flags other than 0010
    else if (which === 1) p = Buffer.from([0xc0 | (1 + int(r, 15)), 0x00]); // PINGREQ with flags
    else if (which === 2) p = Buffer.from([pick(r, [0x00, 0xf0]), 0x00]); // reserved packet types 0 and 15
    else if (which === 3) p = Buffer.from([0x62 ^ pick(r, [0x02, 0x01, 0x0f]), 0x02, 0x00, 0x01]); // PUBREL with wrong flags
    else p = Buffer.from([0xe0 | (1 + int(r, 15)), 0x00]); // DISCONNECT with flags
    s.splice(1 + int(r, s.length), 0, p);
    return s;
  },
  'reserved CONNECT flag': (_r, s) => {
    const p = Buffer.from(s[0]!);
    const flags = headerLength(p) + 7; // after "\0\4MQTT" and the level: the flags byte
    p[flags] = (p[flags] ?? 0) | 0x01;
    s[0] = p;
    return s;
  },
  'packet id 0': (r, s, { topics }) => {
    s.splice(1 + int(r, s.length), 0, r() < 0.5 ? publishPacket(topics[0]!, payload(r), 0) : subscribePacket([topics[0]!], 0));
    return s;
  },
  'a second CONNECT': (r, s, { connect }) => {
    s.splice(1 + int(r, s.length), 0, connect());
    return s;
  },
  'protocol level 0-255': (r, s, { connect }) => {
    const level = int(r, 256);
    const protocol = r() < 0.3 ? pick(r, ['MQIsdp', 'mqtt', 'MQTT5', '', 'M\u0000TT']) : 'MQTT';
    s[0] = connect({ level, protocol });
    // MQTT-3.1.2-2: a level the server does not read (it reads 3.1, 3.1.1 and 5, and 3.1 and
    // 3.1.1 with the bridge flag, 0x83 and 0x84), under a protocol name it knows, is answered
    // CONNACK 0x01.
    if ((protocol === 'MQTT' || protocol === 'MQIsdp') && ![3, 4, 5, 0x83, 0x84].includes(level)) return Object.assign(s, { answer: CONNACK_UNACCEPTABLE_PROTOCOL });
    return s;
  },
  'packets before CONNECT': (r, s) => {
    const first = s.slice(1).concat(PINGREQ);
    return [pick(r, first), ...s];
  },
  'pre-auth garbage': (r) => {
    const junk = Buffer.alloc(1 + int(r, 300));
    for (let i = 0; i < junk.length; i++) junk[i] = int(r, 256);
    return [junk];
  },
  'CONNECT with a bad or missing token': (r, s, { connect }) => {
    s[0] = connect(pick(r, [{ password: 'not-a-token' }, { password: undefined }, { username: undefined, password: undefined }, { username: 'someone-else' }, { clientId: '' }]));
    return s;
  },
  'valid session (ACL only)': (_r, s) => s,
};

export const MUTATION_NAMES = Object.keys(MUTATIONS);

/** Case `index` of `seed`: its packets, mutation, transport and chunks. */
export function buildCase(seed: number, index: number, target: FuzzTarget) {
  const r = caseRng(seed, index);
  const user = target.users[index % target.users.length]!;
  const topics = topicPool(target, user);
  const connect = (o: Partial<Parameters<typeof connectPacket>[0]> = {}) =>
    connectPacket({ clientId: `${user.id}/fz${index}`, username: user.username, password: user.token, ...o });
  const session: Buffer[] = [connect()];
  for (let n = int(r, 7); n > 0; n--) session.push(validPacket(r, topics));
  if (r() < 0.3) session.push(DISCONNECT);
  const mutation = pick(r, MUTATION_NAMES);
  const packets: Buffer[] & { answer?: Buffer } = MUTATIONS[mutation]!(r, session, { connect, topics });
  const bytes = Buffer.concat(packets);
  // Written in 1 to 4 chunks cut at random places: the parser must not depend on how bytes arrive.
  const cuts = Array.from({ length: int(r, 4) }, () => int(r, bytes.length + 1)).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    if (c > at) chunks.push(bytes.subarray(at, c));
    at = Math.max(at, c);
  }
  return { user, mutation, transport: r() < 0.7 ? ('tcp' as const) : ('ws' as const), packets: packets.length, bytes, chunks, answer: packets.answer };
}

/** Topics of the PUBLISH packets in what a server sent (as far as they parse). */
export function publishTopics(data: Buffer): string[] {
  const topics: string[] = [];
  let i = 0;
  while (i < data.length) {
    const type = data[i]! >> 4;
    let len = 0;
    let mul = 1;
    let j = i + 1;
    for (; j < data.length && j < i + 5; j++) {
      len += (data[j]! & 0x7f) * mul;
      mul *= 128;
      if (!(data[j]! & 0x80)) break;
    }
    const start = j + 1;
    if (start + len > data.length) break;
    if (type === 3 && len >= 2) topics.push(data.subarray(start + 2, start + 2 + data.readUInt16BE(start)).toString('utf8'));
    i = start + len;
  }
  return topics;
}

/** What `user` may receive. */
function allowed(user: FuzzUser, topic: string): boolean {
  if (topic === `chats/${user.chatId}/messages` || topic === `chats/${user.chatId}/typing` || topic === `chats/${user.chatId}/receipts` || topic === `users/${user.id}/inbox`) return true;
  const presence = /^users\/([0-9a-f-]{36})\/presence$/.exec(topic);
  return presence !== null && user.memberIds.includes(presence[1]!);
}

/** How long a case stays open after its last write when the server keeps it. */
const LINGER_MS = 40;
/** How long a case with a prescribed answer waits for it. */
const ANSWER_WAIT_MS = 3000;

/** Runs case `index` against the server. `source`: the loopback address to connect from. */
export async function runCase(seed: number, index: number, target: FuzzTarget, source: string): Promise<CaseResult> {
  const c = buildCase(seed, index, target);
  let received = Buffer.alloc(0);
  let closedByServer = false;
  let closedByUs = false;
  await new Promise<void>((resolve) => {
    let settle: NodeJS.Timeout | undefined;
    let send: (b: Buffer) => void;
    let stop: () => void;
    const finish = () => {
      clearTimeout(settle);
      resolve();
    };
    const onData = (d: Buffer) => (received = Buffer.concat([received, d]));
    const onClose = () => {
      if (!closedByUs) closedByServer = true;
      finish();
    };
    const writeAll = () => {
      for (const chunk of c.chunks) send(chunk);
      // A case whose answer is prescribed waits for the server to give it and close.
      settle = setTimeout(() => {
        closedByUs = true;
        stop();
      }, c.answer ? ANSWER_WAIT_MS : LINGER_MS);
    };
    if (c.transport === 'tcp') {
      const socket: Socket = netConnect({ port: target.mqttPort, host: '127.0.0.1', localAddress: source });
      send = (b) => socket.write(b);
      stop = () => socket.destroy();
      socket.on('data', onData);
      socket.on('error', () => {});
      socket.on('close', onClose);
      socket.once('connect', writeAll);
    } else {
      const ws = new WebSocket(`ws://127.0.0.1:${target.httpPort}/mqtt`, ['mqtt'], { localAddress: source });
      send = (b) => ws.send(b);
      stop = () => ws.terminate();
      ws.on('message', (d: Buffer) => onData(Buffer.from(d)));
      ws.on('error', () => {});
      ws.on('close', onClose);
      ws.once('open', writeAll);
    }
  });
  const forbidden = publishTopics(received).filter((t) => !allowed(c.user, t));
  const wrongAnswer = c.answer && (!received.equals(c.answer) || !closedByServer)
    ? `expected exactly ${c.answer.toString('hex')} and the server to close, got ${received.toString('hex').slice(0, 40) || 'nothing'}${closedByServer ? '' : ` and no close within ${ANSWER_WAIT_MS} ms`}`
    : undefined;
  return { index, mutation: c.mutation, transport: c.transport, packets: c.packets, bytes: c.bytes.length, closedByServer, forbidden, wrongAnswer, answered: c.answer !== undefined && wrongAnswer === undefined };
}
