import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { normalizeForSearch, searchTokenText } from '../search-text.js';
import { decodeRecords, encodeRecords, type MessageRow, messageRowWriter } from './sqlite-message-rows.js';
import { keyFilter } from './key-filter.js';
import { replaySegments, segmentLog } from './sqlite-segment-log.js';
import type { Appended } from './store.js';

export type { MessageRow };

/**
 * Commits of the message log are at least this far apart (ms): under load, the messages that
 * arrive within it share one commit and one fsync (at most 500 a second); an idle log commits
 * at once.
 */
const MIN_COMMIT_GAP_MS = 2;
/**
 * The search index follows the messages table on a thread of its own (INDEXER, below), in
 * transactions of its own, at most this often (ms) and at most INDEX_BATCH rows each: indexed
 * with each commit (a few messages), FTS5 wrote a segment per commit and merged them again, and
 * the durable append wrote 40 % more (bench/README.md, "Chat list and message search"). A search
 * first has the index catch up (`indexed()`), so it still finds every message stored before it.
 */
const INDEX_GAP_MS = 200;
/** (About 20 ms, the write lock held: rows behind it, after a compaction of the segment log say,
 * are taken a batch a turn; the writer's compaction and the main connection's writes wait for
 * the lock off their threads' turns meanwhile.) */
const INDEX_BATCH = 250;
/** The segment log (core/store/sqlite-segment-log.ts): its rows are written into the database
 * `compactAfterMs` after the current segment's first (or once `compactRows` wait, or a read needs
 * them), `slice` rows a turn of the thread (about 3 ms: appends are answered in between), in
 * transactions of `chunk` rows (so the main thread's own writes wait for the write lock about
 * 30 ms at most, as long as for the index's catch-up before); appends are refused while `maxTailRows` wait (compactions
 * failing: the database's disk full, say); a failed compaction is tried again `retryMs` later. The filter of the database's idempotency keys
 * (core/store/key-filter.ts) takes `keysPerStep` of them a turn as it is built, made for at least `keysCapacity` keys (1.3 MB). */
const SEGMENTS = { compactAfterMs: 3000, compactRows: 20_000, chunk: 1000, slice: 100, maxTailRows: 200_000, retryMs: 1000, keysPerStep: 5000, keysCapacity: 1 << 20 };

/**
 * The message log's writer: a thread with its own connection to the database file that
 * appends message rows, so that neither the inserts nor the fsync of each commit
 * (synchronous=FULL) nor the WAL checkpoints run on the event loop. Appends that arrive while
 * a commit runs are written together in the next one (group commit), each batch in a savepoint
 * of its own so that a failing batch (an unknown chat) fails alone. `append` resolves, with
 * what became of each row (see `Store.appendMessages`), once the commit holding the batch is
 * on disk.
 */
export class LogWriter {
  private worker: Worker | null = null;
  private checkpointer: Worker | null = null;
  private indexer: Worker | null = null;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  /** Searches waiting for the indexer to catch up. */
  private readonly indexWaiters = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private nextId = 1;
  private closing: Promise<void> | null = null;
  /** With the segment log: the last append that stored a row, and the last one whose rows are
   * all in the database (the thread says so as it compacts). */
  private lastStored = 0;
  private compactedThrough = 0;
  /** With the segment log: each chat's highest seq among rows not yet in the database, and the
   * append that stored it. */
  private readonly tailSeqs = new Map<string, { seq: number; request: number }>();

  /** `segments`: appends go to the segment log (core/store/sqlite-segment-log.ts), the database
   * follows in compactions; otherwise each group commit is a transaction of the database. */
  constructor(
    private readonly file: string,
    private readonly segments = false,
  ) {}

  async append(rows: MessageRow[]): Promise<Appended[]> {
    const request = this.nextId;
    const outcomes = await this.ask<Appended[]>({ rows });
    if (this.segments) {
      rows.forEach((row, i) => {
        if (outcomes[i] !== 'stored') return;
        this.lastStored = Math.max(this.lastStored, request);
        const tail = this.tailSeqs.get(row[0]);
        if (!tail || tail.seq < row[1]) this.tailSeqs.set(row[0], { seq: row[1], request });
      });
    }
    return outcomes;
  }

  /** Resolves once the search index holds every row stored before the call. */
  async indexed(): Promise<void> {
    await this.caughtUp();
    if (this.closing) throw new Error('the store is closed');
    const indexer = (this.indexer ??= this.startIndexer());
    const id = this.nextId++;
    if (this.indexWaiters.size === 0) indexer.ref();
    await new Promise<void>((resolve, reject) => {
      this.indexWaiters.set(id, { resolve, reject });
      indexer.postMessage({ id, index: true });
    });
  }

