import { type Context, failure, int, ms, out, percentile, problemLines, progress } from '../lib/common.js';
import { type FeatureChat, type FeaturesSeed, loadFeaturesSeed } from '../lib/features-seed.js';
import { type LabelFigures, type RestLoadResult, type RestRequest, cpuShares, restGenerator, sharesText } from '../lib/rest-load.js';

/** Target of issue 12. */
export const CHATLIST_P99_MS = 50;
const RATE = 20;
const CONCURRENCY = 4;

/**
 * chatlist: the chat lists of a user who is a member of 100 chats (60 direct, 40 groups), on a
 * store of 1,000,000 messages (bench/lib/features-seed.ts): `GET /api/chats/group/:userId` and
 * `GET /api/chats/one-to-one/:userId` with `order=activity&limit=100`, in turn, paced at a
 * modest fixed rate from a few concurrent requesters in a generator process. Every chat object
 * carries the caller's readSeq, its unread count, lastMessage and lastActivityAt, so each
 * answer counts unread messages in 40 or 60 chats. The first answers are checked against what
 * was seeded. Chat server only: there is no baseline for REST.
 */
export async function chatlist(ctx: Context): Promise<void> {
  const seconds = ctx.opts.quick ? 5 : 30;
  out(`== chatlist: GET /api/chats/group/:userId and /api/chats/one-to-one/:userId ?order=activity&limit=100, a user in 100 chats; ${RATE} requests/s from ${CONCURRENCY} concurrent requesters for ${seconds} s`);
  if (!ctx.servers.includes('chat')) {
    out('  not run: the chat server is not among --servers');
    out();
    return;
  }
  const fs = await loadFeaturesSeed(ctx.seed, progress);
  const user = fs.requesters[0]!;
  const mine = user.chats;
  const groups = mine.filter((c) => c.type === 'group');
  const directs = mine.filter((c) => c.type === 'direct');
  const sum = (list: FeatureChat[], f: (c: FeatureChat) => number) => list.reduce((n, c) => n + f(c), 0);
  out(`   store: ${storeLine(fs)}`);
  out(`   the user's chats: ${groups.length} groups (${sum(groups, (c) => c.members)} members in all) and ${directs.length} direct; ${int(sum(mine, (c) => c.messages))} messages, ${int(sum(mine, (c) => c.unread))} unread in ${mine.filter((c) => c.unread > 0).length} chats (at most ${int(Math.max(...mine.map((c) => c.unread)))} in one)`);
  out(`   paced closed loop: request k due at k/${RATE} s, sent when due and a requester is free; latency from sending to the last byte; after ${ctx.opts.quick ? 2 : 5} s of warm-up`);
  progress('chatlist on chat');
  const server = await ctx.start('chat', { templateDb: fs.db });
  const gen = restGenerator();
  const notes: string[] = [];
  try {
    const base = server.httpUrl!;
    const requests: RestRequest[] = (['group', 'one-to-one'] as const).map((kind) => ({
      label: kind, key: kind, token: user.token, path: `/api/chats/${kind}/${user.id}?order=activity&limit=100`,
    }));
    await gen.call<RestLoadResult>('load', { base, requests, rate: RATE, concurrency: CONCURRENCY, durationMs: (ctx.opts.quick ? 2 : 5) * 1000 });
    const shares = cpuShares(server.pid, gen.child.pid!);
    const r = await gen.call<RestLoadResult>('load', { base, requests, rate: RATE, concurrency: CONCURRENCY, durationMs: seconds * 1000, samples: 1 });
    const cpu = shares();
    const all = merge(Object.values(r.byLabel));
    out(line(`group chats (${groups.length})`, r.byLabel.group, r.seconds));
    out(line(`direct chats (${directs.length})`, r.byLabel['one-to-one'], r.seconds));
    out(line('both', all, r.seconds));
    out(`  ${sharesText(cpu, all.latencies.length, r.seconds)}; ${int(r.late)} requests sent over 10 ms late (all requesters busy)`);
    const p99 = percentile(all.latencies, 0.99);
    out(`  target p99 ≤ ${CHATLIST_P99_MS} ms: ${p99 <= CHATLIST_P99_MS ? 'met' : 'NOT met'} (p99 ${ms(p99)}; group ${ms(percentile(r.byLabel.group?.latencies ?? [], 0.99))}, direct ${ms(percentile(r.byLabel['one-to-one']?.latencies ?? [], 0.99))})`);
    for (const [kind, expected] of [['group', groups], ['one-to-one', directs]] as const) {
      out(`  checked ${kind}: ${check(r.samples[kind]?.[0], expected)}`);
    }
  } catch (err) {
    out(`  not measured: ${failure(err, server)}`);
  } finally {
    await gen.stop();
    const died = server.exited();
    await server.stop();
    if (died) notes.push(`    chat: server ${died}`);
    if (server.problems.size) notes.push('    chat server reported:', ...problemLines(server));
  }
  for (const n of notes) out(n);
  out('  aedes, mosquitto: not applicable (no REST API: there is no baseline for REST)');
  out();
}

