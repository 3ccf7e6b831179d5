import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { pino } from 'pino';
import pretty from 'pino-pretty';
import { buildApi } from './api/app.js';
import { ChatBroker } from './broker/broker.js';
import { Accounts } from './core/accounts.js';
import { AmqpArchive } from './core/amqp/archive.js';
import { type Archive, StoreArchive } from './core/archive.js';
import { type ControlBus, LocalBus } from './core/bus.js';
import { Chats } from './core/chats.js';
import type { Config } from './core/config.js';
import { newId } from './core/ids.js';
import { Membership } from './core/membership.js';
import { Messenger } from './core/messenger.js';
import { Metrics } from './core/metrics.js';
import { LocalPresence, type PresenceRegistry } from './core/presence.js';
import { LocalRateLimiter, type RateLimiter } from './core/rate-limit.js';
import { createAedesCluster } from './core/redis/aedes-cluster.js';
import { RedisBus } from './core/redis/bus.js';
import { connectRedis, redisReady } from './core/redis/client.js';
import { RedisPresence } from './core/redis/presence.js';
import { RedisRateLimiter } from './core/redis/rate-limit.js';
import { RedisSendClaims } from './core/redis/send-claims.js';
import { RedisSequencer } from './core/redis/sequencer.js';
import {
  LOGIN_FAILURE_BURST, LOGIN_FAILURE_PER_SECOND, TYPING_BURST, TYPING_PER_SECOND,
} from './core/rules.js';
import { LocalSendClaims, SEND_CLAIMS_KEPT, type SendClaims, sendKey } from './core/send-claims.js';
import { LocalSequencer, type Sequencer } from './core/sequencer.js';
import { databaseIn, MongoStore } from './core/store/mongo.js';
import { SqliteStore } from './core/store/sqlite.js';
import type { Store } from './core/store/store.js';
import { Archiver } from './worker/archiver.js';

export interface Running {
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:41234 */
  url: string;
  port: number;
  /** MQTT over TCP port; WebSocket is `/mqtt` on `port`. 0 without the broker role. */
  mqttPort: number;
  app: FastifyInstance;
  broker: ChatBroker;
  store: Store;
  /** Graceful stop: offline presence for local users, connections closed, pending messages
   * made durable, store closed. Idempotent. */
  close(): Promise<void>;
}

export class StartupError extends Error {
  override name = 'StartupError';
}

/** The seams, in-process or shared, chosen from the environment. */
interface Seams {
  bus: ControlBus;
  sequencer: Sequencer;
  presence: PresenceRegistry;
  sendLimiter: RateLimiter;
  sendClaims: SendClaims;
  typingLimiter: RateLimiter;
  loginFailures: RateLimiter;
  archive: Archive;
  cluster?: { mq: unknown; persistence: unknown };
  worker?: Archiver;
  close(): Promise<void>;
}

async function createSeams(config: Config, store: Store, log: FastifyBaseLogger): Promise<Seams> {
  const closers: (() => Promise<void> | void)[] = [];
  const report = (what: string) => (err: unknown) => log.error({ err }, what);
  let seams: Omit<Seams, 'archive' | 'worker' | 'close'>;

  if (config.redisUrl) {
    const url = config.redisUrl;
    const ns = config.namespace;
    const redis = connectRedis(url, report('redis'));
    closers.push(() => redis.disconnect());
    await redisReady(redis).catch((err: Error) => {
      redis.disconnect();
      throw new StartupError(`cannot reach Redis at REDIS_URL: ${err.message}`);
    });
    const presence = new RedisPresence(redis, ns, newId());
    await presence.start();
    const cluster = await createAedesCluster(url, ns, report('redis (mqtt cluster)'));
    closers.push(() => presence.close(), () => cluster.close());
    seams = {
      // On the cluster's emitter, so that events and deliveries reach each node in one order.
      bus: await RedisBus.create(redis, cluster.mq, ns),
      sequencer: new RedisSequencer(redis, ns, (chatId) => store.maxSeq(chatId)),
      presence,
      sendLimiter: new RedisRateLimiter(redis, ns, 'send', config.limits.sendBurst, config.limits.sendRate),
      sendClaims: new RedisSendClaims(redis, ns),
      typingLimiter: new RedisRateLimiter(redis, ns, 'typing', TYPING_BURST, TYPING_PER_SECOND),
      loginFailures: new RedisRateLimiter(redis, ns, 'login', LOGIN_FAILURE_BURST, LOGIN_FAILURE_PER_SECOND),
      cluster,
    };
  } else {
    seams = {
      bus: new LocalBus(),
      sequencer: new LocalSequencer((chatId) => store.maxSeq(chatId)),
      presence: new LocalPresence(),
      sendLimiter: new LocalRateLimiter(config.limits.sendBurst, config.limits.sendRate),
      sendClaims: await recentClaims(store),
      typingLimiter: new LocalRateLimiter(TYPING_BURST, TYPING_PER_SECOND),
      loginFailures: new LocalRateLimiter(LOGIN_FAILURE_BURST, LOGIN_FAILURE_PER_SECOND),
    };
  }

  let archive: Archive;
  let worker: Archiver | undefined;
  if (config.amqpUrl) {
    archive = await AmqpArchive.connect(config.amqpUrl, config.namespace, report('rabbitmq (archive)')).catch((err: Error) => {
      throw new StartupError(`cannot reach RabbitMQ at AMQP_URL: ${err.message}`);
    });
    if (config.roles.has('worker')) {
      worker = new Archiver(config.amqpUrl, config.namespace, store, { onError: report('archive worker') });
      await worker.start();
    }
  } else {
    archive = new StoreArchive(store);
  }

  return {
    ...seams,
    archive,
    worker,
    close: async () => {
      await archive.close();
      await worker?.stop();
      for (const close of closers.reverse()) await close();
    },
  };
}

