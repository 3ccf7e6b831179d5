/**
 * The sequencer seam: per-chat message numbers.
 *
 * Contract: `next(chatId)` returns a number strictly greater than every number it returned
 * before for that chat, and greater than the highest seq in the store when it first sees the
 * chat (seeded through `seed`). Consecutive calls return consecutive numbers, so a chat's
 * seqs are contiguous unless a numbered message is then lost before it is stored (a failed
 * commit), which leaves a gap, never a repeat.
 */
/** What a node's membership cache says about a sender: its members version, and whether the
 * sender is a member at it. */
export interface Admission {
  version: number;
  member: boolean;
}

export interface Sequencer {
  next(chatId: string): Promise<number>;
  /**
   * A number for a send, only while its sender is a member. `admit()` answers from the node's
   * membership cache: the chat's members version it holds and whether the sender is a member
   * at it, or null when the chat is not cached.
   * - 'refused': not a member (at a version that is the latest, for a shared sequencer), no
   *   number used;
   * - 'stale' (a shared sequencer only): the chat is not cached, or a membership change was
   *   announced that this node's cache has not applied yet; refresh the cache and ask again.
   * The in-process sequencer asks `admit` in the same synchronous step as it counts; a shared one
   * takes the number only if no change past that version was announced (and waits while a
   * change the cache has already read is being announced), in one step with counting.
   */
  nextIf(chatId: string, admit: () => Admission | null): Promise<number | 'refused' | 'stale'>;
  /** The highest number given out for the chat so far, by any node (the seed when none was):
   * the chat's last seq as live delivery knows it, which a store behind a queue may lag. */
  current(chatId: string): Promise<number>;
}

/** In-process sequencer: one counter per chat, seeded once from the store. */
export class LocalSequencer implements Sequencer {
  private readonly last = new Map<string, number>();
  private readonly seeding = new Map<string, Promise<void>>();

  constructor(private readonly seed: (chatId: string) => Promise<number>) {}

  async next(chatId: string): Promise<number> {
    if (!this.last.has(chatId)) await this.seeded(chatId);
    return this.count(chatId);
  }

  async nextIf(chatId: string, admit: () => Admission | null): Promise<number | 'refused'> {
    if (!this.last.has(chatId)) await this.seeded(chatId);
    return admit()?.member ? this.count(chatId) : 'refused';
  }

  async current(chatId: string): Promise<number> {
    if (!this.last.has(chatId)) await this.seeded(chatId);
    return this.last.get(chatId)!;
  }

  private count(chatId: string): number {
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
