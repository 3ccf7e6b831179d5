import { join } from 'node:path';
import { Hist } from './hist.js';
import { Worker } from './procs.js';
import type { Seed } from './seed.js';
import { DIST, type Server, type ServerKind, cpuSeconds } from './servers.js';
import type { BeginArgs, ConnectArgs, ConnectResult, ConnSpec, EndResult, GeneratorCounters, Progress, Sender } from './wire.js';
import { wallNow } from './wire.js';

export interface Options {
  quick: boolean;
  servers: ServerKind[];
  /** mix: rate steps (msg/s), and seconds per step */
  steps?: number[];
  stepSeconds?: number;
  /** fanout: rounds of all servers in turn (default 3, 1 with --quick) */
  rounds?: number;
}

/** What every scenario gets from the runner. */
export interface Context {
  opts: Options;
  seed: Seed;
  /** Servers to run, in order; the ones that cannot run are listed with the reason. */
  servers: ServerKind[];
  unavailable: Map<ServerKind, string>;
  start(kind: ServerKind, extra?: { templateDb?: string }): Promise<Server>;
  /** Grace time the chat server is run with before it closes a connection stuck past its
   * outgoing-queue bound (OUTGOING_QUEUE_GRACE_MS, default 5000). */
  graceMs: number;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Progress lines go to stderr; the figures to stdout (paste-able as they are). */
export const progress = (line: string) => process.stderr.write(`  · ${line}\n`);
export const out = (line = '') => process.stdout.write(`${line}\n`);

let generatorCount = 0;
/** Extra Node options for the generators only, for profiling them, e.g.
 * `BENCH_GEN_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof'` or `--perf-basic-prof-only-functions`
 * (space-separated; none by default). */
const GEN_NODE_ARGS = process.env.BENCH_GEN_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
/** Forks `n` generator processes (dist/bench/generator.js), numbered for unique message ids. */
export function generators(n: number): Worker[] {
  return Array.from({ length: n }, () => {
    const i = generatorCount++;
    const execArgv = GEN_NODE_ARGS.length ? [...process.execArgv, ...GEN_NODE_ARGS] : undefined;
    return new Worker(join(DIST, 'bench', 'generator.js'), [String(i)], `generator ${i}`, undefined, execArgv);
  });
}

export async function stopAll(workers: Worker[]): Promise<void> {
  await Promise.all(workers.map(async (w) => {
    await w.call('closeAll').catch(() => {});
    await w.stop();
  }));
}

/**
 * The i-th client source address. Loopback is all of 127.0.0.0/8 on Linux; spreading the
 * clients over 4,000 addresses keeps each under the chat server's per-IP connect limit (a
 * burst of 200, then 50/s), as real clients behind different addresses would be.
 */
export function sourceAddress(i: number): string {
  const k = i % 4000;
  return `127.10.${Math.floor(k / 250)}.${1 + (k % 250)}`;
}

/** CONNECT of a seeded user: username, login token, client id `<userId>` or `<userId>/<device>`. */
export function userSpec(seed: Seed, user: number, address: number, subscribe: string[], device?: string): ConnSpec {
  const u = seed.users[user]!;
  return {
    clientId: device ? `${u.id}/${device}` : u.id,
    username: u.username,
    password: u.token,
    localAddress: sourceAddress(address),
    subscribe,
  };
}

export const messagesTopic = (chatId: string) => `chats/${chatId}/messages`;
export const inboxTopic = (seed: Seed, user: number) => `users/${seed.users[user]!.id}/inbox`;

export async function connectAll(gen: Worker, server: Server, specs: ConnSpec[], concurrency = 100, deadline?: number): Promise<ConnectResult> {
  const args: ConnectArgs = { host: '127.0.0.1', port: server.mqttPort, specs, concurrency, timeoutMs: 10_000, ...(deadline ? { deadline } : {}) };
  return gen.call<ConnectResult>('connect', args);
}

/** Throws when any connection failed: a scenario needs all of its clients. */
export function requireAll(results: ConnectResult[], expected: number, what: string): void {
  const ok = results.reduce((n, r) => n + r.ok, 0);
  if (ok === expected) return;
  const why = new Map<string, number>();
  for (const r of results) for (const [k, v] of Object.entries(r.failed)) why.set(k, (why.get(k) ?? 0) + v);
  throw new ConnectFailure(`${what}: ${ok} of ${expected} connected (${[...why].map(([k, v]) => `${v}× ${k}`).join(', ') || 'not attempted'})`);
}

/** Not a harness error: the server under test refused or dropped connections. */
export class ConnectFailure extends Error {
  override name = 'ConnectFailure';
}

/** Harness errors seen (the bench then exits non-zero); a server's failures are figures. */
export const harness = { errors: 0 };

/**
 * An error while a scenario ran against `server`: when the server died or refused clients it
 * is a result, reported as such; anything else is the harness's own failure, counted and
 * shown in full. Returns the text to report.
 */
export function failure(err: unknown, server: Server): string {
  const text = err instanceof Error ? err.message : String(err);
  if (err instanceof ConnectFailure || server.exited()) return text;
  harness.errors++;
  process.stderr.write(`harness error (${server.kind}): ${err instanceof Error ? err.stack : text}\n`);
  return `harness error: ${text}`;
}

/** Senders of a tag on one generator, with who they are (for the history check). */
export interface GenPlan {
  gen: Worker;
  senders: Sender[];
  /** Per sender: the user id and chat id (the chat server's history key with clientMsgId). */
  meta: { userId: string; chatId: string }[];
  rate: number;
}

export interface TagResult {
  offered: number;
  unsent: number;
  sent: number;
  acked: number;
  rejected: Record<string, number>;
  expectedDeliveries: number;
  delivered: number;
  /** Acked (not rejected) messages that did not reach every recipient before the tag ended. */
  lost: number;
  hist: Hist;
  /** Per window of scheduled time, with deliveries that never came counted as missing. */
  windows: Map<number, Hist>;
  /** Every acked, not refused message: who sent it where (for the history check). */
  ackedList: { clientMsgId: string; userId: string; chatId: string }[];
}

/**
 * Starts a tag on every generator at the same wall-clock moment: all record its deliveries,
 * the ones in `plans` also send on its schedule.
 */
export async function beginTag(all: Worker[], tag: string, plans: GenPlan[], o: { durationMs: number; shuffle: boolean; windowMs?: number; start?: number }): Promise<number> {
  const start = o.start ?? wallNow() + 50;
  await Promise.all(all.map((gen) => {
    const plan = plans.find((p) => p.gen === gen);
    const args: BeginArgs = {
      tag, start, windowMs: o.windowMs ?? 0,
      ...(plan ? { load: { senders: plan.senders, rate: plan.rate, durationMs: o.durationMs, shuffle: o.shuffle } } : {}),
    };
    return gen.call('begin', args);
  }));
  return start;
}

export async function tagProgress(all: Worker[], tag: string): Promise<Progress> {
  const list = await Promise.all(all.map((g) => g.call<Progress>('progress', { tag })));
  return list.reduce((a, p) => ({
    finished: a.finished && p.finished, offered: a.offered + p.offered, sent: a.sent + p.sent,
    acked: a.acked + p.acked, expected: a.expected + p.expected, received: a.received + p.received,
  }));
}

/** Waits until the tag's schedule has ended on every generator. */
export async function scheduleDone(all: Worker[], tag: string): Promise<void> {
  while (!(await tagProgress(all, tag)).finished) await sleep(100);
}

/** Waits for the schedule to end, then until everything acked was delivered or `graceMs` passed. */
export async function settleTag(all: Worker[], tag: string, graceMs: number, alive: () => boolean = () => true): Promise<void> {
  await scheduleDone(all, tag);
  const until = Date.now() + graceMs;
  while (Date.now() < until && alive()) {
    const p = await tagProgress(all, tag);
    if (p.acked === p.sent && p.received >= p.expected) return;
    await sleep(100);
  }
}

/** Waits until no generator has received anything for `quietMs` (at most `maxMs`). */
export async function quiet(all: Worker[], quietMs: number, maxMs: number): Promise<void> {
  const total = async () => (await Promise.all(all.map((g) => g.call<GeneratorCounters>('counters')))).reduce((n, c) => n + c.deliveries, 0);
  const until = Date.now() + maxMs;
  let last = await total();
  let since = Date.now();
  while (Date.now() < until) {
    await sleep(100);
    const now = await total();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return;
  }
}

/** Merges what every generator sent and received for a tag. `close`: end it (later
 * deliveries are late) rather than only look. */
export async function collectTag(all: Worker[], tag: string, plans: GenPlan[], close = true): Promise<TagResult> {
  const results = await Promise.all(all.map((g) => g.call<EndResult>(close ? 'end' : 'peek', { tag })));
  const counts = new Map<string, number>();
  const hist = new Hist();
  const windows = new Map<number, Hist>();
  const expectedByWindow = new Map<number, number>();
  const r: TagResult = { offered: 0, unsent: 0, sent: 0, acked: 0, rejected: {}, expectedDeliveries: 0, delivered: 0, lost: 0, hist, windows, ackedList: [] };
  for (const res of results) {
    hist.merge(res.recv.hist);
    for (const [id, n] of res.recv.counts) counts.set(id, (counts.get(id) ?? 0) + n);
    for (const [w, h] of res.recv.windows) {
      const into = windows.get(w);
      if (into) into.merge(h);
      else windows.set(w, Hist.from(h));
    }
  }
  results.forEach((res, i) => {
    const s = res.send;
    if (!s) return;
    r.offered += s.offered;
    r.unsent += s.unsent;
    r.sent += s.sent;
    r.acked += s.acked;
    for (const [k, v] of Object.entries(s.rejected)) r.rejected[k] = (r.rejected[k] ?? 0) + v;
    for (const [w, n] of s.expectedByWindow) expectedByWindow.set(w, (expectedByWindow.get(w) ?? 0) + n);
    const plan = plans.find((p) => p.gen === all[i]);
    s.ackedIds.forEach((id, j) => {
      const expected = s.ackedExpected[j]!;
      const got = Math.min(counts.get(id) ?? 0, expected);
      r.expectedDeliveries += expected;
      r.delivered += got;
      if (got < expected) r.lost++;
      const meta = plan?.meta[s.ackedSender[j]!];
      if (meta) r.ackedList.push({ clientMsgId: id, ...meta });
    });
  });
  for (const [w, expected] of expectedByWindow) {
    const h = windows.get(w) ?? new Hist();
    h.missing = Math.max(0, expected - h.count);
    windows.set(w, h);
  }
  return r;
}

/**
 * CPU used by the server and by the generators between `start()` and `stop()`, in % of one
 * core: on a 2-core machine shared by both, it tells whether the server or the load was the
 * limit (a Node.js server at ~100 % is saturated).
 */
export function cpuMeter(server: Server, gens: Worker[]) {
  const read = () => ({ at: performance.now(), server: cpuSeconds(server.pid) ?? NaN, gens: gens.reduce((n, g) => n + (cpuSeconds(g.child.pid!) ?? NaN), 0) });
  const start = read();
  return {
    stop() {
      const end = read();
      const seconds = (end.at - start.at) / 1000;
      return { server: (100 * (end.server - start.server)) / seconds, gens: (100 * (end.gens - start.gens)) / seconds };
    },
  };
}

// ---- formatting --------------------------------------------------------------------------

export const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');

export function ms(v: number): string {
  if (Number.isNaN(v)) return '—';
  if (!Number.isFinite(v)) return '∞';
  if (v >= 10_000) return `${(v / 1000).toFixed(1)} s`;
  if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
  if (v >= 100) return `${v.toFixed(0)} ms`;
  if (v >= 10) return `${v.toFixed(1)} ms`;
  return `${v.toFixed(2)} ms`;
}

export const pct = (a: number, b: number) => (b === 0 ? '—' : `${((100 * a) / b).toFixed(1)} %`);

export function ratio(a: number | null | undefined, b: number | null | undefined): string {
  if (a === null || a === undefined || b === null || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '—';
  return `${(a / b).toFixed(2)}`;
}

/** "chat/aedes 0.43  chat/mosquitto 0.31" for whichever baselines ran. */
export function ratios(values: Map<ServerKind, number | null>, label = ''): string {
  const chat = values.get('chat');
  const parts: string[] = [];
  for (const base of ['aedes', 'mosquitto'] as const) {
    if (values.has(base) && values.has('chat')) parts.push(`chat/${base} ${ratio(chat, values.get(base))}`);
  }
  return parts.length ? `${label}${parts.join('   ')}` : '';
}

export const pad = (s: string, n: number) => s.padEnd(n);
export const padL = (s: string, n: number) => s.padStart(n);

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** Server problems worth a look (log lines at warn and above, stderr), a few lines. */
export function problemLines(server: Server, max = 6): string[] {
  const lines = [...server.problems].sort((a, b) => b[1] - a[1]);
  const shown = lines.slice(0, max).map(([text, n]) => `      ${n > 1 ? `${n}× ` : ''}${text}`);
  if (lines.length > max) shown.push(`      … and ${lines.length - max} more kinds`);
  return shown;
}
