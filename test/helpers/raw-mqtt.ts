import { type Socket, connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { sleep } from './mqtt.js';

/**
 * MQTT 3.1.1 by hand, for what a well-behaved client library will not do: oversize or
 * malformed packets, sockets that stop reading, packets written in one burst.
 */

type Who = { user: { id: string; username: string }; token: string };

export function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

export const str = (s: string | Buffer) => {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
};

/** First bytes of a fixed header (MQTT 3.1.1 §2.2): packet type and flags. */
export const CONNECT_BYTE = 0x10;
export const PUBLISH_QOS1_BYTE = 0x32;

/** What a CONNECT says. Defaults: protocol 'MQTT', level 4 (3.1.1), a clean session, a keep
 * alive of 60 s; a username or password flag and field only when given. */
export interface ConnectFields {
  clientId: string;
  username?: string | undefined;
  password?: string | undefined;
  protocol?: string | undefined;
  level?: number | undefined;
  clean?: boolean | undefined;
  keepalive?: number | undefined;
}

/** A CONNECT packet, also one mqtt.js will not send: an empty client id with a persistent
 * session, a password without a username, an unknown protocol name or level. */
export function connectPacket(o: ConnectFields): Buffer {
  let flags = (o.clean ?? true) ? 0x02 : 0x00;
  if (o.username !== undefined) flags |= 0x80;
  if (o.password !== undefined) flags |= 0x40;
  const keepalive = o.keepalive ?? 60;
  const variable = Buffer.concat([str(o.protocol ?? 'MQTT'), Buffer.from([o.level ?? 4, flags, keepalive >> 8, keepalive & 0xff])]);
  const payload = Buffer.concat([
    str(o.clientId),
    ...(o.username !== undefined ? [str(o.username)] : []),
    ...(o.password !== undefined ? [str(o.password)] : []),
  ]);
  const body = Buffer.concat([variable, payload]);
  return Buffer.concat([Buffer.from([CONNECT_BYTE]), varint(body.length), body]);
}

/** A malformed fixed header: its remaining length goes on to a fifth byte (MQTT 3.1.1 §2.2.3
 * allows four), the first four worth 0, so the packet is not an oversize one either. */
export const fiveByteLengthHeader = (first: number) => Buffer.from([first, 0x80, 0x80, 0x80, 0x80, 0x01]);

/** The fixed and variable header of a QoS 1 PUBLISH whose payload is `payloadLength` bytes. */
export function publishHeader(topic: string, payloadLength: number, packetId: number): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(packetId);
  const variable = Buffer.concat([str(topic), id]);
  return Buffer.concat([Buffer.from([PUBLISH_QOS1_BYTE]), varint(variable.length + payloadLength), variable]);
}

export const publishPacket = (topic: string, payload: Buffer, packetId: number) => Buffer.concat([publishHeader(topic, payload.length, packetId), payload]);

/** A QoS 1 PUBLISH of exactly `total` bytes to `topic`: a chat message `{"text":"aaa…","clientMsgId":…}`. */
export function chatPacketOfSize(topic: string, total: number, clientMsgId: string, packetId: number): Buffer {
  const shell = (n: number) => Buffer.from(JSON.stringify({ text: 'a'.repeat(n), clientMsgId }));
  const overhead = publishHeader(topic, 0, packetId).length + shell(0).length;
  // The remaining-length field may take one more byte once the payload is added: try both.
  for (let extra = 0; extra <= 3; extra++) {
    const packet = publishPacket(topic, shell(total - overhead - extra), packetId);
    if (packet.length === total) return packet;
  }
  throw new Error(`cannot build a packet of ${total} bytes`);
}

/** How to reach the server: TCP from a source address, or TLS trusting the given certificate. */
export interface RawOptions {
  localAddress?: string;
  tls?: { ca: Buffer };
}

/** A raw TCP (or TLS) connection with everything it received and how it ended. */
export class Raw {
  readonly socket: Socket;
  data = Buffer.alloc(0);
  errors: string[] = [];
  closedByUs = false;
  readonly closed: Promise<void>;
  private waiters: (() => void)[] = [];

  private readonly connectEvent: string;

