import type { Redis } from 'ioredis';
import type { RateLimiter } from '../rate-limit.js';

/** Token bucket in one atomic script, on Redis' clock so every node agrees. ARGV: burst,
 * units per millisecond, 1 to take / 0 to look. Answers 0 when there was a unit (taken if
 * asked), else the milliseconds until there is one. */
const BUCKET = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(v[1]) or burst
local at = tonumber(v[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate)
local ok = tokens >= 1
if ARGV[3] == '1' then
  if ok then tokens = tokens - 1 end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
end
if ok then return 0 else return math.ceil((1 - tokens) / rate) end`;

/** Token buckets shared by every node, under `<namespace>:rate:<name>:<key>`. */
export class RedisRateLimiter implements RateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly namespace: string,
    private readonly name: string,
    private readonly burst: number,
    private readonly perSecond: number,
  ) {
    redis.defineCommand('chatRateBucket', { numberOfKeys: 1, lua: BUCKET });
  }

  async take(key: string): Promise<boolean> {
    return (await this.run(key, '1')) === 0;
  }

  async has(key: string): Promise<boolean> {
    return (await this.run(key, '0')) === 0;
  }

  async wait(key: string): Promise<number> {
    return (await this.run(key, '0')) / 1000;
  }

  /** 0 when there was a unit, else the milliseconds until there is one. */
  private run(key: string, take: '0' | '1'): Promise<number> {
    const bucket = (this.redis as unknown as { chatRateBucket(k: string, b: number, r: number, t: string): Promise<number> }).chatRateBucket;
    return bucket.call(this.redis, `${this.namespace}:rate:${this.name}:${key}`, this.burst, this.perSecond / 1000, take);
  }
}
