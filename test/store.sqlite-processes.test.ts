import { execFile, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../core/ids.js';
import { SqliteStore } from '../core/store/sqlite.js';
import { tempDir } from './helpers/server.js';

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const dist = resolve('dist/core/store/sqlite.js');

/**
 * Several processes on one machine share the SQLite file (e.g. api and broker processes).
 * Each child below opens its own connection to the same file and races the others: chat
 * numbering, the one-direct-chat-per-pair rule and the member cap must hold across them.
 */
describe('SQLite store shared by several processes', () => {
  let dir: string;
  let file: string;
  let script: string;
  const PROCESSES = 4;

  beforeAll(() => {
    if (!existsSync(dist)) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
    dir = tempDir('chat-mp-');
    file = join(dir, 'chat.db');
    script = join(dir, 'child.mjs');
    writeFileSync(
      script,
      `
      import { randomUUID } from 'node:crypto';
      import { SqliteStore } from ${JSON.stringify(dist)};
      const [file, job, a, b, groupId, joiners] = process.argv.slice(2);
      const store = new SqliteStore(file);
      const out = { numbers: [], direct: [], joins: [] };
      for (let i = 0; i < 15; i++) {
        const c = await store.createGroupChat({ id: randomUUID(), name: job + '-' + i, visibility: 'private', ownerId: a, memberIds: [a], createdAt: Date.now() });
        out.numbers.push(c.number);
        const d = await store.createDirectChat({ id: randomUUID(), userIds: i % 2 ? [a, b] : [b, a], createdAt: Date.now() });
        out.direct.push(d.chat.id);
      }
      for (const u of joiners.split(',')) {
        try { await store.addMembers(groupId, [u], 10, Date.now()); out.joins.push('ok'); }
        catch (e) { out.joins.push(e.code ?? String(e)); }
      }
      await store.close();
      console.log(JSON.stringify(out));
      `,
    );
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps numbers unique and contiguous, one direct chat per pair, and the member cap', async () => {
    const store = new SqliteStore(file);
    const mk = (name: string) => store.createUser({ id: newId(), username: name, displayName: name, passwordHash: 'x', createdAt: Date.now() });
    const a = await mk('alice');
    const b = await mk('bob');
    const joiners: Awaited<ReturnType<typeof mk>>[] = [];
    for (let i = 0; i < PROCESSES * 5; i++) joiners.push(await mk(`joiner${i}`));
    const capped = await store.createGroupChat({ id: newId(), name: 'capped', visibility: 'public', ownerId: a.id, memberIds: [a.id], createdAt: Date.now() });
    await store.close();

    const settled = await Promise.allSettled(
      Array.from({ length: PROCESSES }, (_, p) => {
        const mine = joiners.slice(p * 5, p * 5 + 5).map((u) => u.id).join(',');
        return run(process.execPath, [script, file, `p${p}`, a.id, b.id, capped.id, mine], { timeout: 60_000 });
      }),
    );
    // Wait for every child before judging, so none is still writing when the file is checked.
    const failed = settled.flatMap((s) => (s.status === 'rejected' ? [String(s.reason)] : []));
    expect(failed).toEqual([]);
    const results = settled.map((s) => JSON.parse((s as PromiseFulfilledResult<{ stdout: string }>).value.stdout) as { numbers: number[]; direct: string[]; joins: string[] });

    const numbers = results.flatMap((r) => r.numbers);
    const directNumbers = new Set<number>();
    const check = new SqliteStore(file);
    try {
      const directIds = new Set(results.flatMap((r) => r.direct));
      expect(directIds.size).toBe(1);
      const direct = await check.getChat([...directIds][0]!);
      directNumbers.add(direct!.number);
      // Group numbers, the capped group (1) and the single direct chat fill 1..N exactly.
      const all = [...numbers, capped.number, ...directNumbers].sort((x, y) => x - y);
      expect(all).toEqual(Array.from({ length: PROCESSES * 15 + 2 }, (_, i) => i + 1));

      const joins = results.flatMap((r) => r.joins);
      expect(joins.filter((j) => j === 'ok')).toHaveLength(9);
      expect(joins.filter((j) => j === 'group_full')).toHaveLength(PROCESSES * 5 - 9);
      expect((await check.getChat(capped.id))!.memberIds).toHaveLength(10);
    } finally {
      await check.close();
    }
  });

  it('opens a new file while another process holds a write lock on it, by waiting (servers started together)', async () => {
    // The first of two servers started together on a new file holds a lock on it while it makes it
    // WAL; SQLite answers the second's switch to WAL with SQLITE_BUSY at once, without the busy
    // timeout (a cluster spec's two nodes hit it). Here a process holds a write lock on a new
    // file (not WAL yet) for a second: the store must wait for it and open.
    const fresh = join(dir, 'fresh.db');
    const holder = join(dir, 'holder.cjs');
    writeFileSync(holder, `
      const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))});
      const db = new Database(process.argv[2]);
      db.exec('CREATE TABLE held (a)');
      db.exec('BEGIN IMMEDIATE');
      db.exec('INSERT INTO held VALUES (1)');
      console.log('locked');
      setTimeout(() => { db.exec('COMMIT'); db.close(); }, 1000);
    `);
    const child = spawn(process.execPath, [holder, fresh], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const started = Date.now();
    const store = new SqliteStore(fresh);
    try {
      expect(Date.now() - started).toBeGreaterThanOrEqual(500); // it waited for the lock
      await store.ping();
      const check = new Database(fresh, { readonly: true });
      expect(check.pragma('journal_mode', { simple: true })).toBe('wal');
      check.close();
    } finally {
      await store.close();
      await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(null)));
    }
  });

  it('closes in a process with nothing else to do: close() resolves, then the process goes on', async () => {
    // The message log's threads must keep the process alive until they are gone; were one
    // unreferenced, a script (a seeder, a migration) would end silently inside close().
    const closer = join(dir, 'closer.mjs');
    writeFileSync(
      closer,
      `
      import { randomUUID } from 'node:crypto';
      import { SqliteStore } from ${JSON.stringify(dist)};
      const store = new SqliteStore(process.argv[2]);
      const a = await store.createUser({ id: randomUUID(), username: 'closer', displayName: 'closer', passwordHash: 'x', createdAt: Date.now() });
      const chat = await store.createGroupChat({ id: randomUUID(), name: 'c', visibility: 'private', ownerId: a.id, memberIds: [a.id], createdAt: Date.now() });
      const outcomes = await store.appendMessages([
        { type: 'system', id: randomUUID(), chatId: chat.id, seq: 1, event: 'chat.created', userId: a.id, createdAt: new Date().toISOString() },
      ]);
      await store.close();
      console.log(JSON.stringify({ closed: true, outcomes }));
      `,
    );
    const { stdout } = await run(process.execPath, [closer, join(dir, 'closer.db')], { timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({ closed: true, outcomes: ['stored'] });
  });
});
