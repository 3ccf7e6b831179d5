import type { FastifyBaseLogger } from 'fastify';
import { createAedesCluster } from '../broker/cluster.js';
import { type Config, StartupError } from '../core/config.js';
import { newId } from '../core/ids.js';
import { RedisBus } from '../core/redis/bus.js';
import { connectRedis, redisReady } from '../core/redis/client.js';
import { RedisPresence } from '../core/redis/presence.js';
import { RedisRateLimiter } from '../core/redis/rate-limit.js';
import { RedisSendClaims } from '../core/redis/send-claims.js';
import { RedisSequencer } from '../core/redis/sequencer.js';
import { RedisThrottle } from '../core/redis/throttle.js';
import type { Store } from '../core/store/store.js';
import { type Seams, rateLimits } from './seams.js';

/** Scaled out (REDIS_URL): every seam shared by the nodes through Redis, keys and channels
 * under NAMESPACE; Aedes clustered with mqemitter-redis and aedes-persistence-redis. */
export async function redisSeams(config: Config & { redisUrl: string }, store: Store, log: FastifyBaseLogger): Promise<Seams> {
  const { redisUrl: url, namespace: ns } = config;
  const report = (what: string) => (err: unknown) => log.error({ err }, what);
  const redis = connectRedis(url, report('redis'));
  await redisReady(redis).catch((err: Error) => {
    redis.disconnect();
    throw new StartupError(`cannot reach Redis at REDIS_URL: ${err.message}`);
  });
  const presence = new RedisPresence(redis, ns, newId());
  let cluster: Awaited<ReturnType<typeof createAedesCluster>> | undefined;
  try {
    await presence.start();
    cluster = await createAedesCluster(url, ns, report('redis (mqtt cluster)'));
    const limits = rateLimits(config);
    const limiter = (name: keyof typeof limits) => new RedisRateLimiter(redis, ns, name, limits[name].burst, limits[name].perSecond);
    const { mq, persistence } = cluster;
    const close = cluster.close;
    return {
      // On the cluster's emitter, so that events and deliveries reach each node in one order.
      bus: await RedisBus.create(redis, mq, ns),
      sequencer: new RedisSequencer(redis, ns, (chatId) => store.maxSeq(chatId)),
      presence,
      sendLimiter: limiter('send'),
      sendClaims: new RedisSendClaims(redis, ns),
      typingLimiter: limiter('typing'),
      throttle: new RedisThrottle(redis, ns),
      loginFailures: limiter('login'),
      registerLimiter: limiter('register-ip'),
      loginLimiter: limiter('login-ip'),
      searchLimiter: limiter('search'),
      aedes: { mq, persistence, heartbeatInterval: 5000 },
      close: async () => {
        await close();
        await presence.close();
        redis.disconnect();
      },
    };
  } catch (err) {
    await cluster?.close();
    await presence.close().catch(() => {});
    redis.disconnect();
    throw err;
  }
}
