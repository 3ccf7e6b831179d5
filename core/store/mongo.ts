import { type ClientSession, type Db, type Filter, MongoClient, MongoServerError } from 'mongodb';
import { groupFull, notFound, usernameTaken } from '../errors.js';
import type { Envelope } from '../envelope.js';
import type {
  Appended, ChatRecord, ChatType, MessageRange, NewDirectChat, NewGroupChat, NewUser, Page, PageOf,
  RecentSend, SessionRecord, Store, UserRecord, Visibility,
} from './store.js';

/**
 * MongoDB store (official `mongodb` driver), for deployments that outgrow one machine.
 *
 * Documents:
 *   users     { _id, username, displayName, searchName, passwordHash, createdAt, lastSeenAt }
 *   sessions  { _id, userId, createdAt, expiresAt, revokedAt }
 *   chats     { _id, number, type, name, visibility, ownerId, directKey?, members: [{userId, joinedAt}], membersVersion, createdAt }
 *             members are embedded (a group has at most 100), in join order; a chat's lastSeq
 *             is read from the log (its highest seq, one indexed read), never kept twice
 *   messages  { _id: envelope id, chatId, seq, senderId, clientMsgId, envelope }
 *   counters  { _id: 'chatNumber', n }     the last chat number handed out
 *   meta      { _id: 'schema', version }   how many MIGRATIONS ran
 *
 * Atomicity: single-document updates where one document holds the rule (member cap, owner
 * hand-over), multi-document transactions where it does not (numbering a new chat, appending
 * a batch of messages). Transactions need a replica set or a sharded cluster; a one-node
 * replica set is enough, and `open` refuses a standalone server with a clear message.
 * Every write waits for a majority of the replica set and its journal.
 */
export class MongoStore implements Store {
  private constructor(
    private readonly client: MongoClient,
    private readonly db: Db,
  ) {}

  /** Connects to `database`, checks that transactions are available and brings the schema up
   * to date. Driver options in the URL apply (e.g.
   * serverSelectionTimeoutMS, tls, replicaSet), except the write concern, which is always
   * majority with journal (a PUBACK promises the message survives), and the read preference,
   * always primary. */
  static async open(url: string, database: string): Promise<MongoStore> {
    const client = new MongoClient(url, {
      writeConcern: { w: 'majority', journal: true },
      // Transactions read from the primary only, and so must everything else for a client to
      // read its own writes; a readPreference in the URL would break both.
      readPreference: 'primary',
      appName: 'mqtt-chat',
    });
    try {
      await client.connect();
      const hello = await client.db('admin').command({ hello: 1 });
      if (hello.setName === undefined && hello.msg !== 'isdbgrid') {
        throw new Error('the MongoDB store needs a replica set or a sharded cluster (it uses transactions); a standalone mongod can become a one-node replica set with --replSet rs0 and rs.initiate()');
      }
      const store = new MongoStore(client, client.db(database));
      await store.migrate();
      return store;
    } catch (err) {
      await client.close().catch(() => {});
      if (err instanceof Error && err.name === 'MongoServerSelectionError') {
        err.message += ' (no MongoDB primary answered: check the address, and that the replica set is initiated)';
      }
      throw err;
    }
  }

  private get users() { return this.db.collection<UserDoc>('users'); }
  private get sessions() { return this.db.collection<SessionDoc>('sessions'); }
  private get chats() { return this.db.collection<ChatDoc>('chats'); }
  private get messages() { return this.db.collection<MessageDoc>('messages'); }
  private get counters() { return this.db.collection<{ _id: string; n: number }>('counters'); }

  private async migrate(): Promise<void> {
    const meta = this.db.collection<{ _id: string; version: number }>('meta');
    const from = (await meta.findOne({ _id: 'schema' }))?.version ?? 0;
    if (from > MIGRATIONS.length) {
      throw new Error(`the MongoDB database is at schema version ${from}, newer than this server knows (${MIGRATIONS.length}); upgrade the server`);
    }
    // Steps are idempotent, so two processes starting together may both run one safely.
    for (let v = from; v < MIGRATIONS.length; v++) {
      await MIGRATIONS[v]!(this.db);
      await retryOnDuplicateKey(() => meta.updateOne({ _id: 'schema' }, { $max: { version: v + 1 } }, { upsert: true }));
    }
  }

