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

export function connectPacket(o: { clientId: string; username?: string; password?: string; protocol?: string; level?: number }): Buffer {
  let flags = 0x02; // clean session
  if (o.username !== undefined) flags |= 0x80;
  if (o.password !== undefined) flags |= 0x40;
  const variable = Buffer.concat([str(o.protocol ?? 'MQTT'), Buffer.from([o.level ?? 4, flags, 0, 60])]);
  const payload = Buffer.concat([
    str(o.clientId),
    ...(o.username !== undefined ? [str(o.username)] : []),
    ...(o.password !== undefined ? [str(o.password)] : []),
  ]);
  const body = Buffer.concat([variable, payload]);
  return Buffer.concat([Buffer.from([0x10]), varint(body.length), body]);
}

/** The fixed and variable header of a QoS 1 PUBLISH whose payload is `payloadLength` bytes. */
export function publishHeader(topic: string, payloadLength: number, packetId: number): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(packetId);
  const variable = Buffer.concat([str(topic), id]);
  return Buffer.concat([Buffer.from([0x32]), varint(variable.length + payloadLength), variable]);
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
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${bytes.toString('hex')} within ${ms} ms; got ${this.data.toString('hex').slice(0, 200)}`)), ms);
      const check = () => {
        if (this.data.includes(bytes)) {
          clearTimeout(timer);
          resolve();
        } else if (this.socket.destroyed) {
          clearTimeout(timer);
          reject(new Error(`closed without ${bytes.toString('hex')}; got ${this.data.toString('hex').slice(0, 200)}`));
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
