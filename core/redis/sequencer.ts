import type { Redis } from 'ioredis';
import type { Sequencer } from '../sequencer.js';

/** INCR on a per-chat key; a cold key (first use, or Redis lost it) is seeded once, atomically. */
const NEXT = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[1] == '' then return false end
  redis.call('SET', KEYS[1], ARGV[1], 'NX')
end
return redis.call('INCR', KEYS[1])`;

/**
 * Per-chat seqs shared by every broker node: one Redis counter per chat under
 * `<namespace>:seq:<chatId>`. The store is read only when the key is cold.
 */
export class RedisSequencer implements Sequencer {
  /** Store reads in flight, so concurrent first calls on this node share one. */
  private readonly seeding = new Map<string, Promise<number>>();

  constructor(
    private readonly redis: Redis,
    private readonly namespace: string,
    private readonly seed: (chatId: string) => Promise<number>,
  ) {
    redis.defineCommand('chatSeqNext', { numberOfKeys: 1, lua: NEXT });
  }

  async next(chatId: string): Promise<number> {
    const key = `${this.namespace}:seq:${chatId}`;
    const run = (seed: string) => (this.redis as unknown as { chatSeqNext(k: string, s: string): Promise<number | null> }).chatSeqNext(key, seed);
    const n = await run('');
    if (n !== null) return n;
    let seed = this.seeding.get(chatId);
    if (!seed) {
      seed = this.seed(chatId).finally(() => this.seeding.delete(chatId));
      this.seeding.set(chatId, seed);
    }
    return (await run(String(await seed)))!;
  }
}
