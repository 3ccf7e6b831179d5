import type { Redis } from 'ioredis';
import { membersLock } from '../send-claims.js';
import type { Admission, Sequencer } from '../sequencer.js';
import { claimKey } from './send-claims.js';
import { membersVersionKey, raiseMembersVersion } from './members-version.js';

/**
 * INCR of a per-chat key (KEYS[1]), or nil while the key is cold (first use, or Redis lost it).
 * For a send, ARGV carries the members version the sender was checked at and whether it is a
 * member there ('1' or '0'), first compared with the chat's announced version (KEYS[2]):
 * -1 stale (a later version was announced: the caller's cache is behind); -4 refused (not a
 * member at the latest version); -2 early (the caller's cache is ahead: its change is being
 * announced, its lock KEYS[3] is held); -3 early with no change in progress (the announcement
 * failed, or its node died). A cold version key takes the caller's.
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
  if ARGV[2] ~= '1' then return -4 end
  if mine > announced then
    if redis.call('EXISTS', KEYS[3]) == 1 then return -2 end
    return -3
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCR', KEYS[1])`;

const STALE = -1;
// -2: early, wait (below)
const UNANNOUNCED = -3;
const REFUSED = -4;
/** How long a send waits for a change its node has already read to be announced, while that
 * change's node still holds the chat's members lock. Past it the version is taken as announced. */
const EARLY_WAIT_MS = 10_000;

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
    redis.defineCommand('chatSeqNext', { numberOfKeys: 3, lua: NEXT });
  }

  async next(chatId: string): Promise<number> {
    return this.take(chatId, null);
  }

  async nextIf(chatId: string, admit: () => Admission | null): Promise<number | 'refused' | 'stale'> {
    const started = Date.now();
    for (let pause = 2; ; pause = Math.min(pause * 2, 50)) {
      const seen = admit();
      if (seen === null) return 'stale'; // not cached here: load it
      const n = await this.take(chatId, seen);
      if (n === STALE) return 'stale';
      if (n === REFUSED) return 'refused';
      if (n >= 0) return n;
      // The cache read a change from the store that is not announced yet. While the change is
      // in progress (its node holds the chat's members lock: a join announces after its system
      // messages) the send waits; once no change is in progress, or past the wait, the version
      // is taken as announced (the announcement failed, or its node died).
      if (n === UNANNOUNCED || Date.now() - started > EARLY_WAIT_MS) await raiseMembersVersion(this.redis, this.namespace, chatId, seen.version);
      else await sleep(pause);
    }
  }

  /** A cold key is answered as a seed would set it, without setting it. */
  async current(chatId: string): Promise<number> {
    const value = await this.redis.get(`${this.namespace}:seq:${chatId}`);
    return value !== null ? Number(value) : Math.max(await this.seed(chatId), this.given.get(chatId) ?? 0);
  }

  /** A seq, or one of the negative answers above for a send checked at `seen`. */
  private async take(chatId: string, seen: Admission | null): Promise<number> {
    const key = `${this.namespace}:seq:${chatId}`;
    const versionKey = membersVersionKey(this.namespace, chatId);
    const lockKey = claimKey(this.namespace, membersLock(chatId));
    let awaited: Promise<unknown> | undefined;
    for (;;) {
      const n = await (this.redis as unknown as { chatSeqNext(k: string, v: string, lock: string, mine: string, member: string): Promise<number | null> })
        .chatSeqNext(key, versionKey, lockKey, seen === null ? '' : String(seen.version), seen?.member ? '1' : '0');
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
