/**
 * What the bench parent and its generator processes exchange (IPC), and the message format
 * both sides agree on: shared types, the payload and its reading.
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

/** Ids that JSON writes as they are (no escapes): ours, `<tag>.<generator>.<n>`. */
const PLAIN_ID = /^[A-Za-z0-9._-]*$/;

/** The payload every scenario sends: the timestamp starts the text, so whatever JSON comes
 * back (the chat server's envelope or the baselines' payload as sent) carries it. */
export function payload(sentAt: number, clientMsgId: string): Buffer {
  const stamp = sentAt.toFixed(3);
  const text = `${stamp} ${FILLER.slice(0, TEXT_CHARS - stamp.length - 1)}`;
  // The same bytes as JSON.stringify({ text, clientMsgId }) at less than half its cost: the
  // stamp, the filler and a plain id need no escaping, and all of it is ASCII.
  if (PLAIN_ID.test(clientMsgId)) return Buffer.from(`{"text":"${text}","clientMsgId":"${clientMsgId}"}`, 'latin1');
  return Buffer.from(JSON.stringify({ text, clientMsgId }));
}

/** The baselines deliver our payload as sent: `{"text":"<stamp> …","clientMsgId":"<id>"}`. */
const AS_SENT = Buffer.from('{"text":"');
const ID_AFTER_TEXT = Buffer.from('","clientMsgId":"');
/** The chat server's message envelope (JSON.stringify of a MessageEnvelope: flat, each key
 * once, type first). Its other types (message.rejected, system) do not start like this. */
const ENVELOPE = Buffer.from('{"type":"message",');
const TEXT_KEY = Buffer.from('"text":"');
const ID_KEY = Buffer.from('"clientMsgId":"');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The clientMsgId and the time its text starts with, from a delivery of either shape above
 * at `d[start, end)`, without JSON.parse (per-delivery cost in the generators is CPU taken
 * from the server). The same values JSON.parse and parseFloat give; null as soon as anything
 * differs from what the servers send for our messages, so that JSON.parse reads it instead.
 *
 * Why a byte search is enough: in JSON text a `"` inside a string is always escaped, so
 * `"text":"` and `"clientMsgId":"` outside our own (escape-free) values can only be those keys;
 * the ids (`<tag>.<gen>.<n>`) and the stamp have no escapes, and any backslash next to what we
 * read sends the payload to JSON.parse.
 */
export function readKnownShape(d: Buffer, start: number, end: number): { id: string; sentAt: number } | null {
  let textAt: number;
  let idAt: number;
  const asSent = startsWith(d, start, end, AS_SENT);
  if (asSent) {
    textAt = start + AS_SENT.length;
    const close = d.indexOf(QUOTE, textAt);
    if (close < 0 || close >= end || d[close - 1] === BACKSLASH || !startsWith(d, close, end, ID_AFTER_TEXT)) return null;
    idAt = close + ID_AFTER_TEXT.length;
  } else if (startsWith(d, start, end, ENVELOPE)) {
    const t = find(d, TEXT_KEY, start, end);
    const i = find(d, ID_KEY, start, end);
    if (t < 0 || i < 0) return null; // clientMsgId null (not a bench message) or no text
    textAt = t + TEXT_KEY.length;
    idAt = i + ID_KEY.length;
  } else {
    return null;
  }
  const idEnd = d.indexOf(QUOTE, idAt);
  if (idEnd < 0 || idEnd >= end) return null;
  for (let j = idAt; j < idEnd; j++) if (d[j] === BACKSLASH) return null;
  // As sent, the id closes the object: nothing else may follow (the payload would be another
  // one then, for JSON.parse to read).
  if (asSent && !(idEnd + 2 === end && d[idEnd + 1] === 0x7d)) return null;
  const sentAt = stampAt(d, textAt, end);
  if (Number.isNaN(sentAt)) return null;
  return { id: d.toString('latin1', idAt, idEnd), sentAt };
}

function startsWith(d: Buffer, at: number, end: number, prefix: Buffer): boolean {
  if (end - at < prefix.length) return false;
  for (let j = 0; j < prefix.length; j++) if (d[at + j] !== prefix[j]) return false;
  return true;
}

/** First `needle` within `d[start, end)`, or -1. (indexOf searches to the buffer's end: a
 * match past `end` is another frame's.) */
function find(d: Buffer, needle: Buffer, start: number, end: number): number {
  const i = d.indexOf(needle, start);
  return i >= 0 && i + needle.length <= end ? i : -1;
}

/**
 * The number a text starts with, as parseFloat would read it, for the form the payload writes
 * (`<digits>.<digits>` then a space or the end of the text); NaN for anything else. Exact: the
 * digits make an integer below 2^53 (16 digits for a stamp in ms with 3 decimals) and one
 * division by a power of ten is rounded once, as parseFloat rounds the decimal.
 */
function stampAt(d: Buffer, p: number, end: number): number {
  let n = 0;
  let digits = 0;
  let scale = 1;
  let dot = false;
  for (; p < end; p++) {
    const c = d[p]!;
    if (c >= 0x30 && c <= 0x39) {
      n = n * 10 + (c - 0x30);
      digits++;
      if (dot) scale *= 10;
    } else if (c === 0x2e && !dot) {
      dot = true;
    } else {
      break;
    }
  }
  if (digits === 0 || n > Number.MAX_SAFE_INTEGER || p >= end || (d[p] !== 0x20 && d[p] !== QUOTE)) return NaN;
  return n / scale;
}