  /** Resolves once every row appended before the call is in the database (at once without the
   * segment log, or when the segment log has compacted them). */
  async caughtUp(): Promise<void> {
    if (this.compactedThrough < this.lastStored) await this.ask({ flush: true });
  }

  /** The chat's highest seq among rows the segment log holds and the database not yet (0: none). */
  tailSeq(chatId: string): number {
    return this.tailSeqs.get(chatId)?.seq ?? 0;
  }

  private compacted(through: number): void {
    this.compactedThrough = Math.max(this.compactedThrough, through);
    for (const [chatId, tail] of this.tailSeqs) if (tail.request <= through) this.tailSeqs.delete(chatId);
  }

  private ask<T>(request: { rows: MessageRow[] } | { flush: true }): Promise<T> {
    if (this.closing) return Promise.reject(new Error('the store is closed'));
    const worker = (this.worker ??= this.start());
    this.indexer ??= this.startIndexer(); // again, should it have stopped
    const id = this.nextId++;
    if (this.pending.size === 0) worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      worker.postMessage({ id, ...request });
    });
  }

  /** Waits for the appends under way, then ends the thread (its connection closes cleanly). */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      // The writer first: it writes what the segment log holds into the database, which the
      // indexer then takes before it ends too.
      if (this.worker) await endThread(this.worker);
      if (this.indexer) await endThread(this.indexer);
      if (this.checkpointer) await endThread(this.checkpointer);
    })());
  }

  /** The search index's thread (INDEXER, below): it follows the database by rowid, on its own
   * connection, so that neither its tokenizer nor its FTS5 inserts hold up an append. */
  private startIndexer(): Worker {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(INDEXER, { eval: true, workerData: {
        file: this.file, driver, indexGapMs: INDEX_GAP_MS, indexBatch: INDEX_BATCH,
        // The search's own functions, so that the index is cut exactly as queries are.
        normalizeForSearch: normalizeForSearch.toString(), searchTokenText: searchTokenText.toString(),
      },
    });
    worker.unref();
    worker.on('message', (reply: { id: number; error?: { message: string; code?: string } }) => {
      const waiter = this.indexWaiters.get(reply.id);
      if (!waiter) return;
      this.indexWaiters.delete(reply.id);
      if (this.indexWaiters.size === 0) worker.unref();
      if (reply.error) waiter.reject(Object.assign(new Error(reply.error.message), reply.error.code ? { code: reply.error.code } : {}));
      else waiter.resolve();
    });
    const fail = (err: Error) => {
      if (this.indexer !== worker) return;
      this.indexer = null; // started again by the next append or search
      for (const waiter of this.indexWaiters.values()) waiter.reject(err);
      this.indexWaiters.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the search indexer stopped (exit code ${code})`)));
    return worker;
  }

  /** Copies the WAL back into the database file on a thread of its own, so that commits seldom
   * wait for a checkpoint. */
  private startCheckpointer(driver: string): Worker {
    const worker = new Worker(CHECKPOINTER, { eval: true, workerData: { file: this.file, driver, intervalMs: 250 } });
    worker.unref();
    worker.on('error', () => (this.checkpointer = null));
    return worker;
  }

  private start(): Worker {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(WRITER, { eval: true, workerData: {
        file: this.file, driver, minGapMs: MIN_COMMIT_GAP_MS, resetFrames: 10_000,
        messageRowWriter: messageRowWriter.toString(),
        segments: this.segments
          ? { segmentLog: segmentLog.toString(), encodeRecords: encodeRecords.toString(), decodeRecords: decodeRecords.toString(), keyFilter: keyFilter.toString(), replaySegments: replaySegments.toString(), ...SEGMENTS }
          : null,
      },
    });
    worker.unref();
    this.checkpointer ??= this.startCheckpointer(driver);
    worker.on('message', (reply: { id: number; outcomes?: Appended[]; compacted?: number; error?: { message: string; code?: string } }) => {
      if (reply.compacted !== undefined) return this.compacted(reply.compacted);
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if (reply.error) waiter.reject(Object.assign(new Error(reply.error.message), reply.error.code ? { code: reply.error.code } : {}));
      else waiter.resolve(reply.outcomes ?? null);
    });
    const fail = (err: Error) => {
      // The thread is gone: whatever it had not answered is not known to be durable. (Its exit
      // after its error: a thread started meanwhile is not this one.)
      if (this.worker !== worker) return;
      this.worker = null;
      for (const waiter of this.pending.values()) waiter.reject(err);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the message log writer stopped (exit code ${code})`)));
    return worker;
  }
}

