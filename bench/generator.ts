/**
 * A load generator process: holds MQTT connections (the lean client), sends on schedules,
 * records deliveries. Driven by the bench parent over IPC (lib/procs.ts `serve`); never runs
 * in a server's process. Argument: its generator number, part of every clientMsgId it makes.
 *
 * Message ids are `<tag>.<generator>.<n>`: any generator receiving a delivery knows from the
 * tag which run it belongs to, and the text starts with the scheduled (or publish) time.
 */
import { Agent, request } from 'node:http';
import { Hist } from './lib/hist.js';
import { BenchClient } from './lib/mqtt-client.js';
import { serve } from './lib/procs.js';
import {
  type BeginArgs, type ConnectArgs, type ConnectResult, type ConnSpec, type EndResult, type FanoutArgs, type FanoutResult,
  type GeneratorCounters, type HttpArgs, type HttpResult, type Progress, type Sender, payload, readKnownShape, wallNow,
} from './lib/wire.js';

const GEN = Number(process.argv[2] ?? 0);
/** The app-client model: at most this many unacknowledged publishes per connection; more wait
 * in the connection's outbox. */
const MAX_IN_FLIGHT = 10;

interface Outgoing {
  load: Load;
  k: number;
  sched: number;
  sender: number;
  /** clientMsgId, set when it is published */
  id: string;
}

interface Conn {
  /** A load's publishes carry their Outgoing to the PUBACK; fan-out ones carry null. */
  client: BenchClient<Outgoing | null>;
  spec: ConnSpec;
  outbox: Outgoing[];
}

const conns: Conn[] = [];
const counters: GeneratorCounters = { open: 0, closed: 0, closeReasons: {}, deliveries: 0, late: 0, unparsable: 0 };

/** Receiving side of a tag: every generator records what its connections get. */
class Received {
  readonly hist = new Hist();
  readonly windows = new Map<number, Hist>();
  total = 0;
  /**
   * Deliveries per message. Our ids are `<tag>.<generator>.<n>`: `byGen[generator][n]`
   * (a Map keyed by each delivery's id string cost a visible share of a generator's time:
   * hashing, lookups in a large table, GC). Any other id is counted in `other`.
   */
  private readonly byGen: Uint32Array[] = [];
  private readonly other = new Map<string, number>();
  constructor(readonly tag: string, readonly start: number, readonly windowMs: number) {}

  add(id: string, sentAt: number, at: number) {
    const ms = at - sentAt;
    this.total++;
    this.hist.add(ms);
    this.count(id);
    if (this.windowMs > 0) {
      const w = Math.floor((sentAt - this.start) / this.windowMs);
      let h = this.windows.get(w);
      if (!h) this.windows.set(w, (h = new Hist()));
      h.add(ms);
    }
  }

  private count(id: string) {
    // `id` starts with `<tag>.` (that is how it got here); read `<generator>.<n>` after it,
    // canonical decimals only, so that counts() writes back the very same string.
    const gen = decimalAt(id, this.tag.length + 1);
    const dot = this.tag.length + 1 + String(gen).length;
    const n = gen < 0 || id.charCodeAt(dot) !== 0x2e ? -1 : decimalAt(id, dot + 1);
    if (n < 0 || dot + 1 + String(n).length !== id.length || gen > 0xffff || n > 0xffffff) {
      this.other.set(id, (this.other.get(id) ?? 0) + 1);
      return;
    }
    let list = this.byGen[gen];
    if (!list || n >= list.length) {
      const grown = new Uint32Array(Math.max(1024, 2 ** Math.ceil(Math.log2(n + 1))));
      if (list) grown.set(list);
      this.byGen[gen] = list = grown;
    }
    list[n]!++;
  }

  /** Deliveries per clientMsgId, as the parent merges them. */
  counts(): Map<string, number> {
    const counts = new Map(this.other);
    this.byGen.forEach((list, gen) => {
      for (let n = 0; n < list.length; n++) if (list[n]! > 0) counts.set(`${this.tag}.${gen}.${n}`, list[n]!);
    });
    return counts;
  }
}

/** The decimal number without sign or leading zeros at `s[i...]` (up to the next non-digit),
 * or -1 if there is none there. */
function decimalAt(s: string, i: number): number {
  let n = -1;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) break;
    if (n === 0) return -1; // a leading zero
    n = (n < 0 ? 0 : n * 10) + (c - 0x30);
  }
  return n;
}

