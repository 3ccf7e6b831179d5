/**
 * The sequencer seam: per-chat message numbers.
 *
 * Contract: `next(chatId)` returns a number strictly greater than every number it returned
 * before for that chat, and greater than the highest seq in the store when it first sees the
 * chat (seeded through `seed`). Consecutive calls return consecutive numbers, so a chat's
 * seqs are contiguous unless a numbered message is then lost before it is stored (a failed
 * commit), which leaves a gap, never a repeat.
 */
export interface Sequencer {
  next(chatId: string): Promise<number>;
  /**
   * `next`, only if `allowed()` still holds when the number is taken; null (no number used)
   * otherwise. The in-process sequencer asks `allowed` in the same synchronous step as it counts,
   * so a membership change made before a number is taken is always seen; a shared one asks it
   * just before asking Redis for the number.
   */
  nextIf(chatId: string, allowed: () => boolean): Promise<number | null>;
}

/** In-process sequencer: one counter per chat, seeded once from the store. */
export class LocalSequencer implements Sequencer {
  private readonly last = new Map<string, number>();
  private readonly seeding = new Map<string, Promise<void>>();

  constructor(private readonly seed: (chatId: string) => Promise<number>) {}

  async next(chatId: string): Promise<number> {
    return (await this.nextIf(chatId, () => true))!;
  }

  async nextIf(chatId: string, allowed: () => boolean): Promise<number | null> {
    if (!this.last.has(chatId)) await this.seeded(chatId);
    if (!allowed()) return null;
    const n = this.last.get(chatId)! + 1;
    this.last.set(chatId, n);
    return n;
  }

  /** Concurrent first calls share one store read. */
  private seeded(chatId: string): Promise<void> {
    let p = this.seeding.get(chatId);
    if (!p) {
      p = this.seed(chatId).then(
        (max) => {
          if (!this.last.has(chatId)) this.last.set(chatId, max);
          this.seeding.delete(chatId);
        },
        (err: unknown) => {
          this.seeding.delete(chatId);
          throw err;
        },
      );
      this.seeding.set(chatId, p);
    }
    return p;
  }
}
