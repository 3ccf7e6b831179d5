import Database from 'better-sqlite3';
import { join } from 'node:path';
import {
  type Context, type GenPlan, type TagResult, beginTag, collectTag, connectAll, failure, generators, inboxTopic, int, messagesTopic, ms, out, pad,
  cpuMeter, pct, problemLines, progress, quiet, ratio, requireAll, scheduleDone, settleTag, sleep, stopAll, tagProgress, userSpec,
} from '../lib/common.js';
import type { Hist } from '../lib/hist.js';
import type { Worker } from '../lib/procs.js';
import { type Server, type ServerKind, memoryKb, sampleRss } from '../lib/servers.js';
import { wallNow } from '../lib/wire.js';

/** The knee's and the recovery's latency bound. */
const P99_BOUND_MS = 50;
/** How long after a schedule ends deliveries still count (later ones are lost). */
const DELIVERY_GRACE_MS = 5000;
const GENERATORS = 2;

interface Topology {
  gens: Worker[];
  /** Every user on its generator, as a sender to its one chat (rate set per run). */
  plans: GenPlan[];
}

/**
 * The mix topology: 2,000 users, one connection each, spread over the generators; 60 % in
 * direct pairs, 40 % in groups of 10; every user subscribed to its chat and its inbox.
 */
async function connectMix(ctx: Context, server: Server): Promise<Topology> {
  const gens = generators(GENERATORS);
  const chatOf = new Map<number, { id: string; members: number[] }>();
  for (const chat of ctx.seed.mix) for (const u of chat.members) chatOf.set(u, chat);
  const users = [...chatOf.keys()].sort((a, b) => a - b);
  const plans = await Promise.all(gens.map(async (gen, g) => {
    // Alternate users between generators: most chats span both processes.
    const mine = users.filter((u) => u % GENERATORS === g);
    const specs = mine.map((u) => userSpec(ctx.seed, u, u, [messagesTopic(chatOf.get(u)!.id), inboxTopic(ctx.seed, u)]));
    const c = await connectAll(gen, server, specs);
    requireAll([c], specs.length, `mix users (generator ${g})`);
    return {
      gen,
      senders: mine.map((u, j) => ({ conn: c.base + j, topic: messagesTopic(chatOf.get(u)!.id), recipients: chatOf.get(u)!.members.length })),
      meta: mine.map((u) => ({ userId: ctx.seed.users[u]!.id, chatId: chatOf.get(u)!.id })),
      rate: 0,
    } satisfies GenPlan;
  }));
  return { gens, plans };
}

const withRate = (plans: GenPlan[], total: number) => plans.map((p) => ({ ...p, rate: total / plans.length }));

/** Every offered message acked, none lost or refused, p99 within the bound. */
function passes(r: TagResult): boolean {
  const refused = Object.values(r.rejected).reduce((a, b) => a + b, 0);
  return r.unsent === 0 && r.acked === r.offered && r.lost === 0 && refused === 0 && r.hist.percentile(0.99) <= P99_BOUND_MS;
}

const cpuText = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '—' : `${v.toFixed(0)}%`);

function refusedText(r: TagResult): string {
  const list = Object.entries(r.rejected);
  return list.length ? `refused ${list.map(([k, v]) => `${int(v)} ${k}`).join(', ')}` : '';
}

type StepRow = { rate: number; result?: TagResult; note?: string; cpu?: { server: number; gens: number } };

/**
 * mix: open-loop rate steps through the mix topology. Each step's messages are scheduled at the
 * step's rate, each round of users in a new random order (so at 8,000 msg/s each user sends 4
 * a second); a connection keeps at most 10 publishes unacknowledged, the rest wait in its
 * outbox; latency runs from the scheduled time to each delivery (the sender's copy too).
 */
