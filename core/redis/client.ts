import { Redis } from 'ioredis';

/**
 * A Redis connection for the seams. Commands fail fast while Redis is unreachable (no unbounded
 * offline queue), so a caller refuses what it cannot guarantee instead of hanging; the
 * connection keeps retrying in the background and errors are reported, never thrown.
 */
export function connectRedis(url: string, onError: (err: Error) => void = () => {}): Redis {
  const redis = new Redis(url, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    lazyConnect: false,
  });
  redis.on('error', onError);
  return redis;
}

/** Resolves once the connection is ready (rejects after `ms`). */
export function redisReady(redis: Redis, ms = 10_000): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Redis not ready after ${ms} ms`)), ms);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
