import { createConnection, type Socket } from 'node:net';
import { generate, parser as createParser, type Packet } from 'mqtt-packet';

/**
 * A lean MQTT 3.1.1 client for the load generator. mqtt.js keeps stores, timers and streams
 * per connection, which is too heavy for thousands of connections in one process; this one is
 * a socket, an mqtt-packet parser and a map of unacknowledged packet ids.
 *
 * What it does: CONNECT (clean session, keepalive 60), SUBSCRIBE at QoS 1, PUBLISH at QoS 1
 * with the PUBACK matched by packet id, a PUBACK for every incoming QoS 1 PUBLISH, PINGREQ
 * when asked (the generator pings all its clients from one timer). No reconnect, no QoS 2,
 * no retries: a benchmark counts what the server does with each packet exactly once.
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

export class BenchClient {
  readonly socket: Socket;
  /** Called for every incoming PUBLISH (after its PUBACK is queued). */
  onPublish: (topic: string, payload: Buffer) => void = () => {};
  /** Called once when the socket is gone, for whatever reason. */
  onClose: (reason: string) => void = () => {};
  closed = false;
  closeReason = '';
  /** PUBLISH packets sent and not yet acknowledged. */
  inFlight = 0;

  private readonly parser = createParser();
  private readonly acks = new Map<number, () => void>();
  private nextId = 0;
  private connack: ((outcome: ConnectOutcome) => void) | null = null;
  private suback: { id: number; done: (granted: number[]) => void; fail: (err: Error) => void } | null = null;

  constructor(private readonly opts: ClientOptions) {
    this.socket = createConnection({ host: opts.host, port: opts.port, localAddress: opts.localAddress });
    // Without TCP_NODELAY small packets wait for delayed ACKs (about 40 ms each on Linux).
    this.socket.setNoDelay(true);
    this.parser.on('packet', (p: Packet) => this.onPacket(p));
    this.parser.on('error', (err: Error) => this.socket.destroy(err));
    // Corked while a received chunk is parsed: the PUBACKs it causes leave in one write.
    this.socket.on('data', (chunk: Buffer) => {
      this.socket.cork();
      this.parser.parse(chunk);
      this.socket.uncork();
    });
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

  /** PUBLISH at QoS 1; `onAck` runs on its PUBACK (never, if the connection goes first). */
  publish(topic: string, payload: Buffer, onAck: () => void): void {
    if (this.closed) return;
    const id = this.packetId();
    this.acks.set(id, onAck);
    this.inFlight++;
    this.socket.write(generate({ cmd: 'publish', topic, payload, qos: 1, messageId: id, dup: false, retain: false }));
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

  private onPacket(p: Packet): void {
    switch (p.cmd) {
      case 'publish': {
        if (p.qos === 1 && p.messageId !== undefined) {
          // PUBACK is four fixed bytes: no need for the generic encoder.
          this.socket.write(Buffer.from([0x40, 0x02, p.messageId >> 8, p.messageId & 0xff]));
        }
        this.onPublish(p.topic, typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload);
        break;
      }
      case 'puback': {
        const done = p.messageId === undefined ? undefined : this.acks.get(p.messageId);
        if (done) {
          this.acks.delete(p.messageId!);
          this.inFlight--;
          done();
        }
        break;
      }
      case 'connack':
        this.connack?.(p.returnCode === 0 ? { ok: true } : { ok: false, code: p.returnCode ?? -1 });
        break;
      case 'suback':
        if (this.suback && this.suback.id === p.messageId) this.suback.done(p.granted as number[]);
        break;
      default:
        break; // pingresp and anything else: nothing to do
    }
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
