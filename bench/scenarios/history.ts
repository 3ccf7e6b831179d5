import { type Context, failure, generators, int, ms, out, percentile, problemLines, progress, stopAll } from '../lib/common.js';
import { PASSWORD, loadHistorySeed } from '../lib/seed.js';
import type { HttpResult } from '../lib/wire.js';

/**
 * history: the chat server on a store of 1,000,000 messages (100 chats × 10,000, seeded through
 * the store), REST pages of 50 from a generator: the latest page, and pages before= / after= a
 * random position, each kind from one requester (the latency a client sees) and from four at
 * once (the same under load, queueing included); then logins (scrypt by design).
 * Chat server only: the baselines keep no history.
 */
export async function history(ctx: Context): Promise<void> {
  const quick = ctx.opts.quick;
  const requests = quick ? 300 : 3000;
  const logins = quick ? 10 : 40;
  out(`== history: GET /api/messages/:chatId?limit=50 from 1 and from 4 concurrent requesters, ${int(requests)} requests per kind and count; POST /api/users/login`);
  if (!ctx.servers.includes('chat')) {
    out('  not run: the chat server is not among --servers');
    out();
    return;
  }
  const hs = await loadHistorySeed(ctx.seed, progress);
  out(`   store: ${int(hs.messages)} messages in ${hs.chats.length} chats`);
  progress('history on chat');
  const server = await ctx.start('chat', { templateDb: hs.db });
  const gen = generators(1)[0]!;
  const rand = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));
  const paths = (kind: 'latest' | 'before' | 'after') =>
    Array.from({ length: 1000 }, () => {
      const chat = hs.chats[rand(0, hs.chats.length - 1)]!;
      if (kind === 'latest') return `/api/messages/${chat.id}?limit=50`;
      if (kind === 'before') return `/api/messages/${chat.id}?before=${rand(52, chat.lastSeq)}&limit=50`;
      return `/api/messages/${chat.id}?after=${rand(0, chat.lastSeq - 50)}&limit=50`;
    });
  const notes: string[] = [];
  try {
    const token = ctx.seed.users[hs.requester]!.token;
    const base = server.httpUrl!;
    const line = (label: string, r: HttpResult) => {
      const bad = Object.entries(r.statuses).filter(([s]) => s !== '200');
      out(`  ${label.padEnd(34)} p50 ${ms(percentile(r.latencies, 0.5)).padStart(8)}   p99 ${ms(percentile(r.latencies, 0.99)).padStart(8)}   (${int(r.latencies.length)} requests, ${int(r.latencies.length / r.seconds)}/s${bad.length ? `; ${bad.map(([s, n]) => `${n}× ${s}`).join(', ')}` : ''})`);
    };
    // Warm-up: the first requests pay for JIT and the page cache.
    await gen.call<HttpResult>('http', { base, token, paths: paths('latest'), method: 'GET', requests: 200, concurrency: 4 });
    for (const concurrency of [1, 4]) {
      for (const kind of ['latest', 'before', 'after'] as const) {
        const r = await gen.call<HttpResult>('http', { base, token, paths: paths(kind), method: 'GET', requests, concurrency });
        line(`${kind === 'latest' ? 'latest page' : `page ${kind}=random`}, ${concurrency} at once`, r);
      }
    }
    const bodies = Array.from({ length: logins }, (_, i) => ({ username: ctx.seed.users[i % 100]!.username, password: PASSWORD }));
    const r = await gen.call<HttpResult>('http', { base, token, paths: ['/api/users/login'], method: 'POST', bodies, requests: logins, concurrency: 2 });
    line('login (2 concurrent)', r);
    out(`  ${'message search'.padEnd(34)} see the search scenario`);
  } catch (err) {
    out(`  not measured: ${failure(err, server)}`);
  } finally {
    await stopAll([gen]);
    const died = server.exited();
    await server.stop();
    if (died) notes.push(`    chat: server ${died}`);
    if (server.problems.size) notes.push('    chat server reported:', ...problemLines(server));
  }
  for (const n of notes) out(n);
  out('  aedes, mosquitto: not applicable (no message history)');
  out();
}
