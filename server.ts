import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApi } from './api/app.js';
import { Accounts } from './core/accounts.js';
import { Chats } from './core/chats.js';
import type { Config } from './core/config.js';
import { LocalPresence } from './core/presence.js';
import { SqliteStore } from './core/store/sqlite.js';
import type { Store } from './core/store/store.js';

export interface Running {
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:41234 */
  url: string;
  port: number;
  app: FastifyInstance;
  store: Store;
  /** Stops accepting, finishes in-flight requests, closes the store. Idempotent. */
  close(): Promise<void>;
}

export class StartupError extends Error {
  override name = 'StartupError';
}

/** Wires the embedded deployment: SQLite store, in-process presence, the HTTP API. */
export async function startServer(config: Config): Promise<Running> {
  for (const [name, value] of [['REDIS_URL', config.redisUrl], ['AMQP_URL', config.amqpUrl], ['MONGO_URL', config.mongoUrl]] as const) {
    if (value !== undefined) throw new StartupError(`${name} is set, but this version runs the embedded deployment only; unset ${name}`);
  }
  const store = new SqliteStore(join(config.dataDir, 'chat.db'));
  const presence = new LocalPresence();
  const accounts = new Accounts(store, config.jwtSecret, config.tokenTtl);
  const app = await buildApi(config, { store, presence, accounts, chats: new Chats(store) });

  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await store.close();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new StartupError(`HTTP port ${config.port} is in use on ${config.host}; set PORT (0 picks a free port)`);
    }
    throw err;
  }
  const port = (app.server.address() as AddressInfo).port;
  const scheme = config.tls ? 'https' : 'http';
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  app.log.info({ port, dataDir: config.dataDir }, `HTTP API listening on ${scheme}://${shownHost}:${port} (docs at /docs)`);

  // Forget expired sessions now and then; revoked-but-unexpired ones are kept until expiry.
  const sweep = setInterval(() => {
    store.deleteExpiredSessions(Date.now()).catch((err) => app.log.warn({ err }, 'session sweep failed'));
  }, 3600_000).unref();

  let closing: Promise<void> | undefined;
  return {
    url: `${scheme}://${shownHost}:${port}`,
    port,
    app,
    store,
    close: () =>
      (closing ??= (async () => {
        clearInterval(sweep);
        await app.close();
        await store.close();
      })()),
  };
}
