/**
 * What the bench parent and its generator processes exchange (IPC), and the message format
 * both sides agree on. Shared types only.
 */
import type { HistData } from './hist.js';

/** Wall-clock milliseconds with sub-millisecond precision, comparable between processes on
 * one machine (each process's timeOrigin is read from the same system clock). */
export const wallNow = (): number => performance.timeOrigin + performance.now();

/** One connection to open: the same CONNECT for every server (the baselines ignore the
 * credentials). */
export interface ConnSpec {
  clientId: string;
  username?: string;
  password?: string;
  localAddress: string;
  /** Topics to SUBSCRIBE at QoS 1 right after CONNACK (none: stay idle). */
  subscribe: string[];
}

export interface ConnectArgs {
  host: string;
  port: number;
  specs: ConnSpec[];
  /** Connections being set up at once (CONNECT sent, CONNACK/SUBACK awaited). */
  concurrency: number;
  timeoutMs: number;
  /** Wall-clock time after which no new connection is started (bounds the run). */
  deadline?: number;
}

export interface ConnectResult {
  /** Index of the first of these connections in the generator (they are numbered in order). */
  base: number;
  ok: number;
  /** Why the others failed: `connack N`, `suback refused`, or how the socket ended. */
  failed: Record<string, number>;
  notAttempted: number;
  /** Wall clock: first TCP connect started, last CONNACK of a successful connection. */
  firstAt: number;
  lastAt: number;
}

/** A sender in a load: a connection and the one chat it sends to. */
export interface Sender {
  conn: number;
  topic: string;
  /** Deliveries one message to this chat should cause (subscribed members, sender included). */
  recipients: number;
}

export interface BeginArgs {
  tag: string;
  /** Wall-clock start of the tag's schedule; windows are counted from it. */
  start: number;
  /** Latencies are also kept per window of this many ms of scheduled time (0: not). */
  windowMs: number;
  /** Present on the generators that send for this tag. */
  load?: {
    senders: Sender[];
    /** Messages per second from this generator. */
    rate: number;
    durationMs: number;
    /** true: each round of senders in a new random order (mix); false: fixed round robin,
     * so each sender sends every senders/rate seconds exactly (slow). */
    shuffle: boolean;
  };
}

export interface Progress {
  finished: boolean;
  offered: number;
  sent: number;
  acked: number;
  /** Deliveries that acked, not rejected messages should cause (as seen by the sender). */
  expected: number;
  received: number;
}

export interface SendReport {
  offered: number;
  /** Dropped from outboxes at the end of the schedule. */
  unsent: number;
  sent: number;
  acked: number;
  rejected: Record<string, number>;
  /** Acked messages: clientMsgId, index of the sender in the load's list, expected deliveries.
   * Rejected ones are left out. */
  ackedIds: string[];
  ackedSender: number[];
  ackedExpected: number[];
  /** Deliveries expected per window, from every offered message (acked or not). */
  expectedByWindow: Map<number, number>;
}

export interface RecvReport {
  hist: HistData;
  counts: Map<string, number>;
  windows: Map<number, HistData>;
}

export interface EndResult {
  send?: SendReport;
  recv: RecvReport;
}

export interface FanoutArgs {
  conns: number[];
  topic: string;
  inFlight: number;
  warmup: number;
  maxMessages: number;
  maxMs: number;
  /** Least time between two sends of one member (the chat server's per-user send rate). */
  paceMs: number;
}

export interface FanoutResult {
  messages: number;
  seconds: number;
  deliveriesPerSec: number;
  /** Per measured message, publish to the last of its deliveries (ms), sorted. */
  latencies: number[];
  /** Messages not complete 10 s after the last send. */
  incomplete: number;
  /** Messages given up 5 s after their publish (a delivery never came). */
  timedOut: number;
  /** Sends the chat server refused (message.rejected in the sender's inbox). */
  rejected: number;
  /** Sends delayed to keep a member under the per-user send rate. */
  paced: number;
}

export interface GeneratorCounters {
  open: number;
  closed: number;
  closeReasons: Record<string, number>;
  deliveries: number;
  /** Deliveries of a tag already ended (arrived after its deadline). */
  late: number;
  unparsable: number;
}

export interface HttpArgs {
  base: string;
  token: string;
  /** Each request: one of these paths picked at random. */
  paths: string[];
  method: 'GET' | 'POST';
  /** JSON bodies for POST, one picked per request in turn. */
  bodies?: unknown[];
  requests: number;
  concurrency: number;
}

export interface HttpResult {
  latencies: number[];
  statuses: Record<string, number>;
  seconds: number;
}

/** Characters of text per message: with the JSON around it, a payload of about 256 bytes. */
export const TEXT_CHARS = 212;
const FILLER = 'The quick brown fox jumps over the lazy dog while the benchmark counts every delivery; '.repeat(4);

/** The payload every scenario sends: the timestamp starts the text, so whatever JSON comes
 * back (the chat server's envelope or the baselines' payload as sent) carries it. */
export function payload(sentAt: number, clientMsgId: string): Buffer {
  const stamp = sentAt.toFixed(3);
  const text = `${stamp} ${FILLER.slice(0, TEXT_CHARS - stamp.length - 1)}`;
  return Buffer.from(JSON.stringify({ text, clientMsgId }));
}
