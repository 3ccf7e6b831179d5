/**
 * The REST generator process (forked by rest-load.ts): `load` sends paced requests and returns
 * their latencies by label and a few response bodies. Never imported by the bench process.
 */
import { Agent, request } from 'node:http';
import { serve } from './procs.js';
import type { LabelFigures, RestLoadArgs, RestLoadResult } from './rest-load.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function load(a: RestLoadArgs): Promise<RestLoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: a.concurrency });
  const url = new URL(a.base);
  const byLabel: Record<string, LabelFigures> = {};
  const samples: RestLoadResult['samples'] = {};
  const keep = a.samples ?? 1;
  let late = 0;
  let next = 0;
  const one = (k: number) =>
    new Promise<void>((resolve) => {
      const r = a.requests[k % a.requests.length]!;
      const figures = (byLabel[r.label] ??= { latencies: [], statuses: {}, bytes: 0 });
      const kept = (samples[r.key] ??= []);
      const sample = kept.length < keep;
      const t0 = performance.now();
      const req = request(
        { agent, host: url.hostname, port: url.port, path: r.path, method: 'GET', headers: { authorization: `Bearer ${r.token}` } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => {
            figures.bytes += chunk.length;
            if (sample) chunks.push(chunk);
          });
          res.on('end', () => {
            figures.latencies.push(performance.now() - t0);
            figures.statuses[String(res.statusCode)] = (figures.statuses[String(res.statusCode)] ?? 0) + 1;
            if (sample && kept.length < keep) kept.push({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
            resolve();
          });
        },
      );
      // A server that stops answering must not stall the bench.
      req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
      req.on('error', (err) => {
        figures.statuses[err.message] = (figures.statuses[err.message] ?? 0) + 1;
        resolve();
      });
      req.end();
    });
  const start = performance.now() + 20;
  const until = start + a.durationMs;
  await Promise.all(
    Array.from({ length: a.concurrency }, async () => {
      for (;;) {
        const k = next++;
        const due = start + (k * 1000) / a.rate;
        if (due >= until) return;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        else if (wait < -10) late++;
        await one(k);
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  agent.destroy();
  for (const f of Object.values(byLabel)) f.latencies.sort((x, y) => x - y);
  return { byLabel, seconds, late, samples };
}

serve({ load, closeAll: () => undefined });
