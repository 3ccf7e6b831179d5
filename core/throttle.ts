/**
 * The throttle seam: "at most once per period" across every node. Used to coalesce read
 * receipts to one per user, chat and second (core/receipts.ts).
 *
 * Contract: `claim(key, ms)` claims the key for `ms` unless it is claimed already, on any node;
 * it resolves true when this call claimed it, else with how many ms remain (at least 1) until
 * the claim runs out. Of concurrent claims of one free key, exactly one is granted.
 */
export interface Throttle {
  claim(key: string, ms: number): Promise<true | number>;
}

/** In-process throttle: claims in a map, their ends swept as they pass. */
export class LocalThrottle implements Throttle {
  private readonly until = new Map<string, number>();
  private sweptAt = 0;

  async claim(key: string, ms: number): Promise<true | number> {
    const now = Date.now();
    this.sweep(now);
    const end = this.until.get(key);
    if (end !== undefined && end > now) return end - now;
    this.until.set(key, now + ms);
    return true;
  }

  /** At most once a second, forget the claims that have run out (the map stays as small as
   * the keys claimed in the last period or so). */
  private sweep(now: number) {
    if (now - this.sweptAt < 1000) return;
    this.sweptAt = now;
    for (const [key, end] of this.until) if (end <= now) this.until.delete(key);
  }
}
