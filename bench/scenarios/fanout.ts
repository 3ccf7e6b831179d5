import {
  type Context, connectAll, cpuMeter, failure, generators, inboxTopic, int, messagesTopic, ms, out, pad, percentile, problemLines, progress, ratios, requireAll, stopAll, userSpec,
} from '../lib/common.js';
import type { ServerKind } from '../lib/servers.js';
import type { FanoutResult, GeneratorCounters } from '../lib/wire.js';

/**
 * fanout: a 100-member group, every member subscribed (and to its inbox, where the chat server
 * reports refused sends); members take turns sending, each message reaches all 100, the
 * sender included. Two runs: 1 and 10 messages outstanding. Measured: deliveries per second,
 * and per message the time from its publish until the last of its 100 deliveries.
 */
export async function fanout(ctx: Context): Promise<void> {
  const quick = ctx.opts.quick;
  const runs = [1, 10];
  const maxMessages = quick ? 300 : 2000;
  const maxMs = quick ? 4000 : 15_000;
  const warmup = quick ? 30 : 100;
  // The machine's speed drifts between minutes by more than the differences measured here, so
  // the servers take turns, round after round, and each round's ratios compare neighbours.
  const rounds = ctx.opts.rounds ?? (quick ? 1 : 3);
  out(`== fanout: ${ctx.seed.fanout.members.length}-member group, QoS 1, ~256-byte payload; after ${warmup} warm-up messages, up to ${int(maxMessages)} messages or ${maxMs / 1000} s per run`);
  out('   latency: publish until the last of the 100 deliveries; on the chat server a member sends at most every 100 ms (its per-user limit is 10/s)');
  if (rounds > 1) out(`   ${rounds} rounds, the servers taking turns in each; ratios: the median of the rounds' ratios (each round's servers ran minutes apart at most), with their range`);
  type Run = FanoutResult & { cpu: { server: number; gens: number } };
  /** results[round].get(kind).get(inFlight) */
  const results: Map<ServerKind, Map<number, Run | string>>[] = [];
  const notes: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const ofRound = new Map<ServerKind, Map<number, Run | string>>();
    results.push(ofRound);
    for (const kind of ctx.servers) {
      const perRun = new Map<number, Run | string>();
      ofRound.set(kind, perRun);
      progress(`fanout on ${kind}${rounds > 1 ? `, round ${round + 1} of ${rounds}` : ''}`);
      const server = await ctx.start(kind);
      const gen = generators(1)[0]!;
      try {
        const members = ctx.seed.fanout.members;
        const topic = messagesTopic(ctx.seed.fanout.id);
        const specs = members.map((u, i) => userSpec(ctx.seed, u, i, [topic, inboxTopic(ctx.seed, u)]));
        const c = await connectAll(gen, server, specs);
        requireAll([c], specs.length, 'members');
        for (const inFlight of runs) {
          const meter = cpuMeter(server, [gen]);
          const r = await gen.call<FanoutResult>('fanout', {
            // Only the chat server limits sends per user (10/s); pacing the baselines too would cap
            // them at 100 members × 10/s = 100,000 deliveries/s, which Mosquitto can exceed.
            conns: specs.map((_, i) => c.base + i), topic, inFlight, warmup, maxMessages, maxMs, paceMs: kind === 'chat' ? 100 : 0,
          });
          perRun.set(inFlight, { ...r, cpu: meter.stop() });
          if (server.exited()) break;
        }
        const counters = await gen.call<GeneratorCounters>('counters');
        if (counters.closed > 0) notes.push(`    ${kind}: ${counters.closed} member connections closed during the runs (${Object.entries(counters.closeReasons).map(([k, v]) => `${v}× ${k}`).join(', ')})`);
      } catch (err) {
        const text = failure(err, server);
        for (const inFlight of runs) if (!perRun.has(inFlight)) perRun.set(inFlight, text);
      } finally {
        await stopAll([gen]);
        const died = server.exited();
        await server.stop();
        if (died) notes.push(`    ${kind}: server ${died}`);
        if (server.problems.size) notes.push(`    ${kind} server reported:`, ...problemLines(server));
      }
    }
  }
  for (const inFlight of runs) {
    out(`  ${inFlight} in flight`);
    /** Per round, each server's deliveries/s (null: not measured). */
    const perRound: Map<ServerKind, number | null>[] = [];
    results.forEach((ofRound, round) => {
      const rates = new Map<ServerKind, number | null>();
      perRound.push(rates);
      for (const [kind, perRun] of ofRound) {
        const label = `    ${pad(kind, 10)}${rounds > 1 ? ` ${round + 1}` : ''}`;
        const r = perRun.get(inFlight);
        if (typeof r === 'string' || r === undefined) {
          out(`${label} not measured: ${r ?? 'server gone'}`);
          rates.set(kind, null);
          continue;
        }
        rates.set(kind, r.deliveriesPerSec);
        const extra = [
          r.incomplete ? `${r.incomplete} incomplete` : '',
          r.timedOut ? `${r.timedOut} not delivered to all within 5 s` : '',
          r.rejected ? `${r.rejected} refused by the server` : '',
          r.paced ? `${r.paced} sends held back for the per-user rate` : '',
        ].filter(Boolean).join(', ');
        out(`${label} ${int(r.deliveriesPerSec).padStart(8)} deliveries/s   p50 ${ms(percentile(r.latencies, 0.5)).padStart(8)}   p99 ${ms(percentile(r.latencies, 0.99)).padStart(8)}   (${int(r.messages)} messages in ${r.seconds.toFixed(1)} s; CPU server ${r.cpu.server.toFixed(0)}%, generator ${r.cpu.gens.toFixed(0)}%${extra ? `; ${extra}` : ''})`);
      }
    });
    const line = rounds > 1 ? medianRatios(perRound, '    deliveries/s ') : ratios(perRound[0]!, '    deliveries/s ');
    if (line) out(line);
  }
  for (const n of notes) out(n);
  for (const [kind, why] of ctx.unavailable) out(`  ${kind}: not run (${why})`);
  out();
}

/** "chat/aedes 0.71 (0.62-0.80)": the median of the rounds' ratios and their range. */
function medianRatios(perRound: Map<ServerKind, number | null>[], label: string): string {
  const parts: string[] = [];
  for (const base of ['aedes', 'mosquitto'] as const) {
    const values = perRound
      .map((rates) => (rates.get('chat') ?? NaN) / (rates.get(base) ?? NaN))
      .filter((v) => Number.isFinite(v))
      .sort((a, b) => a - b);
    if (!perRound.some((rates) => rates.has(base)) || !perRound.some((rates) => rates.has('chat'))) continue;
    if (values.length === 0) {
      parts.push(`chat/${base} —`);
      continue;
    }
    const mid = values.length >> 1;
    const median = values.length % 2 ? values[mid]! : (values[mid - 1]! + values[mid]!) / 2;
    parts.push(`chat/${base} ${median.toFixed(2)} (${values[0]!.toFixed(2)}-${values.at(-1)!.toFixed(2)}, ${values.length} rounds)`);
  }
  return parts.length ? `${label}${parts.join('   ')}` : '';
}