/**
 * The thread's code (CommonJS, run with `eval`, so the same source works from the compiled
 * build and from the TypeScript sources the tests load).
 */
const WRITER = `
const { parentPort, workerData, receiveMessageOnPort } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 10000');
db.pragma('synchronous = FULL');
db.pragma('foreign_keys = ON');
// Each batch is a savepoint of its own; past 64 KiB its statement journal went to a temporary
// file on disk: 9.5 KB and 2.5 write calls per message at 2,500 msg/s (npm run bench:append).
// In memory it is bounded by the pages one commit touches.
db.pragma('temp_store = MEMORY');
// The checkpointer thread (below) copies the WAL back as it grows. This one, run by SQLite
// after a commit once the WAL holds that many frames, finds little left to copy and, with no
// commit running beside it, finishes: the next commit then starts the WAL anew.
db.pragma('wal_autocheckpoint = ' + workerData.resetFrames);
const appendRow = (0, eval)('(' + workerData.messageRowWriter + ')')(db);
const appendBatch = db.transaction((rows) => rows.map(appendRow));
const failure = (err) => ({ message: String(err && err.message), code: err && err.code });
// Nested in this transaction, each batch's own transaction is a savepoint.
const commit = db.transaction((batches) => batches.map((b) => {
  try {
    return { id: b.id, outcomes: appendBatch(b.rows) };
  } catch (err) {
    return { id: b.id, error: failure(err) };
  }
}));
// Commits are at least minGapMs apart: a message arriving sooner waits, and the messages that
// arrive meanwhile share its commit (and its fsync). An idle writer commits at once.
let queue = [];
let closing = false;
let timer = null;
let lastCommit = -Infinity;
const take = (m) => {
  if (m.close) closing = true;
  else if (m.flush) flushRequests.push(m.id);
  else queue.push(m);
};
// With the segment log (core/store/sqlite-segment-log.ts), a group commit is a write to the log
// instead of a transaction; the log's rows reach the database in compactions, one chunk per turn,
// appends answered in between. A read that needs them asks for a flush. A failing chunk is tried
// again later (the rows stay in the log); a flush waiting for it fails.
const segments = workerData.segments;
const log = segments && (0, eval)('(' + segments.segmentLog + ')')({
  fs: require('node:fs'), crc32: require('node:zlib').crc32, db, file: workerData.file, appendRow,
  compactRow: (0, eval)('(' + workerData.messageRowWriter + ')')(db, true),
  encodeRecords: (0, eval)('(' + segments.encodeRecords + ')'), decodeRecords: (0, eval)('(' + segments.decodeRecords + ')'),
  replaySegments: (0, eval)('(' + segments.replaySegments + ')'),
  compactAfterMs: segments.compactAfterMs, compactRows: segments.compactRows, chunk: segments.chunk, slice: segments.slice, maxTailRows: segments.maxTailRows,
  keyFilter: (0, eval)('(' + segments.keyFilter + ')'), keysPerStep: segments.keysPerStep, keysCapacity: segments.keysCapacity,
  onCompacted: (through) => parentPort.postMessage({ compacted: through }),
});
// With the segment log, this thread never sleeps on the write lock (the indexer's or the main
// connection's transactions hold it at times): appends only read the database, and a compaction
// that finds the lock held tries again 2 ms later (for as long as the busy timeout would wait).
// A transaction per group commit (no segment log) waits for it, as appends must.
if (log) db.pragma('busy_timeout = 0');
let compactBusySince = null;
// Reads asking for a flush: received (the current segment not sealed for them yet), then
// waiting for the segment sealed for them.
let flushRequests = [];
let flushWaiters = [];
let sealTimer = null;
/** A step run later, one at a time: schedule(0) runs it at the next turn, schedule(ms) after a
 * wait; scheduling it again before it ran changes nothing. */
const later = (step) => {
  let timer = null;
  const run = () => {
    timer = null;
    step();
  };
  return {
    schedule(wait) {
      if (timer) return;
      timer = wait > 0 ? setTimeout(run, wait) : setImmediate(run);
    },
    cancel() {
      clearTimeout(timer);
      clearImmediate(timer);
      timer = null;
    },
  };
};
// The filter of the database's idempotency keys is built a step a turn (at start, and again
// larger when full: after a compaction).
const keys = later(() => {
  let more;
  try {
    more = log.keysStep();
  } catch {
    return keys.schedule(segments.retryMs); // busy, say: every key is looked up meanwhile
  }
  if (more) keys.schedule(0);
});
if (log) keys.schedule(0);
const scheduleSeal = () => {
  if (sealTimer) return;
  const wait = log.dueIn();
  if (wait !== Infinity) sealTimer = setTimeout(sealNow, wait);
};
const sealNow = () => {
  sealTimer = null;
  try {
    log.seal();
  } catch {
    // no new segment could be made (the disk full, say): the current one goes on, sealed later
    sealTimer = setTimeout(sealNow, segments.retryMs);
    return;
  }
  compact.schedule(0);
};
const compact = later(() => {
  let more;
  try {
    more = log.compactStep();
  } catch (err) {
    if (err && err.code === 'SQLITE_BUSY') {
      compactBusySince ??= performance.now();
      if (performance.now() - compactBusySince < 10000) return compact.schedule(2);
    }
    compactBusySince = null;
    answerFlushes(failure(err));
    return compact.schedule(segments.retryMs);
  }
  compactBusySince = null;
  answerFlushes(null);
  if (more) return compact.schedule(0);
  keys.schedule(0);
  scheduleSeal();
});
/** Answers the reads whose segment is in the database (all of them, with the error, if one is
 * given). */
const answerFlushes = (error) => {
  const waiting = [];
  for (const w of flushWaiters) {
    if (error) parentPort.postMessage({ id: w.id, error });
    else if (log.compactedThrough(w.through)) parentPort.postMessage({ id: w.id, outcomes: null });
    else waiting.push(w);
  }
  flushWaiters = waiting;
};
// A read needs every row in the database: the current segment is sealed and compacted at once,
// a chunk a turn as always (appends are answered in between), and the read answered after.
const flush = () => {
  const ids = flushRequests;
  flushRequests = [];
  let through;
  try {
    through = log.seal();
  } catch (err) {
    const error = failure(err);
    for (const id of ids) parentPort.postMessage({ id, error });
    return;
  }
  for (const id of ids) flushWaiters.push({ id, through });
  answerFlushes(null);
  if (flushWaiters.length > 0) compact.schedule(0);
};
const commitQueued = () => {
  timer = null;
  for (let m = receiveMessageOnPort(parentPort); m; m = receiveMessageOnPort(parentPort)) take(m.message);
  const batches = queue;
  queue = [];
  if (batches.length > 0) {
    lastCommit = performance.now();
    let results;
    try {
      results = log ? log.append(batches, failure) : commit.immediate(batches);
    } catch (err) {
      results = batches.map((b) => ({ id: b.id, error: failure(err) }));
    }
    for (const r of results) parentPort.postMessage(r);
    if (log) scheduleSeal();
  }
  if (flushRequests.length > 0) flush();
  if (closing) {
    if (log) {
      clearTimeout(sealTimer);
      compact.cancel();
      keys.cancel();
      db.pragma('busy_timeout = 10000'); // the last compaction waits for the lock
      log.close();
      answerFlushes(null);
      for (const w of flushWaiters) parentPort.postMessage({ id: w.id, error: { message: 'the store is closed' } });
      flushWaiters = [];
    }
    db.close();
    parentPort.close();
  }
};
parentPort.on('message', (m) => {
  take(m);
  if (timer) return;
  const wait = m.flush ? 0 : lastCommit + workerData.minGapMs - performance.now();
  timer = wait > 0 ? setTimeout(commitQueued, wait) : setImmediate(commitQueued);
});
`;

