import { join } from 'node:path';
import { type Config, StartupError } from '../core/config.js';
import { createPrivateFile, ensureDataDir } from '../core/data-dir.js';
import { MongoStore, databaseIn } from '../core/store/mongo.js';
import { SqliteStore } from '../core/store/sqlite.js';
import type { Store } from '../core/store/store.js';

/** MongoDB when MONGO_URL is set (database: the URL's, else NAMESPACE); otherwise the SQLite
 * file in DATA_DIR, which a process without REDIS_URL has to itself (it numbers chats alone):
 * its appends then go through the segment log (`exclusive`, core/store/sqlite-segment-log.ts). */
export async function openStore(config: Config): Promise<Store> {
  if (config.mongoUrl === undefined) return openSqlite(config.dataDir, config.redisUrl === undefined);
  try {
    return await MongoStore.open(config.mongoUrl, databaseIn(config.mongoUrl) ?? config.namespace);
  } catch (err) {
    // The driver's message names hosts, never the credentials in the URL.
    throw new StartupError(`cannot use the MongoDB store at MONGO_URL: ${(err as Error).message}`);
  }
}

/** chat.db in DATA_DIR: the directory checked (0700 when created), the file created 0600 before
 * SQLite opens it (its -wal and -shm journals take its mode). */
function openSqlite(dataDir: string, exclusive: boolean): Store {
  ensureDataDir(dataDir);
  const file = join(dataDir, 'chat.db');
  createPrivateFile(file);
  try {
    return new SqliteStore(file, { exclusive });
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new StartupError(`cannot open the SQLite database ${file} in DATA_DIR: ${(err as Error).message}${code ? ` (${code})` : ''}`);
  }
}
