import { join } from 'node:path';
import { type Config, StartupError } from '../core/config.js';
import { MongoStore, databaseIn } from '../core/store/mongo.js';
import { SqliteStore } from '../core/store/sqlite.js';
import type { Store } from '../core/store/store.js';

/** MongoDB when MONGO_URL is set (database: the URL's, else NAMESPACE); otherwise the SQLite
 * file in DATA_DIR. */
export async function openStore(config: Config): Promise<Store> {
  if (config.mongoUrl === undefined) return new SqliteStore(join(config.dataDir, 'chat.db'));
  try {
    return await MongoStore.open(config.mongoUrl, databaseIn(config.mongoUrl) ?? config.namespace);
  } catch (err) {
    // The driver's message names hosts, never the credentials in the URL.
    throw new StartupError(`cannot use the MongoDB store at MONGO_URL: ${(err as Error).message}`);
  }
}
