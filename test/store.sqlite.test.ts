import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { MessageEnvelope } from '../core/envelope.js';
import { newId } from '../core/ids.js';
import { SqliteStore } from '../core/store/sqlite.js';
import { storeContract } from './contracts/store.contract.js';
import { tempDir } from './helpers/server.js';

storeContract('sqlite', async () => {
  const dir = tempDir('chat-store-');
  const store = new SqliteStore(join(dir, 'chat.db'));
  return {
    store,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

// The embedded deployment's store: appends go to the segment log, reads have it compacted first.
storeContract('sqlite (exclusive: segment log)', async () => {
  const dir = tempDir('chat-store-');
  const store = new SqliteStore(join(dir, 'chat.db'), { exclusive: true });
  return {
    store,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

/**
 * The search index follows the log in transactions of its own (core/store/sqlite-log-writer.ts).
 * What one store connection appended and had not indexed yet is found by a search through
 * another connection to the file (another process, or the next start after a crash): the
 * index's progress is kept in the file, and a search first has the index catch up.
 */
describe('SQLite search index', () => {
  it('is caught up by whichever connection searches, with every row once', async () => {
    const dir = tempDir('chat-index-');
    const file = join(dir, 'chat.db');
    const writer = new SqliteStore(file);
    const reader = new SqliteStore(file);
    try {
      const owner = await writer.createUser({ id: newId(), username: 'owner', displayName: 'Owner', passwordHash: 'x', createdAt: Date.now() });
      const chat = await writer.createGroupChat({ id: newId(), name: 'g', visibility: 'private', ownerId: owner.id, memberIds: [owner.id], createdAt: Date.now() });
      const message = (seq: number, text: string): MessageEnvelope => ({
        type: 'message', id: newId(), chatId: chat.id, seq, senderId: owner.id, senderName: 'Owner', text, clientMsgId: null, createdAt: new Date().toISOString(),
      });
      // Appended and answered at once; the writer's index runs at most every 200 ms.
      await writer.appendMessages(Array.from({ length: 50 }, (_, i) => message(i + 1, `안녕 ${i + 1}`)));
      const found = await reader.searchMessages('안녕', [chat.id], { limit: 100 });
      expect(found.messages.map((m) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => 50 - i));
      // Appended within the writer's 200 ms: the reader's search indexes it; the writer's own
      // catch-up, after, indexes nothing twice.
      await writer.appendMessages([message(51, '안녕 51')]);
      expect((await reader.searchMessages('안녕 5', [chat.id], { limit: 100 })).messages.map((m) => m.seq)).toEqual([51, 50, 5]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect((await writer.searchMessages('안녕', [chat.id], { limit: 100 })).messages).toHaveLength(51);
    } finally {
      await writer.close();
      await reader.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * The segment log's writer thread only reads the database to answer an append; what needs the
 * write lock there is the compaction, and it never sleeps on it (the indexer's transactions and
 * the main connection's writes hold the lock at times): it tries again 2 ms later. So while
 * another connection holds the lock, appends are still answered, and a read that needs the
 * log's rows in the database waits until the lock is free. (When the compaction slept in
 * SQLite's busy handler, the append below waited the whole busy timeout, 10 s.)
 */
describe('SQLite segment log while another connection holds the write lock', () => {
  it('answers appends at once; the compaction, and the read waiting for it, follow once the lock is free', async () => {
    const dir = tempDir('chat-log-lock-');
    const file = join(dir, 'chat.db');
    const store = new SqliteStore(file, { exclusive: true });
    const other = new Database(file);
    try {
      const owner = await store.createUser({ id: newId(), username: 'owner', displayName: 'Owner', passwordHash: 'x', createdAt: Date.now() });
      const chat = await store.createGroupChat({ id: newId(), name: 'g', visibility: 'private', ownerId: owner.id, memberIds: [owner.id], createdAt: Date.now() });
      const message = (seq: number): MessageEnvelope => ({
        type: 'message', id: newId(), chatId: chat.id, seq, senderId: owner.id, senderName: 'Owner', text: `m${seq}`, clientMsgId: `c${seq}`, createdAt: new Date().toISOString(),
      });
      const seqs = (r: { messages: { seq: number; type: string }[] }) => r.messages.filter((m) => m.type === 'message').map((m) => m.seq);
      expect(await store.appendMessages([message(1)])).toEqual(['stored']);
      other.exec('BEGIN IMMEDIATE');
      let read = false;
      const history = store.listMessages(chat.id, { limit: 10 }).then((r) => ((read = true), r));
      const appended = store.appendMessages([message(2)]);
      const first = await Promise.race([appended.then(() => 'appended'), new Promise((resolve) => setTimeout(() => resolve('still waiting after 5 s'), 5000))]);
      expect(first).toBe('appended');
      expect(await appended).toEqual(['stored']);
      expect(read).toBe(false);
      other.exec('COMMIT');
      expect(seqs(await history)).toContain(1);
      expect(seqs(await store.listMessages(chat.id, { limit: 10 }))).toEqual([1, 2]);
    } finally {
      other.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * The main connection never waits for the write lock on the event loop (SqliteStore.write): the
 * message log's writer thread holds it through each compaction of the segment log, and
 * better-sqlite3's busy handler would sleep the whole thread meanwhile. Here another connection
 * holds the lock (BEGIN IMMEDIATE), as the writer thread does.
 */
describe('SQLite writes while another connection holds the write lock', () => {
  const user = (name: string) => ({ id: newId(), username: name, displayName: name, passwordHash: 'x', createdAt: Date.now() });
  const turns = (n: number) => new Promise((resolve) => setTimeout(resolve, n));
  /** A store on a new file with a user `owner`, and a second connection to the file. */
  const withLockable = async (options: { writeWaitMs?: number }, body: (store: SqliteStore, other: Database.Database, owner: { id: string }) => Promise<void>) => {
    const dir = tempDir('chat-store-lock-');
    const file = join(dir, 'chat.db');
    const store = new SqliteStore(file, options);
    const other = new Database(file);
    try {
      await body(store, other, await store.createUser(user('owner')));
    } finally {
      other.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('wait off the event loop, in the order they came, and are written once the lock is free', () =>
    withLockable({}, async (store, other, owner) => {
      other.exec('BEGIN IMMEDIATE');
      const settled: string[] = [];
      // Each call returns at once (a blocked thread would not get to the next line before the
      // lock is free), and none resolves while the lock is held.
      const created = store.createUser(user('waiting')).then(() => settled.push('user'));
      const session = { id: newId(), userId: owner.id, createdAt: Date.now(), expiresAt: Date.now() + 60_000, revokedAt: null };
      const sessionWritten = store.createSession(session).then(() => settled.push('session'));
      const revoked = store.revokeSession(session.id, Date.now()).then((r) => (settled.push('revoked'), r));
      await turns(100);
      expect(settled).toEqual([]);
      expect(await store.getUserByUsername('waiting')).toBeNull();
      other.exec('COMMIT');
      await Promise.all([created, sessionWritten, revoked]);
      // In order: the revoke, which came after the session's insert, found the session there.
      expect(settled).toEqual(['user', 'session', 'revoked']);
      expect(await revoked).toBe(true);
      expect((await store.getSession(session.id))?.revokedAt).not.toBeNull();
      expect((await store.getUserByUsername('waiting'))?.username).toBe('waiting');
    }));

  it('fail as unavailable after writeWaitMs, with nothing written, and the next write goes through', () =>
    withLockable({ writeWaitMs: 300 }, async (store, other, owner) => {
      other.exec('BEGIN IMMEDIATE');
      const group = store.createGroupChat({ id: newId(), name: 'g', visibility: 'public', ownerId: owner.id, memberIds: [owner.id], createdAt: Date.now() });
      await expect(group).rejects.toMatchObject({ code: 'unavailable', retryAfter: 1 });
      other.exec('COMMIT');
      expect((await store.listPublicGroups({ limit: 10 })).items).toEqual([]);
      const next = await store.createGroupChat({ id: newId(), name: 'h', visibility: 'public', ownerId: owner.id, memberIds: [owner.id], createdAt: Date.now() });
      expect((await store.listPublicGroups({ limit: 10 })).items.map((c) => c.id)).toEqual([next.id]);
    }));
});