/** Sending side of a tag: an open-loop schedule over a list of senders. */
class Load {
  readonly total: number;
  readonly end: number;
  private readonly order: number[];
  k = 0;
  finished = false;
  offered = 0;
  unsent = 0;
  sent = 0;
  acked = 0;
  expected = 0;
  readonly rejected = new Map<string, string>(); // clientMsgId -> reason
  readonly ackedIds: string[] = [];
  readonly ackedSender: number[] = [];
  readonly ackedExpected: number[] = [];
  readonly expectedByWindow = new Map<number, number>();

  constructor(
    readonly tag: string,
    readonly start: number,
    readonly rate: number,
    durationMs: number,
    readonly senders: Sender[],
    readonly shuffle: boolean,
    readonly windowMs: number,
  ) {
    this.total = Math.floor((durationMs * rate) / 1000);
    this.end = start + durationMs;
    this.order = senders.map((_, i) => i);
  }

  /** Sender of message k: a round over all senders, reshuffled per round when asked. */
  senderOf(k: number): number {
    const i = k % this.order.length;
    if (i === 0 && this.shuffle) shuffleInPlace(this.order);
    return this.order[i]!;
  }
}

const received = new Map<string, Received>();
const loads = new Map<string, Load>();
let ticker: NodeJS.Timeout | null = null;

function shuffleInPlace(a: number[]) {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
}

// ---- receiving ---------------------------------------------------------------------------

/** Set while a fan-out run is going: its deliveries and rejections go to it. */
let fanoutRun: { tag: string; delivered(id: string, at: number): void; rejected(id: string): void } | null = null;
/** Fan-out runs so far: each run's tag is new, so its clientMsgIds are too (the chat server
 * would take a repeated one for a retry and not deliver it again). */
let fanoutRuns = 0;

/**
 * A delivery: its payload is at `data[start, end)` (the client's shared read buffer, valid
 * during this call only). The two shapes that make up the load are read straight from the
 * bytes (wire.ts `readKnownShape`); anything else (a refusal, a system envelope, a payload
 * not exactly as expected) goes through JSON.parse, which decides as it always did.
 */
function onPublish(data: Buffer, start: number, end: number) {
  const at = wallNow();
  counters.deliveries++;
  const known = readKnownShape(data, start, end);
  if (known) delivered(known.id, known.sentAt, at);
  else readJson(data.toString('utf8', start, end), at);
}

/** Any other payload, read as it always was. */
function readJson(json: string, at: number) {
  let msg: { text?: unknown; clientMsgId?: unknown; type?: unknown; reason?: unknown };
  try {
    msg = JSON.parse(json) as typeof msg;
  } catch {
    counters.unparsable++;
    return;
  }
  const id = msg.clientMsgId;
  if (typeof id !== 'string') return; // presence, system envelopes: not ours
  if (msg.type === 'message.rejected') {
    // The chat server PUBACKs a refused send and says why in the sender's inbox.
    const tag = id.slice(0, id.indexOf('.'));
    if (tag === fanoutRun?.tag) fanoutRun.rejected(id);
    else loads.get(tag)?.rejected.set(id, String(msg.reason));
    return;
  }
  if (typeof msg.text !== 'string') return;
  delivered(id, parseFloat(msg.text), at);
}

/** A delivery of message `id`, scheduled (or published) at `sentAt`, received at `at`. */
function delivered(id: string, sentAt: number, at: number) {
  const tag = id.slice(0, id.indexOf('.'));
  if (tag === fanoutRun?.tag) {
    fanoutRun.delivered(id, at);
    return;
  }
  const rec = received.get(tag);
  if (!rec) {
    counters.late++;
    return;
  }
  rec.add(id, sentAt, at);
}

// ---- sending -----------------------------------------------------------------------------

function trySend(conn: Conn) {
  while (conn.outbox.length > 0 && conn.client.inFlight < MAX_IN_FLIGHT && !conn.client.closed) {
    const o = conn.outbox.shift()!;
    const load = o.load;
    o.id = `${load.tag}.${GEN}.${o.k}`;
    load.sent++;
    // `o` comes back with the PUBACK (onAcked): no closure per message.
    conn.client.publish(load.senders[o.sender]!.topic, payload(o.sched, o.id), o);
  }
}

