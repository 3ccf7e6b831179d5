/**
 * Text as the message search sees it (docs/chat-features.md, "Search"): normalised (Unicode
 * NFKC, then lower case) and cut into overlapping pairs of code points. A query matches a text
 * where the query's pairs occur one after another in the text's pairs: exactly where the
 * normalised query is a substring of the normalised text, in any script, with or without
 * spaces. Self-contained (no imports, no outer names): the SQLite store's search thread runs its
 * source to confirm candidates.
 */
export function normalizeForSearch(text: string): string {
  return text.normalize('NFKC').toLowerCase();
}

/**
 * The normalised text's bigrams as index tokens, in order: each pair of code points as
 * `<hex>x<hex>`, ASCII letters and digits only, so that no character of the text is ever read as
 * query syntax by the index. Self-contained (no imports, no outer names; its lookup table hangs
 * on the function itself, whose own name is in scope when its source is eval'd as a named
 * function expression): the SQLite store's writer thread runs its source.
 *
 * Code points are read as `Array.from` reads them: a high surrogate followed by a low one is one
 * code point, any other surrogate is one of its own.
 */
export function searchTokens(normalized: string): string[] {
  const self = searchTokens as unknown as { hex?: string[] };
  let hex = self.hex;
  if (hex === undefined) {
    hex = [];
    for (let c = 0; c < 0x800; c++) hex.push(c.toString(16));
    self.hex = hex;
  }
  const tokens: string[] = [];
  const n = normalized.length;
  let prev = '';
  for (let i = 0; i < n; i++) {
    let c = normalized.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
      const d = normalized.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        c = (c - 0xd800) * 0x400 + d + 0x2400; // + 0x10000 - 0xdc00
        i++;
      }
    }
    const h = c < 0x800 ? hex[c]! : c.toString(16);
    if (prev !== '') tokens.push(prev + 'x' + h);
    prev = h;
  }
  return tokens;
}

/**
 * Exactly `searchTokens(normalized).join(' ')`, the text the SQLite store's search index holds
 * for a message, built in one pass without the array: for ~200 characters about a fifth of the
 * time of the array-of-Array.from version searchTokens replaced, under half of searchTokens' own
 * (bench/tokenize.ts). Each code point after the first appends one string from a
 * table, `<hex> <hex>x` (the token it ends, then the start of the one it begins); the last
 * one's dangling ` <hex>x` is cut off at the end. Self-contained (no imports, no outer names;
 * its table hangs on the function itself, as searchTokens' does): the writer thread runs its
 * source.
 */
export function searchTokenText(normalized: string): string {
  const self = searchTokenText as unknown as { pieces?: string[] };
  let pieces = self.pieces;
  if (pieces === undefined) {
    pieces = [];
    for (let c = 0; c < 0x800; c++) {
      const h = c.toString(16);
      pieces.push(h + ' ' + h + 'x');
    }
    self.pieces = pieces;
  }
  const n = normalized.length;
  let out = '';
  let count = 0;
  let last = 0;
  for (let i = 0; i < n; i++) {
    let c = normalized.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
      const d = normalized.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        c = (c - 0xd800) * 0x400 + d + 0x2400; // + 0x10000 - 0xdc00
        i++;
      }
    }
    if (count === 0) out = c.toString(16) + 'x';
    else if (c < 0x800) out += pieces[c]!;
    else {
      const h = c.toString(16);
      out += h + ' ' + h + 'x';
    }
    count++;
    last = c;
  }
  if (count < 2) return '';
  // The last code point began no token: drop its ' <hex>x'.
  return out.slice(0, out.length - last.toString(16).length - 2);
}
