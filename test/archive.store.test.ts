import Database from 'better-sqlite3';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { StoreArchive } from '../core/archive.js';
import type { Envelope } from '../core/envelope.js';
import { newId } from '../core/ids.js';
import { SqliteStore } from '../core/store/sqlite.js';
import { archiveContract } from './contracts/archive.contract.js';
import { tempDir } from './helpers/server.js';

/**
 * The embedded archive over a real SQLite file. The hooks use connections of their own to the
 * file, as another process would: a read-only one to count and read the log, and one that holds
 * the write lock to make the store unable to commit (its commits wait busy_timeout, then fail).
 */
archiveContract('StoreArchive (SQLite)', async () => {
  const dir = tempDir('chat-archive-');
  const file = join(dir, 'chat.db');
  const store = new SqliteStore(file);
  const owner = await store.createUser({ id: newId(), username: 'owner', displayName: 'Owner', passwordHash: 'x', createdAt: Date.now() });
  const chatId = (await store.createGroupChat({ id: newId(), name: 'g', visibility: 'private', ownerId: owner.id, memberIds: [owner.id], createdAt: Date.now() })).id;
  const archive = new StoreArchive(store);
  const read = <T>(query: (db: Database.Database) => T): T => {
    const db = new Database(file, { readonly: true });
    try {
      return query(db);
    } finally {
      db.close();
    }
  };
  let locker: Database.Database | null = null;
  const restore = async () => {
    locker?.exec('ROLLBACK');
    locker?.close();
    locker = null;
  };
  return {
    archive,
    chatId,
    durable: async () => read((db) => db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM messages WHERE chat_id = ?').get(chatId)!.n),
    cut: async () => {
      locker = new Database(file);
      locker.exec('BEGIN IMMEDIATE');
    },
    restore,
    stored: async () =>
      read((db) => db.prepare<[string], { envelope: string }>('SELECT envelope FROM messages WHERE chat_id = ? ORDER BY seq').all(chatId).map((r) => JSON.parse(r.envelope) as Envelope)),
    cleanup: async () => {
      await restore();
      await archive.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