export function storeLine(fs: FeaturesSeed): string {
  return `${int(fs.messages)} chat messages (and ${int(fs.edits)} edits, ${int(fs.deletes)} deletions, ${int(fs.system)} system messages) in ${int(fs.chats)} chats; seeded ${fs.build.at.slice(0, 16).replace('T', ' ')} UTC in ${fs.build.seconds.toFixed(0)} s, ${(fs.build.bytes / 2 ** 20).toFixed(0)} MB`;
}

export function merge(list: (LabelFigures | undefined)[]): LabelFigures {
  const m: LabelFigures = { latencies: [], statuses: {}, bytes: 0 };
  for (const f of list) {
    if (!f) continue;
    m.latencies.push(...f.latencies);
    m.bytes += f.bytes;
    for (const [k, v] of Object.entries(f.statuses)) m.statuses[k] = (m.statuses[k] ?? 0) + v;
  }
  m.latencies.sort((a, b) => a - b);
  return m;
}

export function line(label: string, f: LabelFigures | undefined, seconds: number): string {
  if (!f || f.latencies.length === 0) return `  ${label.padEnd(30)} no answers`;
  const n = f.latencies.length;
  const bad = Object.entries(f.statuses).filter(([s]) => s !== '200');
  return `  ${label.padEnd(30)} p50 ${ms(percentile(f.latencies, 0.5)).padStart(8)}   p99 ${ms(percentile(f.latencies, 0.99)).padStart(8)}   max ${ms(f.latencies[n - 1]!).padStart(8)}   (${int(n)} requests, ${(n / seconds).toFixed(1)}/s, ${(f.bytes / n / 1024).toFixed(1)} KB each${bad.length ? `; ${bad.map(([s, k]) => `${k}× ${s}`).join(', ')}` : ''})`;
}

interface ChatDto {
  id: string;
  number: number;
  readSeq?: number;
  unread?: number;
  lastMessage?: { seq?: number } | null;
  lastActivityAt?: string | number;
}

/** The first answer against the seeded chats: the same chats, pointers and unread counts, in
 * activity order. */
function check(sample: { status: number; body: string } | undefined, expected: FeatureChat[]): string {
  if (!sample) return 'no answer kept';
  if (sample.status !== 200) return `status ${sample.status}: ${sample.body.slice(0, 200)}`;
  let body: { chats?: ChatDto[]; hasMore?: boolean };
  try {
    body = JSON.parse(sample.body) as typeof body;
  } catch {
    return `not JSON: ${sample.body.slice(0, 200)}`;
  }
  const chats = body.chats ?? [];
  const byId = new Map(expected.map((c) => [c.id, c]));
  const problems: string[] = [];
  if (chats.length !== expected.length) problems.push(`${chats.length} chats instead of ${expected.length}`);
  let pointers = 0;
  let unread = 0;
  let activity = 0;
  let missing = 0;
  let last = Infinity;
  let ordered = true;
  for (const c of chats) {
    const e = byId.get(c.id);
    if (!e) {
      problems.push(`chat ${c.number} is not the user's`);
      continue;
    }
    if (c.readSeq !== e.readSeq) pointers++;
    if (c.unread !== e.unread) unread++;
    const at = typeof c.lastActivityAt === 'number' ? c.lastActivityAt : Date.parse(c.lastActivityAt ?? '');
    if (at !== e.lastActivityAt) activity++;
    if (!('lastMessage' in c) || (e.messages > 0 && !c.lastMessage)) missing++;
    if (at > last) ordered = false;
    last = at;
  }
  if (pointers) problems.push(`readSeq differs in ${pointers}`);
  if (unread) problems.push(`unread differs in ${unread}`);
  if (activity) problems.push(`lastActivityAt differs in ${activity}`);
  if (missing) problems.push(`lastMessage missing in ${missing}`);
  if (!ordered) problems.push('not newest activity first');
  if (body.hasMore) problems.push('hasMore is true');
  const total = expected.reduce((n, c) => n + c.unread, 0);
  return problems.length
    ? `MISMATCH: ${problems.join('; ')}`
    : `${chats.length} chats, readSeq, unread (${int(total)} in all), lastActivityAt and lastMessage as seeded, newest activity first`;
}
