import { describe, expect, it } from 'vitest';
import { normalizeForSearch, searchTokenText, searchTokens } from '../core/search-text.js';

/**
 * core/search-text.ts: the fast one-pass tokenisers against the plain definition (code points as
 * `Array.from` reads them, each pair as `<hex>x<hex>`), on literal cases and a seeded corpus of
 * mixed scripts with lone surrogates; and their sources, eval'd as the store's threads eval them.
 */
const referenceTokens = (normalized: string): string[] => {
  const points = Array.from(normalized, (c) => c.codePointAt(0)!.toString(16));
  const tokens: string[] = [];
  for (let i = 1; i < points.length; i++) tokens.push(`${points[i - 1]}x${points[i]}`);
  return tokens;
};

// mulberry32: the same corpus every run.
const rng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

// Ranges of UTF-16 code units or code points to draw from, by kind.
const KINDS: [lo: number, hi: number][] = [
  [0x20, 0x7e], // ASCII printable
  [0x00, 0x1f], // ASCII controls
  [0x80, 0xff], // Latin-1
  [0x100, 0x7ff], // Latin Extended .. NKo, the table's range
  [0x0300, 0x036f], // combining marks
  [0x800, 0xfff], // just past the table
  [0x3040, 0x30ff], // kana
  [0x4e00, 0x9fff], // CJK
  [0xac00, 0xd7a3], // Hangul
  [0xe000, 0xffff], // private use .. specials
  [0x1f300, 0x1faff], // emoji (astral)
  [0x10000, 0x10ffff], // any astral
  [0xd800, 0xdbff], // lone high surrogate
  [0xdc00, 0xdfff], // lone low surrogate
];

const corpus = (count: number, seed: number): string[] => {
  const random = rng(seed);
  const out: string[] = ['', 'a', 'é', '東', '😀', '\ud800', '\udc00', '\ud800\ud800', '\udc00\ud800', '\ud83d\ude00\ud83d'];
  for (let n = 0; n < count; n++) {
    const length = Math.floor(random() * (random() < 0.2 ? 4 : 300));
    let s = '';
    for (let i = 0; i < length; i++) {
      // Mostly ASCII, as messages mostly are, with runs of the other kinds.
      const [lo, hi] = random() < 0.5 ? KINDS[0]! : KINDS[Math.floor(random() * KINDS.length)]!;
      s += String.fromCodePoint(lo + Math.floor(random() * (hi - lo + 1)));
    }
    out.push(s);
  }
  return out;
};

const LITERAL: [text: string, tokens: string[]][] = [
  ['', []],
  ['a', []],
  ['ab', ['61x62']],
  ['abc', ['61x62', '62x63']],
  ['a b', ['61x20', '20x62']],
  ['aaa', ['61x61', '61x61']],
  ['ñé', ['f1xe9']],
  ['東京', ['6771x4eac']],
  ['a😀b', ['61x1f600', '1f600x62']],
  ['😀', []],
  ['😀😀', ['1f600x1f600']],
  ['e\u0301', ['65x301']],
  ['\ud800a', ['d800x61']], // lone high surrogate
  ['a\udc00', ['61xdc00']], // lone low surrogate
  ['\udc00\ud800', ['dc00xd800']], // low then high: two lone ones
  ['x\ud83d', ['78xd83d']], // high surrogate at the end
  ['\u07ff\u0800', ['7ffx800']], // either side of the table's edge
  ['\u0000\uffff', ['0xffff']],
  ['\u{10ffff}\u{10000}', ['10ffffx10000']],
];

describe('search tokens', () => {
  it('literal cases', () => {
    for (const [text, tokens] of LITERAL) {
      expect(referenceTokens(text), JSON.stringify(text)).toEqual(tokens);
      expect(searchTokens(text), JSON.stringify(text)).toEqual(tokens);
      expect(searchTokenText(text), JSON.stringify(text)).toBe(tokens.join(' '));
    }
  });

  it('searchTokens and searchTokenText agree with the plain definition on a seeded corpus', () => {
    const texts = corpus(3000, 20240611);
    for (const text of texts) {
      const expected = referenceTokens(text);
      const at = JSON.stringify(text);
      expect(searchTokens(text), at).toEqual(expected);
      expect(searchTokenText(text), at).toBe(expected.join(' '));
      const normalized = normalizeForSearch(text);
      expect(searchTokenText(normalized), at).toBe(referenceTokens(normalized).join(' '));
    }
  });

  it('the bench texts', () => {
    for (const text of ['x'.repeat(200) + ' bench append', 'Grüße aus Köln — 東京で会いましょう 🎉 naïve café Привет мир שלום 😀👍🏽 e\u0301']) {
      expect(searchTokenText(text)).toBe(referenceTokens(text).join(' '));
    }
  });

  it('their sources run as the store threads load them: eval as a named function expression', () => {
    const evalFunction = (fn: (s: string) => unknown) => (0, eval)('(' + fn.toString() + ')') as typeof fn;
    const text = evalFunction(searchTokenText) as typeof searchTokenText;
    const tokens = evalFunction(searchTokens) as typeof searchTokens;
    expect(text).not.toBe(searchTokenText);
    for (const t of corpus(300, 7)) {
      const expected = referenceTokens(t);
      expect(text(t), JSON.stringify(t)).toBe(expected.join(' '));
      expect(tokens(t), JSON.stringify(t)).toEqual(expected);
    }
  });
});
