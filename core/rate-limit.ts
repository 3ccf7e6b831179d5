/**
 * The rate-limit seam. Contract: `take(key)` spends one unit of `key`'s budget and says whether
 * there was one; `has(key)` says whether `take` would succeed, spending nothing; `wait(key)`
 * is the seconds until it would (0 when it would now; for Retry-After), spending nothing. A
 * key starts with `burst` units and regains `perSecond` units per second, up to `burst`. Keys
 * are independent. Implementations: `LocalRateLimiter` (this process) and `RedisRateLimiter`
 * (shared by every node).
 */
export interface RateLimiter {
  take(key: string): Promise<boolean>;
  has(key: string): Promise<boolean>;
  wait(key: string): Promise<number>;
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

  async take(key: string): Promise<boolean> {
    return this.takeNow(key);
  }

  async has(key: string): Promise<boolean> {
    return (await this.wait(key)) === 0;
  }

  async wait(key: string): Promise<number> {
    if (!this.buckets.has(key)) return 0;
    const { tokens } = this.refill(key);
    return tokens >= 1 ? 0 : (1 - tokens) / this.perSecond;
  }

  /** Synchronous take, for limits that are per node by nature (e.g. connects per IP). */
  takeNow(key: string): boolean {
    const b = this.refill(key);
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    this.buckets.set(key, b);
    return ok;
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
