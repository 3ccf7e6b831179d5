import Database from 'better-sqlite3';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { envelopeJson, type MessageEnvelope } from '../core/envelope.js';
import { newId } from '../core/ids.js';
import { SCHEMA_VERSION, SqliteStore, migrationsUpTo } from '../core/store/sqlite.js';
import { tempDir } from './helpers/server.js';

/**
 * Specification: a database an older release left behind opens with everything in it. Here a
 * store at schema version 3 (messages kept WITHOUT ROWID by (chat_id, seq)) is built with that
 * release's migrations and rows, then opened by today's store: the rows are all there, in
 * order, and the log's rules hold on them (a repeated seq, a repeated idempotency key), and its
 * chats have a members version, its members have read pointers and its messages are in the
 * search index.
 */
describe('SQLite migrations', () => {
  const dir = tempDir('chat-migrate-');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('moves the messages of a version-3 store into the rowid log, keeping every rule', async () => {
    const file = join(dir, 'chat.db');
    const old = new Database(file);
    old.pragma('journal_mode = WAL');
    for (const step of migrationsUpTo(3)) typeof step === 'string' ? old.exec(step) : step(old);
    old.pragma('user_version = 3');
    const [owner, chatId] = [newId(), newId()];
    old.prepare("INSERT INTO users (id, username, display_name, search_name, password_hash, created_at) VALUES (?, 'old', 'Old', 'old', 'x', 1)").run(owner);
    old.prepare("INSERT INTO chats (id, number, type, name, visibility, owner_id, created_at) VALUES (?, 1, 'group', 'g', 'private', ?, 1)").run(chatId, owner);
    old.prepare('INSERT INTO members (chat_id, user_id, joined_at) VALUES (?, ?, 1)').run(chatId, owner);
    const envelopes: MessageEnvelope[] = Array.from({ length: 50 }, (_, i) => ({
      type: 'message', id: newId(Date.now() + i), chatId, seq: i + 1, senderId: owner, senderName: 'Old', text: `old ${i + 1}`,
      clientMsgId: `k${i + 1}`, createdAt: new Date(1_700_000_000_000 + i).toISOString(),
    }));
    const insert = old.prepare('INSERT INTO messages (chat_id, seq, id, type, sender_id, client_msg_id, created_at, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    for (const e of [...envelopes].reverse()) insert.run(e.chatId, e.seq, e.id, e.type, e.senderId, e.clientMsgId, Date.parse(e.createdAt), envelopeJson(e));
    old.close();

    const store = new SqliteStore(file);
    try {
      const check = new Database(file, { readonly: true });
      expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect((check.prepare("SELECT sql FROM sqlite_schema WHERE name = 'messages'").get() as { sql: string }).sql).not.toMatch(/WITHOUT ROWID/);
      check.close();

      const page = await store.listMessages(chatId, { limit: 100 });
      expect(page.messages).toEqual(envelopes);
      expect(await store.maxSeq(chatId)).toBe(50);
      expect((await store.recentSends(3)).map((r) => r.clientMsgId)).toEqual(['k50', 'k49', 'k48']);

      const next = (seq: number, clientMsgId: string): MessageEnvelope => ({ ...envelopes[0]!, id: newId(), seq, clientMsgId, text: `new ${seq}` });
      const [stored, seqTaken, keyTaken, again] = await store.appendMessages([next(51, 'k51'), next(50, 'other'), next(52, 'k7')]).then(async (r) => [...r, ...(await store.appendMessages([envelopes[9]!]))]);
      expect(stored).toBe('stored');
      expect(seqTaken).toEqual({ seqHeldBy: envelopes[49]!.id });
      expect(keyTaken).toEqual({ keyHeldBy: { id: envelopes[6]!.id, seq: 7 } });
      expect(again).toBe('present');
      expect((await store.listMessages(chatId, { after: 49, limit: 10 })).messages.map((m) => m.seq)).toEqual([50, 51]);

      // Migrations 6 and 7: its member has read everything there was (no old message becomes
      // unread), and its old messages are in the search index beside the new one.
      expect(await store.readPointers(chatId)).toEqual([{ userId: owner, readSeq: 51, at: expect.any(Number) }]);
      expect((await store.searchMessages('old 4', [chatId], { limit: 20 })).messages.map((m) => m.seq)).toEqual([49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 4]);
      expect((await store.searchMessages('new', [chatId], { limit: 20 })).messages.map((m) => m.seq)).toEqual([51]);

      // Its chat has a members version (migration 5), raised by the next change.
      const chat = (await store.getChat(chatId))!;
      expect(chat).toMatchObject({ memberIds: [owner], membersVersion: 1 });
      await store.removeMember(chatId, owner);
      expect((await store.getChat(chatId))!.membersVersion).toBe(2);
    } finally {
      await store.close();
    }
  });
});
