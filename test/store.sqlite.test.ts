import { rmSync } from 'node:fs';
import { join } from 'node:path';
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