  /** Runs `fn` in a transaction, retried by the driver on transient errors: a write conflict
   * with a concurrent transaction (also when both insert one unique key), a primary stepping
   * down. A duplicate key error is retried a few times too, in case one surfaces as such
   * rather than as a conflict; the next attempt's snapshot sees the other document. */
  private transaction<T>(fn: (session: ClientSession) => Promise<T>): Promise<T> {
    return retryOnDuplicateKey(() =>
      this.client.withSession((session) =>
        session.withTransaction(() => fn(session), {
          readConcern: { level: 'snapshot' },
          writeConcern: { w: 'majority', journal: true },
        }),
      ),
    );
  }

  async ping(): Promise<void> {
    await this.db.command({ ping: 1 });
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  // ---- users

  async createUser(u: NewUser): Promise<UserRecord> {
    try {
      await this.users.insertOne({
        _id: u.id, username: u.username, displayName: u.displayName, searchName: u.displayName.toLowerCase(),
        passwordHash: u.passwordHash, createdAt: u.createdAt, lastSeenAt: null,
      });
    } catch (err) {
      if (isDuplicateKey(err) && 'username' in ((err as MongoServerError).keyPattern ?? {})) throw usernameTaken();
      throw err;
    }
    return { ...u, lastSeenAt: null };
  }

  async getUser(id: string): Promise<UserRecord | null> {
    const d = await this.users.findOne({ _id: id });
    return d ? toUser(d) : null;
  }

  async getUserByUsername(username: string): Promise<UserRecord | null> {
    const d = await this.users.findOne({ username });
    return d ? toUser(d) : null;
  }

  async getUsers(ids: readonly string[]): Promise<UserRecord[]> {
    if (ids.length === 0) return [];
    return (await this.users.find({ _id: { $in: [...ids] } }).toArray()).map(toUser);
  }

  async searchUsers(query: string, page: Page<string>): Promise<PageOf<UserRecord>> {
    // $indexOfCP compares literal text; $literal keeps a query such as "$username" from being
    // read as a field path. Walks the username index in order, like the SQLite store.
    const q = { $literal: query.toLowerCase() };
    const docs = await this.users
      .find({
        username: { $gt: page.after ?? '' },
        $expr: { $or: [{ $gte: [{ $indexOfCP: ['$username', q] }, 0] }, { $gte: [{ $indexOfCP: ['$searchName', q] }, 0] }] },
      })
      .sort({ username: 1 })
      .limit(page.limit + 1)
      .toArray();
    return pageOf(docs, page.limit, toUser);
  }

  async listUsersAmong(ids: readonly string[], page: Page<string>): Promise<PageOf<UserRecord>> {
    // A query document is at most 16 MB: the ids go in slices, each slice's page is asked for,
    // and the pages are merged (the first limit + 1 of them all, by username, is the answer's).
    const unique = [...new Set(ids)];
    const docs: UserDoc[] = [];
    for (let i = 0; i < unique.length; i += IDS_PER_QUERY) {
      const slice = unique.slice(i, i + IDS_PER_QUERY);
      docs.push(...(await this.users.find({ _id: { $in: slice }, username: { $gt: page.after ?? '' } }).sort({ username: 1 }).limit(page.limit + 1).toArray()));
    }
    docs.sort((a, b) => (a.username < b.username ? -1 : 1));
    return pageOf(docs, page.limit, toUser);
  }

  async setLastSeen(userId: string, at: number): Promise<void> {
    await this.users.updateOne({ _id: userId }, { $set: { lastSeenAt: at } });
  }

  // ---- sessions

  async createSession(s: SessionRecord): Promise<void> {
    await this.sessions.insertOne({ _id: s.id, userId: s.userId, createdAt: s.createdAt, expiresAt: s.expiresAt, revokedAt: s.revokedAt });
  }

  async getSession(id: string): Promise<SessionRecord | null> {
    const d = await this.sessions.findOne({ _id: id });
    return d ? { id: d._id, userId: d.userId, createdAt: d.createdAt, expiresAt: d.expiresAt, revokedAt: d.revokedAt } : null;
  }

  async revokeSession(id: string, at: number): Promise<boolean> {
    return (await this.sessions.updateOne({ _id: id, revokedAt: null }, { $set: { revokedAt: at } })).modifiedCount === 1;
  }

  async deleteExpiredSessions(now: number): Promise<number> {
    return (await this.sessions.deleteMany({ expiresAt: { $lt: now } })).deletedCount;
  }

  // ---- chats

  async createDirectChat(c: NewDirectChat): Promise<{ chat: ChatRecord; created: boolean }> {
    const [a, b] = [...c.userIds].sort() as [string, string];
    const directKey = `${a}:${b}`;
    // The unique index on directKey decides a race: the loser's transaction fails on it (or on
    // a write conflict), is retried, and then finds the winner's chat.
    return this.transaction(async (session) => {
      // $type repeats the partial index's filter, so the planner can use the index.
      const existing = await this.chats.findOne({ directKey: { $eq: directKey, $type: 'string' } }, { session });
      if (existing) return { chat: await this.record(existing), created: false };
      const chat = await this.insertChat(session, {
        _id: c.id, type: 'direct', name: null, visibility: 'private', ownerId: null, directKey, createdAt: c.createdAt,
      }, c.userIds);
      return { chat, created: true };
    });
  }

  async createGroupChat(c: NewGroupChat): Promise<ChatRecord> {
    // One transaction for the number and the chat: a failed insert hands its number back.
    return this.transaction((session) =>
      this.insertChat(session, { _id: c.id, type: 'group', name: c.name, visibility: c.visibility, ownerId: c.ownerId, createdAt: c.createdAt }, c.memberIds),
    );
  }

  /** Inserts a new chat with the next number, its members joined at its creation. */
  private async insertChat(session: ClientSession, fields: Omit<ChatDoc, 'number' | 'members' | 'membersVersion'>, memberIds: readonly string[]): Promise<ChatRecord> {
    const doc: ChatDoc = {
      ...fields, number: await this.nextNumber(session), membersVersion: 1,
      members: memberIds.map((userId) => ({ userId, joinedAt: fields.createdAt })),
    };
    await this.chats.insertOne(doc, { session });
    return toChat(doc, 0);
  }

  /** The next chat number: the counter document serialises concurrent creations (a second
   * transaction touching it gets a write conflict and is retried). */
  private async nextNumber(session: ClientSession): Promise<number> {
    const counter = await this.counters.findOneAndUpdate(
      { _id: CHAT_NUMBER },
      { $inc: { n: 1 } },
      { session, returnDocument: 'after' },
    );
    if (!counter) throw new Error('the chat number counter is missing from the MongoDB database');
    return counter.n;
  }

  async getChat(id: string): Promise<ChatRecord | null> {
    const d = await this.chats.findOne({ _id: id });
    return d ? this.record(d) : null;
  }

  async getChatByNumber(number: number): Promise<ChatRecord | null> {
    const d = await this.chats.findOne({ number });
    return d ? this.record(d) : null;
  }

  async listChatsOfMember(userId: string, type: ChatType, page: Page<number>): Promise<PageOf<ChatRecord>> {
    const docs = await this.chats
      .find({ 'members.userId': userId, type, number: { $gt: page.after ?? 0 } })
      .sort({ number: 1 })
      .limit(page.limit + 1)
      .toArray();
    return this.records(pageOf(docs, page.limit));
  }

  async listPublicGroups(page: Page<number>): Promise<PageOf<ChatRecord>> {
    const docs = await this.chats
      .find({ visibility: 'public', type: 'group', number: { $gt: page.after ?? 0 } })
      .sort({ number: 1 })
      .limit(page.limit + 1)
      .toArray();
    return this.records(pageOf(docs, page.limit));
  }

  async addMembers(chatId: string, userIds: readonly string[], maxMembers: number, at: number) {
    // Optimistic: the update applies only if the member list is still the one we counted, so
    // the cap holds and nobody is added twice. A concurrent change makes it match nothing;
    // then we look again.
    for (;;) {
      const doc = await this.chats.findOne({ _id: chatId });
      if (!doc) throw notFound('chat not found');
      const current = new Set(doc.members.map((m) => m.userId));
      const added = [...new Set(userIds)].filter((u) => !current.has(u));
      if (current.size + added.length > maxMembers) throw groupFull(maxMembers);
      if (added.length === 0) return { chat: await this.record(doc), added };
      const updated = await this.chats.findOneAndUpdate(
        { _id: chatId, members: doc.members },
        { $push: { members: { $each: added.map((userId) => ({ userId, joinedAt: at })) } }, $inc: { membersVersion: 1 } },
        { returnDocument: 'after' },
      );
      if (updated) return { chat: await this.record(updated), added };
    }
  }

  async removeMember(chatId: string, userId: string) {
    // One update: drop the member and, if it owned the chat, hand ownership to the first
    // remaining member (join order), or to nobody.
    const uid = { $literal: userId };
    const updated = await this.chats.findOneAndUpdate(
      { _id: chatId, 'members.userId': userId },
      [
        {
          $set: {
            members: { $filter: { input: '$members', cond: { $ne: ['$$this.userId', uid] } } },
            membersVersion: { $add: [{ $ifNull: ['$membersVersion', 0] }, 1] },
          },
        },
        { $set: { ownerId: { $cond: [{ $eq: ['$ownerId', uid] }, { $ifNull: [{ $first: '$members.userId' }, null] }, '$ownerId'] } } },
      ],
      { returnDocument: 'after' },
    );
    if (updated) return { chat: await this.record(updated), removed: true };
    const doc = await this.chats.findOne({ _id: chatId });
    return doc ? { chat: await this.record(doc), removed: false } : null;
  }

  /** A chat document as a record, its lastSeq read from the log. */
  private async record(doc: ChatDoc): Promise<ChatRecord> {
    return toChat(doc, await this.maxSeq(doc._id));
  }

  private async records(page: PageOf<ChatDoc>): Promise<PageOf<ChatRecord>> {
    return { items: await Promise.all(page.items.map((d) => this.record(d))), hasMore: page.hasMore };
  }

  // ---- message log

  async appendMessages(envelopes: readonly Envelope[]): Promise<Appended[]> {
    if (envelopes.length === 0) return [];
    return this.transaction(async (session) => {
      // Skip what is already stored, as the SQLite store's INSERT OR IGNORE does: a write
      // error inside a transaction would abort it.
      const seqs = new Map<string, number[]>();
      const keys = new Map<string, { chatId: string; senderId: string; ids: string[] }>();
      for (const e of envelopes) {
        push(seqs, e.chatId, e.seq);
        if (e.type === 'message' && e.clientMsgId !== null) {
          const k = `${e.chatId} ${e.senderId}`;
          const entry = keys.get(k) ?? keys.set(k, { chatId: e.chatId, senderId: e.senderId, ids: [] }).get(k)!;
          entry.ids.push(e.clientMsgId);
        }
      }
      // Like the SQLite store's foreign key: no messages for a chat that does not exist.
      const chatIds = [...seqs.keys()];
      if ((await this.chats.countDocuments({ _id: { $in: chatIds } }, { session })) !== chatIds.length) {
        throw new Error(`messages for a chat that does not exist (one of ${chatIds.join(', ')})`);
      }
      const clauses: Filter<MessageDoc>[] = [{ _id: { $in: envelopes.map((e) => e.id) } }];
      for (const [chatId, list] of seqs) clauses.push({ chatId, seq: { $in: list } });
      for (const { chatId, senderId, ids } of keys.values()) clauses.push({ chatId, senderId, clientMsgId: { $in: ids, $type: 'string' } });
      const stored = await this.messages
        .find({ $or: clauses }, { session, projection: { _id: 1, chatId: 1, seq: 1, senderId: 1, clientMsgId: 1 } })
        .toArray();
      // What is stored, and what this batch adds as it goes, by id, by seq and by key.
      const ids = new Set<string>();
      const atSeq = new Map<string, string>();
      const byKey = new Map<string, { id: string; seq: number }>();
      const keyOf = (d: { chatId: string; senderId: string | null; clientMsgId: string | null }) => `${d.chatId} ${d.senderId} ${d.clientMsgId}`;
      const take = (d: Pick<MessageDoc, '_id' | 'chatId' | 'seq' | 'senderId' | 'clientMsgId'>) => {
        ids.add(d._id);
        atSeq.set(`${d.chatId} ${d.seq}`, d._id);
        if (d.clientMsgId !== null) byKey.set(keyOf(d), { id: d._id, seq: d.seq });
      };
      stored.forEach(take);

      const fresh: MessageDoc[] = [];
      const outcomes: Appended[] = [];
      for (const e of envelopes) {
        const doc: MessageDoc = {
          _id: e.id, chatId: e.chatId, seq: e.seq,
          senderId: e.type === 'message' ? e.senderId : null,
          clientMsgId: e.type === 'message' ? e.clientMsgId : null,
          envelope: e,
        };
        const holder = atSeq.get(`${doc.chatId} ${doc.seq}`);
        const keyed = doc.clientMsgId === null ? undefined : byKey.get(keyOf(doc));
        if (holder !== undefined) outcomes.push(holder === doc._id ? 'present' : { seqHeldBy: holder });
        else if (keyed) outcomes.push({ keyHeldBy: keyed });
        else if (ids.has(doc._id)) throw new Error(`message id ${doc._id} is stored already, at another chat or seq`);
        else {
          take(doc);
          fresh.push(doc);
          outcomes.push('stored');
        }
      }
      // ignoreUndefined: an absent optional field (actorId) stays absent, as appended.
      if (fresh.length > 0) await this.messages.insertMany(fresh, { session, ignoreUndefined: true });
      return outcomes;
    });
  }

  async listMessages(chatId: string, range: MessageRange): Promise<{ messages: Envelope[]; hasMore: boolean }> {
    const before = range.before ?? Number.MAX_SAFE_INTEGER;
    if (range.after !== undefined) {
      const docs = await this.messages.find({ chatId, seq: { $gt: range.after, $lt: before } }).sort({ seq: 1 }).limit(range.limit + 1).toArray();
      return toMessages(pageOf(docs, range.limit));
    }
    const docs = await this.messages.find({ chatId, seq: { $lt: before } }).sort({ seq: -1 }).limit(range.limit + 1).toArray();
    const page = pageOf(docs, range.limit);
    page.items.reverse();
    return toMessages(page);
  }

  async maxSeq(chatId: string): Promise<number> {
    const d = await this.messages.findOne({ chatId }, { sort: { seq: -1 }, projection: { seq: 1 } });
    return d?.seq ?? 0;
  }

  async recentSends(limit: number): Promise<RecentSend[]> {
    // Ids are UUIDv7, so _id order is time order; $type keeps system events out.
    const docs = await this.messages
      .find({ clientMsgId: { $type: 'string' } }, { sort: { _id: -1 }, limit, projection: { _id: 1, chatId: 1, seq: 1, senderId: 1, clientMsgId: 1 } })
      .toArray();
    return docs.map((d) => ({ chatId: d.chatId, senderId: d.senderId!, clientMsgId: d.clientMsgId!, sent: { id: d._id, seq: d.seq } }));
  }
}

const CHAT_NUMBER = 'chatNumber';

/**
 * Schema steps, applied in order; meta.schema.version records how many ran. Each must be
 * idempotent. Never edit a released step: append a new one. Every query the store runs has an
 * index here.
 */
const MIGRATIONS: Array<(db: Db) => Promise<void>> = [
  async (db) => {
    await db.collection('users').createIndexes([{ key: { username: 1 }, name: 'username', unique: true }]);
    await db.collection('sessions').createIndexes([{ key: { expiresAt: 1 }, name: 'expiry' }]);
    await db.collection('chats').createIndexes([
      { key: { number: 1 }, name: 'number', unique: true },
      { key: { directKey: 1 }, name: 'direct_pair', unique: true, partialFilterExpression: { directKey: { $type: 'string' } } },
      { key: { 'members.userId': 1, type: 1, number: 1 }, name: 'member_chats' },
      { key: { visibility: 1, type: 1, number: 1 }, name: 'by_visibility' },
    ]);
    await db.collection('messages').createIndexes([
      { key: { chatId: 1, seq: 1 }, name: 'chat_seq', unique: true },
      {
        key: { chatId: 1, senderId: 1, clientMsgId: 1 }, name: 'idempotency_key', unique: true,
        partialFilterExpression: { clientMsgId: { $type: 'string' } },
      },
    ]);
    await retryOnDuplicateKey(() =>
      db.collection<{ _id: string; n: number }>('counters').updateOne({ _id: CHAT_NUMBER }, { $setOnInsert: { n: 0 } }, { upsert: true }),
    );
  },
];

/** The database named in a connection string (mongodb://host/<db>?options), if any. */
export function databaseIn(url: string): string | undefined {
  const name = /^mongodb(?:\+srv)?:\/\/[^/?]*\/([^?]*)/.exec(url)?.[1];
  return name ? decodeURIComponent(name) : undefined;
}

/** Ids in one `$in` of listUsersAmong: about 2 MB of query, far below the 16 MB a document may have. */
const IDS_PER_QUERY = 50_000;

interface UserDoc { _id: string; username: string; displayName: string; searchName: string; passwordHash: string; createdAt: number; lastSeenAt: number | null }
interface SessionDoc { _id: string; userId: string; createdAt: number; expiresAt: number; revokedAt: number | null }
interface ChatDoc {
  _id: string; number: number; type: ChatType; name: string | null; visibility: Visibility; ownerId: string | null;
  directKey?: string; members: Array<{ userId: string; joinedAt: number }>;
  /** absent in documents written before it existed: 0 there ($inc then makes it 1) */
  membersVersion?: number;
  /** written by earlier releases, which read it; kept so that their nodes still work during
   * an upgrade, never read here */
  lastSeq?: number;
  createdAt: number;
}
interface MessageDoc { _id: string; chatId: string; seq: number; senderId: string | null; clientMsgId: string | null; envelope: Envelope }

const toUser = (d: UserDoc): UserRecord => ({
  id: d._id, username: d.username, displayName: d.displayName, passwordHash: d.passwordHash, createdAt: d.createdAt, lastSeenAt: d.lastSeenAt,
});

const toChat = (d: ChatDoc, lastSeq: number): ChatRecord => ({
  id: d._id, number: d.number, type: d.type, name: d.name, visibility: d.visibility, ownerId: d.ownerId,
  memberIds: d.members.map((m) => m.userId), membersVersion: d.membersVersion ?? 0, lastSeq, createdAt: d.createdAt,
});

const toMessages = (page: PageOf<MessageDoc>) => ({ messages: page.items.map((d) => d.envelope), hasMore: page.hasMore });

/** Documents were fetched with limit + 1: the extra one only tells that another page exists. */
function pageOf<D, T = D>(docs: D[], limit: number, map: (d: D) => T = (d) => d as unknown as T): PageOf<T> {
  return { items: docs.slice(0, limit).map(map), hasMore: docs.length > limit };
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V) {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

const isDuplicateKey = (err: unknown) => err instanceof MongoServerError && err.code === 11000;

/** A few attempts are plenty: each retry follows a commit by someone else that the next
 * attempt sees. */
async function retryOnDuplicateKey<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (!isDuplicateKey(err) || i >= attempts) throw err;
    }
  }
}
