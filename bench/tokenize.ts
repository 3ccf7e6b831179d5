/**
 * `node dist/bench/tokenize.js [--messages 200000 --rounds 5]` (after `tsc -p tsconfig.build.json`)
 *
 * A micro-benchmark of the search index's tokeniser, the step the SQLite store's writer thread
 * pays per message for its search row: `searchTokens(normalized).join(' ')` (the array, then the
 * join; as searchTokens was before searchTokenText came, `original`, and as it is now, `now`)
 * against `searchTokenText(normalized)` (one pass, same string), over `messages` texts per round,
 * in alternating rounds (original, now, new, original, ...), on two texts: bench:append's
 * (`'x'.repeat(200) + ' bench append'`, ASCII) and a mixed-script one (Latin-1, Cyrillic, Hebrew,
 * CJK, emoji, a combining mark). `normalizeForSearch` is timed on its own: both take its output.
 * Prints µs per message, the median of the rounds and the range. One thread, no I/O.
 */
import { parseArgs } from 'node:util';
import { normalizeForSearch, searchTokenText, searchTokens } from '../core/search-text.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '200000' },
    rounds: { type: 'string', default: '5' },
  },
});
const MESSAGES = Number(values.messages);
const ROUNDS = Number(values.rounds);

const TEXTS: [name: string, text: string][] = [
  ['bench append (ASCII)', 'x'.repeat(200) + ' bench append'],
  ['mixed script', 'Grüße aus Köln, naïve café — Привет, мир! שלום 東京で会いましょう 🎉👍🏽 e\u0301 the quick brown fox jumps over the lazy dog '.repeat(2)],
];

// searchTokens as it was before this bench's commit, the writer thread's tokeniser until then.
const originalSearchTokens = (normalized: string): string[] => {
  const points = Array.from(normalized, (c) => c.codePointAt(0)!.toString(16));
  const tokens: string[] = [];
  for (let i = 1; i < points.length; i++) tokens.push(`${points[i - 1]}x${points[i]}`);
  return tokens;
};

const variants: [name: string, run: (normalized: string) => string][] = [
  ['original searchTokens().join', (n) => originalSearchTokens(n).join(' ')],
  ['now: searchTokens().join', (n) => searchTokens(n).join(' ')],
  ['new: searchTokenText', (n) => searchTokenText(n)],
];

let sink = 0; // read from every result, so that none is optimised away
const time = (run: (s: string) => string, text: string): number => {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < MESSAGES; i++) {
    const out = run(text);
    sink += out.charCodeAt(out.length >> 1) | 0;
  }
  return Number(process.hrtime.bigint() - t0) / 1e3 / MESSAGES;
};
const fmt = (us: number[]) => {
  const s = [...us].sort((a, b) => a - b);
  return `${s[s.length >> 1]!.toFixed(2)} µs (${s[0]!.toFixed(2)}-${s[s.length - 1]!.toFixed(2)})`;
};

console.log(`tokenize: ${MESSAGES} messages per round, ${ROUNDS} rounds, Node ${process.version}`);
for (const [name, raw] of TEXTS) {
  const text = normalizeForSearch(raw);
  const expected = originalSearchTokens(text).join(' ');
  if (searchTokenText(text) !== expected || searchTokens(text).join(' ') !== expected) throw new Error(`outputs differ on ${name}`);
  const chars = Array.from(text).length;
  const us = variants.map((): number[] => []);
  const norm: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (let v = 0; v < variants.length; v++) us[v]!.push(time(variants[v]![1], text));
    norm.push(time(normalizeForSearch, raw));
  }
  console.log(`${name}: ${text.length} UTF-16 units, ${chars} code points`);
  for (let v = 0; v < variants.length; v++) console.log(`  ${variants[v]![0].padEnd(30)} ${fmt(us[v]!)} per message`);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  console.log(`  ${'original/new, now/new'.padEnd(30)} ${(median(us[0]!) / median(us[2]!)).toFixed(1)}x, ${(median(us[1]!) / median(us[2]!)).toFixed(1)}x`);
  console.log(`  ${'(normalizeForSearch)'.padEnd(30)} ${fmt(norm)} per message`);
}
if (sink === 0.5) console.log(sink);
