import { rmSync } from 'node:fs';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { newId } from '../core/ids.js';
import { keyFilter } from '../core/store/key-filter.js';
import { decodeRecords, encodeRecords, type MessageRow, messageRowWriter } from '../core/store/sqlite-message-rows.js';
import { segmentLog } from '../core/store/sqlite-segment-log.js';
import { SqliteStore } from '../core/store/sqlite.js';
import { tempDir } from './helpers/server.js';

const key = (chat: number, sender: number, k: string) => `0190a0a0-0000-7000-8000-${String(chat).padStart(12, '0')}\n0190b0b0-0000-7000-8000-${String(sender).padStart(12, '0')}\n${k}`;

/**
 * The Bloom filter of idempotency keys (core/store/key-filter.ts): never a false negative, about
 * 1 % false positives at capacity; and the segment log's use of it: a key the database holds is
 * found whether it was there before the log started (the filter built from the index, page by
 * page) or compacted since, also after the filter was built again larger.
 */
describe('key filter', () => {
  it('has every key added, and about 1 % of the others at capacity', () => {
    const filter = keyFilter(50_000);
    for (let i = 0; i < 50_000; i++) filter.add(key(i % 680, i % 7, `m${i}`));
    for (let i = 0; i < 50_000; i++) expect(filter.has(key(i % 680, i % 7, `m${i}`))).toBe(true);
    let wrong = 0;
    for (let i = 0; i < 50_000; i++) if (filter.has(key(i % 680, i % 7, `other${i}`))) wrong++;
    expect(wrong / 50_000).toBeLessThan(0.02);
    expect(filter.full()).toBe(false);
    filter.add('one more');
    expect(filter.full()).toBe(true);
  });

  it('tells keys apart that differ in one character anywhere, and the empty key', () => {
    const filter = keyFilter(1000);
    filter.add(key(1, 1, 'abc'));
    expect(filter.has(key(1, 1, 'abc'))).toBe(true);
    expect([key(1, 1, 'abd'), key(1, 2, 'abc'), key(2, 1, 'abc'), key(1, 1, 'ab'), ''].filter((k) => filter.has(k))).toEqual([]);
  });
});

describe('segment log: idempotency keys the database holds', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const row = (chatId: string, seq: number, senderId: string, clientMsgId: string): MessageRow => {
    const envelope = { type: 'message', id: newId(), chatId, seq, senderId, senderName: 'A', text: `t${seq}`, clientMsgId, createdAt: new Date().toISOString() };
    return [chatId, seq, envelope.id, 'message', senderId, clientMsgId, Date.now(), JSON.stringify(envelope), envelope.text, null];
  };

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
    const log = segmentLog({
      fs, crc32, db, file, appendRow: messageRowWriter(db), compactRow: messageRowWriter(db, true), encodeRecords, decodeRecords,
      compactAfterMs: 3000, compactRows: 20_000, chunk: 1000, slice: 100, maxTailRows: 200_000,
      keyFilter, keysPerStep: 7, keysCapacity: 16, onCompacted: () => {},
    });
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
