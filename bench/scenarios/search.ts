import { type Context, failure, int, ms, out, percentile, problemLines, progress } from '../lib/common.js';
import { type FeatureRequester, loadFeaturesSeed } from '../lib/features-seed.js';
import { Prng } from '../lib/corpus.js';
import { SEARCH_CANDIDATES } from '../../core/store/store.js';
import { type RestLoadResult, type RestRequest, cpuShares, restGenerator, sharesText } from '../lib/rest-load.js';
import { line, storeLine } from './chatlist.js';

/** Target of issue 12. */
export const SEARCH_P99_MS = 100;
const RATE = 20;
const CONCURRENCY = 4;

/**
 * search: `GET /api/messages/search?q=<two Hangul syllables>&limit=20` on the store of the
 * chatlist scenario (1,000,000 messages of mixed Korean, Japanese and English chat text), by ten
 * users who are members of 100 chats each, in turn, paced at a modest fixed rate from a few
 * concurrent requesters in a generator process. Two queries: "회의" (meeting), in about 2 % of
 * all messages and a few hundred of each user's; and "택배" (parcel), in about 1 % of all
 * messages but in none of the users' chats (the index finds thousands of candidates, none of
 * them the caller's). The first answer of each user is checked against what was seeded.
 * Chat server only: there is no baseline for REST.
 */
