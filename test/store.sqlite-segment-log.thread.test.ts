import { existsSync, rmSync } from 'node:fs';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { newId } from '../core/ids.js';
import { keyFilter } from '../core/store/key-filter.js';
import { decodeRecords, encodeRecords, type MessageRow, messageRowWriter } from '../core/store/sqlite-message-rows.js';
import { replaySegments, segmentLog } from '../core/store/sqlite-segment-log.js';
import { SqliteStore } from '../core/store/sqlite.js';
import { tempDir } from './helpers/server.js';

/**
 * The segment log as its writer thread runs it (core/store/sqlite-segment-log.ts), driven step
 * by step on a real SQLite file: a key the database holds is found whether it was there before
 * the log started (the key filter built from the index, page by page) or compacted since, also
 * after the filter was built again larger; segments a stopped thread left are replayed by the
 * next one.
 */
describe('segment log on its thread', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const row = (chatId: string, seq: number, senderId: string, clientMsgId: string): MessageRow => {
    const envelope = { type: 'message', id: newId(), chatId, seq, senderId, senderName: 'A', text: `t${seq}`, clientMsgId, createdAt: new Date().toISOString() };
    return [chatId, seq, envelope.id, 'message', senderId, clientMsgId, Date.now(), JSON.stringify(envelope), envelope.text, null];
  };

  /** The segment log as the writer thread makes it, its key filter 7 keys a step, made for 16 at least. */
  const open = (db: Database.Database, file: string) =>
    segmentLog({
      fs, crc32, db, file, appendRow: messageRowWriter(db), compactRow: messageRowWriter(db, true), encodeRecords, decodeRecords, replaySegments,
      compactAfterMs: 3000, compactRows: 20_000, chunk: 1000, slice: 100, maxTailRows: 200_000,
      keyFilter, keysPerStep: 7, keysCapacity: 16, onCompacted: () => {},
    });

  it('replays the segments a stopped thread left, once, up to a torn record, and goes on numbering after them', async () => {
    dir = tempDir('chat-replay-');
    const file = join(dir, 'chat.db');
    const store = new SqliteStore(file);
    const user = await store.createUser({ id: newId(), username: 'u', displayName: 'A', passwordHash: 'x', createdAt: Date.now() });
    const chat = (await store.createGroupChat({ id: newId(), name: 'g', visibility: 'private', ownerId: user.id, memberIds: [user.id], createdAt: Date.now() })).id;
    await store.close();
    // Two segments: rows 1-3, then 3 again (present already) and 4-5 followed by a torn record.
    const rows = [1, 2, 3, 4, 5, 6].map((seq) => row(chat, seq, user.id, `r${seq}`));
    fs.writeFileSync(`${file}-log.00000007`, encodeRecords(rows.slice(0, 3), crc32));
    const torn = encodeRecords([rows[5]!], crc32);
    fs.writeFileSync(`${file}-log.00000008`, Buffer.concat([encodeRecords(rows.slice(2, 5), crc32), torn.subarray(0, torn.length - 3)]));
    const db = new Database(file);
    const log = open(db, file);
    try {
      expect(db.prepare('SELECT seq FROM messages WHERE chat_id = ? AND type = ? ORDER BY seq').pluck().all(chat, 'message')).toEqual([1, 2, 3, 4, 5]);
      expect(existsSync(`${file}-log.00000007`) || existsSync(`${file}-log.00000008`)).toBe(false);
      expect(existsSync(`${file}-log.00000009`)).toBe(true); // the new current segment
      // The log knows what the database holds now: seq 5 is taken, 6 is free.
      expect(log.append([{ id: 1, rows: [row(chat, 5, user.id, 'other')] }], String)).toEqual([{ id: 1, outcomes: [{ seqHeldBy: rows[4]![2] }] }]);
      expect(log.append([{ id: 2, rows: [row(chat, 6, user.id, 'r6')] }], String)).toEqual([{ id: 2, outcomes: ['stored'] }]);
    } finally {
      log.close();
      db.close();
    }
  });

  it('finds every stored key, before and after its filter is built and rebuilt, and stores new ones', async () => {
    dir = tempDir('chat-keys-');
    const file = join(dir, 'chat.db');
    // Three senders in two chats, 40 keyed messages stored before the log starts.
    const store = new SqliteStore(file);
    const users = [];
    for (let i = 0; i < 3; i++) users.push(await store.createUser({ id: newId(), username: `u${i}`, displayName: 'A', passwordHash: 'x', createdAt: Date.now() }));
    const ids = users.map((u) => u.id);
    const chats = [];
    for (let c = 0; c < 2; c++) chats.push((await store.createGroupChat({ id: newId(), name: `g${c}`, visibility: 'private', ownerId: ids[0]!, memberIds: ids, createdAt: Date.now() })).id);
    const seqs = new Map(chats.map((c) => [c, 0]));
    const next = (chat: string) => {
      seqs.set(chat, seqs.get(chat)! + 1);
      return seqs.get(chat)!;
    };
    const before: [string, string, string][] = [];
    for (let i = 0; i < 40; i++) before.push([chats[i % 2]!, ids[i % 3]!, `k${i}`]);
    const envelopes = before.map(([chatId, senderId, clientMsgId]) => JSON.parse(row(chatId, next(chatId), senderId, clientMsgId)[7]));
    expect((await store.appendMessages(envelopes)).every((o) => o === 'stored')).toBe(true);
    await store.close();

    const db = new Database(file);
    const log = open(db, file);
    let batch = 0;
    const append = (rows: MessageRow[]) => log.append([{ id: ++batch, rows }], (err) => String(err));
    const retries = (keys: [string, string, string][]) => keys.map(([chatId, senderId, clientMsgId]) => row(chatId, next(chatId), senderId, clientMsgId));
    try {
      // Before the filter is built: looked up.
      expect(append(retries(before.slice(0, 5)))).toEqual([{ id: 1, outcomes: Array(5).fill(expect.objectContaining({ keyHeldBy: expect.anything() })) }]);
      let steps = 0;
      while (log.keysStep()) steps++;
      expect(steps).toBe(5); // 40 keys, 7 a step: the index was read page by page
      const outcome = (o: unknown) => (o === 'stored' ? 'stored' : Object.keys(o as object)[0]);
      expect((append(retries(before))[0] as { outcomes: unknown[] }).outcomes.map(outcome)).toEqual(Array(40).fill('keyHeldBy'));

      // New keys are stored; once compacted, the database holds them, and the filter (made for
      // twice the 40 rows there were, and now holding 90 keys) is built again, twice as large.
      const later: [string, string, string][] = [];
      for (let i = 0; i < 50; i++) later.push([chats[i % 2]!, ids[i % 3]!, `later${i}`]);
      expect((append(retries(later))[0] as { outcomes: unknown[] }).outcomes.map(outcome)).toEqual(Array(50).fill('stored'));
      log.flush();
      expect((append(retries([...before, ...later]))[0] as { outcomes: unknown[] }).outcomes.map(outcome)).toEqual(Array(90).fill('keyHeldBy'));
      steps = 0;
      while (log.keysStep()) steps++;
      expect(steps).toBe(12); // 90 keys, 7 a step
      expect((append(retries([...before, ...later]))[0] as { outcomes: unknown[] }).outcomes.map(outcome)).toEqual(Array(90).fill('keyHeldBy'));
      expect((append(retries([[chats[0]!, ids[0]!, 'fresh']]))[0] as { outcomes: unknown[] }).outcomes).toEqual(['stored']);
    } finally {
      log.close();
      db.close();
    }
    // Nothing stored twice.
    const check = new Database(file, { readonly: true });
    expect((check.prepare('SELECT COUNT(*) AS n FROM messages').get() as { n: number }).n).toBe(91);
    check.close();
  });
});
