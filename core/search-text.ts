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
 * query syntax by the index. Self-contained (no imports, no outer names): the SQLite store's
 * writer thread runs its source.
 */
export function searchTokens(normalized: string): string[] {
  const points = Array.from(normalized, (c) => c.codePointAt(0)!.toString(16));
  const tokens: string[] = [];
  for (let i = 1; i < points.length; i++) tokens.push(`${points[i - 1]}x${points[i]}`);
  return tokens;
}
