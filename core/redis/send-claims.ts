import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Claim, ClaimHold, SendClaims, SentRef } from '../send-claims.js';

/** SET NX of a claim token, else the key's value: '' when granted, a token while another send
 * holds it, the sent ref (JSON) once completed. */
const CLAIM = `
if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return '' end
return redis.call('GET', KEYS[1]) or '?'`;

/** Acts only while the key still holds our token (a claim that expired and was taken by
 * another send is not touched). ARGV: token, action ('renew', 'release' or the value to
 * set), TTL. Returns 0 when the token was gone. */
const SETTLE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'renew' then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if ARGV[2] == 'release' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`;

/** The Redis key of a claim. */
export const claimKey = (namespace: string, key: string) => `${namespace}:sent:${key}`;

export interface RedisSendClaimsOptions {
  /** How long a claim outlives its node: a held claim is renewed every third of it. */
  claimTtlMs?: number;
  /** How long a completed key is remembered (the store's unique index covers the rest). */
  sentTtlMs?: number;
  /** How long a claim waits for another node's send to settle before giving up (the send then
   * fails, unacknowledged, and the client retries). */
  waitMs?: number;
}

/**
 * Claims shared by every node, under `<namespace>:sent:<key>`. A claim is a random token set
 * with NX and a TTL, renewed while its send is in flight, so that it outlives a slow send but
 * not a dead node. Completing it replaces the token with `{id, seq}` for an hour. A node
 * finding another's token polls until it settles.
 */
export class RedisSendClaims implements SendClaims {
  private readonly claimTtlMs: number;
  private readonly sentTtlMs: number;
  private readonly waitMs: number;

  constructor(
    private readonly redis: Redis,
    private readonly namespace: string,
    options: RedisSendClaimsOptions = {},
  ) {
    this.claimTtlMs = options.claimTtlMs ?? 30_000;
    this.sentTtlMs = options.sentTtlMs ?? 3600_000;
    this.waitMs = options.waitMs ?? 10_000;
    redis.defineCommand('chatClaim', { numberOfKeys: 1, lua: CLAIM });
    redis.defineCommand('chatSettleClaim', { numberOfKeys: 1, lua: SETTLE });
  }

  async claim(key: string): Promise<Claim> {
    const rkey = claimKey(this.namespace, key);
    const deadline = Date.now() + this.waitMs;
    for (let pause = 10; ; pause = Math.min(pause * 2, 200)) {
      const token = `claim:${randomUUID()}`;
      const found = await this.commands.chatClaim(rkey, token, this.claimTtlMs);
      if (found === '') return { claimed: true, hold: this.hold(rkey, token) };
      if (found.startsWith('{')) return { claimed: false, sent: JSON.parse(found) as SentRef };
      if (Date.now() + pause > deadline) throw new Error('another send with this clientMsgId is still in progress');
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  /** Keeps the claim alive until settled; a renewal that fails is retried at the next tick. */
  private hold(rkey: string, token: string): ClaimHold {
    const renew = setInterval(() => {
      this.commands.chatSettleClaim(rkey, token, 'renew', this.claimTtlMs).catch(() => {});
    }, Math.max(10, Math.floor(this.claimTtlMs / 3)));
    renew.unref();
    let done = false;
    const settle = async (action: string, ttl: number) => {
      if (done) return 1;
      done = true;
      clearInterval(renew);
      return this.commands.chatSettleClaim(rkey, token, action, ttl);
    };
    return {
      complete: async (sent) => {
        if ((await settle(JSON.stringify({ id: sent.id, seq: sent.seq }), this.sentTtlMs)) === 0) {
          throw new Error(`the claim on ${rkey} expired before its send completed; a retry may be sent again`);
        }
      },
      release: async () => {
        await settle('release', 0);
      },
    };
  }

  private get commands() {
    return this.redis as unknown as {
      chatClaim(k: string, token: string, ttl: number): Promise<string>;
      chatSettleClaim(k: string, token: string, action: string, ttl: number): Promise<number>;
    };
  }
}