  constructor(port: number, opts: RawOptions = {}) {
    const target = { port, host: '127.0.0.1', ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) };
    this.socket = opts.tls ? tlsConnect({ ...target, ca: opts.tls.ca }) : netConnect(target);
    this.connectEvent = opts.tls ? 'secureConnect' : 'connect';
    this.socket.on('data', (d: Buffer) => {
      this.data = Buffer.concat([this.data, d]);
      for (const w of this.waiters.splice(0)) w();
    });
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.errors.push(err.code ?? err.message));
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
    this.socket.once('close', () => this.waiters.splice(0).forEach((w) => w()));
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once(this.connectEvent, () => resolve());
      this.socket.once('error', reject);
    });
  }

  get isClosed() {
    return this.socket.destroyed;
  }

  /** Resolves once the received bytes contain `bytes` (rejects after `ms`, or when closed). */
  waitForBytes(bytes: Buffer, ms = 5000): Promise<void> {
    return this.waitForData(() => this.data.includes(bytes), bytes.toString('hex'), ms);
  }

  /** Resolves once at least `count` bytes have arrived (rejects after `ms`, or when closed). */
  waitForLength(count: number, ms = 5000): Promise<void> {
    return this.waitForData(() => this.data.length >= count, `${count} bytes`, ms);
  }

  private waitForData(enough: () => boolean, what: string, ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const got = () => `got ${this.data.toString('hex').slice(0, 200)}${this.errors.length > 0 ? ` (${this.errors.join(', ')})` : ''}`;
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms; ${got()}`)), ms);
      const check = () => {
        if (enough()) {
          clearTimeout(timer);
          resolve();
        } else if (this.socket.destroyed) {
          clearTimeout(timer);
          reject(new Error(`closed without ${what}; ${got()}`));
        } else this.waiters.push(check);
      };
      check();
    });
  }

  /** Resolves once the server has closed the connection (rejects after `ms`). */
  closedWithin(ms = 5000): Promise<void> {
    return Promise.race([
      this.closed,
      sleep(ms).then(() => {
        throw new Error(`the server did not close the connection within ${ms} ms`);
      }),
    ]);
  }

  write(buf: Buffer): Promise<Error | null> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve(new Error('destroyed'));
      this.socket.write(buf, (err) => resolve(err ?? null));
    });
  }

  destroy() {
    this.closedByUs = true;
    this.socket.destroy();
  }
}

export const CONNACK_OK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
export const puback = (packetId: number) => Buffer.from([0x40, 0x02, packetId >> 8, packetId & 0xff]);

let rawCounter = 0;
/** A raw TCP connection that has sent a valid CONNECT (username + token) and got CONNACK 0. */
export async function rawConnected(srv: { mqttPort: number }, who: Who, opts: RawOptions = {}): Promise<Raw> {
  const raw = new Raw(srv.mqttPort, opts);
  await raw.opened();
  await raw.write(connectPacket({ clientId: `${who.user.id}/raw${++rawCounter}`, username: who.user.username, password: who.token }));
  await raw.waitForBytes(CONNACK_OK);
  raw.data = Buffer.alloc(0);
  return raw;
}

/** Sends `connect` (a CONNECT packet) on a fresh TCP connection, then closes it; resolves with
 * the return code of the CONNACK the server answered (rejects when the first bytes are not a
 * CONNACK, or none came within `ms`). */
export async function rawConnackCode(port: number, connect: Buffer, ms = 5000): Promise<number> {
  const raw = new Raw(port);
  try {
    await raw.opened();
    await raw.write(connect);
    await raw.waitForLength(4, ms);
    if (raw.data[0] !== 0x20 || raw.data[1] !== 0x02) throw new Error(`not a CONNACK: ${raw.data.toString('hex')}`);
    return raw.data[3]!;
  } finally {
    raw.destroy();
  }
}

/** A SUBSCRIBE of `topics` at QoS 1. */
export function subscribePacket(topics: string[], packetId: number): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(packetId);
  const body = Buffer.concat([id, ...topics.map((t) => Buffer.concat([str(t), Buffer.from([1])]))]);
  return Buffer.concat([Buffer.from([0x82]), varint(body.length), body]);
}

/** The SUBACK for `packetId` granting QoS 1 to `count` topics. */
export const subackGranted = (packetId: number, count: number) => Buffer.concat([Buffer.from([0x90]), varint(2 + count), Buffer.from([packetId >> 8, packetId & 0xff]), Buffer.alloc(count, 1)]);

/** A QoS 0 PUBLISH (no packet id). */
export function publishQos0(topic: string, payload: Buffer): Buffer {
  const variable = str(topic);
  return Buffer.concat([Buffer.from([0x30]), varint(variable.length + payload.length), variable, payload]);
}