export async function mix(ctx: Context): Promise<void> {
  const quick = ctx.opts.quick;
  const steps = ctx.opts.steps ?? (quick ? [1000, 2500] : [1000, 2000, 2500, 3000, 4000, 5000, 6000, 8000]);
  const stepMs = (ctx.opts.stepSeconds ?? (quick ? 4 : 10)) * 1000;
  const settleMs = quick ? 1000 : 2000;
  const warmupRate = Math.min(500, steps[0] ?? 500);
  const warmupMs = quick ? 1000 : 3000;
  out(`== mix: 2,000 users on 2,000 connections in ${GENERATORS} generators, 60 % direct pairs, 40 % groups of 10; open-loop steps of ${stepMs / 1000} s after ${warmupMs / 1000} s of warm-up at ${int(warmupRate)} msg/s`);
  out(`   per step: offered, acked (PUBACKed), delivered (deliveries received / expected for acked messages), lost (acked, not at every recipient ${DELIVERY_GRACE_MS / 1000} s after the step),`);
  out(`   unsent (still in an outbox at the step's end), p50/p99 from scheduled time to each delivery,`);
  out(`   CPU of the server process and of both generators together during the step (% of one core). knee: highest step up to which every step passes (all acked, nothing lost, p99 ≤ ${P99_BOUND_MS} ms)`);
  const tables = new Map<ServerKind, StepRow[]>();
  const notes: string[] = [];
  for (const kind of ctx.servers) {
    const rows: StepRow[] = steps.map((rate) => ({ rate }));
    tables.set(kind, rows);
    progress(`mix on ${kind}`);
    const server = await ctx.start(kind);
    let topo: Topology | undefined;
    try {
      topo = await connectMix(ctx, server);
      // Warm-up, not reported: fresh connections, JIT and first allocations cost every server.
      progress(`${kind}: warm-up at ${int(warmupRate)} msg/s`);
      await beginTag(topo.gens, 'w', withRate(topo.plans, warmupRate), { durationMs: warmupMs, shuffle: true });
      await settleTag(topo.gens, 'w', DELIVERY_GRACE_MS, () => !server.exited());
      await collectTag(topo.gens, 'w', topo.plans);
      await sleep(settleMs);
      let badInARow = 0;
      for (const [i, row] of rows.entries()) {
        const died = server.exited();
        if (died) {
          row.note = `server ${died}`;
          continue;
        }
        if (badInARow >= 2) {
          row.note = 'skipped: collapsed at the two steps before';
          continue;
        }
        progress(`${kind}: ${int(row.rate)} msg/s`);
        const tag = `m${i}`;
        await beginTag(topo.gens, tag, withRate(topo.plans, row.rate), { durationMs: stepMs, shuffle: true });
        const cpu = cpuMeter(server, topo.gens);
        await scheduleDone(topo.gens, tag);
        row.cpu = cpu.stop();
        await settleTag(topo.gens, tag, DELIVERY_GRACE_MS, () => !server.exited());
        row.result = await collectTag(topo.gens, tag, topo.plans);
        const p99 = row.result.hist.percentile(0.99);
        badInARow = !passes(row.result) && (p99 > 1000 || row.result.delivered < 0.9 * row.result.expectedDeliveries) ? badInARow + 1 : 0;
        await sleep(settleMs);
        await quiet(topo.gens, 500, 10_000);
      }
    } catch (err) {
      const row = rows.find((r) => !r.result && !r.note);
      const text = failure(err, server);
      if (row) row.note = text;
    } finally {
      if (topo) await stopAll(topo.gens);
      const died = server.exited();
      await server.stop();
      if (died) notes.push(`    ${kind}: server ${died}`);
      if (server.problems.size) notes.push(`    ${kind} server reported:`, ...problemLines(server));
    }
  }
  const knees = new Map<ServerKind, number | null>();
  for (const [kind, rows] of tables) {
    out(`  ${kind}`);
    out(`    ${'msg/s'.padStart(6)} ${'offered'.padStart(9)} ${'acked'.padStart(9)} ${'delivered'.padStart(10)} ${'lost'.padStart(7)} ${'unsent'.padStart(8)} ${'p50'.padStart(9)} ${'p99'.padStart(9)} ${'CPU srv'.padStart(8)} ${'gens'.padStart(5)}`);
    let knee: number | null = null;
    let broken = false;
    for (const row of rows) {
      const r = row.result;
      if (!r) {
        out(`    ${int(row.rate).padStart(6)} ${row.note ?? 'not run'}`);
        broken = true;
        continue;
      }
      const ok = passes(r);
      if (ok && !broken) knee = row.rate;
      else broken = true;
      out(`    ${int(row.rate).padStart(6)} ${int(r.offered).padStart(9)} ${int(r.acked).padStart(9)} ${pct(r.delivered, r.expectedDeliveries).padStart(10)} ${int(r.lost).padStart(7)} ${int(r.unsent).padStart(8)} ${ms(r.hist.percentile(0.5)).padStart(9)} ${ms(r.hist.percentile(0.99)).padStart(9)} ${cpuText(row.cpu?.server).padStart(8)} ${cpuText(row.cpu?.gens).padStart(5)}${ok ? '' : '  ✗'}${refusedText(r) ? `  ${refusedText(r)}` : ''}`);
    }
    knees.set(kind, knee);
  }
  const kneeText = [...knees].map(([k, v]) => `${k} ${v === null ? 'none' : int(v)}`).join('   ');
  const rs = (['aedes', 'mosquitto'] as const).filter((b) => knees.has(b) && knees.has('chat')).map((b) => `chat/${b} ${ratio(knees.get('chat'), knees.get(b))}`);
  out(`  knee (msg/s): ${kneeText}${rs.length ? `   ${rs.join('   ')}` : ''}`);
  for (const n of notes) out(n);
  for (const [kind, why] of ctx.unavailable) out(`  ${kind}: not run (${why})`);
  out();
}