/** A PUBACK of a load's message: acked (and expected at its recipients unless refused); the
 * connection's outbox may move on. Fan-out publishes carry no token: that loop counts
 * deliveries, not PUBACKs. */
function onAcked(conn: Conn, o: Outgoing | null) {
  if (!o) return;
  const load = o.load;
  load.acked++;
  if (!load.rejected.has(o.id)) {
    const recipients = load.senders[o.sender]!.recipients;
    load.ackedIds.push(o.id);
    load.ackedSender.push(o.sender);
    load.ackedExpected.push(recipients);
    load.expected += recipients;
  }
  trySend(conn);
}

function tick() {
  const t = wallNow();
  for (const load of loads.values()) {
    if (load.finished) continue;
    const due = Math.min(load.total, Math.floor(((t - load.start) * load.rate) / 1000) + 1);
    for (; load.k < due; load.k++) {
      // Rounded as the payload writes it, so that the sender and every receiver put a message
      // in the same window, also on a window's edge.
      const sched = Number((load.start + (load.k * 1000) / load.rate).toFixed(3));
      const s = load.senderOf(load.k);
      const sender = load.senders[s]!;
      load.offered++;
      if (load.windowMs > 0) {
        const w = Math.floor((sched - load.start) / load.windowMs);
        load.expectedByWindow.set(w, (load.expectedByWindow.get(w) ?? 0) + sender.recipients);
      }
      const conn = conns[sender.conn]!;
      conn.outbox.push({ load, k: load.k, sched, sender: s, id: '' });
      trySend(conn);
    }
    if (t >= load.end) finish(load);
  }
  let running = false;
  for (const load of loads.values()) running ||= !load.finished;
  if (!running) stopTicker();
}

/** End of a schedule: what still waits in an outbox is dropped (reported as unsent). */
function finish(load: Load) {
  load.finished = true;
  for (const s of new Set(load.senders.map((x) => x.conn))) {
    const conn = conns[s]!;
    const keep = conn.outbox.filter((o) => o.load !== load);
    load.unsent += conn.outbox.length - keep.length;
    conn.outbox = keep;
  }
}

function stopTicker() {
  if (ticker) clearInterval(ticker);
  ticker = null;
}

// ---- fan-out loop ------------------------------------------------------------------------

/** Members take turns; `inFlight` messages outstanding; a message is done when every member
 * has it. Runs here so that the measuring loop is as close to the clients as can be. */
function fanout(a: FanoutArgs): Promise<FanoutResult> {
  const members = a.conns.map((i) => conns[i]!.client);
  const n = members.length;
  const pending = new Map<string, { t0: number; left: number; i: number }>();
  const lastSend = new Array<number>(n).fill(0);
  const latencies: number[] = [];
  const limit = a.warmup + a.maxMessages;
  const tag = `f${++fanoutRuns}`;
  let next = 0;
  let measuredFrom = 0;
  let measuredTo = 0;
  let measured = 0;
  let paced = 0;
  let rejected = 0;
  let timedOut = 0;
  let stopSending = false;
  return new Promise((resolve) => {
    const done = () => {
      fanoutRun = null;
      clearTimeout(stopTimer);
      clearTimeout(drainTimer);
      clearInterval(reaper);
      latencies.sort((x, y) => x - y);
      const seconds = (measuredTo - measuredFrom) / 1000;
      resolve({
        messages: measured,
        seconds,
        deliveriesPerSec: seconds > 0 ? (measured * n) / seconds : 0,
        latencies,
        incomplete: pending.size,
        timedOut,
        rejected,
        paced,
      });
    };
    let drainTimer: NodeJS.Timeout | undefined;
    const stop = () => {
      if (stopSending) return;
      stopSending = true;
      if (pending.size === 0) done();
      else drainTimer = setTimeout(done, 10_000);
    };
    const stopTimer = setTimeout(stop, a.maxMs);
    const send = () => {
      if (stopSending) return;
      if (next >= limit) return stop();
      const i = next++;
      const m = i % n;
      // Keep each member under the chat server's per-user send rate (10/s): wait for its turn.
      const wait = lastSend[m]! + a.paceMs - performance.now();
      if (wait > 0) {
        paced++;
        next--;
        setTimeout(send, wait);
        return;
      }
      lastSend[m] = performance.now();
      const t0 = wallNow();
      if (i === a.warmup) measuredFrom = t0;
      const id = `${tag}.${GEN}.${i}`;
      pending.set(id, { t0, left: n, i });
      members[m]!.publish(a.topic, payload(t0, id), null);
    };
    /** A message leaves the window (complete, rejected or given up): the next one goes. */
    const settled = () => {
      if (stopSending) {
        if (pending.size === 0) done();
      } else send();
    };
    fanoutRun = {
      tag,
      delivered(id, at) {
        const p = pending.get(id);
        if (!p || --p.left > 0) return;
        pending.delete(id);
        if (p.i >= a.warmup) {
          latencies.push(at - p.t0);
          measured++;
          measuredTo = at;
        }
        settled();
      },
      rejected(id) {
        if (!pending.delete(id)) return;
        rejected++;
        settled();
      },
    };
    // A message some member never gets would hold its slot for ever: give up on it after 5 s.
    const reaper = setInterval(() => {
      const old = wallNow() - 5000;
      for (const [id, p] of pending) {
        if (p.t0 < old) {
          pending.delete(id);
          timedOut++;
          settled();
        }
      }
    }, 1000);
    for (let j = 0; j < a.inFlight; j++) send();
  });
}