/**
 * The search index's thread: it follows the messages table by rowid in transactions of its own,
 * on its own connection, so that neither the tokenizer nor FTS5 holds up an append (on the
 * writer's thread it did, about 20 ms each time: bench/README.md, "Issue 21, fourth sitting").
 * It looks for new rows every indexGapMs (a read; the write lock only when there are some), up
 * to indexBatch rows a transaction, and catches up at once, completely, when a search asks.
 */
const INDEXER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file);
// A search waits for the index as long as an append would for the lock, then fails as busy.
db.pragma('busy_timeout = 10000');
// The index is derived from the table: a commit that a crash undoes goes back together with the
// progress it moved, and is done again. No fsync of its own (the checkpoints make it durable).
db.pragma('synchronous = NORMAL');
db.pragma('wal_autocheckpoint = 0'); // the writer and the checkpointer see to the WAL
const normalizeForSearch = (0, eval)('(' + workerData.normalizeForSearch + ')');
const searchTokenText = (0, eval)('(' + workerData.searchTokenText + ')');
const indexText = db.prepare('INSERT INTO message_search (rowid, tokens) VALUES (?, ?)');
const unindex = db.prepare('DELETE FROM message_search WHERE rowid = ?');
const index = (rowid, text) => {
  const tokens = searchTokenText(normalizeForSearch(text));
  if (tokens !== '') indexText.run(rowid, tokens);
};
// The search index follows the log by rowid: search_progress holds the last row it has taken,
// moved in the same transaction as the index, so a crash loses nothing and repeats nothing.
// A message is indexed in its state then; an edit or delete re-indexes its target (taken
// already: it comes first in the log) in its state then, so whatever order they come in, the
// index ends with each message's current text, and none for a deleted one.
const progress = db.prepare('SELECT last_rowid FROM search_progress');
const setProgress = db.prepare('UPDATE search_progress SET last_rowid = ?');
const anyAfter = db.prepare('SELECT EXISTS (SELECT 1 FROM messages WHERE rowid > (SELECT last_rowid FROM search_progress)) AS n');
const rowsAfter = db.prepare('SELECT rowid, type, chat_id, target_seq, envelope, deleted FROM messages WHERE rowid > ? ORDER BY rowid LIMIT ?');
const targetOf = db.prepare("SELECT rowid, envelope, deleted FROM messages WHERE chat_id = ? AND seq = ? AND type = 'message'");
const indexCurrent = (rowid, envelope, deleted) => {
  if (!deleted) index(rowid, JSON.parse(envelope).text);
};
/** Indexes up to indexBatch rows; returns whether rows are left. */
const catchUpOnce = db.transaction(() => {
  let last = progress.get().last_rowid;
  const rows = rowsAfter.all(last, workerData.indexBatch);
  for (const r of rows) {
    if (r.type === 'message') indexCurrent(r.rowid, r.envelope, r.deleted);
    else if (r.type === 'edit' || r.type === 'delete') {
      const t = targetOf.get(r.chat_id, r.target_seq);
      if (t && t.rowid < r.rowid) {
        unindex.run(t.rowid);
        indexCurrent(t.rowid, t.envelope, t.deleted);
      }
    }
    last = r.rowid;
  }
  if (rows.length > 0) setProgress.run(last);
  return rows.length === workerData.indexBatch;
});
const failure = (err) => ({ message: String(err && err.message), code: err && err.code });
/** One batch a turn (a search's request is taken in between); true: rows are left. */
const step = () => (anyAfter.get().n ? catchUpOnce.immediate() : false);
let waiters = [];
let timer = null;
const schedule = (wait) => {
  timer ??= setTimeout(run, wait);
};
const run = () => {
  timer = null;
  let failed = null;
  try {
    if (step()) return schedule(0);
  } catch (err) {
    failed = failure(err); // busy past the timeout, say: the next round tries again
  }
  for (const id of waiters) parentPort.postMessage(failed ? { id, error: failed } : { id });
  waiters = [];
  schedule(workerData.indexGapMs);
};
parentPort.on('message', (m) => {
  if (m.close) {
    clearTimeout(timer);
    // Leave the index complete (a later start would catch up anyway).
    let failed = { message: 'the store is closed' };
    try {
      while (step());
      failed = null;
    } catch {
      // the next start catches up
    }
    for (const id of waiters) parentPort.postMessage(failed ? { id, error: failed } : { id });
    db.close();
    parentPort.close();
    return;
  }
  waiters.push(m.id);
  clearTimeout(timer);
  timer = null;
  schedule(0);
});
// Rows a previous run stored and did not index yet (it stopped in between).
schedule(0);
`;

/**
 * The checkpointer's code: PASSIVE checkpoints, which never block the writer. Under a steady
 * stream of commits they cannot finish all frames (new ones arrive meanwhile), so the WAL is
 * started anew by the writer's own small checkpoint (above). A RESTART checkpoint here would
 * hold the writer up for as long as it copies.
 */
const CHECKPOINTER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 10000');
db.pragma('wal_autocheckpoint = 0');
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // busy: the next round tries again
  }
}, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (!m.close) return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Asks one of the store's threads to close (`{ close: true }`: it finishes what it holds, closes
 * its connection and exits) and resolves once it has exited. The thread is held meanwhile: an
 * unreferenced one would let a process with nothing else to do end before this resolves.
 */
export function endThread(worker: Worker): Promise<void> {
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  worker.ref();
  worker.postMessage({ close: true });
  return exited;
}