/** Seconds after the load stopped until the probe's p99 per 1-s window is within the bound
 * (nothing missing) for 3 windows in a row; null when that did not happen. */
function recoveredAt(windows: Map<number, Hist>, count: number): number | null {
  const ok = (w: number) => {
    const h = windows.get(w);
    return h !== undefined && h.count > 0 && h.missing === 0 && h.percentile(0.99) <= P99_BOUND_MS;
  };
  for (let w = 0; w + 2 < count; w++) if (ok(w) && ok(w + 1) && ok(w + 2)) return w;
  return null;
}

interface OverloadRow {
  alive: string;
  peakRssKb: number;
  load: TagResult;
  probe: TagResult;
  /** chat: acked messages not in chat.db; baselines: acked, not delivered to every recipient. */
  missing: number | null;
  missingHow: string;
  recovery: number | null;
  /** Probe windows looked at (the probe ran this many whole seconds). */
  probeWindows: number;
  cpu: { server: number; gens: number };
}

/** Acked (sender, clientMsgId) pairs missing from the chat server's message table. */
function missingFromHistory(dbFile: string, acked: TagResult['ackedList']): number {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const find = db.prepare('SELECT 1 FROM messages WHERE chat_id = ? AND sender_id = ? AND client_msg_id = ?').pluck();
    let missing = 0;
    for (const a of acked) if (find.get(a.chatId, a.userId, a.clientMsgId) === undefined) missing++;
    return missing;
  } finally {
    db.close();
  }
}

async function answering(server: Server, gen: Worker, ctx: Context): Promise<string> {
  const died = server.exited();
  if (died) return `no (${died})`;
  const spec = userSpec(ctx.seed, 0, 3999, [], 'alive');
  const probe = await gen.call<{ ok: boolean; ms: number; outcome: unknown }>('probe', { host: '127.0.0.1', port: server.mqttPort, spec, timeoutMs: 5000 }).catch((e: Error) => ({ ok: false, ms: 0, outcome: e.message }));
  if (!probe.ok) return `running, MQTT not answering (${JSON.stringify(probe.outcome)})`;
  if (server.httpUrl) {
    const health = await fetch(`${server.httpUrl}/healthz`, { signal: AbortSignal.timeout(5000) }).then((r) => r.status, (e: Error) => e.message);
    if (health !== 200) return `running, MQTT answers, /healthz ${health}`;
  }
  return `yes (CONNACK in ${ms(probe.ms)})`;
}

/**
 * overload: the mix topology at 8,000 msg/s for 20 s (same client model), then the load stops
 * (outboxes dropped) and a probe of 200 msg/s continues through the same topology for up to
 * 30 s. Alive, peak RSS, acked messages missing, and the time until the probe's p99 per 1-s
 * window is back within 50 ms.
 */
