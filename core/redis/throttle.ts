import type { Redis } from 'ioredis';
import type { Throttle } from '../throttle.js';

/** SET NX PX claims the key; a taken key answers its remaining time (PTTL), in one script. */
const CLAIM = `
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return -1 end
local left = redis.call('PTTL', KEYS[1])
if left < 1 then return 1 end
return left
`;

/** The throttle shared by every node: keys `<namespace>:throttle:<key>`, expiring by themselves. */
export class RedisThrottle implements Throttle {
  constructor(
    private readonly redis: Redis,
    private readonly namespace: string,
  ) {
    redis.defineCommand('chatThrottleClaim', { numberOfKeys: 1, lua: CLAIM });
  }

  async claim(key: string, ms: number): Promise<true | number> {
    const left = (await (this.redis as unknown as { chatThrottleClaim(key: string, ms: number): Promise<number> }).chatThrottleClaim(`${this.namespace}:throttle:${key}`, ms));
    return left === -1 ? true : left;
  }
}
