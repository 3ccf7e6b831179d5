import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Claim, SendClaims, SentRef } from '../send-claims.js';

/** SET NX of a claim token, else the key's value: '' when claimed, a token while another send
 * holds it, the sent ref (JSON) once completed. */
const CLAIM = `
if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return '' end
return redis.call('GET', KEYS[1]) or '?'`;

/** Deletes or overwrites the key only while it still holds our token: a claim that outlived
 * its TTL and was taken by another node is not touched. ARGV: token, new value ('' deletes), TTL. */
const SETTLE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`;

export interface RedisSendClaimsOptions {
  /** How long a claim lasts if its node dies before settling it. */
  claimTtlMs?: number;
  /** How long a completed key is remembered (the store's unique index covers the rest). */
  sentTtlMs?: number;
  /** How long a claim waits for another node's send to settle before giving up (the send then
   * fails, unacknowledged, and the client retries). */
  waitMs?: number;
}

/**
 * Claims shared by every node, under `<namespace>:sent:<key>`. A claim is a token set with NX
 * and a TTL; completing it replaces the token with `{id, seq}` for an hour. A node waiting on
 * another's claim polls until it settles.
 */
export class RedisSendClaims implements SendClaims {
  private readonly tokens = new Map<string, string>();
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
    const deadline = Date.now() + this.waitMs;
    for (let pause = 10; ; pause = Math.min(pause * 2, 200)) {
      const token = `claim:${randomUUID()}`;
      const found = await this.commands.chatClaim(this.key(key), token, this.claimTtlMs);
      if (found === '') {
        this.tokens.set(key, token);
        return { claimed: true };
      }
      if (found.startsWith('{')) return { claimed: false, sent: JSON.parse(found) as SentRef };
      if (Date.now() + pause > deadline) throw new Error('another send with this clientMsgId is still in progress');
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  async complete(key: string, sent: SentRef): Promise<void> {
    await this.settle(key, JSON.stringify({ id: sent.id, seq: sent.seq }));
  }

  async release(key: string): Promise<void> {
    await this.settle(key, '');
  }

  private async settle(key: string, value: string) {
    const token = this.tokens.get(key);
    if (token === undefined) return;
    this.tokens.delete(key);
    await this.commands.chatSettleClaim(this.key(key), token, value, this.sentTtlMs);
  }

  private key(key: string) {
    return `${this.namespace}:sent:${key}`;
  }

  private get commands() {
    return this.redis as unknown as {
      chatClaim(k: string, token: string, ttl: number): Promise<string>;
      chatSettleClaim(k: string, token: string, value: string, ttl: number): Promise<number>;
    };
  }
}
