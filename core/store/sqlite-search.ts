import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { normalizeForSearch } from '../search-text.js';
import { endThread } from './sqlite-log-writer.js';
import { SEARCH_CANDIDATES } from './store.js';

/**
 * Searches waiting (for the index to catch up, or for the thread) or running, per process. Past
 * it a search is refused with 503 `unavailable` and Retry-After: 1, rather than queued: a burst
 * of costly searches cannot pile up behind the one thread.
 */
export const SEARCH_PENDING_MAX = 16;
/**
 * At most this many of the query's bigrams go into the index's phrase; a longer query's
 * candidates are confirmed by their text. A phrase costs the index a walk of each of its terms'
 * positions per candidate: 63 terms (q = 64 × "a") over 1,000 × "a" took 0.25 ms a candidate,
 * 8 terms 0.03 ms.
 */
export const SEARCH_PHRASE_TOKENS = 8;

/** One search as the thread runs it: `match`, an FTS5 phrase; `query`, the normalised text
 * each candidate is confirmed against when the phrase is only a prefix of the query's bigrams. */
export interface SearchRequest {
  match: string;
  query: string;
  confirm: boolean;
  chatIds: readonly string[];
  before: number;
  limit: number;
}

/**
 * Message search on a thread of its own, with its own read-only connection to the database file
 * (WAL mode: it reads beside the writer), so that no search work runs on the event loop: a
 * costly query delays other searches, never other requests. One thread: the machine this is
 * sized for has two cores, and the event loop needs one. Searches run one at a time, in the
 * order asked.
 */
export class SearchThread {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, { resolve: (value: { envelopes: string[]; hasMore: boolean }) => void; reject: (err: Error) => void }>();
  private nextId = 1;
  private closing: Promise<void> | null = null;

  constructor(private readonly file: string) {}

  search(request: SearchRequest): Promise<{ envelopes: string[]; hasMore: boolean }> {
    if (this.closing) return Promise.reject(new Error('the store is closed'));
    const worker = (this.worker ??= this.start());
    const id = this.nextId++;
    // Held while it has work: an idle thread never keeps the process alive.
    if (this.pending.size === 0) worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, request });
    });
  }

  /** Ends the thread once the searches under way are answered. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      if (this.worker) await endThread(this.worker);
    })());
  }

  private start(): Worker {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(SEARCHER, { eval: true, workerData: {
      file: this.file, driver, budget: SEARCH_CANDIDATES,
      // The search's own normalisation, so candidates are confirmed exactly as the index was cut.
      normalizeForSearch: normalizeForSearch.toString(),
    } });
    worker.unref();
    worker.on('message', (reply: { id: number; envelopes?: string[]; hasMore?: boolean; error?: string }) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if (reply.error !== undefined) waiter.reject(new Error(reply.error));
      else waiter.resolve({ envelopes: reply.envelopes!, hasMore: reply.hasMore! });
    });
    const fail = (err: Error) => {
      // The next search starts a new thread.
      if (this.worker === worker) this.worker = null;
      for (const waiter of this.pending.values()) waiter.reject(err);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the search thread stopped (exit code ${code})`)));
    return worker;
  }
}

/**
 * The thread's code (CommonJS, run with `eval`, so the same source works from the compiled build
 * and from the TypeScript sources the tests load; as the log writer's, sqlite-log-writer.ts).
 * Candidates are the index's matches of the phrase, newest first, read one at a time (FTS5 finds
 * them as it goes): a page is done once it has limit + 1 results, or once `budget` candidates
 * were looked at (store.ts, SEARCH_CANDIDATES), whatever their chat.
 */
const SEARCHER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { readonly: true });
db.pragma('busy_timeout = 10000');
const normalizeForSearch = (0, eval)('(' + workerData.normalizeForSearch + ')');
const candidates = db.prepare(
  'SELECT s.rowid AS rowid, m.chat_id AS chat FROM message_search s JOIN messages m ON m.rowid = s.rowid ' +
  'WHERE message_search MATCH ? AND s.rowid < ? ORDER BY s.rowid DESC');
const envelopeAt = db.prepare('SELECT envelope FROM messages WHERE rowid = ?').pluck();
const search = (r) => {
  const chats = new Set(r.chatIds);
  const envelopes = [];
  let examined = 0;
  let exhausted = false;
  for (const c of candidates.iterate(r.match, r.before)) {
    if (++examined > workerData.budget) {
      exhausted = true;
      break;
    }
    if (!chats.has(c.chat)) continue;
    const envelope = envelopeAt.get(c.rowid);
    if (r.confirm && !normalizeForSearch(JSON.parse(envelope).text).includes(r.query)) continue;
    envelopes.push(envelope);
    if (envelopes.length > r.limit) break;
  }
  // The budget ran out: what was found is a page, and the next goes on from its last result;
  // with nothing found the search ends here (docs/rest.md, GET /api/messages/search).
  const hasMore = envelopes.length > r.limit || (exhausted && envelopes.length > 0);
  return { envelopes: envelopes.slice(0, r.limit), hasMore };
};
parentPort.on('message', (m) => {
  if (m.close) {
    db.close();
    parentPort.close();
    return;
  }
  try {
    parentPort.postMessage({ id: m.id, ...search(m.request) });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String(err && err.message) });
  }
});
`;