/**
 * The in-process claims start with the newest keys in the store, so that a client retrying
 * across a restart (a send stored just before a crash, its PUBACK lost) gets a duplicate, as
 * it would have without the restart.
 */
async function recentClaims(store: Store): Promise<LocalSendClaims> {
  const claims = new LocalSendClaims(SEND_CLAIMS_KEPT);
  const recent = await store.recentSends(SEND_CLAIMS_KEPT);
  claims.remember(recent.reverse().map((r) => ({ key: sendKey(r.chatId, r.senderId, r.clientMsgId), sent: r.sent })));
  return claims;
}

/** MongoDB when MONGO_URL is set (database: the URL's, else NAMESPACE); otherwise the SQLite
 * file in DATA_DIR. */
async function openStore(config: Config): Promise<Store> {
  if (config.mongoUrl === undefined) return new SqliteStore(join(config.dataDir, 'chat.db'));
  try {
    return await MongoStore.open(config.mongoUrl, databaseIn(config.mongoUrl) ?? config.namespace);
  } catch (err) {
    // The driver's message names hosts, never the credentials in the URL.
    throw new StartupError(`cannot use the MongoDB store at MONGO_URL: ${(err as Error).message}`);
  }
}

/** Wires one process: store, seams, broker and HTTP API. */
export async function startServer(config: Config): Promise<Running> {
  const log: FastifyBaseLogger = pino(
    { level: config.logLevel },
    config.logFormat === 'pretty' ? pretty({ sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }) : undefined,
  );
  const store = await openStore(config);
  let seams: Seams;
  try {
    seams = await createSeams(config, store, log);
  } catch (err) {
    await store.close();
    throw err;
  }
  const { bus, presence } = seams;
  const accounts = new Accounts(store, config.jwtSecret, config.tokenTtl, bus, seams.loginFailures);
  const membership = new Membership(store, bus, (err, what) => log.error({ err }, what));
  const metrics = new Metrics();
  const messenger = new Messenger({
    sequencer: seams.sequencer,
    archive: seams.archive,
    membership,
    rateLimiter: seams.sendLimiter,
    claims: seams.sendClaims,
    bus,
    metrics,
    maxInFlight: config.limits.maxSendsInFlight,
    onError: (err, what) => log.error({ err }, `failed: ${what}`),
  });
  const { roles } = config;
  const app = await buildApi(config, log, { store, presence, accounts, metrics, chats: new Chats(store, messenger, seams.sendClaims) }, { rest: roles.has('api') });
  // Every process has a broker node: with the broker role it accepts MQTT clients; without it
  // (api, worker) it only publishes server messages (system messages, inbox events, kicks)
  // into the cluster.
  const broker = await ChatBroker.create({
    cluster: seams.cluster, typingLimiter: seams.typingLimiter, accounts, store, membership, messenger, presence, bus, metrics, limits: config.limits,
    log: app.log, tls: config.tls,
  });
  if (roles.has('broker')) broker.attachWebSocket(app.server);
  metrics.gauge('chat_mqtt_connections', 'MQTT connections on this node', () => broker.clientCount());
  metrics.gauge('chat_online_users', 'Users with at least one MQTT connection', () => presence.count());
  if (seams.worker) metrics.gauge('chat_archive_lag', 'Messages waiting in the archive queue', () => seams.worker!.lag());

  const shutdown = async () => {
    await broker.close();
    await app.close();
    await seams.close();
    membership.close();
    await store.close();
  };

  let mqttPort: number;
  try {
    await app.listen({ host: config.host, port: config.port }).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'EADDRINUSE' ? new StartupError(`HTTP port ${config.port} is in use on ${config.host}; set PORT (0 picks a free port)`) : err;
    });
    mqttPort = !roles.has('broker')
      ? 0
      : await broker.listenTcp(config.host, config.mqttPort).catch((err: NodeJS.ErrnoException) => {
          throw err.code === 'EADDRINUSE' ? new StartupError(`MQTT port ${config.mqttPort} is in use on ${config.host}; set MQTT_PORT (0 picks a free port)`) : err;
        });
  } catch (err) {
    await shutdown();
    throw err;
  }
  const port = (app.server.address() as AddressInfo).port;
  const scheme = config.tls ? 'https' : 'http';
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  app.log.info({ port, dataDir: config.dataDir }, `HTTP API listening on ${scheme}://${shownHost}:${port} (docs at /docs)`);
  if (roles.has('broker')) {
    app.log.info({ mqttPort }, `MQTT listening on ${config.tls ? 'mqtts' : 'mqtt'}://${shownHost}:${mqttPort} and ${scheme === 'https' ? 'wss' : 'ws'}://${shownHost}:${port}/mqtt`);
  }
  app.log.info(
    { roles: [...roles], redis: Boolean(config.redisUrl), amqp: Boolean(config.amqpUrl), mongo: Boolean(config.mongoUrl), namespace: config.namespace },
    config.redisUrl || config.amqpUrl || config.mongoUrl ? 'scaled-out seams in use' : 'embedded deployment (in-process seams)',
  );

  // Forget expired sessions now and then; revoked-but-unexpired ones are kept until expiry.
  const sweep = setInterval(() => {
    store.deleteExpiredSessions(Date.now()).catch((err) => app.log.warn({ err }, 'session sweep failed'));
  }, 3600_000).unref();

  let closing: Promise<void> | undefined;
  return {
    url: `${scheme}://${shownHost}:${port}`,
    port,
    mqttPort,
    app,
    broker,
    store,
    close: () =>
      (closing ??= (async () => {
        clearInterval(sweep);
        await shutdown();
      })()),
  };
}