export async function search(ctx: Context): Promise<void> {
  const seconds = ctx.opts.quick ? 5 : 30;
  const elsewhereSeconds = ctx.opts.quick ? 5 : 20;
  out(`== search: GET /api/messages/search?q=…&limit=20 by 10 users in 100 chats each; ${RATE} requests/s from ${CONCURRENCY} concurrent requesters, ${seconds} s (the common query) and ${elsewhereSeconds} s (the other)`);
  if (!ctx.servers.includes('chat')) {
    out('  not run: the chat server is not among --servers');
    out();
    return;
  }
  const fs = await loadFeaturesSeed(ctx.seed, progress);
  const { common, elsewhere } = fs.queries;
  const users = fs.requesters;
  const range = (f: (q: FeatureRequester) => number) => `${int(Math.min(...users.map(f)))}-${int(Math.max(...users.map(f)))}`;
  out(`   store: ${storeLine(fs)}`);
  out(`   corpus: Korean 55 %, Korean with English words 15 %, Japanese 15 %, English 15 % of chats (bench/lib/corpus.ts); each user's chats hold ${range((q) => q.chats.reduce((n, c) => n + c.messages, 0))} messages`);
  out(`   "${common.q}" in ${(100 * common.messages / fs.messages).toFixed(2)} % of the messages (${int(common.messages)}), ${range((q) => q.matches.common)} of each user's`);
  out(`   "${elsewhere.q}" in ${(100 * elsewhere.messages / fs.messages).toFixed(2)} % of the messages (${int(elsewhere.messages)}), ${range((q) => q.matches.elsewhere)} of each user's`);
  out(`   paced closed loop: request k due at k/${RATE} s, sent when due and a requester is free; latency from sending to the last byte; after ${ctx.opts.quick ? 2 : 5} s of warm-up`);
  progress('search on chat');
  const server = await ctx.start('chat', { templateDb: fs.db });
  const gen = restGenerator();
  const notes: string[] = [];
  try {
    const base = server.httpUrl!;
    // The users in a shuffled order, repeated: each request by the next one.
    const r = new Prng(7);
    const requestsFor = (label: string, q: string): RestRequest[] => {
      const order = r.shuffle(Array.from({ length: 10 * users.length }, (_, i) => i % users.length));
      return order.map((u) => ({ label, key: `${label}:${u}`, token: users[u]!.token, path: `/api/messages/search?q=${encodeURIComponent(q)}&limit=20` }));
    };
    const run = async (label: string, q: string, durationMs: number) => {
      const requests = requestsFor(label, q);
      const shares = cpuShares(server.pid, gen.child.pid!);
      const res = await gen.call<RestLoadResult>('load', { base, requests, rate: RATE, concurrency: CONCURRENCY, durationMs, samples: 1 });
      return { res, cpu: shares() };
    };
    await gen.call<RestLoadResult>('load', { base, requests: requestsFor('warm-up', common.q), rate: RATE, concurrency: CONCURRENCY, durationMs: (ctx.opts.quick ? 2 : 5) * 1000 });
    const a = await run('common', common.q, seconds * 1000);
    const b = await run('elsewhere', elsewhere.q, elsewhereSeconds * 1000);
    out(line(`"${common.q}" (in the users' chats)`, a.res.byLabel.common, a.res.seconds));
    out(line(`"${elsewhere.q}" (in none of them)`, b.res.byLabel.elsewhere, b.res.seconds));
    out(`  "${common.q}": ${sharesText(a.cpu, a.res.byLabel.common?.latencies.length ?? 0, a.res.seconds)}; ${int(a.res.late)} requests sent over 10 ms late`);
    out(`  "${elsewhere.q}": ${sharesText(b.cpu, b.res.byLabel.elsewhere?.latencies.length ?? 0, b.res.seconds)}; ${int(b.res.late)} requests sent over 10 ms late`);
    const p99 = percentile(a.res.byLabel.common?.latencies ?? [], 0.99);
    const p99b = percentile(b.res.byLabel.elsewhere?.latencies ?? [], 0.99);
    out(`  target p99 ≤ ${SEARCH_P99_MS} ms (a two-syllable Hangul query): ${p99 <= SEARCH_P99_MS ? 'met' : 'NOT met'} for "${common.q}" (p99 ${ms(p99)}); ${p99b <= SEARCH_P99_MS ? 'met' : 'NOT met'} for "${elsewhere.q}" (p99 ${ms(p99b)})`);
    out(`  checked "${common.q}": ${check(users, (u) => a.res.samples[`common:${u}`]?.[0], (q) => ({ ids: q.newestCommon, hasMore: q.commonHasMore }))}`);
    out(`  checked "${elsewhere.q}": ${check(users, (u) => b.res.samples[`elsewhere:${u}`]?.[0], () => ({ ids: [], hasMore: false }))}`);
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

/** Each user's first answer: exactly the newest matching messages of its chats as seeded. */
function check(
  users: FeatureRequester[],
  sample: (u: number) => { status: number; body: string } | undefined,
  expected: (q: FeatureRequester) => { ids: string[]; hasMore: boolean },
): string {
  const problems: string[] = [];
  let checked = 0;
  users.forEach((q, u) => {
    const s = sample(u);
    if (!s) return;
    checked++;
    if (s.status !== 200) {
      problems.push(`${q.username}: status ${s.status}: ${s.body.slice(0, 160)}`);
      return;
    }
    const body = JSON.parse(s.body) as { messages?: { id: string }[]; hasMore?: boolean };
    const want = expected(q);
    const got = (body.messages ?? []).map((m) => m.id);
    if (got.join() !== want.ids.join()) {
      const extra = got.filter((id) => !want.ids.includes(id)).length;
      problems.push(`${q.username}: ${got.length} messages instead of ${want.ids.length}${extra ? `, ${extra} not among the expected` : ', in another order'}`);
    } else if (body.hasMore !== want.hasMore) {
      problems.push(`${q.username}: hasMore ${String(body.hasMore)}`);
    }
  });
  if (checked === 0) return 'no answer kept';
  if (problems.length) return `MISMATCH: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? ` … (${problems.length} users)` : ''}`;
  const some = users.some((q) => expected(q).ids.length > 0);
  return some
    ? `the first page of each of ${checked} users is its newest matches as seeded among the search's ${SEARCH_CANDIDATES.toLocaleString('en-US')} candidates (at most 20), hasMore as expected`
    : `no message and hasMore false for each of ${checked} users, as seeded (none of their chats holds it)`;
}
