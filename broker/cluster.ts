import AsyncRedisPersistence from 'aedes-persistence-redis/asyncPersistence.js';
import { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import { MQEmitterRedisPrefix } from 'mqemitter-redis';
import { redisReady } from '../core/redis/client.js';

/**
 * What clusters Aedes nodes through Redis: mqemitter-redis carries every publish between nodes
 * (channels prefixed with the namespace: Redis pub/sub ignores key prefixes), and
 * aedes-persistence-redis keeps sessions, subscriptions and retained messages (keys under
 * `<namespace>:aedes:`). Workarounds from the Aedes field notes: wait for both emitter
 * connections before creating the broker, listen for their errors, and serialise each
 * client's addSubscriptions (a clean:false multi-topic SUBSCRIBE otherwise never gets its
 * SUBACK); and one found here: stream-returning methods wrapped for Aedes 1.2.
 */
export interface AedesCluster {
  mq: MQEmitterRedisPrefix;
  persistence: AsyncRedisPersistence;
  close(): Promise<void>;
}

export async function createAedesCluster(url: string, namespace: string, onError: (err: Error) => void): Promise<AedesCluster> {
  const mq = new MQEmitterRedisPrefix(`${namespace}/`, { connectionString: url });
  mq.state.on('error', onError);
  mq.subConn.on('error', onError);
  mq.pubConn.on('error', onError);
  await Promise.all([redisReady(mq.subConn), redisReady(mq.pubConn)]);

  const conn = new Redis(url, { keyPrefix: `${namespace}:aedes:`, maxRetriesPerRequest: 1 });
  conn.on('error', onError);
  await redisReady(conn);
  const persistence = new AsyncRedisPersistence({ conn });
  serialiseAddSubscriptions(persistence);
  streamsForAedes(persistence);

  return {
    mq,
    persistence,
    close: async () => {
      await persistence.destroy().catch(() => {});
      await new Promise<void>((resolve) => mq.close(() => resolve()));
      conn.disconnect();
    },
  };
}

/** aedes-persistence-redis 11 returns async generators where Aedes 1.2 pipes streams
 * (`createRetainedStreamCombi(...).pipe` crashed on the first SUBSCRIBE): wrap them. */
function streamsForAedes(persistence: AsyncRedisPersistence) {
  const p = persistence as unknown as Record<string, (...args: unknown[]) => AsyncIterable<unknown>>;
  for (const name of ['createRetainedStreamCombi', 'createRetainedStream', 'outgoingStream']) {
    const original = p[name]!.bind(persistence);
    p[name] = (...args: unknown[]) => Readable.from(original(...args)) as unknown as AsyncIterable<unknown>;
  }
}

function serialiseAddSubscriptions(persistence: AsyncRedisPersistence) {
  const add = persistence.addSubscriptions.bind(persistence);
  const queues = new Map<string, Promise<void>>();
  persistence.addSubscriptions = (client, subs) => {
    const next = (queues.get(client.id) ?? Promise.resolve()).catch(() => {}).then(() => add(client, subs));
    queues.set(client.id, next);
    void next.finally(() => queues.get(client.id) === next && queues.delete(client.id)).catch(() => {});
    return next;
  };
}
