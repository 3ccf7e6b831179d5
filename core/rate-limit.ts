/**
 * The rate-limit seam. Contract: `take(key)` consumes one unit of `key`'s budget and says
 * whether there was one; a key regains `perSecond` units per second up to `burst`.
 */
export interface RateLimiter {
  take(key: string): boolean;
  /** Whether `take` would succeed now, without spending anything. */
  has(key: string): boolean;
}

/** In-process token buckets; idle full buckets are forgotten so memory follows active keys. */
export class LocalRateLimiter implements RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private lastSweep = Date.now();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
    private readonly now: () => number = Date.now,
  ) {}

  take(key: string): boolean {
    const b = this.refill(key);
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    this.buckets.set(key, b);
    return ok;
  }

  has(key: string): boolean {
    const b = this.buckets.get(key);
    return !b || this.refill(key).tokens >= 1;
  }

  private refill(key: string) {
    const now = this.now();
    if (now - this.lastSweep > 60_000) this.sweep(now);
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    return b;
  }

  private sweep(now: number) {
    this.lastSweep = now;
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(key);
    }
  }
}
