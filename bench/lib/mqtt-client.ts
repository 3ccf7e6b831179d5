import { createConnection, type Socket } from 'node:net';
import { generate } from 'mqtt-packet';

/**
 * A lean MQTT 3.1.1 client for the load generator. mqtt.js keeps stores, timers and streams
 * per connection, which is too heavy for thousands of connections in one process; this one is
 * a socket, a small frame reader and a map of unacknowledged packet ids.
 *
 * What it does: CONNECT (clean session, keepalive 60), SUBSCRIBE at QoS 1, PUBLISH at QoS 1
 * with the PUBACK matched by packet id, a PUBACK for every incoming QoS 1 PUBLISH, PINGREQ
 * when asked (the generator pings all its clients from one timer). No reconnect, no QoS 2,
 * no retries: a benchmark counts what the server does with each packet exactly once.
 *
 * The generator's own CPU is taken from the machine the server runs on, so the per-packet
 * path is kept short (profiled: the stream machinery, mqtt-packet's parser and its debug()
 * calls, and a Buffer per read were most of a generator's time):
 * - Reads use the socket's `onread` option: the kernel's bytes land in one buffer shared by
 *   every client of the process and are parsed there at once, with no stream, no 'data'
 *   event and no Buffer per read. Only the tail of a frame split between two reads is
 *   copied (into the client's `rest`).
 * - Frames are read by hand (fixed header, remaining length, and for the packets a server
 *   sends us: PUBLISH, PUBACK, CONNACK, SUBACK, PINGRESP). CONNECT and SUBSCRIBE, once per
 *   connection, still use mqtt-packet's encoder; PUBLISH and PUBACK are written by hand.
 * - The PUBACKs for the PUBLISHes of one read leave in one write, after the read is parsed
 *   (as the corked writes did before).
 */
export interface ClientOptions {
  host: string;
  port: number;
  /** Source address (127.x.y.z): spreads connections over the server's per-IP limits. */
  localAddress?: string | undefined;
  clientId: string;
  username?: string | undefined;
  password?: string | undefined;
}

export type ConnectOutcome =
  | { ok: true }
  /** CONNACK with a return code other than 0 */
  | { ok: false; code: number }
  /** closed or failed before any CONNACK (e.g. the per-IP connect limit) */
  | { ok: false; closed: string };

const KEEPALIVE_SECONDS = 60;
/** PINGREQ: fixed header only, built once. */
const PINGREQ = Buffer.from([0xc0, 0x00]);

// MQTT 3.1.1 control packet types (high nibble of the first byte).
const CONNACK = 2;
const PUBLISH = 3;
const PUBACK = 4;
const SUBACK = 9;
/** PUBLISH, QoS 1, no DUP, no RETAIN: the fixed header's first byte of everything we send. */
const PUBLISH_QOS1 = 0x32;
const PUBACK_BYTE = 0x40;

/**
 * Where every client's reads land. Safe to share: a read's callback runs to its end (the
 * frames parsed, a split tail copied out) before the event loop does the next read, and no
 * view of it is kept after the callback. 64 KiB, as Node's own read buffer.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * PUBACK of each packet id, made on first use and never changed: a write may keep a buffer
 * queued until the kernel takes it, so only a buffer whose bytes never change can be shared
 * (here by every client of the process: the bytes depend on the id only).
 */
const PUBACKS: (Buffer | undefined)[] = new Array(0x10000);
function puback(id: number): Buffer {
  return (PUBACKS[id] ??= Buffer.from([PUBACK_BYTE, 2, id >> 8, id & 0xff]));
}

/** Bytes of the remaining-length field for a value (1 to 4). */
const varintBytes = (n: number) => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4);

/** `T`: what the caller attaches to a PUBLISH and gets back with its PUBACK (`onAck`), so that
 * no closure is made per message. */
export class BenchClient<T = unknown> {
  readonly socket: Socket;
  /**
   * Called for every incoming PUBLISH with its payload at `data[start, end)` (its PUBACK is
   * written once the whole read is handled). `data` is the shared read buffer: the bytes are
   * only valid during the call; copy what must outlive it.
   */
  onPublish: (data: Buffer, start: number, end: number) => void = () => {};
  /** Called with a PUBLISH's token on its PUBACK (never, if the connection goes first). */
  onAck: (token: T) => void = () => {};
  /** Called once when the socket is gone, for whatever reason. */
  onClose: (reason: string) => void = () => {};
  closed = false;
  closeReason = '';
  /** PUBLISH packets sent and not yet acknowledged. */
  inFlight = 0;