// ---- HTTP (history) ----------------------------------------------------------------------

async function http(a: HttpArgs): Promise<HttpResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: a.concurrency });
  const url = new URL(a.base);
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let next = 0;
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const path = a.paths[Math.floor(Math.random() * a.paths.length)]!;
      const body = a.bodies ? JSON.stringify(a.bodies[i % a.bodies.length]) : undefined;
      const t0 = performance.now();
      const req = request(
        {
          agent, host: url.hostname, port: url.port, path, method: a.method,
          headers: { authorization: `Bearer ${a.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            latencies.push(performance.now() - t0);
            statuses[String(res.statusCode)] = (statuses[String(res.statusCode)] ?? 0) + 1;
            resolve();
          });
        },
      );
      // A server that stops answering must not stall the bench: give up on the request.
      req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
      req.on('error', (err) => {
        statuses[err.message] = (statuses[err.message] ?? 0) + 1;
        resolve();
      });
      req.end(body);
    });
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: a.concurrency }, async () => {
      while (next < a.requests) await one(next++);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  latencies.sort((x, y) => x - y);
  return { latencies, statuses, seconds };
}

// ---- the IPC surface ---------------------------------------------------------------------

function bump(record: Record<string, number>, key: string) {
  record[key] = (record[key] ?? 0) + 1;
}

function openClient(host: string, port: number, spec: ConnSpec): Conn {
  const client = new BenchClient<Outgoing | null>({ host, port, localAddress: spec.localAddress, clientId: spec.clientId, username: spec.username, password: spec.password });
  const conn: Conn = { client, spec, outbox: [] };
  client.onPublish = onPublish;
  client.onAck = (o) => onAcked(conn, o);
  return conn;
}

async function connect(a: ConnectArgs): Promise<ConnectResult> {
  const base = conns.length;
  const result: ConnectResult = { base, ok: 0, failed: {}, notAttempted: 0, firstAt: 0, lastAt: 0 };
  let next = 0;
  const one = async (i: number) => {
    const spec = a.specs[i]!;
    if (result.firstAt === 0) result.firstAt = wallNow();
    const conn = openClient(a.host, a.port, spec);
    const client = conn.client;
    conns[base + i] = conn;
    const outcome = await client.connect(a.timeoutMs);
    if (!outcome.ok) {
      bump(result.failed, 'code' in outcome ? `CONNACK ${outcome.code}` : `closed before CONNACK: ${outcome.closed}`);
      client.close();
      return;
    }
    const connackAt = wallNow();
    if (spec.subscribe.length > 0) {
      try {
        const granted = await client.subscribe(spec.subscribe, a.timeoutMs);
        if (granted.some((g) => g === 0x80)) {
          bump(result.failed, 'SUBACK refused a topic');
          client.close();
          return;
        }
      } catch (err) {
        bump(result.failed, (err as Error).message);
        client.close();
        return;
      }
    }
    counters.open++;
    client.onClose = (reason) => {
      counters.open--;
      counters.closed++;
      bump(counters.closeReasons, reason);
    };
    result.ok++;
    result.lastAt = Math.max(result.lastAt, connackAt);
  };
  await Promise.all(
    Array.from({ length: Math.min(a.concurrency, a.specs.length) }, async () => {
      while (next < a.specs.length) {
        if (a.deadline !== undefined && wallNow() > a.deadline) return;
        await one(next++);
      }
    }),
  );
  result.notAttempted = a.specs.length - next;
  return result;
}

setInterval(() => {
  // Keepalive is 60 s; the server closes a connection silent for 1.5 times that.
  for (const c of conns) c?.client.ping();
}, 30_000).unref();

serve({
  connect,

  /** Opens the tag for recording here and, with `load`, starts sending on its schedule. */
  begin(a: BeginArgs) {
    received.set(a.tag, new Received(a.tag, a.start, a.windowMs));
    if (a.load) {
      const l = a.load;
      loads.set(a.tag, new Load(a.tag, a.start, l.rate, l.durationMs, l.senders, l.shuffle, a.windowMs));
      ticker ??= setInterval(tick, 1);
    }
  },

  /** Ends the schedule now (outboxes dropped) if it still runs. */
  stopLoad({ tag }: { tag: string }) {
    const load = loads.get(tag);
    if (load && !load.finished) finish(load);
  },

  progress({ tag }: { tag: string }): Progress {
    const load = loads.get(tag);
    return {
      finished: load?.finished ?? true,
      offered: load?.offered ?? 0,
      sent: load?.sent ?? 0,
      acked: load?.acked ?? 0,
      expected: load?.expected ?? 0,
      received: received.get(tag)?.total ?? 0,
    };
  },

  /** What the tag did so far, without closing it (windows for the overload probe). */
  peek({ tag }: { tag: string }): EndResult {
    return report(tag);
  },

  /** Closes the tag: deliveries arriving later count as late, not as delivered. */
  end({ tag }: { tag: string }): EndResult {
    const load = loads.get(tag);
    if (load && !load.finished) finish(load);
    const r = report(tag);
    received.delete(tag);
    loads.delete(tag);
    return r;
  },

  fanout,
  http,
  counters: (): GeneratorCounters => counters,

  /** Stops reading one connection; returns its local end, to find it in /proc/net/tcp. */
  stopReading({ conn }: { conn: number }) {
    const c = conns[conn]!.client;
    c.stopReading();
    return { address: c.socket.localAddress, port: c.socket.localPort };
  },

  isClosed: ({ conn }: { conn: number }) => conns[conn]!.client.closed,

  /** A fresh connection, CONNACK awaited and closed again: is the server answering? */
  async probe({ host, port, spec, timeoutMs }: { host: string; port: number; spec: ConnSpec; timeoutMs: number }) {
    const client = new BenchClient({ host, port, localAddress: spec.localAddress, clientId: spec.clientId, username: spec.username, password: spec.password });
    const t0 = performance.now();
    const outcome = await client.connect(timeoutMs);
    client.close();
    return { ok: outcome.ok, ms: performance.now() - t0, outcome };
  },

  async closeAll() {
    stopTicker();
    const closing = conns.filter((c) => c && !c.client.closed).map((c) => new Promise<void>((r) => {
      c.client.socket.once('close', () => r());
      c.client.close();
    }));
    await Promise.all(closing);
    conns.length = 0;
  },
});

function report(tag: string): EndResult {
  const load = loads.get(tag);
  const rec = received.get(tag);
  const rejected: Record<string, number> = {};
  if (load) for (const reason of load.rejected.values()) bump(rejected, reason);
  // A rejection may arrive after its PUBACK: such a message is not expected anywhere either.
  const keep = load ? load.ackedIds.map((id) => !load.rejected.has(id)) : [];
  const kept = <T>(list: T[]) => list.filter((_, i) => keep[i]);
  return {
    ...(load
      ? {
          send: {
            offered: load.offered, unsent: load.unsent, sent: load.sent, acked: load.acked, rejected,
            ackedIds: kept(load.ackedIds), ackedSender: kept(load.ackedSender), ackedExpected: kept(load.ackedExpected),
            expectedByWindow: load.expectedByWindow,
          },
        }
      : {}),
    recv: {
      hist: rec ? rec.hist.data() : new Hist().data(),
      counts: rec?.counts() ?? new Map(),
      windows: new Map([...(rec?.windows ?? new Map<number, Hist>())].map(([w, h]) => [w, h.data()])),
    },
  };
}
