/**
 * Latency histogram with buckets 1 % wide (logarithmic), so percentiles are within 1 % of the
 * exact value whatever the range (10 µs to minutes), counts from several generator processes
 * merge by addition, and hundreds of thousands of samples cost a few kilobytes over IPC.
 * Values are milliseconds. `missing` counts expected samples that never came (a delivery that
 * did not arrive): they rank above every value, so a percentile that falls among them is
 * Infinity.
 */
const MIN_MS = 0.01;
const GROWTH = Math.log(1.01);

export interface HistData {
  buckets: Map<number, number>;
  count: number;
  max: number;
  missing: number;
}

/** Buckets counted in an array as samples are added (0.01 ms up to about 10^15 ms: every
 * latency). The generators add one sample per delivery, and a Map update each was a visible
 * share of their time; the array is folded into the Map whenever the counts are read. */
const DENSE = 4096;

export class Hist {
  private readonly buckets = new Map<number, number>();
  /** Samples added since the counts were last read, by bucket (null: none). */
  private dense: Uint32Array | null = null;
  count = 0;
  max = 0;
  missing = 0;

  static from(data: HistData): Hist {
    const h = new Hist();
    h.merge(data);
    return h;
  }

  add(ms: number): void {
    const i = ms <= MIN_MS ? 0 : Math.ceil(Math.log(ms / MIN_MS) / GROWTH);
    if (i < DENSE) (this.dense ??= new Uint32Array(DENSE))[i]!++;
    else this.buckets.set(i, (this.buckets.get(i) ?? 0) + 1); // also NaN, as before
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  merge(other: HistData): this {
    this.fold();
    for (const [i, n] of other.buckets) this.buckets.set(i, (this.buckets.get(i) ?? 0) + n);
    this.count += other.count;
    this.missing += other.missing;
    if (other.max > this.max) this.max = other.max;
    return this;
  }

  /** The value below which `p` (0..1) of the samples fall: a bucket's upper edge, capped at
   * the largest sample. NaN when empty; Infinity when it falls among the missing. */
  percentile(p: number): number {
    const total = this.count + this.missing;
    if (total === 0) return NaN;
    const rank = Math.max(1, Math.ceil(p * total));
    if (rank > this.count) return Infinity;
    this.fold();
    let seen = 0;
    for (const i of [...this.buckets.keys()].sort((a, b) => a - b)) {
      seen += this.buckets.get(i)!;
      if (seen >= rank) return Math.min(MIN_MS * Math.exp(i * GROWTH), this.max);
    }
    return this.max;
  }

  /** A plain object for IPC (structured clone keeps the Map). */
  data(): HistData {
    this.fold();
    return { buckets: this.buckets, count: this.count, max: this.max, missing: this.missing };
  }

  /** Moves the array's counts into the Map. */
  private fold(): void {
    const dense = this.dense;
    if (!dense) return;
    for (let i = 0; i < DENSE; i++) if (dense[i]! > 0) this.buckets.set(i, (this.buckets.get(i) ?? 0) + dense[i]!);
    this.dense = null;
  }
}
