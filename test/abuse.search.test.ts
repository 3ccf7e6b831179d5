import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MessageEnvelope } from '../core/envelope.js';
import { newId } from '../core/ids.js';
import { hashPassword } from '../core/passwords.js';
import { SEARCH_PENDING_MAX } from '../core/store/sqlite-search.js';
import type { SqliteStore } from '../core/store/sqlite.js';
import type { ChatRecord } from '../core/store/store.js';
import { type SeededUser, Seeder } from './helpers/seed.js';
import { type HttpResult, type Json, type TestServer, startTestServer } from './helpers/server.js';

/**
 * Issue 20, item 3: message search cannot be used to slow everyone else down. A per-user rate
 * (SEARCH_BURST, SEARCH_RATE), a bound on the searches waiting or running in a process (503 +
 * Retry-After past it, never a queue without end), and the search itself on a thread of its own
 * (core/store/sqlite-search.ts), whose answers are those of the index, busy or not. Real HTTP,
 * real SQLite file.
 */
describe('message search under abuse', () => {
  let srv: TestServer;
  let store: SqliteStore;
  let seeder: Seeder;
  let owner: SeededUser;
  let crowd: SeededUser[];
  let room: ChatRecord;
  /** The texts stored in `room`, oldest first, by id. */
  const stored: Array<{ id: string; text: string }> = [];

  const search = (who: SeededUser, q: string, more: Record<string, string> = {}): Promise<HttpResult> =>
    srv.http.get(`/api/messages/search?${new URLSearchParams({ q, limit: '100', ...more })}`, who.token);
  /** What the search should answer for q in room: its messages containing q, newest first. */
  const expected = (q: string) => stored.filter((m) => m.text.toLowerCase().includes(q.toLowerCase())).reverse().map((m) => m.id);
  const ids = (res: HttpResult) => (res.body.messages as Json[]).map((m) => m.id as string);

  beforeAll(async () => {
    // Two searches, then one every 100 s: the rate spec runs out at once; every other user here
    // searches at most twice.
    srv = await startTestServer({ SEARCH_BURST: '2', SEARCH_RATE: '0.01' });
    store = srv.store as SqliteStore;
    seeder = new Seeder(store, await hashPassword('seeded-password'));
    [owner] = (await seeder.users(1, 'own')) as [SeededUser];
    crowd = await seeder.users(SEARCH_PENDING_MAX + 10, 'crowd');
    room = await seeder.group(owner, crowd);
    // Worst-case rows for q = 64 × "a" (each a candidate with a thousand positions), and plain ones.
    const texts = [
      ...Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? `${'a'.repeat(999)}b` : 'a'.repeat(1000))),
      ...Array.from({ length: 40 }, (_, i) => `plain words number ${i}, the quick brown ${i % 2 ? 'fox' : 'cat'} jumps`),
    ];
    const envelopes: MessageEnvelope[] = texts.map((text, i) => ({
      type: 'message', id: newId(), chatId: room.id, seq: i + 1, senderId: owner.user.id, senderName: owner.user.displayName, text, clientMsgId: null,
      createdAt: new Date().toISOString(),
    }));
    await store.appendMessages(envelopes);
    stored.push(...envelopes.map((e) => ({ id: e.id, text: e.text })));
  });
  afterAll(async () => {
    await srv?.stop();
  });

  it('answers 429 rate_limited with Retry-After once a user has spent its searches; another user is unaffected', async () => {
    const [greedy, bystander] = crowd as [SeededUser, SeededUser];
    for (let i = 0; i < 2; i++) expect((await search(greedy, 'quick brown fox')).status).toBe(200);
    const refused = await search(greedy, 'quick brown fox');
    expect([refused.status, refused.body.error?.code]).toEqual([429, 'rate_limited']);
    const seconds = Number(refused.headers.get('retry-after'));
    expect(Number.isInteger(seconds) && seconds >= 1 && seconds <= 100, `Retry-After ${refused.headers.get('retry-after')}`).toBe(true);
    // A bad query is refused before it spends anything, and still is once the budget is gone.
    expect((await search(greedy, 'x')).body.error?.code).toBe('invalid_input');
    const other = await search(bystander, 'quick brown fox');
    expect([other.status, ids(other)]).toEqual([200, expected('quick brown fox')]);
  });

  it(`answers 503 unavailable with Retry-After: 1 past ${SEARCH_PENDING_MAX} searches in progress; the others get their results, worst cases among them`, async () => {
    const users = crowd.slice(2, SEARCH_PENDING_MAX + 6);
    const queries = users.map((_, i) => (i % 2 === 0 ? 'a'.repeat(64) : i % 4 === 1 ? 'quick brown fox' : `${'a'.repeat(63)}b`));
    // While another connection holds the database's write lock and a row waits to be indexed,
    // the index cannot catch up, so every search admitted waits (searches wait for the index: a
    // message stored before a search is found by it) and holds its place: the ones past the
    // bound are refused at once. The row: the index is set back to before the newest one (its
    // entry taken out, so that catching up again is exact), and the lock taken again before the
    // indexer (it looks every 200 ms) gets to it; checked under the lock, done again if it did.
    const holder = new Database(join(srv.dataDir, 'chat.db'));
    holder.pragma('busy_timeout = 10000');
    for (;;) {
      holder.exec('BEGIN IMMEDIATE');
      const newest = (holder.prepare('SELECT MAX(rowid) AS n FROM messages').get() as { n: number }).n;
      if ((holder.prepare('SELECT last_rowid AS n FROM search_progress').get() as { n: number }).n < newest) break;
      holder.prepare('DELETE FROM message_search WHERE rowid = ?').run(newest);
      holder.prepare('UPDATE search_progress SET last_rowid = ?').run(newest - 1);
      holder.exec('COMMIT');
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      holder.exec('ROLLBACK');
      holder.close();
    };
    try {
      const extra = users.length - SEARCH_PENDING_MAX;
      let refusals = 0;
      let allRefused!: () => void;
      const refusedEnough = new Promise<void>((resolve) => (allRefused = resolve));
      const answers = users.map((u, i) =>
        search(u, queries[i]!).then((res) => {
          if (res.status === 503 && ++refusals === extra) allRefused();
          return res;
        }),
      );
      // Without a bound nothing is refused: every answer comes (after the busy timeout) and the count below fails.
      await Promise.race([refusedEnough, Promise.all(answers)]);
      release();
      const results = await Promise.all(answers);
      const refused = results.filter((r) => r.status === 503);
      expect(refused.length).toBe(extra);
      for (const r of refused) expect([r.body.error?.code, r.headers.get('retry-after')]).toEqual(['unavailable', '1']);
      results.forEach((r, i) => {
        if (r.status !== 503) expect([queries[i]!.length, r.status, ids(r)]).toEqual([queries[i]!.length, 200, expected(queries[i]!).slice(0, 100)]);
      });
      // All 300 long rows hold 64 × "a": three pages of 100.
      const full = results.find((r, i) => r.status === 200 && queries[i] === 'a'.repeat(64))!;
      expect(full.body.hasMore).toBe(true);
    } finally {
      release();
    }
  });

  it('gives the same answers, page by page, while the search thread is kept busy with worst cases', async () => {
    const [worst1, worst2, worst3, reader] = crowd.slice(-4) as [SeededUser, SeededUser, SeededUser, SeededUser];
    const busy = [worst1, worst2, worst3, worst1].map((u) => search(u, 'a'.repeat(64)));
    const first = await search(reader, 'plain words', { limit: '25' });
    expect([first.status, ids(first), first.body.hasMore]).toEqual([200, expected('plain words').slice(0, 25), true]);
    const second = await search(reader, 'plain words', { limit: '25', before: ids(first).at(-1)! });
    expect([second.status, ids(second), second.body.hasMore]).toEqual([200, expected('plain words').slice(25), false]);
    for (const res of await Promise.all(busy)) {
      expect([res.status, ids(res)]).toEqual([200, expected('a'.repeat(64)).slice(0, 100)]);
    }
  });
});
