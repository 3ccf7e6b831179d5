import Database from 'better-sqlite3';
import { closeSync, fsync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { AppError, groupFull, notFound, usernameTaken } from '../errors.js';
import { type Envelope, type StoredMessage, envelopeJson, parseEnvelope } from '../envelope.js';
import { normalizeForSearch, searchTokens } from '../search-text.js';
import { LogWriter, type MessageRow } from './sqlite-log-writer.js';
import { takeOverSegmentLog } from './sqlite-segment-log.js';
import { SEARCH_PENDING_MAX, SEARCH_PHRASE_TOKENS, SearchThread } from './sqlite-search.js';
import type {
  ActivityKey, Appended, ChatRecord, ChatState, ChatType, MessageRange, NewDirectChat, NewGroupChat, NewUser, Page, PageOf,
  ReadPointer, RecentSend, SessionRecord, Store, UserRecord,
} from './store.js';

/** A migration step: SQL, or code for what SQL alone cannot do. */
type Migration = string | ((db: Database.Database) => void);

/**
 * Schema migrations, applied in order; PRAGMA user_version records how many ran. Never edit a
 * released step: append a new one.
 */
const MIGRATIONS: Migration[] = [
  `
  CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    search_name     TEXT NOT NULL,          -- lower-cased display name, for search
    password_hash   TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER
  );
  CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
  );
  CREATE INDEX sessions_expiry ON sessions(expires_at);
  CREATE TABLE chats (
    id          TEXT PRIMARY KEY,
    number      INTEGER NOT NULL UNIQUE,
    type        TEXT NOT NULL CHECK (type IN ('direct', 'group')),
    name        TEXT,
    visibility  TEXT NOT NULL CHECK (visibility IN ('public', 'private')),
    owner_id    TEXT REFERENCES users(id),
    direct_key  TEXT UNIQUE,                -- '<smaller id>:<larger id>' for direct chats
    last_seq    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
  );
  CREATE INDEX chats_public ON chats(number) WHERE type = 'group' AND visibility = 'public';
  CREATE TABLE members (                    -- rowid order = join order
    chat_id     TEXT NOT NULL REFERENCES chats(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    joined_at   INTEGER NOT NULL,
    UNIQUE (chat_id, user_id)
  );
  CREATE INDEX members_user ON members(user_id, chat_id);
  CREATE TABLE messages (
    chat_id        TEXT NOT NULL REFERENCES chats(id),
    seq            INTEGER NOT NULL,
    id             TEXT NOT NULL UNIQUE,
    type           TEXT NOT NULL,
    sender_id      TEXT,
    client_msg_id  TEXT,
    created_at     INTEGER NOT NULL,
    envelope       TEXT NOT NULL,           -- the JSON exactly as delivered
    PRIMARY KEY (chat_id, seq)
  ) WITHOUT ROWID;
  `,
  // Idempotency keys: one message per (chat, sender, clientMsgId), found without a scan.
  `
  CREATE UNIQUE INDEX messages_client_msg ON messages(chat_id, sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
  `,
  // A chat's last seq is read off its messages (the primary key's last entry), not kept twice:
  // one write less per message.
  `
  ALTER TABLE chats DROP COLUMN last_seq;
  `,
  // The log in arrival order: a rowid table whose rows (about 750 bytes) are appended at its end,
  // with (chat_id, seq) in an index of its own. Kept by (chat_id, seq) itself, WITHOUT ROWID, the
  // rows filled interior pages too (five to a page: a deep tree that splits often), and each
  // message wrote about 6 pages of WAL; now about 4.3 (bench/README.md, "The durable append
  // alone"). Existing rows are copied over in id (time) order.
  `
  CREATE TABLE messages_log (
    chat_id        TEXT NOT NULL REFERENCES chats(id),
    seq            INTEGER NOT NULL,
    id             TEXT NOT NULL,
    type           TEXT NOT NULL,
    sender_id      TEXT,
    client_msg_id  TEXT,
    created_at     INTEGER NOT NULL,
    envelope       TEXT NOT NULL            -- the JSON exactly as delivered
  );
  INSERT INTO messages_log (chat_id, seq, id, type, sender_id, client_msg_id, created_at, envelope)
    SELECT chat_id, seq, id, type, sender_id, client_msg_id, created_at, envelope FROM messages ORDER BY id;
  DROP TABLE messages;
  ALTER TABLE messages_log RENAME TO messages;
  CREATE UNIQUE INDEX messages_chat_seq ON messages(chat_id, seq);
  CREATE UNIQUE INDEX messages_id ON messages(id);
  CREATE UNIQUE INDEX messages_client_msg ON messages(chat_id, sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
  `,
  // ChatRecord.membersVersion: raised with every change of a chat's members, in its transaction.
  // An existing chat starts at 1, as if just created.
  `
  ALTER TABLE chats ADD COLUMN members_version INTEGER NOT NULL DEFAULT 1;
  `,
  // Read pointers, edits and deletions (docs/chat-features.md). The members of an existing chat
  // have read everything so far: an upgrade must not turn old history into unread messages.
  // The log's (chat_id, seq) index now also holds each entry's type, sender and deleted flag, so
  // that unread counts and a member's newest own message are read from the index alone, with
  // no second index to write per message (each index costs about a page of WAL per message).
  // It is not UNIQUE any more (a unique index cannot carry the other columns): the log writer
  // looks the (chat_id, seq) up before it inserts, inside its write transaction, which holds the
  // database's write lock, so no other process can insert between the two.
  // messages_edits finds a message's edits, whose text a deletion removes.
  `
  ALTER TABLE members ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE members ADD COLUMN read_at INTEGER;
  UPDATE members SET read_seq = COALESCE((SELECT MAX(seq) FROM messages WHERE messages.chat_id = members.chat_id), 0);
  ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE messages ADD COLUMN edit_seq INTEGER NOT NULL DEFAULT 0;   -- seq of the last edit applied
  ALTER TABLE messages ADD COLUMN target_seq INTEGER;                     -- an edit's or delete's target
  DROP INDEX messages_chat_seq;
  CREATE INDEX messages_chat_seq ON messages(chat_id, seq, type, sender_id, deleted);
  CREATE INDEX messages_edits ON messages(chat_id, target_seq) WHERE type = 'edit';
  `,
  // The search index: each message's bigram tokens (core/search-text.ts) by the message's rowid.
  // Contentless (the text is in the envelope already); positions (detail=full) make a phrase of
  // a query's bigrams match exactly where the query is a substring. 'ascii': the tokens are
  // ASCII letters and digits, so the tokenizer keeps them whole. search_progress: the last log
  // row the index has taken (the log writer indexes what follows, core/store/sqlite-log-writer.ts).
  // Existing messages are indexed here.
  (db) => {
    db.exec("CREATE VIRTUAL TABLE message_search USING fts5(tokens, content='', contentless_delete=1, tokenize='ascii')");
    db.exec('CREATE TABLE search_progress (last_rowid INTEGER NOT NULL); INSERT INTO search_progress VALUES (0)');
    const insert = db.prepare('INSERT INTO message_search (rowid, tokens) VALUES (?, ?)');
    const page = db.prepare<[number], { rowid: number; envelope: string }>(
      "SELECT rowid, envelope FROM messages WHERE rowid > ? AND type = 'message' AND deleted = 0 ORDER BY rowid LIMIT 1000",
    );
    for (let rows = page.all(0); rows.length > 0; rows = page.all(rows.at(-1)!.rowid)) {
      for (const row of rows) {
        const tokens = searchTokens(normalizeForSearch((JSON.parse(row.envelope) as { text: string }).text));
        if (tokens.length > 0) insert.run(row.rowid, tokens.join(' '));
      }
    }
    db.exec('UPDATE search_progress SET last_rowid = (SELECT COALESCE(MAX(rowid), 0) FROM messages)');
  },
];

/** How many migrations there are; the store is at this user_version once open. */
export const SCHEMA_VERSION = MIGRATIONS.length;
/** The migrations up to `version`, for a spec that builds a database as an older release left it. */
export const migrationsUpTo = (version: number): readonly Migration[] => MIGRATIONS.slice(0, version);

interface UserRow { id: string; username: string; display_name: string; password_hash: string; created_at: number; last_seen_at: number | null }
interface ChatRow { id: string; number: number; type: ChatType; name: string | null; visibility: 'public' | 'private'; owner_id: string | null; members_version: number; created_at: number }
interface SessionRow { id: string; user_id: string; created_at: number; expires_at: number; revoked_at: number | null }

const toUser = (r: UserRow): UserRecord => ({
  id: r.id, username: r.username, displayName: r.display_name, passwordHash: r.password_hash,
  createdAt: r.created_at, lastSeenAt: r.last_seen_at,
});

/** How long the connection's statements wait for a lock held by another (a read, say, while
 * another process recovers the WAL); writes never wait on the event loop: see `write()`. */
const BUSY_TIMEOUT_MS = 10_000;
const noop = () => {};

/**
 * SQLite store (better-sqlite3). WAL mode lets readers run beside one writer; every write
 * that reads-then-writes (numbering, direct-chat lookup, member cap) runs in a BEGIN IMMEDIATE
 * transaction, which takes the write lock up front, so several processes sharing the file
 * serialise on it (waiting up to busy_timeout) instead of racing.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly s;
  /** Makes commits durable: see `durable()`. */
  private readonly wal: WalSync;
  /** Appends messages on a thread of its own (and, behind the segment log, compacts them). */
  private readonly writer: LogWriter;
  /** Holds the segment log for this process (`exclusive`). */
  private readonly logLock: Database.Database | null;
  /** Runs message searches on a thread of its own. */
  private readonly searcher: SearchThread;
  private readonly writeWaitMs: number;
  /** Searches admitted and not yet answered (bounded: SEARCH_PENDING_MAX). */
  private searchesPending = 0;

  /**
   * `file`: the database file, created if missing (a file is needed: the message log is written
   * by a second connection, on its own thread).
   *
   * `exclusive`: this process is the only one that appends messages to the file (the embedded
   * deployment: one process owns DATA_DIR). Appends then go to an append-only segment log beside
   * the file, and reach the database in large batches (core/store/sqlite-segment-log.ts): a
   * second process opening the file this way fails; other processes sharing the file see a
   * message in the database within a few seconds of its append. Without it, each group commit
   * is a transaction of the database's own. `lockWaitMs`: how long an exclusive store waits for
   * a process that holds the log and is ending (10 s). `writeWaitMs`: how long a write waits for
   * the database's write lock, off the event loop, before it fails as unavailable (10 s). Either way, what a previous exclusive run left in its
   * log is replayed into the database here, when no live process holds that log.
   */
  constructor(file: string, options: { exclusive?: boolean; lockWaitMs?: number; writeWaitMs?: number } = {}) {
    this.writeWaitMs = options.writeWaitMs ?? 10_000;
    mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    walMode(this.db);
    // Commits do not wait for the disk here (NORMAL); every write method waits for an fsync of
    // the WAL before it resolves instead (`durable()`), so what a write resolves survives power
    // loss, as with FULL, but the fsync runs on libuv's thread pool and the event loop never
    // waits for the disk.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    // Checkpoints run on the message log's checkpointer thread, never inside a commit here.
    this.db.pragma('wal_autocheckpoint = 0');
    this.migrate();
    this.wal = new WalSync(`${file}-wal`);
    const exclusive = options.exclusive === true;
    const lock = takeOverSegmentLog(file, this.db, exclusive ? (options.lockWaitMs ?? 10_000) : 0);
    if (!exclusive) lock?.close();
    this.logLock = exclusive ? lock : null;
    this.writer = new LogWriter(file, exclusive);
    this.searcher = new SearchThread(file);
    const db = this.db;
    this.s = {
      insertUser: db.prepare('INSERT INTO users (id, username, display_name, search_name, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      userById: db.prepare<[string], UserRow>('SELECT * FROM users WHERE id = ?'),
      userByName: db.prepare<[string], UserRow>('SELECT * FROM users WHERE username = ?'),
      // instr() compares literal text: no LIKE wildcards or escapes to get wrong.
      searchUsers: db.prepare<[{ q: string; after: string; limit: number }], UserRow>(
        `SELECT * FROM users WHERE (instr(username, @q) > 0 OR instr(search_name, @q) > 0) AND username > @after
         ORDER BY username LIMIT @limit`,
      ),
      usersByIds: db.prepare<[string], UserRow>('SELECT * FROM users WHERE id IN (SELECT value FROM json_each(?))'),
      usersAmong: db.prepare<[{ ids: string; after: string; limit: number }], UserRow>(
        `SELECT * FROM users WHERE id IN (SELECT value FROM json_each(@ids)) AND username > @after ORDER BY username LIMIT @limit`,
      ),
      // From the user's memberships (members_user), then each of those chats' members (the
      // unique key), tested against the ids: the work is the user's chats × their members
      // (at most 100 each). CROSS JOIN keeps that order, and `+` keeps the planner from going
      // the other way (from each id's chats, which has no bound of ours).
      coMembers: db.prepare<[string], { user_id: string }>(
        `SELECT DISTINCT other.user_id FROM members mine CROSS JOIN members other ON other.chat_id = mine.chat_id
         WHERE mine.user_id = ? AND other.user_id <> mine.user_id`,
      ),
      coMembersAmong: db.prepare<[string, string], { user_id: string }>(
        `SELECT DISTINCT other.user_id FROM members mine CROSS JOIN members other ON other.chat_id = mine.chat_id
         WHERE mine.user_id = ? AND other.user_id <> mine.user_id AND +other.user_id IN (SELECT value FROM json_each(?))`,
      ),
      setLastSeen: db.prepare('UPDATE users SET last_seen_at = ? WHERE id = ?'),
      insertSession: db.prepare('INSERT INTO sessions (id, user_id, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?)'),
      sessionById: db.prepare<[string], SessionRow>('SELECT * FROM sessions WHERE id = ?'),
      revokeSession: db.prepare('UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
      deleteExpired: db.prepare('DELETE FROM sessions WHERE expires_at < ?'),
      nextNumber: db.prepare<[], { n: number }>('SELECT COALESCE(MAX(number), 0) + 1 AS n FROM chats'),
      insertChat: db.prepare(
        'INSERT INTO chats (id, number, type, name, visibility, owner_id, direct_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      chatById: db.prepare<[string], ChatRow>('SELECT * FROM chats WHERE id = ?'),
      chatByNumber: db.prepare<[number], ChatRow>('SELECT * FROM chats WHERE number = ?'),
      chatByDirectKey: db.prepare<[string], ChatRow>('SELECT * FROM chats WHERE direct_key = ?'),
      chatsOfMember: db.prepare<[string, ChatType, number, number], ChatRow>(
        `SELECT c.* FROM members m JOIN chats c ON c.id = m.chat_id
         WHERE m.user_id = ? AND c.type = ? AND c.number > ? ORDER BY c.number LIMIT ?`,
      ),
      publicGroups: db.prepare<[number, number], ChatRow>(
        `SELECT * FROM chats WHERE type = 'group' AND visibility = 'public' AND number > ? ORDER BY number LIMIT ?`,
      ),
      insertMember: db.prepare('INSERT OR IGNORE INTO members (chat_id, user_id, joined_at, read_seq) VALUES (?, ?, ?, ?)'),
      deleteMember: db.prepare('DELETE FROM members WHERE chat_id = ? AND user_id = ?'),
      memberIds: db.prepare<[string], { user_id: string }>('SELECT user_id FROM members WHERE chat_id = ? ORDER BY rowid'),
      memberCount: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM members WHERE chat_id = ?'),
      setOwner: db.prepare('UPDATE chats SET owner_id = ? WHERE id = ?'),
      membersChanged: db.prepare('UPDATE chats SET members_version = members_version + 1 WHERE id = ?'),
      messagesAfter: db.prepare<[string, number, number, number], { envelope: string }>(
        'SELECT envelope FROM messages WHERE chat_id = ? AND seq > ? AND seq < ? ORDER BY seq ASC LIMIT ?',
      ),
      messagesBefore: db.prepare<[string, number, number], { envelope: string }>(
        'SELECT envelope FROM messages WHERE chat_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?',
      ),
      maxSeq: db.prepare<[string], { n: number }>('SELECT COALESCE(MAX(seq), 0) AS n FROM messages WHERE chat_id = ?'),
      // Newest first by id (UUIDv7: time order), through the id's unique index.
      messageAt: db.prepare<[string, number], { envelope: string }>("SELECT envelope FROM messages WHERE chat_id = ? AND seq = ? AND type = 'message'"),
      chatIdsOfMember: db.prepare<[string], { chat_id: string }>('SELECT chat_id FROM members WHERE user_id = ?'),
      moveReadPointer: db.prepare('UPDATE members SET read_seq = ?, read_at = ? WHERE chat_id = ? AND user_id = ? AND read_seq < ?'),
      readPointer: db.prepare<[string, string], { read_seq: number; read_at: number | null }>('SELECT read_seq, read_at FROM members WHERE chat_id = ? AND user_id = ?'),
      readPointers: db.prepare<[string], { user_id: string; read_seq: number; read_at: number | null }>('SELECT user_id, read_seq, read_at FROM members WHERE chat_id = ? ORDER BY rowid'),
      // A member's newest own message above its stored pointer: a send moves the sender's
      // pointer, and is read here rather than written to members with each message. Both
      // queries walk the log index past the pointer and read no row.
      ownAfter: db.prepare<[string, number, string], { seq: number | null }>(
        "SELECT MAX(seq) AS seq FROM messages WHERE chat_id = ? AND seq > ? AND type = 'message' AND sender_id = ?",
      ),
      unread: db.prepare<[string, number, string], { n: number }>(
        "SELECT COUNT(*) AS n FROM messages WHERE chat_id = ? AND seq > ? AND type = 'message' AND deleted = 0 AND sender_id <> ?",
      ),
      createdAtSeq: db.prepare<[string, number], { created_at: number }>('SELECT created_at FROM messages WHERE chat_id = ? AND seq = ?'),
      lastMessage: db.prepare<[string], { envelope: string }>("SELECT envelope FROM messages WHERE chat_id = ? AND type = 'message' ORDER BY seq DESC LIMIT 1"),
      lastActivity: db.prepare<[string], { created_at: number }>('SELECT created_at FROM messages WHERE chat_id = ? ORDER BY seq DESC LIMIT 1'),
      chatsByActivity: db.prepare<[{ user: string; type: ChatType; at: number; number: number; limit: number }], ChatRow & { activity: number }>(
        `SELECT * FROM (
           SELECT c.*, COALESCE((SELECT created_at FROM messages WHERE chat_id = c.id ORDER BY seq DESC LIMIT 1), c.created_at) AS activity
           FROM members m JOIN chats c ON c.id = m.chat_id WHERE m.user_id = @user AND c.type = @type
         ) WHERE activity < @at OR (activity = @at AND number < @number)
         ORDER BY activity DESC, number DESC LIMIT @limit`,
      ),
      rowidOfMessage: db.prepare<[string], { rowid: number }>('SELECT rowid FROM messages WHERE id = ?'),
      recentSends: db.prepare<[number], { chat_id: string; sender_id: string; client_msg_id: string; id: string; seq: number }>(
        'SELECT chat_id, sender_id, client_msg_id, id, seq FROM messages WHERE client_msg_id IS NOT NULL ORDER BY id DESC LIMIT ?',
      ),
    };
  }

  private migrate(): void {
    // Immediate: two processes starting together do not both migrate.
    this.db.transaction(() => {
      const version = this.db.pragma('user_version', { simple: true }) as number;
      for (let v = version; v < MIGRATIONS.length; v++) {
        const step = MIGRATIONS[v]!;
        if (typeof step === 'string') this.db.exec(step);
        else step(this.db);
      }
      if (version < MIGRATIONS.length) this.db.pragma(`user_version = ${MIGRATIONS.length}`);
    }).immediate();
  }

  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    await this.seenWritten?.catch(() => {});
    await this.writer.close();
    await this.searcher.close();
    await this.wal.close();
    if (this.db.open) this.db.close();
    if (this.logLock?.open) this.logLock.close();
  }

  // ---- users

  async createUser(u: NewUser): Promise<UserRecord> {
    try {
      await this.write(() => this.s.insertUser.run(u.id, u.username, u.displayName, u.displayName.toLowerCase(), u.passwordHash, u.createdAt));
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw usernameTaken();
      throw err;
    }
    return { ...u, lastSeenAt: null };
  }

  async getUser(id: string): Promise<UserRecord | null> {
    const r = this.s.userById.get(id);
    return r ? toUser(r) : null;
  }

  async getUserByUsername(username: string): Promise<UserRecord | null> {
    const r = this.s.userByName.get(username);
    return r ? toUser(r) : null;
  }

  async getUsers(ids: readonly string[]): Promise<UserRecord[]> {
    if (ids.length === 0) return [];
    return this.s.usersByIds.all(JSON.stringify(ids)).map(toUser);
  }

  async searchUsers(query: string, page: Page<string>): Promise<PageOf<UserRecord>> {
    const rows = this.s.searchUsers.all({ q: query.toLowerCase(), after: page.after ?? '', limit: page.limit + 1 });
    return pageOf(rows.map(toUser), page.limit);
  }

  async listUsersAmong(ids: readonly string[], page: Page<string>): Promise<PageOf<UserRecord>> {
    if (ids.length === 0) return { items: [], hasMore: false };
    const rows = this.s.usersAmong.all({ ids: JSON.stringify(ids), after: page.after ?? '', limit: page.limit + 1 });
    return pageOf(rows.map(toUser), page.limit);
  }

  async coMemberIds(userId: string, among?: readonly string[]): Promise<string[]> {
    if (among === undefined) return this.s.coMembers.all(userId).map((r) => r.user_id);
    if (among.length === 0) return [];
    return this.s.coMembersAmong.all(userId, JSON.stringify(among)).map((r) => r.user_id);
  }

  /** Presence changes come in bursts (a thousand users connecting in a second): the calls of
   * one event-loop turn are written in one transaction, one fsync for all. */
  setLastSeen(userId: string, at: number): Promise<void> {
    this.seenPending.set(userId, at);
    return (this.seenWritten ??= new Promise<void>((resolve, reject) =>
      setImmediate(() => {
        const batch = this.seenPending;
        this.seenPending = new Map();
        this.seenWritten = null;
        this.write(() => this.db.transaction(() => {
          for (const [id, seen] of batch) this.s.setLastSeen.run(seen, id);
        }).immediate()).then(resolve, reject);
      }),
    ));
  }

  private seenPending = new Map<string, number>();
  private seenWritten: Promise<void> | null = null;

  // ---- sessions

  async createSession(s: SessionRecord): Promise<void> {
    await this.write(() => this.s.insertSession.run(s.id, s.userId, s.createdAt, s.expiresAt, s.revokedAt));
  }

  async getSession(id: string): Promise<SessionRecord | null> {
    const r = this.s.sessionById.get(id);
    return r ? { id: r.id, userId: r.user_id, createdAt: r.created_at, expiresAt: r.expires_at, revokedAt: r.revoked_at } : null;
  }

  async revokeSession(id: string, at: number): Promise<boolean> {
    return this.write(() => this.s.revokeSession.run(at, id).changes === 1);
  }

  async deleteExpiredSessions(now: number): Promise<number> {
    return this.write(() => this.s.deleteExpired.run(now).changes);
  }

  // ---- chats

  async createDirectChat(c: NewDirectChat): Promise<{ chat: ChatRecord; created: boolean }> {
    const [a, b] = [...c.userIds].sort() as [string, string];
    const key = `${a}:${b}`;
    return this.write(() => this.db.transaction(() => {
      const existing = this.s.chatByDirectKey.get(key);
      if (existing) return { chat: this.withMembers(existing), created: false };
      const number = this.s.nextNumber.get()!.n;
      this.s.insertChat.run(c.id, number, 'direct', null, 'private', null, key, c.createdAt);
      for (const u of c.userIds) this.s.insertMember.run(c.id, u, c.createdAt, 0);
      return { chat: this.withMembers(this.s.chatById.get(c.id)!), created: true };
    }).immediate());
  }

  async createGroupChat(c: NewGroupChat): Promise<ChatRecord> {
    return this.write(() => this.db.transaction(() => {
      const number = this.s.nextNumber.get()!.n;
      this.s.insertChat.run(c.id, number, 'group', c.name, c.visibility, c.ownerId, null, c.createdAt);
      for (const u of c.memberIds) this.s.insertMember.run(c.id, u, c.createdAt, 0);
      return this.withMembers(this.s.chatById.get(c.id)!);
    }).immediate());
  }

  async getChat(id: string): Promise<ChatRecord | null> {
    const r = this.s.chatById.get(id);
    return r ? this.withMembers(r) : null;
  }

  async getChatByNumber(number: number): Promise<ChatRecord | null> {
    const r = this.s.chatByNumber.get(number);
    return r ? this.withMembers(r) : null;
  }

  async listChatsOfMember(userId: string, type: ChatType, page: Page<number>): Promise<PageOf<ChatRecord>> {
    const rows = this.s.chatsOfMember.all(userId, type, page.after ?? 0, page.limit + 1);
    return pageOf(rows, page.limit, (r) => this.withMembers(r));
  }

  async listPublicGroups(page: Page<number>): Promise<PageOf<ChatRecord>> {
    const rows = this.s.publicGroups.all(page.after ?? 0, page.limit + 1);
    return pageOf(rows, page.limit, (r) => this.withMembers(r));
  }

  async addMembers(chatId: string, userIds: readonly string[], maxMembers: number, at: number) {
    return this.write(() => this.db.transaction(() => {
      const row = this.s.chatById.get(chatId);
      if (!row) throw notFound('chat not found');
      const current = new Set(this.s.memberIds.all(chatId).map((m) => m.user_id));
      const added = [...new Set(userIds)].filter((u) => !current.has(u));
      if (current.size + added.length > maxMembers) throw groupFull(maxMembers);
      // A member added later has read what came before it joined.
      const readSeq = added.length > 0 ? this.lastSeq(chatId) : 0;
      for (const u of added) this.s.insertMember.run(chatId, u, at, readSeq);
      if (added.length === 0) return { chat: this.withMembers(row), added };
      this.s.membersChanged.run(chatId);
      return { chat: this.withMembers(this.s.chatById.get(chatId)!), added };
    }).immediate());
  }

  async removeMember(chatId: string, userId: string) {
    return this.write(() => this.db.transaction(() => {
      const row = this.s.chatById.get(chatId);
      if (!row) return null;
      const removed = this.s.deleteMember.run(chatId, userId).changes === 1;
      if (removed) this.s.membersChanged.run(chatId);
      if (removed && row.owner_id === userId) {
        const heir = this.s.memberIds.get(chatId)?.user_id ?? null;
        this.s.setOwner.run(heir, chatId);
      }
      return { chat: this.withMembers(this.s.chatById.get(chatId)!), removed };
    }).immediate());
  }

  private withMembers(r: ChatRow): ChatRecord {
    return {
      id: r.id, number: r.number, type: r.type, name: r.name, visibility: r.visibility, ownerId: r.owner_id,
      memberIds: this.s.memberIds.all(r.id).map((m) => m.user_id), membersVersion: r.members_version, lastSeq: this.lastSeq(r.id), createdAt: r.created_at,
    };
  }

  // ---- message log

  async appendMessages(envelopes: readonly Envelope[]): Promise<Appended[]> {
    if (envelopes.length === 0) return [];
    const rows = envelopes.map((e): MessageRow => {
      const at = Date.parse(e.createdAt);
      switch (e.type) {
        case 'message':
          return [e.chatId, e.seq, e.id, e.type, e.senderId, e.clientMsgId, at, envelopeJson(e), 'text' in e ? e.text : null, null];
        case 'edit':
          return [e.chatId, e.seq, e.id, e.type, e.senderId, null, at, envelopeJson(e), e.text, e.targetSeq];
        case 'delete':
          return [e.chatId, e.seq, e.id, e.type, e.actorId, null, at, envelopeJson(e), null, e.targetSeq];
        case 'system':
          return [e.chatId, e.seq, e.id, e.type, null, null, at, envelopeJson(e), null, null];
      }
    });
    return this.writer.append(rows);
  }

  /** Resolves once every commit made so far is on disk (an fsync of the WAL, shared by the
   * commits made while the previous one ran). */
  private durable(): Promise<void> {
    return this.wal.sync();
  }

  /**
   * Runs a write of this connection (a statement, or a transaction begun IMMEDIATE), and
   * resolves with its result once it is durable. The write lock is never waited for on the event
   * loop: better-sqlite3's busy handler sleeps the whole thread, and the message log's writer
   * thread holds the lock through each transaction of a compaction of the segment log (tens of
   * ms under load). A write that finds it held waits here instead, without
   * blocking, and is tried again a few ms later, in the order the writes came (a write that
   * comes while others wait queues behind them); after `writeWaitMs` it fails as unavailable
   * (503, Retry-After), having written nothing.
   */
  private async write<T>(run: () => T): Promise<T> {
    let done = this.lockWaiting === 0 ? this.attempt(run) : null;
    if (!done) {
      this.lockWaiting++;
      const turn = this.lockQueue.then(() => this.untilWritten(run));
      this.lockQueue = turn.then(noop, noop);
      try {
        done = { value: await turn };
      } finally {
        this.lockWaiting--;
      }
    }
    await this.durable();
    return done.value;
  }

  /** Writes that found the lock held, in order, and how many wait. */
  private lockQueue: Promise<void> = Promise.resolve();
  private lockWaiting = 0;

  /** Runs `run` without waiting for the lock: null (nothing written) if another connection holds it. */
  private attempt<T>(run: () => T): { value: T } | null {
    this.db.pragma('busy_timeout = 0');
    try {
      return { value: run() };
    } catch (err) {
      if (String((err as { code?: unknown }).code).startsWith('SQLITE_BUSY')) return null;
      throw err;
    } finally {
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }

  private async untilWritten<T>(run: () => T): Promise<T> {
    const deadline = performance.now() + this.writeWaitMs;
    for (let pause = 1; ; pause = Math.min(2 * pause, 16)) {
      const done = this.attempt(run);
      if (done) return done.value;
      if (performance.now() >= deadline) throw new AppError('unavailable', 'the database is busy; retry shortly', { retryAfter: 1 });
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  async listMessages(chatId: string, range: MessageRange): Promise<{ messages: Envelope[]; hasMore: boolean }> {
    await this.caughtUp();
    const before = range.before ?? Number.MAX_SAFE_INTEGER;
    if (range.after !== undefined) {
      const rows = this.s.messagesAfter.all(chatId, range.after, before, range.limit + 1);
      const page = pageOf(rows, range.limit);
      return { messages: page.items.map((r) => parseEnvelope(r.envelope)), hasMore: page.hasMore };
    }
    const rows = this.s.messagesBefore.all(chatId, before, range.limit + 1);
    const page = pageOf(rows, range.limit);
    return { messages: page.items.reverse().map((r) => parseEnvelope(r.envelope)), hasMore: page.hasMore };
  }

  async getMessage(chatId: string, seq: number): Promise<StoredMessage | null> {
    await this.caughtUp();
    const r = this.s.messageAt.get(chatId, seq);
    return r ? (parseEnvelope(r.envelope) as StoredMessage) : null;
  }

  async maxSeq(chatId: string): Promise<number> {
    return this.lastSeq(chatId);
  }

  /** The chat's highest stored seq, the segment log's rows included. */
  private lastSeq(chatId: string): number {
    return Math.max(this.s.maxSeq.get(chatId)!.n, this.writer.tailSeq(chatId));
  }

  /** Resolves once the rows the segment log holds are in the database, for a read of them. */
  private caughtUp(): Promise<void> {
    return this.writer.caughtUp().catch((err: unknown) => {
      if (err instanceof Error && err.message === 'the store is closed') throw err;
      // The log's rows cannot be written into the database (its disk full, say): a read now
      // would miss acknowledged messages.
      throw new AppError('unavailable', 'message history cannot be read right now; retry shortly', { retryAfter: 1 });
    });
  }

  async recentSends(limit: number): Promise<RecentSend[]> {
    await this.caughtUp();
    return this.s.recentSends.all(limit).map((r) => ({ chatId: r.chat_id, senderId: r.sender_id, clientMsgId: r.client_msg_id, sent: { id: r.id, seq: r.seq } }));
  }

  // ---- read pointers

  async setReadPointer(chatId: string, userId: string, readSeq: number, at: number): Promise<(ReadPointer & { moved: boolean }) | null> {
    await this.caughtUp();
    const stored = this.s.readPointer.get(chatId, userId);
    if (!stored) return null;
    const before = this.pointer(chatId, userId, stored);
    if (readSeq <= before.readSeq) return { ...before, moved: false };
    await this.write(() => this.s.moveReadPointer.run(readSeq, at, chatId, userId, readSeq));
    // Concurrent moves: the highest stands, and each caller learns the pointer as it is now.
    return { ...this.pointer(chatId, userId, this.s.readPointer.get(chatId, userId)!), moved: true };
  }

  async readPointers(chatId: string): Promise<ReadPointer[]> {
    await this.caughtUp();
    return this.s.readPointers.all(chatId).map((r) => this.pointer(chatId, r.user_id, r));
  }

  /** A member's pointer: the one receipts stored, or its newest own message if that is later
   * (then `at` is that message's time). */
  private pointer(chatId: string, userId: string, stored: { read_seq: number; read_at: number | null }): ReadPointer {
    const own = this.s.ownAfter.get(chatId, stored.read_seq, userId)!.seq;
    if (own === null) return { userId, readSeq: stored.read_seq, at: stored.read_at };
    return { userId, readSeq: own, at: this.s.createdAtSeq.get(chatId, own)!.created_at };
  }

  async chatStates(userId: string, chatIds: readonly string[]): Promise<Map<string, ChatState>> {
    await this.caughtUp();
    const states = new Map<string, ChatState>();
    // One read transaction: every chat's figures from one snapshot of the log.
    this.db.transaction(() => {
      for (const chatId of new Set(chatIds)) {
        const stored = this.s.readPointer.get(chatId, userId);
        if (!stored) continue;
        const own = this.s.ownAfter.get(chatId, stored.read_seq, userId)!.seq;
        const readSeq = own ?? stored.read_seq;
        const last = this.s.lastMessage.get(chatId);
        states.set(chatId, {
          readSeq,
          unread: this.s.unread.get(chatId, readSeq, userId)!.n,
          lastMessage: last ? (parseEnvelope(last.envelope) as StoredMessage) : null,
          lastActivityAt: this.s.lastActivity.get(chatId)?.created_at ?? this.s.chatById.get(chatId)!.created_at,
        });
      }
    })();
    return states;
  }

  async chatIdsOfMember(userId: string): Promise<string[]> {
    return this.s.chatIdsOfMember.all(userId).map((r) => r.chat_id);
  }

  async listChatsOfMemberByActivity(userId: string, type: ChatType, page: Page<ActivityKey>): Promise<PageOf<ChatRecord & { lastActivityAt: number }>> {
    await this.caughtUp();
    const after = page.after ?? { at: Number.MAX_SAFE_INTEGER, number: Number.MAX_SAFE_INTEGER };
    const rows = this.s.chatsByActivity.all({ user: userId, type, at: after.at, number: after.number, limit: page.limit + 1 });
    return pageOf(rows, page.limit, (r) => ({ ...this.withMembers(r), lastActivityAt: r.activity }));
  }

  // ---- search

  async searchMessages(query: string, chatIds: readonly string[], page: { before?: string | undefined; limit: number }): Promise<{ messages: StoredMessage[]; hasMore: boolean }> {
    const tokens = searchTokens(query);
    if (tokens.length === 0 || chatIds.length === 0) return { messages: [], hasMore: false };
    // Counted from here: a search waiting for the index to catch up holds its place too.
    if (this.searchesPending >= SEARCH_PENDING_MAX) {
      throw new AppError('unavailable', 'too many searches in progress; retry shortly', { retryAfter: 1 });
    }
    this.searchesPending++;
    try {
      await this.writer.indexed();
      let before = Number.MAX_SAFE_INTEGER;
      if (page.before !== undefined) {
        const cursor = this.s.rowidOfMessage.get(page.before);
        if (!cursor) return { messages: [], hasMore: false };
        before = cursor.rowid;
      }
      // A phrase of the query's first tokens: each token is [0-9a-fx]+, so nothing in it is FTS5
      // syntax. A longer query is confirmed on each candidate's text (SEARCH_PHRASE_TOKENS).
      const found = await this.searcher.search({
        match: `"${tokens.slice(0, SEARCH_PHRASE_TOKENS).join(' ')}"`,
        query,
        confirm: tokens.length > SEARCH_PHRASE_TOKENS,
        chatIds,
        before,
        limit: page.limit,
      });
      return { messages: found.envelopes.map((e) => parseEnvelope(e) as StoredMessage), hasMore: found.hasMore };
    } finally {
      this.searchesPending--;
    }
  }
}

/**
 * Puts the file in WAL mode (kept in the file; a no-op once it is). The switch needs the file to
 * itself, and SQLite answers it with SQLITE_BUSY at once, without the busy timeout, while another
 * connection holds a lock on a file not yet in WAL mode: the second of two processes started
 * together on a new file. So it is tried again, every 20 ms, for as long as the busy timeout.
 */
function walMode(db: Database.Database): void {
  const until = Date.now() + 10_000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() > until) throw err;
      Atomics.wait(pause, 0, 0, 20); // a constructor cannot await; this runs once, at start
    }
  }
}

/** Rows were fetched with limit + 1: the extra one only tells that another page exists. */
function pageOf<R, T = R>(rows: R[], limit: number, map: (r: R) => T = (r) => r as unknown as T): PageOf<T> {
  const hasMore = rows.length > limit;
  return { items: rows.slice(0, limit).map(map), hasMore };
}

/**
 * fsync of a WAL file, shared: callers whose writes an fsync under way may have missed get
 * the next one, which all of them share; so under load one fsync serves every commit made
 * while the previous one ran. (fsync makes the file's data durable whichever descriptor it
 * was written through.)
 */
class WalSync {
  private fd: number | null = null;
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;

  constructor(private readonly path: string) {}

  /** Resolves once everything written to the file before the call is on disk. */
  sync(): Promise<void> {
    if (this.running === null) {
      this.running = this.fsync().finally(() => (this.running = null));
      return this.running;
    }
    this.next ??= this.running
      .catch(() => {})
      .then(() => {
        this.next = null;
        return this.sync();
      });
    return this.next;
  }

  async close(): Promise<void> {
    while (this.running || this.next) await (this.next ?? this.running)?.catch(() => {});
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private fsync(): Promise<void> {
    this.fd ??= openSync(this.path, 'r');
    const fd = this.fd;
    return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
  }
}
