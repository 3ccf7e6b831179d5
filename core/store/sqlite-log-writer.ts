import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { normalizeForSearch, searchTokens } from '../search-text.js';
import type { Appended } from './store.js';

/**
 * Commits of the message log are at least this far apart (ms): under load, the messages that
 * arrive within it share one commit and one fsync (at most 500 a second); an idle log commits
 * at once.
 */
const MIN_COMMIT_GAP_MS = 2;

/** One log row: chat_id, seq, id, type, sender_id (a message's or edit's sender, a deletion's
 * actor), client_msg_id, created_at, envelope; then, not stored as such, the text of a message
 * or edit (for the search index) and the target seq of an edit or delete. */
export type MessageRow = [string, number, string, string, string | null, string | null, number, string, string | null, number | null];

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
  private readonly pending = new Map<number, { resolve: (outcomes: Appended[]) => void; reject: (err: Error) => void }>();
  private nextId = 1;
  private closing: Promise<void> | null = null;

  constructor(private readonly file: string) {}

  append(rows: MessageRow[]): Promise<Appended[]> {
    if (this.closing) return Promise.reject(new Error('the store is closed'));
    const worker = (this.worker ??= this.start());
    const id = this.nextId++;
    if (this.pending.size === 0) worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, rows });
    });
  }

  /** Waits for the appends under way, then ends the thread (its connection closes cleanly). */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      const worker = this.worker;
      if (!worker) return;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.ref();
      worker.postMessage({ close: true });
      await exited;
      const checkpointer = this.checkpointer;
      if (checkpointer) {
        const done = new Promise<void>((resolve) => checkpointer.once('exit', () => resolve()));
        // Held until it exits: an unreferenced thread would let a process with nothing else to
        // do end here, before close() resolves.
        checkpointer.ref();
        checkpointer.postMessage({ close: true });
        await done;
      }
    })());
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
        // The search's own functions, so that the index is cut exactly as queries are.
        normalizeForSearch: normalizeForSearch.toString(), searchTokens: searchTokens.toString(),
      },
    });
    worker.unref();
    this.checkpointer ??= this.startCheckpointer(driver);
    worker.on('message', (reply: { id: number; outcomes?: Appended[]; error?: { message: string; code?: string } }) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if (reply.error) waiter.reject(Object.assign(new Error(reply.error.message), reply.error.code ? { code: reply.error.code } : {}));
      else waiter.resolve(reply.outcomes!);
    });
    const fail = (err: Error) => {
      // The thread is gone: whatever it had not answered is not known to be durable.
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
// The checkpointer thread (below) copies the WAL back as it grows. This one, run by SQLite
// after a commit once the WAL holds that many frames, finds little left to copy and, with no
// commit running beside it, finishes: the next commit then starts the WAL anew.
db.pragma('wal_autocheckpoint = ' + workerData.resetFrames);
const normalizeForSearch = (0, eval)('(' + workerData.normalizeForSearch + ')');
const searchTokens = (0, eval)('(' + workerData.searchTokens + ')');
const insert = db.prepare('INSERT OR IGNORE INTO messages (chat_id, seq, id, type, sender_id, client_msg_id, created_at, envelope, target_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
const atSeq = db.prepare('SELECT id FROM messages WHERE chat_id = ? AND seq = ?');
const byKey = db.prepare('SELECT id, seq FROM messages WHERE chat_id = ? AND sender_id = ? AND client_msg_id = ?');
const target = db.prepare("SELECT rowid, envelope, deleted, edit_seq FROM messages WHERE chat_id = ? AND seq = ? AND type = 'message'");
const setEdited = db.prepare('UPDATE messages SET envelope = ?, edit_seq = ? WHERE rowid = ?');
const setDeleted = db.prepare('UPDATE messages SET envelope = ?, deleted = 1 WHERE rowid = ?');
const indexText = db.prepare('INSERT INTO message_search (rowid, tokens) VALUES (?, ?)');
const unindex = db.prepare('DELETE FROM message_search WHERE rowid = ?');
const forgetEdits = db.prepare("UPDATE messages SET envelope = json_remove(envelope, '$.text') WHERE chat_id = ? AND target_seq = ? AND type = 'edit'");
const index = (rowid, text) => {
  const tokens = searchTokens(normalizeForSearch(text));
  if (tokens.length > 0) indexText.run(rowid, tokens.join(' '));
};
// What a stored row does besides being there (Store.appendMessages): a message is indexed (its
// sender's read pointer moves with it by being there: the store reads the sender's newest own
// message as its pointer when that is later); an edit or delete changes its target's current state.
// row: [chatId, seq, id, type, senderId, clientMsgId, createdAt, envelope, text, targetSeq]
const apply = (row, rowid) => {
  const [chatId, seq, , type, , , createdAt, , text, targetSeq] = row;
  if (type === 'message') {
    index(rowid, text);
    return;
  }
  if (type !== 'edit' && type !== 'delete') return;
  const t = target.get(chatId, targetSeq);
  if (!t) return;
  if (t.deleted) {
    if (type === 'edit') forgetEdits.run(chatId, targetSeq); // one that lost the race with the deletion
    return;
  }
  const state = JSON.parse(t.envelope);
  if (type === 'edit') {
    if (t.edit_seq > seq) return; // a later edit was applied already
    state.text = text;
    state.editedAt = new Date(createdAt).toISOString();
    setEdited.run(JSON.stringify(state), seq, t.rowid);
    unindex.run(t.rowid);
    index(t.rowid, text);
  } else {
    delete state.text;
    delete state.editedAt;
    state.deleted = true;
    setDeleted.run(JSON.stringify(state), t.rowid);
    unindex.run(t.rowid);
    // A deleted message's text is gone from history, also from its edits (they keep their place).
    forgetEdits.run(chatId, targetSeq);
  }
};
const appendRow = (row) => {
  // (chat_id, seq) is looked up first: its index is not unique (it carries the columns unread
  // counts read). The write transaction holds the database's write lock, so nothing is
  // inserted between the look-up and the insert, by this process or another.
  const holder = atSeq.get(row[0], row[1]);
  if (holder) return holder.id === row[2] ? 'present' : { seqHeldBy: holder.id };
  const inserted = insert.run(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[9]);
  if (inserted.changes === 1) {
    apply(row, inserted.lastInsertRowid);
    return 'stored';
  }
  // Skipped: say why.
  const keyed = row[5] === null ? undefined : byKey.get(row[0], row[4], row[5]);
  if (keyed) return { keyHeldBy: { id: keyed.id, seq: keyed.seq } };
  throw new Error('message id ' + row[2] + ' is stored already, at another chat or seq');
};
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
  else queue.push(m);
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
      results = commit.immediate(batches);
    } catch (err) {
      results = batches.map((b) => ({ id: b.id, error: failure(err) }));
    }
    for (const r of results) parentPort.postMessage(r);
  }
  if (closing) {
    db.close();
    parentPort.close();
  }
};
parentPort.on('message', (m) => {
  take(m);
  if (timer) return;
  const wait = lastCommit + workerData.minGapMs - performance.now();
  timer = wait > 0 ? setTimeout(commitQueued, wait) : setImmediate(commitQueued);
});
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
