import type { Redis } from 'ioredis';
import type { Sequencer } from '../sequencer.js';
import { membersVersionKey, raiseMembersVersion } from './members-version.js';

/**
 * INCR of a per-chat key (KEYS[1]), or nil while the key is cold (first use, or Redis lost it).
 * With a members version in ARGV[1] (a send), first compared with the chat's announced one
 * (KEYS[2]): -1 if a later one was announced (the caller's cache is stale), -2 if the caller's
 * is ahead (its change is not announced yet). A cold version key takes the caller's.
 */
const NEXT = `
if ARGV[1] ~= '' then
  local mine = tonumber(ARGV[1])
  local announced = tonumber(redis.call('GET', KEYS[2]) or '-1')
  if announced < 0 then
    redis.call('SET', KEYS[2], ARGV[1])
    announced = mine
  end
  if mine < announced then return -1 end
  if mine > announced then return -2 end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCR', KEYS[1])`;

const STALE = -1;
const EARLY = -2;
/** How long a send waits for the announcement of a change its node already read from the store
 * before taking that version as announced (the announcing node may have died in between). */
const EARLY_WAIT_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Per-chat seqs shared by every broker node: one Redis counter per chat under
 * `<namespace>:seq:<chatId>`. The store is read only when the key is cold: the highest stored
 * seq is set with NX (so the first node to seed wins), then every caller INCRs.
 *
 * A send is numbered in one step with the check that its node's membership cache is as new as
 * the latest announced membership change of the chat (core/redis/members-version.ts), so no
 * node numbers a send after a removal that was announced before it, however late that node
 * hears of it.
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
    redis.defineCommand('chatSeqNext', { numberOfKeys: 2, lua: NEXT });
  }

  async next(chatId: string): Promise<number> {
    return (await this.take(chatId, null)) as number;
  }

  async nextIf(chatId: string, admit: () => number | null): Promise<number | 'refused' | 'stale'> {
    const started = Date.now();
    for (let pause = 2; ; pause = Math.min(pause * 2, 50)) {
      const version = admit();
      if (version === null) return 'refused';
      const n = await this.take(chatId, version);
      if (n === STALE) return 'stale';
      if (n !== EARLY) return n;
      // The cache read a change from the store that its node has not announced yet: the
      // announcement follows at once (a join's after its system message). Past the wait, the
      // version is taken as announced.
      if (Date.now() - started > EARLY_WAIT_MS) await raiseMembersVersion(this.redis, this.namespace, chatId, version);
      else await sleep(pause);
    }
  }

  /** A seq, or STALE / EARLY for a send checked at `version`. */
  private async take(chatId: string, version: number | null): Promise<number> {
    const key = `${this.namespace}:seq:${chatId}`;
    const versionKey = membersVersionKey(this.namespace, chatId);
    let awaited: Promise<unknown> | undefined;
    for (;;) {
      const n = await (this.redis as unknown as { chatSeqNext(k: string, v: string, mine: string): Promise<number | null> })
        .chatSeqNext(key, versionKey, version === null ? '' : String(version));
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
