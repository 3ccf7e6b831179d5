import type { Redis } from 'ioredis';
import type { Sequencer } from '../sequencer.js';

/** INCR of a per-chat key, or nil while the key is cold (first use, or Redis lost it). */
const NEXT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCR', KEYS[1])`;

/**
 * Per-chat seqs shared by every broker node: one Redis counter per chat under
 * `<namespace>:seq:<chatId>`. The store is read only when the key is cold: the highest stored
 * seq is set with NX (so the first node to seed wins), then every caller INCRs.
 *
 * The store can be behind the seqs already given out: with the RabbitMQ archive, a message is
 * acknowledged once queued and stored later by the worker. So a cold key (Redis restarted
 * without its data) is seeded with the highest of the store's seq and the highest this node
 * has given out: a seq numbered before the loss is never given again by a node that numbered
 * it. (Seqs given out by another node that the store does not hold yet are not known here: a
 * cluster of several broker nodes needs a Redis that keeps its data; see docs/architecture.md.)
 */
export class RedisSequencer implements Sequencer {
  /** Seeds in flight on this node, so concurrent first calls share one store read. An entry
   * lives until the key is set, and a moment longer for calls that found it cold just before. */
  private readonly seeding = new Map<string, Promise<unknown>>();
  /** The highest seq this node gave out, per chat. */
  private readonly given = new Map<string, number>();

  constructor(
    private readonly redis: Redis,
    private readonly namespace: string,
    private readonly seed: (chatId: string) => Promise<number>,
  ) {
    redis.defineCommand('chatSeqNext', { numberOfKeys: 1, lua: NEXT });
  }

  /** Asks `allowed` before the round trip to Redis: a change that reaches this node while the
   * INCR is under way is not seen (docs/architecture.md, "Membership changes and sends in
   * flight"). */
  async nextIf(chatId: string, allowed: () => boolean): Promise<number | null> {
    return allowed() ? this.next(chatId) : null;
  }

  async next(chatId: string): Promise<number> {
    const key = `${this.namespace}:seq:${chatId}`;
    let awaited: Promise<unknown> | undefined;
    for (;;) {
      const n = await (this.redis as unknown as { chatSeqNext(k: string): Promise<number | null> }).chatSeqNext(key);
      if (n !== null) {
        if (n > (this.given.get(chatId) ?? 0)) this.given.set(chatId, n);
        return n;
      }
      let seeding = this.seeding.get(chatId);
      // Cold again after a seed we waited for (Redis lost the key meanwhile): seed anew.
      if (!seeding || seeding === awaited) {
        const mine: Promise<unknown> = this.seed(chatId)
          .then((max) => this.redis.set(key, String(Math.max(max, this.given.get(chatId) ?? 0)), 'NX'))
          .then(
            () => setTimeout(() => this.forget(chatId, mine), 1000).unref(),
            (err: unknown) => {
              this.forget(chatId, mine); // a failed seed is not remembered: the next call tries again
              throw err;
            },
          );
        seeding = mine;
        this.seeding.set(chatId, seeding);
      }
      awaited = seeding;
      await seeding;
    }
  }

  private forget(chatId: string, seeding: Promise<unknown>) {
    if (this.seeding.get(chatId) === seeding) this.seeding.delete(chatId);
  }
}
