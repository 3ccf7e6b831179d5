import { type Context, connectAll, failure, generators, int, out, pad, problemLines, progress, ratios, sleep, stopAll, userSpec } from '../lib/common.js';
import { type ServerKind, memoryKb } from '../lib/servers.js';
import type { ConnectResult } from '../lib/wire.js';

const DEVICES = 9;
const GENERATORS = 2;

interface ConnsRow {
  wanted: number;
  ok: number;
  failed: Map<string, number>;
  notAttempted: number;
  seconds: number;
  rssBeforeKb: number;
  rssAfterKb: number;
}

/**
 * conns: idle authenticated connections (CONNECT only, no subscriptions), 2,000 users with 9
 * devices each (`<userId>/d<n>`: the chat server allows 10 per user), from two generator
 * processes (the open-files limit is 20,000 per process), over 4,000 source addresses.
 */
export async function conns(ctx: Context): Promise<void> {
  const quick = ctx.opts.quick;
  const users = quick ? 400 : 2000;
  const wanted = users * DEVICES;
  const boundMs = 60_000;
  out(`== conns: ${int(wanted)} idle authenticated connections (${int(users)} users × ${DEVICES} devices) from ${GENERATORS} generators, at most 200 being set up at once; bound ${boundMs / 1000} s`);
  out('   KB per connection: server RSS after minus before, over connections; connects/s: connections over first CONNECT to last CONNACK');
  const rows = new Map<ServerKind, ConnsRow | string>();
  const notes: string[] = [];
  for (const kind of ctx.servers) {
    progress(`conns on ${kind}`);
    const server = await ctx.start(kind);
    const gens = generators(GENERATORS);
    try {
      await sleep(1000);
      const rssBeforeKb = memoryKb(server.pid)?.rss ?? NaN;
      const deadline = Date.now() + boundMs;
      const per = users / GENERATORS;
      const results = await Promise.all(gens.map((gen, g) => {
        const specs = [];
        for (let u = g * per; u < (g + 1) * per; u++) {
          for (let d = 0; d < DEVICES; d++) specs.push(userSpec(ctx.seed, u, u * DEVICES + d, [], `d${d}`));
        }
        return connectAll(gen, server, specs, 100, deadline);
      }));
      const ok = results.reduce((n, r) => n + r.ok, 0);
      const first = Math.min(...results.map((r) => r.firstAt));
      const last = Math.max(...results.map((r: ConnectResult) => r.lastAt));
      await sleep(2000);
      const failed = new Map<string, number>();
      for (const r of results) for (const [k, v] of Object.entries(r.failed)) failed.set(k, (failed.get(k) ?? 0) + v);
      rows.set(kind, {
        wanted, ok, failed, notAttempted: results.reduce((n, r) => n + r.notAttempted, 0),
        seconds: (last - first) / 1000, rssBeforeKb, rssAfterKb: memoryKb(server.pid)?.rss ?? NaN,
      });
    } catch (err) {
      rows.set(kind, failure(err, server));
    } finally {
      await stopAll(gens);
      const died = server.exited();
      await server.stop();
      if (died) notes.push(`    ${kind}: server ${died}`);
      if (server.problems.size) notes.push(`    ${kind} server reported:`, ...problemLines(server));
    }
  }
  const kb = new Map<ServerKind, number | null>();
  const rate = new Map<ServerKind, number | null>();
  for (const [kind, r] of rows) {
    if (typeof r === 'string') {
      out(`  ${pad(kind, 10)} not measured: ${r}`);
      kb.set(kind, null);
      rate.set(kind, null);
      continue;
    }
    const perConn = (r.rssAfterKb - r.rssBeforeKb) / r.ok;
    const perSec = r.ok / r.seconds;
    kb.set(kind, perConn);
    rate.set(kind, perSec);
    const refused = [...r.failed].map(([k, v]) => `${int(v)} ${k}`).join(', ');
    out(`  ${pad(kind, 10)} ${int(r.ok)} of ${int(r.wanted)} connected in ${r.seconds.toFixed(1)} s: ${int(perSec)} connects/s; RSS ${int(r.rssBeforeKb / 1024)} → ${int(r.rssAfterKb / 1024)} MB: ${perConn.toFixed(1)} KB per connection; refused ${refused || '0'}${r.notAttempted ? `; ${int(r.notAttempted)} not attempted within the bound` : ''}`);
  }
  const a = ratios(kb, '  KB per connection ');
  const b = ratios(rate, '  connects/s ');
  if (a) out(a);
  if (b) out(b);
  for (const n of notes) out(n);
  for (const [kind, why] of ctx.unavailable) out(`  ${kind}: not run (${why})`);
  out();
}
