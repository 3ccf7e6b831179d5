import type { AddressInfo } from 'node:net';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { pino } from 'pino';
import pretty from 'pino-pretty';
import { buildApi } from './api/app.js';
import { createAedes } from './broker/aedes.js';
import { ChatBroker } from './broker/broker.js';
import { Connections } from './broker/connections.js';
import { brokerOutbox } from './broker/outbox.js';
import { Accounts } from './core/accounts.js';
import { ChatEventPublisher } from './core/chat-events.js';
import { Chats } from './core/chats.js';
import { type Config, StartupError } from './core/config.js';
import { Membership } from './core/membership.js';
import { MessageEdits } from './core/message-edits.js';
import { Receipts } from './core/receipts.js';
import { ReplyTargets } from './core/replies.js';
import { Metrics } from './core/metrics.js';
import { Sender } from './core/sender.js';
import { Users } from './core/users.js';
import type { Store } from './core/store/store.js';
import { openArchive } from './seams/archive.js';
import { inProcessSeams } from './seams/in-process.js';
import { redisSeams } from './seams/redis.js';
import type { Seams } from './seams/seams.js';
import { openStore } from './seams/store.js';
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

/** The composition root: one process's store, seams, services, broker and HTTP API, from the
 * configuration. Every rule lives in the parts it wires. */
export async function startServer(config: Config): Promise<Running> {
  const log: FastifyBaseLogger = pino(
    { level: config.logLevel },
    config.logFormat === 'pretty' ? pretty({ sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }) : undefined,
  );
  const onError = (err: unknown, what: string) => log.error({ err }, `failed: ${what}`);
  const { roles } = config;
  const closers: (() => Promise<void> | void)[] = [];
  /** Closes what was opened, newest first. */
  const closeAll = async () => {
    for (const close of closers.splice(0).reverse()) await close();
  };

  let app: FastifyInstance;
  let broker: ChatBroker;
  let store: Store;
  try {
    store = await openStore(config);
    const opened = store;
    closers.push(() => opened.close());
    const seams: Seams = config.redisUrl ? await redisSeams({ ...config, redisUrl: config.redisUrl }, store, log) : await inProcessSeams(config, store);
    closers.push(() => seams.close());
    const archive = await openArchive(config, store, log);
    let worker: Archiver | undefined;
    if (config.amqpUrl && roles.has('worker')) {
      const started = new Archiver(config.amqpUrl, config.namespace, store, { onError: (err) => log.error({ err }, 'archive worker') });
      await started.start().catch(async (err: unknown) => {
        await archive.close();
        throw err;
      });
      closers.push(() => started.stop());
      worker = started;
    }
    // Closed before the worker stops: what the archive still holds reaches the queue first.
    closers.push(() => archive.close());

    const { bus, presence } = seams;
    const metrics = new Metrics();
    const aedes = await createAedes(seams.aedes);
    // Closed by the broker once it exists (closing twice is nothing); before that, by this.
    closers.push(() => new Promise<void>((resolve) => aedes.close(() => resolve())));
    const outbox = brokerOutbox(aedes, log);
    const accounts = new Accounts({
      store, secret: config.jwtSecret, tokenTtlSeconds: config.tokenTtl, bus, loginFailures: seams.loginFailures, registerLimiter: seams.registerLimiter, loginLimiter: seams.loginLimiter, passwordHashesInFlight: config.limits.passwordHashesInFlight,
      onError: (err, what) => log.warn({ err }, `failed: ${what}`), // the session sweep: tried again in an hour
    });
    closers.push(() => accounts.close());
    const connections = new Connections();
    const membership = new Membership(store, bus, { onError: (err, what) => log.error({ err }, what), connectedHere: (userId) => connections.connected(userId) });
    closers.push(() => membership.close());
    // Behind the RabbitMQ archive the store lags live delivery (core/replies.ts).
    const targets = new ReplyTargets(store, seams.sequencer, Boolean(config.amqpUrl));
    const sender = new Sender({
      sequencer: seams.sequencer,
      archive,
      membership,
      rateLimiter: seams.sendLimiter,
      claims: seams.sendClaims,
      replyTargets: targets,
      outbox,
      metrics,
      maxInFlight: config.limits.maxSendsInFlight,
      onError,
    });
    const chats = new Chats(store, new ChatEventPublisher({ sequencer: seams.sequencer, archive, bus, outbox, onError }), seams.sendClaims, seams.searchLimiter);
    const users = new Users(store, presence);
    const edits = new MessageEdits({ store, sequencer: seams.sequencer, archive, membership, claims: seams.sendClaims, targets, outbox });
    const receipts = new Receipts({ store, sequencer: seams.sequencer, membership, throttle: seams.throttle, outbox, onError });
    closers.push(() => receipts.close());
    app = await buildApi(config, log, { accounts, chats, users, edits, receipts, metrics, ready: () => store.ping() }, { rest: roles.has('api') });
    closers.push(() => app.close());
    // Every process has a broker node: with the broker role it accepts MQTT clients; without it
    // (api, worker) it only publishes server messages (system messages, inbox events, kicks)
    // into the cluster.
    broker = new ChatBroker({
      aedes, connections, typingLimiter: seams.typingLimiter, accounts, store, membership, sender, receipts, presence, bus, metrics, limits: config.limits, log: app.log, tls: config.tls,
    });
    closers.push(() => broker.close());
    if (roles.has('broker')) broker.attachWebSocket(app.server);
    metrics.gauge('chat_mqtt_connections', 'MQTT connections on this node', () => broker.clientCount());
    metrics.gauge('chat_online_users', 'Users with at least one MQTT connection', () => presence.count());
    if (worker) metrics.gauge('chat_archive_lag', 'Messages waiting in the archive queue', () => worker.lag());
  } catch (err) {
    await closeAll();
    throw err;
  }

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
    await closeAll();
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

  let closing: Promise<void> | undefined;
  return {
    url: `${scheme}://${shownHost}:${port}`,
    port,
    mqttPort,
    app,
    broker,
    store,
    close: () => (closing ??= closeAll()),
  };
}
