import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApi } from './api/app.js';
import { ChatBroker } from './broker/broker.js';
import { Accounts } from './core/accounts.js';
import { StoreArchive } from './core/archive.js';
import { LocalBus } from './core/bus.js';
import { Chats } from './core/chats.js';
import type { Config } from './core/config.js';
import { Membership } from './core/membership.js';
import { Messenger } from './core/messenger.js';
import { Metrics } from './core/metrics.js';
import { LocalPresence } from './core/presence.js';
import { LocalRateLimiter } from './core/rate-limit.js';
import { SEND_BURST, SEND_PER_SECOND } from './core/rules.js';
import { LocalSequencer } from './core/sequencer.js';
import { SqliteStore } from './core/store/sqlite.js';
import type { Store } from './core/store/store.js';

export interface Running {
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:41234 */
  url: string;
  port: number;
  /** MQTT over TCP port; WebSocket is `/mqtt` on `port`. */
  mqttPort: number;
  app: FastifyInstance;
  broker: ChatBroker;
  store: Store;
  /** Graceful stop: offline presence for every local user, connections closed, pending
   * messages committed, store closed. Idempotent. */
  close(): Promise<void>;
}

export class StartupError extends Error {
  override name = 'StartupError';
}

/** Wires the embedded deployment: SQLite store, in-process seams, broker and HTTP API. */
export async function startServer(config: Config): Promise<Running> {
  for (const [name, value] of [['REDIS_URL', config.redisUrl], ['AMQP_URL', config.amqpUrl], ['MONGO_URL', config.mongoUrl]] as const) {
    if (value !== undefined) throw new StartupError(`${name} is set, but this version runs the embedded deployment only; unset ${name}`);
  }
  const store = new SqliteStore(join(config.dataDir, 'chat.db'));
  const bus = new LocalBus();
  const presence = new LocalPresence();
  const accounts = new Accounts(store, config.jwtSecret, config.tokenTtl, bus);
  const membership = new Membership(store, bus);
  const archive = new StoreArchive(store);
  const metrics = new Metrics();
  let app: FastifyInstance | undefined;
  const messenger = new Messenger({
    store,
    sequencer: new LocalSequencer((chatId) => store.maxSeq(chatId)),
    archive,
    membership,
    rateLimiter: new LocalRateLimiter(SEND_BURST, SEND_PER_SECOND),
    bus,
    metrics,
    onError: (err, what) => app?.log.error({ err }, `failed: ${what}`),
  });
  app = await buildApi(config, { store, presence, accounts, metrics, chats: new Chats(store, messenger) });
  const broker = await ChatBroker.create({ accounts, store, membership, messenger, presence, bus, log: app.log, tls: config.tls });
  metrics.gauge('chat_mqtt_connections', 'MQTT connections on this node', () => broker.clientCount());
  metrics.gauge('chat_online_users', 'Users with at least one MQTT connection', () => presence.count());
  broker.attachWebSocket(app.server);

  const shutdown = async () => {
    await broker.close();
    await app.close();
    await archive.close();
    membership.close();
    await store.close();
  };

  let mqttPort: number;
  try {
    await app.listen({ host: config.host, port: config.port }).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'EADDRINUSE' ? new StartupError(`HTTP port ${config.port} is in use on ${config.host}; set PORT (0 picks a free port)`) : err;
    });
    mqttPort = await broker.listenTcp(config.host, config.mqttPort).catch((err: NodeJS.ErrnoException) => {
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
  app.log.info({ mqttPort }, `MQTT listening on ${config.tls ? 'mqtts' : 'mqtt'}://${shownHost}:${mqttPort} and ${scheme === 'https' ? 'wss' : 'ws'}://${shownHost}:${port}/mqtt`);

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
