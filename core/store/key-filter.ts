/**
 * A Bloom filter of strings: `has(key)` is false only for a key never added; true for every
 * added one and, wrongly, for about 1 % of the others while no more than `capacity` keys are in
 * it (10 bits and 7 probes a key), more beyond. The segment log (core/store/sqlite-segment-log.ts)
 * keeps the idempotency keys the database holds in one, so that a new key, nearly every
 * message's, is not looked up in the database's index (a random leaf a message: about 20 µs).
 *
 * Self-contained (no imports, no outer names): the writer thread runs its source.
 */
export function keyFilter(capacity: number) {
  const words = new Int32Array(Math.max(32, Math.ceil((capacity * 10) / 32)));
  const bits = words.length * 32;
  const probes = 7;
  let count = 0;
  // Two 32-bit hashes of the key's UTF-16 code units in one pass (FNV-1a and a multiplicative
  // one, each finished by an avalanche); the probes are h1 + i * h2 (Kirsch and Mitzenmacher).
  let h1 = 0;
  let h2 = 0;
  const hash = (key: string) => {
    let a = 0x811c9dc5;
    let b = 0x2545f491;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b + c, 0x5bd1e995);
      b ^= b >>> 13;
    }
    a ^= a >>> 16;
    a = Math.imul(a, 0x85ebca6b);
    a ^= a >>> 13;
    b ^= b >>> 16;
    b = Math.imul(b, 0xc2b2ae35);
    b ^= b >>> 16;
    h1 = a >>> 0;
    h2 = (b | 1) >>> 0;
  };
  return {
    add(key: string): void {
      hash(key);
      for (let i = 0; i < probes; i++) {
        const bit = (h1 + i * h2) % bits;
        words[bit >>> 5]! |= 1 << (bit & 31);
      }
      count++;
    },
    has(key: string): boolean {
      hash(key);
      for (let i = 0; i < probes; i++) {
        const bit = (h1 + i * h2) % bits;
        if ((words[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
      }
      return true;
    },
    /** Whether more keys were added than it was made for (its false positives grow). */
    full: () => count > capacity,
    capacity,
  };
}

export type KeyFilter = ReturnType<typeof keyFilter>;
