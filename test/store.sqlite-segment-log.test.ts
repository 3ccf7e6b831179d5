import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MessageEnvelope } from '../core/envelope.js';
import { newId } from '../core/ids.js';
import { SqliteStore } from '../core/store/sqlite.js';
import { tempDir } from './helpers/server.js';

const dist = resolve('dist/core/store/sqlite.js');

/**
 * The embedded store's segment log (core/store/sqlite-segment-log.ts): appends are durable in the
 * log before the database has them. A process killed before its log reached the database
 * loses nothing acknowledged: the next start replays it, up to a record the kill cut short. The
 * log belongs to one process at a time.
 */
describe('SQLite segment log', () => {
  let dir: string;
  let script: string;

  beforeAll(() => {
    if (!existsSync(dist)) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
    dir = tempDir('chat-seglog-');
    script = join(dir, 'appender.mjs');
    // Appends `count` messages (one append each, as the archive's group commits come), says how
    // many were acknowledged, then waits to be killed: the log's rows reach the database 3 s after
    // the first, so the kill comes before they do.
    writeFileSync(
      script,
      `
      import { SqliteStore } from ${JSON.stringify(dist)};
      const [file, chatId, senderId, count] = process.argv.slice(2);
      const store = new SqliteStore(file, { exclusive: true });
      const acked = await Promise.all(Array.from({ length: Number(count) }, (_, i) => store.appendMessages([{
        type: 'message', id: '0190a0a0-0000-7000-8000-' + String(i).padStart(12, '0'), chatId, seq: i + 1, senderId, senderName: 'A',
        text: 'replayed ' + i, clientMsgId: 'k' + i, createdAt: new Date().toISOString(),
      }])));
      console.log(JSON.stringify({ acked: acked.filter((o) => o[0] === 'stored').length }));
      setInterval(() => {}, 1000);
      `,
    );
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const seed = async (file: string) => {
    const store = new SqliteStore(file);
    const user = await store.createUser({ id: newId(), username: 'alice', displayName: 'A', passwordHash: 'x', createdAt: Date.now() });
    const chat = await store.createGroupChat({ id: newId(), name: 'g', visibility: 'private', ownerId: user.id, memberIds: [user.id], createdAt: Date.now() });
    await store.close();
    return { user, chat };
  };

  /** Starts the appender; resolves once it has printed its acknowledgements. */
  const appender = (file: string, chatId: string, userId: string, count: number) => {
    const child = spawn(process.execPath, [script, file, chatId, userId, String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acked = new Promise<number>((resolve, reject) => {
      child.stdout.once('data', (d: Buffer) => resolve((JSON.parse(d.toString()) as { acked: number }).acked));
      child.once('exit', (code) => reject(new Error(`the appender exited (${code}) before acknowledging`)));
    });
    const killed = () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
    return { acked, killed };
  };

  it('replays what a killed process acknowledged, up to a record its death cut short, once', async () => {
    const file = join(dir, 'replay.db');
    const { user, chat } = await seed(file);
    const run = appender(file, chat.id, user.id, 200);
    expect(await run.acked).toBe(200);
    await run.killed();

    // The database has none of them yet; the log has all.
    const segments = readdirSync(dir).filter((n) => /^replay\.db-log\.\d{8}$/.test(n));
    expect(segments.length).toBeGreaterThan(0);
    // A record the kill cut short: a header promising more bytes than follow.
    appendFileSync(join(dir, segments.at(-1)!), Buffer.from([0xff, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x78, 0x7b]));

    const store = new SqliteStore(file, { exclusive: true });
    try {
      // Replayed as it opened, and gone.
      expect(segments.filter((n) => existsSync(join(dir, n)))).toEqual([]);
      const { messages } = await store.listMessages(chat.id, { after: 0, limit: 500 });
      expect(messages.map((m) => m.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      // The replayed rows are searchable, and their keys and seqs are held.
      expect((await store.searchMessages('replayed 199', [chat.id], { limit: 5 })).messages.map((m) => m.seq)).toEqual([200]);
      const again: MessageEnvelope = {
        type: 'message', id: newId(), chatId: chat.id, seq: 201, senderId: user.id, senderName: 'A', text: 'retry', clientMsgId: 'k7', createdAt: new Date().toISOString(),
      };
      expect(await store.appendMessages([again])).toEqual([{ keyHeldBy: { id: messages[7]!.id, seq: 8 } }]);
      expect(await store.maxSeq(chat.id)).toBe(200);
    } finally {
      await store.close();
    }
    // Closed: everything is in the database and the log is gone.
    expect(readdirSync(dir).filter((n) => n.startsWith('replay.db-log'))).toEqual(['replay.db-log.lock']);
  });

  it('belongs to one process: a second exclusive store waits, then fails; a shared one opens and leaves the log alone', async () => {
    const file = join(dir, 'lock.db');
    const { user, chat } = await seed(file);
    const run = appender(file, chat.id, user.id, 20);
    try {
      expect(await run.acked).toBe(20);
      const started = Date.now();
      expect(() => new SqliteStore(file, { exclusive: true, lockWaitMs: 300 })).toThrow(/held by another process/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      // A store that shares the file does not take a live process's log: its rows are not in the
      // database yet, and stay in the log.
      const shared = new SqliteStore(file);
      try {
        expect((await shared.listMessages(chat.id, { after: 0, limit: 100 })).messages).toEqual([]);
      } finally {
        await shared.close();
      }
      expect(readdirSync(dir).some((n) => /^lock\.db-log\.\d{8}$/.test(n))).toBe(true);
    } finally {
      await run.killed();
    }
    // Its owner gone, the log is the next store's, shared or not.
    const next = new SqliteStore(file);
    try {
      expect((await next.listMessages(chat.id, { after: 0, limit: 100 })).messages).toHaveLength(20);
    } finally {
      await next.close();
    }
  });

  it('serves reads from the database after the log: what was appended is read at once, edits applied', async () => {
    const file = join(dir, 'reads.db');
    const { user, chat } = await seed(file);
    const store = new SqliteStore(file, { exclusive: true });
    try {
      const at = new Date().toISOString();
      const message: MessageEnvelope = { type: 'message', id: newId(), chatId: chat.id, seq: 1, senderId: user.id, senderName: 'A', text: 'first', clientMsgId: 'c1', createdAt: at };
      expect(await store.appendMessages([message])).toEqual(['stored']);
      // The chat's last seq is known before any compaction; a read has the log compacted first.
      expect((await store.getChat(chat.id))!.lastSeq).toBe(1);
      expect(await store.appendMessages([{ type: 'edit', id: newId(), chatId: chat.id, seq: 2, senderId: user.id, targetSeq: 1, text: 'first, edited', createdAt: at }])).toEqual(['stored']);
      expect((await store.getMessage(chat.id, 1))!).toMatchObject({ text: 'first, edited' });
      // In the log or in the database, a repeat is a repeat.
      expect(await store.appendMessages([message])).toEqual(['present']);
      expect(await store.appendMessages([{ ...message, id: newId(), seq: 3 }])).toEqual([{ keyHeldBy: { id: message.id, seq: 1 } }]);
      const other: MessageEnvelope = { ...message, id: newId(), seq: 3, clientMsgId: 'c2', text: 'second' };
      expect(await store.appendMessages([other])).toEqual(['stored']);
      expect(await store.appendMessages([{ ...other, id: newId() }])).toEqual([{ seqHeldBy: other.id }]);
    } finally {
      await store.close();
    }
  });
});
