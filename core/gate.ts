/**
 * At most `limit` holders at once; the others wait, and are let in in the order they came.
 * `enter()` returns nothing when there is room now (no promise on the fast path); each holder
 * calls `leave()` exactly once.
 */
export class Gate {
  private inside = 0;
  private waiting: (() => void)[] = [];
  private head = 0;

  constructor(private readonly limit: number) {}

  enter(): Promise<void> | undefined {
    if (this.inside < this.limit) {
      this.inside++;
      return undefined;
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  leave() {
    if (this.head < this.waiting.length) {
      const next = this.waiting[this.head++]!;
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting = this.waiting.slice(this.head);
        this.head = 0;
      }
      next(); // the slot passes to it
    } else {
      this.inside--;
    }
  }

  /** How many wait. */
  get queued(): number {
    return this.waiting.length - this.head;
  }
}