export async function overload(ctx: Context): Promise<void> {
  const quick = ctx.opts.quick;
  const rate = 8000;
  const loadMs = quick ? 5000 : 20_000;
  const probeRate = 200;
  const probeMs = quick ? 10_000 : 30_000;
  out(`== overload: mix topology at ${int(rate)} msg/s for ${loadMs / 1000} s, then a probe at ${probeRate} msg/s for up to ${probeMs / 1000} s`);
  out(`   recovery: time from the load's end until the probe's p99 per 1-s window is ≤ ${P99_BOUND_MS} ms with nothing missing, 3 windows in a row`);
  const rows = new Map<ServerKind, OverloadRow | string>();
  const notes: string[] = [];
  for (const kind of ctx.servers) {
    progress(`overload on ${kind}`);
    const server = await ctx.start(kind);
    let topo: Topology | undefined;
    let row: OverloadRow | undefined;
    const rss = sampleRss(server.pid);
    try {
      topo = await connectMix(ctx, server);
      const { gens, plans } = topo;
      const start = await beginTag(gens, 'o', withRate(plans, rate), { durationMs: loadMs, shuffle: true });
      // The probe's schedule starts the moment the load's ends (the load's outboxes are dropped then).
      await beginTag(gens, 'p', withRate(plans, probeRate), { durationMs: probeMs, shuffle: true, windowMs: 1000, start: start + loadMs });
      const cpu = cpuMeter(server, gens);
      await scheduleDone(gens, 'o');
      const loadCpu = cpu.stop();
      progress(`${kind}: load done, probing`);
      // Stop the probe early once it has recovered.
      let probeEnd = start + loadMs + probeMs;
      for (;;) {
        await sleep(1000);
        const p = await tagProgress(gens, 'p');
        if (p.finished || server.exited()) break;
        const peek = await collectTag(gens, 'p', plans, false);
        const at = recoveredAt(peek.windows, Math.floor((wallNow() - (start + loadMs)) / 1000));
        if (at !== null) {
          probeEnd = wallNow();
          await Promise.all(gens.map((g) => g.call('stopLoad', { tag: 'p' })));
          break;
        }
      }
      await settleTag(gens, 'p', DELIVERY_GRACE_MS, () => !server.exited());
      const load = await collectTag(gens, 'o', plans);
      const probe = await collectTag(gens, 'p', plans);
      // Whole windows only: the one the probe stopped in lost its outboxes.
      const windowCount = Math.min(Math.floor(probeMs / 1000), Math.floor((probeEnd - (start + loadMs)) / 1000));
      row = {
        alive: await answering(server, gens[0]!, ctx),
        peakRssKb: 0,
        load,
        probe,
        missing: null,
        missingHow: '',
        recovery: recoveredAt(probe.windows, windowCount),
        probeWindows: windowCount,
        cpu: loadCpu,
      };
    } catch (err) {
      rows.set(kind, failure(err, server));
    } finally {
      const peak = Math.max(rss.stop(), memoryKb(server.pid)?.hwm ?? 0);
      if (topo) await stopAll(topo.gens);
      const died = server.exited();
      const r = row;
      await server.stop(() => {
        if (!r) return;
        r.peakRssKb = peak;
        if (kind === 'chat' && server.dataDir) {
          r.missing = missingFromHistory(join(server.dataDir, 'chat.db'), [...r.load.ackedList, ...r.probe.ackedList]);
          r.missingHow = 'not in chat.db';
        } else {
          r.missing = r.load.lost + r.probe.lost;
          r.missingHow = 'not delivered to every recipient';
        }
      });
      if (r) rows.set(kind, r);
      if (died) notes.push(`    ${kind}: server ${died}`);
      if (server.problems.size) notes.push(`    ${kind} server reported:`, ...problemLines(server));
    }
  }
  const peaks = new Map<ServerKind, number | null>();
  for (const [kind, r] of rows) {
    if (typeof r === 'string') {
      out(`  ${pad(kind, 10)} not measured: ${r}`);
      peaks.set(kind, null);
      continue;
    }
    peaks.set(kind, r.peakRssKb);
    const undelivered = kind === 'chat' ? `, ${int(r.load.lost + r.probe.lost)} not delivered to every recipient` : '';
    const refused = refusedText(r.load);
    out(`  ${pad(kind, 10)} alive ${r.alive}; peak RSS ${int(r.peakRssKb / 1024)} MB; load: ${int(r.load.offered)} offered, ${int(r.load.acked)} acked, ${int(r.load.unsent)} unsent${refused ? `, ${refused}` : ''}`);
    out(`  ${pad('', 10)} acked missing: ${r.missing === null ? '—' : int(r.missing)} of ${int(r.load.acked + r.probe.acked)} (${r.missingHow})${undelivered}; recovery: ${r.recovery === null ? `not within ${r.probeWindows} s` : `${r.recovery} s`} (probe p99 ${ms(r.probe.hist.percentile(0.99))} overall)`);
    const series = Array.from({ length: r.probeWindows }, (_, w) => r.probe.windows.get(w)).map((h) => (h ? ms(h.percentile(0.99)) : '—'));
    out(`  ${pad('', 10)} probe p99 per second after the load: ${series.join(', ')}; CPU during the load: server ${cpuText(r.cpu.server)}, generators ${cpuText(r.cpu.gens)}`);
  }
  const rs = (['aedes', 'mosquitto'] as const).filter((b) => peaks.has(b) && peaks.has('chat')).map((b) => `chat/${b} ${ratio(peaks.get('chat'), peaks.get(b))}`);
  if (rs.length) out(`  peak RSS ${rs.join('   ')}`);
  for (const n of notes) out(n);
  for (const [kind, why] of ctx.unavailable) out(`  ${kind}: not run (${why})`);
  out();
}
