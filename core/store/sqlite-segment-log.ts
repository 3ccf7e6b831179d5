import { closeSync, fsyncSync, openSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import Database from 'better-sqlite3';
import { decodeRecords, type MessageRow, messageRowWriter } from './sqlite-message-rows.js';

/**
 * The segment log: the durable append of a process that is its database's only writer of
 * messages (the embedded deployment), an append-only log of segment files beside the database,
 * in front of it. It runs on the message log's writer thread (core/store/sqlite-log-writer.ts),
 * in place of a database transaction per group commit:
 *
 * - A group of appends is checked (seq, idempotency key and id, against the log's rows and the
 *   database, exactly as the writer's transaction would) and its rows are written to the current
 *   segment as checksummed records, in one write to a file opened O_DSYNC (the write returns once
 *   the data is on disk); then the appends are answered.
 * - About once a second (`compactAfterMs` after the segment's first row), when `compactRows`
 *   wait, or when a read needs them (`flush`), the current segment is sealed and its rows are
 *   written into the database in log order (rowids stay in arrival order: the search pages
 *   by them, newest first), in transactions of `chunk` rows with
 *   appends answered in between; then the segment is deleted. In one compaction a second's
 *   messages share the database's pages: bench/README.md, "The segment log".
 * - At start, what a previous run left is replayed (`takeOverSegmentLog`, on the main thread, as
 *   the store opens; and here, for a thread started again after its predecessor stopped).
 *
 * Self-contained (no imports, no outer names): the writer thread runs its source, with its
 * dependencies given.
 */
export function segmentLog(d: {
  fs: typeof import('node:fs');
  crc32: (data: Uint8Array) => number;
  db: import('better-sqlite3').Database;
  file: string;
  /** Writes a row into the database, checking it (`messageRowWriter(db)`: a leftover
   * segment's), and one the log checked as it was appended (`messageRowWriter(db, true)`). */
  appendRow: (row: MessageRow) => unknown;
  compactRow: (row: MessageRow) => unknown;
  encodeRecords: (rows: readonly MessageRow[], crc32: (data: Uint8Array) => number) => Buffer;
  decodeRecords: (data: Buffer, crc32: (data: Uint8Array) => number) => MessageRow[];
  replaySegments: typeof replaySegments;
  compactAfterMs: number;
  compactRows: number;
  chunk: number;
  slice: number;
  maxTailRows: number;
  /** A new Bloom filter (core/store/key-filter.ts), and how many of the database's keys to add to
   * one a turn as it is built; the least it is made for (twice the database's rows if more). */
  keyFilter: (capacity: number) => import('./key-filter.js').KeyFilter;
  keysPerStep: number;
  keysCapacity: number;
  /** Called when every row of appends up to this request id is in the database. */
  onCompacted: (through: number) => void;
}) {
  const { fs, db } = d;
  interface Maps { bySeq: Map<string, string>; byKey: Map<string, { id: string; seq: number }>; ids: Set<string> }
  interface Segment extends Maps { n: number; path: string; fd: number; size: number; rows: MessageRow[]; lastRequest: number; firstAt: number; done: number; committed: number }
  // What the database holds, for the checks. This thread is the only one that writes messages to
  // the file (the log's lock keeps other processes out), so a seq above the chat's highest stored
  // one, or an id above the highest stored one (ids are time-ordered), cannot be held there: only
  // the idempotency key is looked up for every row.
  const atSeq = db.prepare('SELECT id FROM messages WHERE chat_id = ? AND seq = ?');
  const byKey = db.prepare('SELECT id, seq FROM messages WHERE chat_id = ? AND sender_id = ? AND client_msg_id = ?');
  const byId = db.prepare('SELECT 1 AS x FROM messages WHERE id = ?');
  const chatSeq = db.prepare('SELECT (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE chat_id = chats.id) AS n FROM chats WHERE id = ?');
  const storedSeqs = new Map<string, number>();
  let storedId = (db.prepare("SELECT COALESCE(MAX(id), '') AS id FROM messages").get() as { id: string }).id;
  // The idempotency keys the database holds, in a Bloom filter: a key it does not have is not
  // looked up. It is built from the key's index a few thousand keys a turn (until then every key
  // is looked up), and built again twice as large once more keys were added than it was made for
  // (the full one answers meanwhile: more false positives, never a false negative). Every row
  // compacted is added to it (and to the one being built), once committed. Keys of rows deleted
  // since stay in it: a false positive, a look-up.
  const keysAfter = db.prepare(
    'SELECT chat_id AS c, sender_id AS s, client_msg_id AS k FROM messages INDEXED BY messages_client_msg ' +
      'WHERE client_msg_id IS NOT NULL AND sender_id IS NOT NULL AND (chat_id, sender_id, client_msg_id) > (?, ?, ?) ORDER BY chat_id, sender_id, client_msg_id LIMIT ?',
  );
  const maxRowid = db.prepare('SELECT COALESCE(MAX(rowid), 0) AS n FROM messages');
  let keys: import('./key-filter.js').KeyFilter | null = null;
  let building: { filter: import('./key-filter.js').KeyFilter; after: [string, string, string] } | null = null;
  const buildKeys = (capacity: number) => {
    building = { filter: d.keyFilter(capacity), after: ['', '', ''] };
  };
  const stored = (row: MessageRow) => {
    if (row[1] > (storedSeqs.get(row[0]) ?? 0)) storedSeqs.set(row[0], row[1]);
    if (row[2] > storedId) storedId = row[2];
    const key = idemKey(row);
    if (key === null) return;
    keys?.add(key);
    building?.filter.add(key);
    if (keys?.full() && !building) buildKeys(keys.capacity * 2);
  };
  const dir = d.file.slice(0, d.file.lastIndexOf('/') + 1) || '.';
  // Segments left behind (the store replays them as it opens, so only a thread that stopped and
  // was started again finds any): into the database first.
  const prefix = d.file.slice(dir.length) + '-log.';
  const left = fs.readdirSync(dir).filter((name) => name.startsWith(prefix) && /^\d{8,}$/.test(name.slice(prefix.length))).sort();
  if (left.length > 0) {
    d.replaySegments(db, d.appendRow, (data) => d.decodeRecords(data, d.crc32), left.map((name) => () => fs.readFileSync(dir + name)));
    for (const name of left) fs.unlinkSync(dir + name);
    storedId = (db.prepare("SELECT COALESCE(MAX(id), '') AS id FROM messages").get() as { id: string }).id;
  }
  buildKeys(Math.max(d.keysCapacity, 2 * (maxRowid.get() as { n: number }).n));
  let nextSegment = left.length > 0 ? Number(left[left.length - 1]!.slice(prefix.length)) + 1 : 1;
  const maps = (): Maps => ({ bySeq: new Map(), byKey: new Map(), ids: new Set() });
  const open = (): Segment => {
    const n = nextSegment++;
    const path = d.file + '-log.' + String(n).padStart(8, '0');
    const c = fs.constants;
    // O_DSYNC: a write returns once its data is on disk (one call where write and fdatasync were two).
    const fd = fs.openSync(path, c.O_WRONLY | c.O_CREAT | c.O_TRUNC | c.O_DSYNC, 0o600);
    // The new file's name is durable once its directory is.
    const dirFd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
    return { n, path, fd, size: 0, rows: [], lastRequest: 0, firstAt: 0, done: 0, committed: 0, ...maps() };
  };
  let current = open();
  /** Sealed segments, oldest first; the first may be partly in the database already. */
  const sealed: Segment[] = [];
  let tailRows = 0;
  let skipped = 0;

  const seqKey = (row: MessageRow) => row[0] + '\n' + row[1];
  const keyOf = (chatId: string, senderId: string | null, clientMsgId: string) => chatId + '\n' + senderId + '\n' + clientMsgId;
  const idemKey = (row: MessageRow) => (row[5] === null ? null : keyOf(row[0], row[4], row[5]));
  const remember = (m: Maps, row: MessageRow) => {
    m.bySeq.set(seqKey(row), row[2]);
    const key = idemKey(row);
    if (key !== null) m.byKey.set(key, { id: row[2], seq: row[1] });
    m.ids.add(row[2]);
  };
  const forget = (m: Maps, row: MessageRow) => {
    m.bySeq.delete(seqKey(row));
    const key = idemKey(row);
    if (key !== null) m.byKey.delete(key);
    m.ids.delete(row[2]);
  };

  /** What becomes of each row of a batch (all or none: rows earlier in it count as held). */
  const check = (rows: MessageRow[]) => {
    const batch = maps();
    const segments = [batch, current, ...sealed];
    const outcomes = rows.map((row) => {
      const [chatId, seq, id, , senderId, clientMsgId] = row;
      let storedSeq = storedSeqs.get(chatId);
      if (storedSeq === undefined) {
        const chat = chatSeq.get(chatId) as { n: number } | undefined;
        if (!chat) throw Object.assign(new Error('FOREIGN KEY constraint failed'), { code: 'SQLITE_CONSTRAINT_FOREIGNKEY' });
        storedSeqs.set(chatId, (storedSeq = chat.n));
      }
      // As the database's writer would: seq first, then idempotency key, then id.
      const sk = seqKey(row);
      for (const s of segments) {
        const holder = s.bySeq.get(sk);
        if (holder !== undefined) return holder === id ? 'present' : { seqHeldBy: holder };
      }
      const holder = seq <= storedSeq ? (atSeq.get(chatId, seq) as { id: string } | undefined) : undefined;
      if (holder) return holder.id === id ? 'present' : { seqHeldBy: holder.id };
      const key = idemKey(row);
      if (key !== null) {
        for (const s of segments) {
          const keyed = s.byKey.get(key);
          if (keyed) return { keyHeldBy: { id: keyed.id, seq: keyed.seq } };
        }
        const keyed = keys !== null && !keys.has(key) ? undefined : (byKey.get(chatId, senderId, clientMsgId) as { id: string; seq: number } | undefined);
        if (keyed) return { keyHeldBy: { id: keyed.id, seq: keyed.seq } };
      }
      if (segments.some((s) => s.ids.has(id)) || (id <= storedId && byId.get(id))) throw new Error('message id ' + id + ' is stored already, at another chat or seq');
      remember(batch, row);
      return 'stored';
    });
    return outcomes;
  };

  /** The current segment joins the sealed ones; a new one takes its place. Throws, changing
   * nothing, if no new one can be made. */
  const seal = () => {
    if (current.rows.length > 0) {
      const next = open();
      fs.closeSync(current.fd);
      sealed.push(current);
      current = next;
    }
    // The segment a read asking now waits for: the newest sealed one (0: none waits).
    return sealed.length > 0 ? sealed[sealed.length - 1]!.n : 0;
  };
  /** The newest segment whose rows are all in the database. */
  let compactedSegment = 0;

  // A compaction's transaction spans several turns of the thread: `slice` rows a turn (a few ms),
  // appends answered in between (they only read here, and see the rows written so far), committed
  // every `chunk` rows and at the end of each segment. So each commit writes the pages of
  // `chunk` rows (fewer bytes a message the more), while no append waits longer than a slice.
  const insertRow = (row: MessageRow) => {
    let outcome;
    try {
      outcome = d.compactRow(row);
    } catch {
      outcome = null; // its chat is gone: nothing was written
    }
    if (outcome !== 'stored' && outcome !== 'present') skipped++;
  };
  let uncommitted = 0;
  return {
    /** Appends groups of batches: answers each, once its rows are on disk, with its outcomes or
     * its error. */
    append(batches: { id: number; rows: MessageRow[] }[], failure: (err: unknown) => unknown) {
      const results: ({ id: number; outcomes: unknown[] } | { id: number; error: unknown })[] = [];
      const accepted: { id: number; outcomes: unknown[]; rows: MessageRow[] }[] = [];
      for (const b of batches) {
        if (tailRows >= d.maxTailRows) {
          results.push({ id: b.id, error: { message: 'the message log is full: its rows are not being written into the database', code: 'LOG_FULL' } });
          continue;
        }
        try {
          const outcomes = check(b.rows);
          const rows = b.rows.filter((_, i) => outcomes[i] === 'stored');
          for (const row of rows) remember(current, row);
          accepted.push({ id: b.id, outcomes, rows });
        } catch (err) {
          results.push({ id: b.id, error: failure(err) });
        }
      }
      const rows = accepted.flatMap((a) => a.rows);
      if (rows.length > 0) {
        const records = d.encodeRecords(rows, d.crc32);
        try {
          let at = 0;
          while (at < records.length) at += fs.writeSync(current.fd, records, at, records.length - at, current.size + at);
        } catch (err) {
          // Nothing of this write counts: the file is cut back to what was acknowledged before it
          // (if that fails too, the segment is sealed: its records end where they were good).
          for (const row of rows) forget(current, row);
          try {
            fs.ftruncateSync(current.fd, current.size);
            fs.fdatasyncSync(current.fd); // so that a crash cannot bring the cut records back
          } catch {
            seal();
          }
          const error = failure(err);
          return results.concat(accepted.map((a) => ({ id: a.id, error })));
        }
        if (current.rows.length === 0) current.firstAt = performance.now();
        current.size += records.length;
        for (const row of rows) current.rows.push(row);
        tailRows += rows.length;
      }
      for (const a of accepted) current.lastRequest = Math.max(current.lastRequest, a.id);
      return results.concat(accepted.map((a) => ({ id: a.id, outcomes: a.outcomes })));
    },

    /** How long until the current segment is due to be sealed (Infinity: it holds nothing). */
    dueIn(): number {
      if (current.rows.length === 0) return Infinity;
      if (current.rows.length >= d.compactRows) return 0;
      return Math.max(0, current.firstAt + d.compactAfterMs - performance.now());
    },

    seal,

    /** Writes one chunk of the oldest sealed segment into the database; returns whether more
     * wait. Throws if the database refuses (the rows stay, for the next try). */
    compactStep(): boolean {
      const s = sealed[0];
      if (!s) return false;
      if (!db.inTransaction) {
        db.exec('BEGIN IMMEDIATE');
        uncommitted = 0;
      }
      const slice = s.rows.slice(s.done, s.done + d.slice);
      try {
        for (const row of slice) insertRow(row);
        s.done += slice.length;
        uncommitted += slice.length;
        const whole = s.done >= s.rows.length;
        if (whole || uncommitted >= d.chunk) {
          db.exec('COMMIT');
          for (const row of s.rows.slice(s.committed, s.done)) stored(row);
          s.committed = s.done;
        }
        if (!whole) return true;
      } catch (err) {
        // Nothing since the last commit counts; the next try starts from there.
        if (db.inTransaction) db.exec('ROLLBACK');
        s.done = s.committed;
        throw err;
      }
      sealed.shift();
      compactedSegment = s.n;
      tailRows -= s.rows.length;
      try {
        fs.unlinkSync(s.path);
      } catch {
        // gone already; a leftover is replayed as rows present
      }
      // Requests are answered in order: every one up to this segment's last is in the database.
      if (sealed.length === 0 && current.rows.length === 0) d.onCompacted(Math.max(s.lastRequest, current.lastRequest));
      else d.onCompacted(s.lastRequest);
      return sealed.length > 0;
    },

    /** Seals and writes everything into the database (for a read that needs it, or closing). */
    flush(): void {
      seal();
      while (this.compactStep());
    },

    /** Whether every row of segments up to `n` is in the database. */
    compactedThrough(n: number): boolean {
      return n <= compactedSegment || !sealed.some((s) => s.n <= n);
    },

    /** Adds the next keys of the database to the filter being built; returns whether more wait. */
    keysStep(): boolean {
      const b = building;
      if (!b) return false;
      const rows = keysAfter.all(...b.after, d.keysPerStep) as { c: string; s: string; k: string }[];
      for (const r of rows) b.filter.add(keyOf(r.c, r.s, r.k));
      const last = rows[rows.length - 1];
      if (last && rows.length === d.keysPerStep) {
        b.after = [last.c, last.s, last.k];
        return true;
      }
      keys = b.filter;
      building = null;
      return false;
    },

    pending(): number {
      return sealed.length;
    },

    skipped: () => skipped,

    close(): void {
      try {
        this.flush();
      } catch {
        // the segments stay; the next start replays them
      }
      fs.closeSync(current.fd);
      if (current.rows.length === 0) {
        try {
          fs.unlinkSync(current.path);
        } catch {
          // nothing to remove
        }
      }
    },
  };
}

/**
 * Takes the segment log of `file` for this process (main thread, at start) and replays into the
 * database what a previous run left in it: records up to the first that is cut short or fails its
 * checksum (a write the crash interrupted, never acknowledged). The log belongs to one process:
 * a lock (`<db>-log.lock`, an exclusive SQLite lock the OS drops when the process ends) keeps a
 * second one out. `waitMs` > 0: wait that long for a process that holds it and is ending, then
 * throw; 0: return null at once if another process holds it. Returns the lock (held until it is
 * closed).
 */
export function takeOverSegmentLog(file: string, db: Database.Database, waitMs: number): Database.Database | null {
  // Created 0600 before SQLite opens it, as the database file is (SQLite would take the umask's).
  closeSync(openSync(`${file}-log.lock`, 'a', 0o600));
  const lock = new Database(`${file}-log.lock`);
  lock.pragma(`busy_timeout = ${waitMs}`);
  try {
    lock.pragma('locking_mode = EXCLUSIVE');
    lock.pragma('journal_mode = OFF'); // nothing is written to it
    lock.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    lock.close();
    if (waitMs === 0 && (err as { code?: string }).code === 'SQLITE_BUSY') return null;
    throw Object.assign(new Error(`the message log of ${file} is held by another process (two servers on one DATA_DIR need REDIS_URL)`), { code: 'LOG_LOCKED' });
  }
  const segments = segmentsOf(file);
  if (segments.length > 0) {
    replaySegments(db, messageRowWriter(db), (data) => decodeRecords(data, crc32), segments.map((n) => () => readFileSync(segmentPath(file, n))));
    // This connection commits with synchronous=NORMAL: the WAL is made durable before the
    // segments go.
    const wal = openSync(`${file}-wal`, 'r');
    try {
      fsyncSync(wal);
    } finally {
      closeSync(wal);
    }
    // ... and its name, if this replay created it.
    const dir = openSync(dirname(file), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    for (const n of segments) unlinkSync(segmentPath(file, n));
  }
  return lock;
}

/**
 * Writes the rows of segments (each read when its turn comes, oldest first) into the database,
 * in one transaction, with `appendRow` (which checks each: a row present already is left as it
 * is); a row whose id is stored elsewhere or whose chat is gone is skipped. Used as the store
 * opens and by a writer thread started again. Self-contained: the writer thread runs its source.
 */
export function replaySegments(db: Database.Database, appendRow: (row: MessageRow) => unknown, decode: (data: Buffer) => MessageRow[], segments: (() => Buffer)[]): void {
  db.transaction(() => {
    for (const read of segments) {
      for (const row of decode(read())) {
        try {
          appendRow(row);
        } catch {
          // its id is stored elsewhere, or its chat is gone: nothing was written
        }
      }
    }
  }).immediate();
}

const segmentPath = (file: string, n: number) => `${file}-log.${String(n).padStart(8, '0')}`;

function segmentsOf(file: string): number[] {
  const prefix = `${basename(file)}-log.`;
  return readdirSync(dirname(file))
    .filter((name) => name.startsWith(prefix) && /^\d{8,}$/.test(name.slice(prefix.length)))
    .map((name) => Number(name.slice(prefix.length)))
    .sort((a, b) => a - b);
}