  private readonly acks = new Map<number, T>();
  private nextId = 0;
  /** Packet ids of the QoS 1 PUBLISHes of the read being parsed, acknowledged at its end. */
  private readonly toAck: number[] = [];
  /** The start of a frame that a read ended in the middle of (a copy), or null. */
  private rest: Buffer | null = null;
  /** The topic last published to and its bytes (a connection sends to one topic). */
  private topic = '';
  private topicBytes = Buffer.alloc(0);
  private connack: ((outcome: ConnectOutcome) => void) | null = null;
  private suback: { id: number; done: (granted: number[]) => void; fail: (err: Error) => void } | null = null;

  constructor(private readonly opts: ClientOptions) {
    this.socket = createConnection({
      host: opts.host,
      port: opts.port,
      localAddress: opts.localAddress,
      // true: keep reading (pausing is stopReading's business).
      onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => (this.onRead(buf as Buffer, n), true) },
    });
    // Without TCP_NODELAY small packets wait for delayed ACKs (about 40 ms each on Linux).
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => {
      this.closeReason ||= (err as NodeJS.ErrnoException).code ?? err.message;
    });
    this.socket.on('close', () => this.gone());
  }

  /** Sends CONNECT once the TCP connection is up; resolves on CONNACK, close or timeout. */
  connect(timeoutMs: number): Promise<ConnectOutcome> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.connack = null;
        this.socket.destroy();
        resolve({ ok: false, closed: 'no CONNACK in time' });
      }, timeoutMs);
      this.connack = (outcome) => {
        clearTimeout(timer);
        this.connack = null;
        resolve(outcome);
      };
      const send = () =>
        this.socket.write(generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clean: true,
          keepalive: KEEPALIVE_SECONDS,
          clientId: this.opts.clientId,
          ...(this.opts.username !== undefined ? { username: this.opts.username } : {}),
          ...(this.opts.password !== undefined ? { password: Buffer.from(this.opts.password) } : {}),
        }));
      if (this.socket.connecting) this.socket.once('connect', send);
      else send();
    });
  }

  /** One SUBSCRIBE with every topic at QoS 1; resolves with the granted codes. */
  subscribe(topics: readonly string[], timeoutMs: number): Promise<number[]> {
    return new Promise((resolve, reject) => {
      const id = this.packetId();
      const timer = setTimeout(() => fail(new Error('no SUBACK in time')), timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        this.suback = null;
        reject(err);
      };
      this.suback = {
        id,
        done: (granted) => {
          clearTimeout(timer);
          this.suback = null;
          resolve(granted);
        },
        fail,
      };
      this.socket.write(generate({ cmd: 'subscribe', messageId: id, subscriptions: topics.map((topic) => ({ topic, qos: 1 })) }));
    });
  }

  /** PUBLISH at QoS 1 (no DUP, no RETAIN); `token` goes to `onAck` on its PUBACK. */
  publish(topic: string, payload: Buffer, token: T): void {
    if (this.closed) return;
    if (topic !== this.topic) {
      this.topic = topic;
      this.topicBytes = Buffer.from(topic);
    }
    const id = this.packetId();
    this.acks.set(id, token);
    this.inFlight++;
    // Fixed header, remaining length, topic (length-prefixed), packet id, payload: one buffer,
    // one write.
    const t = this.topicBytes;
    const remaining = 2 + t.length + 2 + payload.length;
    const packet = Buffer.allocUnsafe(1 + varintBytes(remaining) + remaining);
    packet[0] = PUBLISH_QOS1;
    let p = 1;
    for (let n = remaining; ; ) {
      const byte = n & 0x7f;
      n >>>= 7;
      packet[p++] = n > 0 ? byte | 0x80 : byte;
      if (n === 0) break;
    }
    packet.writeUInt16BE(t.length, p);
    t.copy(packet, p + 2);
    p += 2 + t.length;
    packet.writeUInt16BE(id, p);
    payload.copy(packet, p + 2);
    this.socket.write(packet);
  }

  ping(): void {
    if (!this.closed && !this.socket.connecting) this.socket.write(PINGREQ);
  }

  /** Stops reading: the kernel buffers fill and the server's writes to this client back up. */
  stopReading(): void {
    this.socket.pause();
  }

  close(): void {
    this.socket.destroy();
  }

  /** Packet ids 1..65535, skipping ids still waiting for their PUBACK. */
  private packetId(): number {
    for (;;) {
      this.nextId = this.nextId === 0xffff ? 1 : this.nextId + 1;
      if (!this.acks.has(this.nextId)) return this.nextId;
    }
  }

  /** `n` bytes arrived in `buf` (the shared read buffer): every complete frame is handled now. */
  private onRead(buf: Buffer, n: number): void {
    let data = buf;
    let end = n;
    if (this.rest) {
      // Rare (a frame split between two reads): join the tail with the new bytes.
      data = Buffer.concat([this.rest, buf.subarray(0, n)]);
      end = data.length;
      this.rest = null;
    }
    const acks = this.toAck;
    let toAck = 0; // ids in acks[0, toAck) (resetting an array's length is a slow path)
    let pos = 0;
    while (pos < end) {
      // Fixed header: type and flags, then the remaining length (1 to 4 bytes of 7 bits).
      let len = 0;
      let mul = 1;
      let p = pos + 1;
      let complete = false;
      while (p < end) {
        const byte = data[p++]!;
        len += (byte & 0x7f) * mul;
        if ((byte & 0x80) === 0) {
          complete = true;
          break;
        }
        mul *= 128;
        if (mul > 128 ** 3) return this.fail('malformed remaining length');
      }
      if (!complete || p + len > end) break; // the frame goes on in the next read
      const first = data[pos]!;
      const type = first >> 4;
      if (type === PUBLISH) {
        if (len < 2) return this.fail('malformed PUBLISH');
        const qos = (first >> 1) & 3;
        let q = p + 2 + data.readUInt16BE(p); // past the topic
        let id = -1;
        if (qos > 0) {
          id = (data[q]! << 8) | data[q + 1]!;
          q += 2;
        }
        if (q > p + len) return this.fail('malformed PUBLISH');
        if (qos === 1) acks[toAck++] = id;
        this.onPublish(data, q, p + len);
      } else if (type === PUBACK) {
        if (len < 2) return this.fail('malformed PUBACK');
        this.acked((data[p]! << 8) | data[p + 1]!);
      } else if (type === CONNACK) {
        if (len < 2) return this.fail('malformed CONNACK');
        const code = data[p + 1]!;
        this.connack?.(code === 0 ? { ok: true } : { ok: false, code });
      } else if (type === SUBACK) {
        if (len < 2) return this.fail('malformed SUBACK');
        const id = (data[p]! << 8) | data[p + 1]!;
        if (this.suback && this.suback.id === id) this.suback.done([...data.subarray(p + 2, p + len)]);
      }
      // PINGRESP and anything else: nothing to do.
      pos = p + len;
      if (this.socket.destroyed) return; // a handler closed the connection
    }
    if (pos < end) this.rest = Buffer.from(data.subarray(pos, end));
    if (toAck > 0) this.sendAcks(acks, toAck);
  }

  /** PUBACK is four fixed bytes per packet id; the ids of one read leave in one write. */
  private sendAcks(ids: number[], count: number): void {
    if (this.socket.destroyed) return;
    if (count === 1) {
      this.socket.write(puback(ids[0]!));
      return;
    }
    const out = Buffer.allocUnsafe(4 * count);
    for (let i = 0; i < count; i++) {
      const id = ids[i]!;
      out[4 * i] = PUBACK_BYTE;
      out[4 * i + 1] = 2;
      out[4 * i + 2] = id >> 8;
      out[4 * i + 3] = id & 0xff;
    }
    this.socket.write(out);
  }

  private acked(id: number): void {
    if (!this.acks.has(id)) return;
    const token = this.acks.get(id)!;
    this.acks.delete(id);
    this.inFlight--;
    this.onAck(token);
  }

  /** A frame we cannot read: the stream is lost, as mqtt-packet's parser error did. */
  private fail(why: string): void {
    this.closeReason ||= why;
    this.socket.destroy(new Error(why));
  }

  private gone(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason ||= 'closed';
    this.connack?.({ ok: false, closed: this.closeReason });
    this.suback?.fail(new Error(`connection closed before SUBACK (${this.closeReason})`));
    this.acks.clear();
    this.inFlight = 0;
    this.onClose(this.closeReason);
  }
}
