import {
  type AnyBulkWriteOperation, type ClientSession, type Collection, type Db, type Filter, type FindCursor, MongoClient, MongoServerError,
  type UpdateFilter,
} from 'mongodb';
import { groupFull, notFound, usernameTaken } from '../errors.js';
import type { DeleteEnvelope, EditEnvelope, Envelope, MessageEnvelope, StoredMessage } from '../envelope.js';
import { normalizeForSearch, searchTokens } from '../search-text.js';
import type {
  ActivityKey, Appended, ChatRecord, ChatState, ChatType, MessageRange, NewDirectChat, NewGroupChat, NewUser, Page, PageOf,
  ReadPointer, RecentSend, SessionRecord, Store, UserRecord, Visibility,
} from './store.js';
import { SEARCH_CANDIDATES } from './store.js';

/**
 * MongoDB store (official `mongodb` driver), for deployments that outgrow one machine.
 *
 * Documents:
 *   users     { _id, username, displayName, searchName, passwordHash, createdAt, lastSeenAt }
 *   sessions  { _id, userId, createdAt, expiresAt, revokedAt }
 *   chats     { _id, number, type, name, visibility, ownerId, directKey?, members: [{userId, joinedAt, readSeq, readAt}], membersVersion, createdAt }
 *             members are embedded (a group has at most 100), in join order, each with its read
 *             pointer: readSeq, and readAt (ms) of the receipt or send that last moved it, null
 *             until one does. A chat's lastSeq and last activity are read from the log (its
 *             newest entry, one indexed read), never kept twice
 *   messages  { _id: envelope id, chatId, seq, senderId, clientMsgId, envelope, deleted, editSeq, grams }
 *             envelope is the entry as appended, and for a message its current state (an edit or
 *             a deletion rewrites it; type, seq, id, sender and replyTo stay). senderId and
 *             clientMsgId are null but for messages (they form the idempotency key). Messages
 *             only: deleted; editSeq, the seq of the last edit applied (0: none); grams, the
 *             distinct bigram tokens of the normalised current text (core/search-text.ts), absent
 *             once deleted. The migration gives them to the messages stored before; one that a
 *             node of the earlier release writes during an upgrade lacks them: it reads as not
 *             deleted and never edited, and search does not find it until it is edited
 *   counters  { _id: 'chatNumber', n }     the last chat number handed out
 *   meta      { _id: 'schema', version }   how many MIGRATIONS ran
 *
 * Atomicity: single-document updates where one document holds the rule (owner hand-over, a
 * read pointer), multi-document transactions where it does not (numbering a new chat; adding
 * members, whose pointers start at the highest seq stored; appending a batch of messages with
 * what they do to read pointers and to the messages they edit or delete). Transactions need a
 * replica set or a sharded cluster; a one-node replica set is enough, and `open` refuses a
 * standalone server with a clear message.
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

  async coMemberIds(userId: string, among?: readonly string[]): Promise<string[]> {
    // The user's chats (member_chats), their member ids only, filtered here: `among` stays out
    // of the query, so that the planner cannot go from each of its ids' chats instead.
    const wanted = among === undefined ? null : new Set(among);
    if (wanted?.size === 0) return [];
    const found = new Set<string>();
    const chats = this.chats.find({ 'members.userId': userId }, { projection: { 'members.userId': 1 } });
    for await (const d of chats) {
      for (const m of d.members) if (m.userId !== userId && (wanted === null || wanted.has(m.userId))) found.add(m.userId);
    }
    return [...found];
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

  /** Inserts a new chat with the next number, its members joined at its creation (their
   * pointers at 0: a new chat has nothing to read). */
  private async insertChat(session: ClientSession, fields: Omit<ChatDoc, 'number' | 'members' | 'membersVersion'>, memberIds: readonly string[]): Promise<ChatRecord> {
    const doc: ChatDoc = {
      ...fields, number: await this.nextNumber(session), membersVersion: 1,
      members: memberIds.map((userId) => ({ userId, joinedAt: fields.createdAt, readSeq: 0, readAt: null })),
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

  async chatIdsOfMember(userId: string): Promise<string[]> {
    // Through member_chats (its first key).
    const docs = await this.chats.find({ 'members.userId': userId }, { projection: { _id: 1 } }).toArray();
    return docs.map((d) => d._id);
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
    // A transaction, no longer an update matching the member list we counted: that list now
    // holds read pointers, which receipts move all the time. A concurrent change of the chat
    // document (members, a pointer) is a write conflict, and the transaction runs again on the
    // new state, so the cap holds and nobody is added twice. It also settles the race with an
    // append: a stored message moves its sender's pointer in this document, so the new members'
    // pointers start at the highest seq stored when they joined, not one read before it.
    return this.transaction(async (session) => {
      const doc = await this.chats.findOne({ _id: chatId }, { session });
      if (!doc) throw notFound('chat not found');
      const current = new Set(doc.members.map((m) => m.userId));
      const added = [...new Set(userIds)].filter((u) => !current.has(u));
      if (current.size + added.length > maxMembers) throw groupFull(maxMembers);
      const lastSeq = await highestSeq(this.messages, chatId, session);
      if (added.length === 0) return { chat: toChat(doc, lastSeq), added };
      // Earlier history is readable, but not unread.
      const joined = added.map((userId) => ({ userId, joinedAt: at, readSeq: lastSeq, readAt: null }));
      await this.chats.updateOne({ _id: chatId }, { $push: { members: { $each: joined } }, $inc: { membersVersion: 1 } }, { session });
      const chat = toChat({ ...doc, members: [...doc.members, ...joined], membersVersion: (doc.membersVersion ?? 0) + 1 }, lastSeq);
      return { chat, added };
    });
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
          fresh.push(e.type === 'message' ? { ...doc, ...messageState(e) } : doc);
          outcomes.push('stored');
        }
      }
      // ignoreUndefined: an absent optional field (actorId, replyTo) stays absent, as appended.
      if (fresh.length > 0) {
        await this.messages.insertMany(fresh, { session, ignoreUndefined: true });
        await this.applyEffects(session, fresh.map((d) => d.envelope));
      }
      return outcomes;
    });
  }

  /** What stored envelopes do besides being there (Store.appendMessages), in the append's
   * transaction. Only envelopes stored now: a redelivered one did it when it was stored. */
  private async applyEffects(session: ClientSession, stored: readonly Envelope[]): Promise<void> {
    // One pointer update per (chat, sender), to the batch's highest seq: a batch of a busy
    // chat would otherwise update its document once per message.
    const sends = new Map<string, { chatId: string; userId: string; seq: number; at: number }>();
    const changes: AnyBulkWriteOperation<MessageDoc>[] = [];
    for (const e of stored) {
      if (e.type === 'message') {
        const k = `${e.chatId} ${e.senderId}`;
        const s = sends.get(k);
        if (!s || s.seq < e.seq) sends.set(k, { chatId: e.chatId, userId: e.senderId, seq: e.seq, at: Date.parse(e.createdAt) });
      } else if (e.type === 'edit') changes.push({ updateOne: edit(e) });
      else if (e.type === 'delete') changes.push({ updateOne: deletion(e) });
    }
    if (sends.size > 0) {
      const moves = [...sends.values()].map((s) => ({ updateOne: pointerMove(s.chatId, s.userId, s.seq, s.at) }));
      await this.chats.bulkWrite(moves, { session });
    }
    // In batch order; the result does not depend on it (each change checks its target's state).
    if (changes.length > 0) await this.messages.bulkWrite(changes, { session });
    // A deleted message's text is gone from history, also from its edits (they keep their
    // place), including an edit that lost the race with the deletion.
    const targets = new Map<string, { chatId: string; seq: number }>();
    for (const e of stored) if (e.type === 'edit' || e.type === 'delete') targets.set(`${e.chatId} ${e.targetSeq}`, { chatId: e.chatId, seq: e.targetSeq });
    for (const { chatId, seq } of targets.values()) {
      if (!(await this.messages.findOne({ chatId, seq, deleted: true }, { session, projection: { _id: 1 } }))) continue;
      await this.messages.updateMany({ chatId, 'envelope.type': 'edit', 'envelope.targetSeq': seq }, { $unset: { 'envelope.text': '' } }, { session, hint: EDITS_INDEX });
    }
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

  async getMessage(chatId: string, seq: number): Promise<StoredMessage | null> {
    const d = await this.messages.findOne({ chatId, seq, 'envelope.type': 'message' }, { projection: { envelope: 1 } });
    return d ? (d.envelope as StoredMessage) : null;
  }

  maxSeq(chatId: string): Promise<number> {
    return highestSeq(this.messages, chatId);
  }

  async recentSends(limit: number): Promise<RecentSend[]> {
    // Ids are UUIDv7, so _id order is time order; $type keeps system events out.
    const docs = await this.messages
      .find({ clientMsgId: { $type: 'string' } }, { sort: { _id: -1 }, limit, projection: { _id: 1, chatId: 1, seq: 1, senderId: 1, clientMsgId: 1 } })
      .toArray();
    return docs.map((d) => ({ chatId: d.chatId, senderId: d.senderId!, clientMsgId: d.clientMsgId!, sent: { id: d._id, seq: d.seq } }));
  }

  // ---- read pointers

  async setReadPointer(chatId: string, userId: string, readSeq: number, at: number): Promise<(ReadPointer & { moved: boolean }) | null> {
    const move = pointerMove(chatId, userId, readSeq, at);
    // The document as it was before this one atomic update tells whether the pointer moved: it
    // did exactly when it was lower (the array filter's condition).
    const before = await this.chats.findOneAndUpdate(move.filter, move.update, {
      arrayFilters: move.arrayFilters, returnDocument: 'before', projection: { members: 1 },
    });
    const was = before?.members.find((m) => m.userId === userId);
    if (!was) return null;
    return below(was.readSeq, readSeq) ? { userId, readSeq, at, moved: true } : { ...pointerOf(was), moved: false };
  }

  async readPointers(chatId: string): Promise<ReadPointer[]> {
    const d = await this.chats.findOne({ _id: chatId }, { projection: { members: 1 } });
    return d ? d.members.map(pointerOf) : [];
  }

  async chatStates(userId: string, chatIds: readonly string[]): Promise<Map<string, ChatState>> {
    const ids = [...new Set(chatIds)];
    const states = new Map<string, ChatState>();
    if (ids.length === 0) return states;
    const docs = await this.chats
      .find({ _id: { $in: ids }, 'members.userId': userId }, { projection: { createdAt: 1, members: { $elemMatch: { userId } } } })
      .toArray();
    const found = new Map(await Promise.all(docs.map(async (d) => {
      const readSeq = pointerOf(d.members[0]!).readSeq;
      const [unread, newest] = await Promise.all([this.unread(d._id, userId, readSeq), this.newest(d._id)]);
      const state: ChatState = { readSeq, unread, lastMessage: newest.message, lastActivityAt: newest.at ?? d.createdAt };
      return [d._id, state] as const;
    })));
    // In the order asked for.
    for (const id of ids) if (found.has(id)) states.set(id, found.get(id)!);
    return states;
  }

  /** Messages of other members above `readSeq`, not deleted: counted in the unread index alone
   * (its keys hold every field the filter reads; no document is fetched). */
  private unread(chatId: string, userId: string, readSeq: number): Promise<number> {
    return this.messages.countDocuments(
      { chatId, 'envelope.type': 'message', seq: { $gt: readSeq }, deleted: { $ne: true }, senderId: { $ne: userId } },
      { hint: CHAT_MESSAGES_INDEX },
    );
  }

  /** A chat's newest message (current state) and the time of its newest envelope of any kind
   * (null when it has none): one read when that envelope is the message. */
  private async newest(chatId: string): Promise<{ message: StoredMessage | null; at: number | null }> {
    const last = await this.messages.findOne({ chatId }, { sort: { seq: -1 }, projection: { envelope: 1 } });
    if (!last) return { message: null, at: null };
    const at = Date.parse(last.envelope.createdAt);
    if (last.envelope.type === 'message') return { message: last.envelope, at };
    const message = await this.messages.findOne(
      { chatId, 'envelope.type': 'message' },
      { sort: { seq: -1 }, projection: { envelope: 1 }, hint: CHAT_MESSAGES_INDEX },
    );
    return { message: message ? (message.envelope as StoredMessage) : null, at };
  }

  async listChatsOfMemberByActivity(userId: string, type: ChatType, page: Page<ActivityKey>): Promise<PageOf<ChatRecord & { lastActivityAt: number }>> {
    // The activity of each of the member's chats is read off its log (the newest entry, one
    // index read through chat_seq), as lastSeq is: nothing kept beside the log to drift from
    // it. So the work grows with the member's chats, not with all chats, and $sort followed by
    // $limit keeps only the page in memory.
    const after = page.after;
    const docs = await this.chats
      .aggregate<ChatDoc & { last: Array<{ seq: number }>; lastActivityAt: number }>([
        { $match: { 'members.userId': userId, type } },
        {
          $lookup: {
            from: 'messages', localField: '_id', foreignField: 'chatId', as: 'last',
            pipeline: [{ $sort: { seq: -1 } }, { $limit: 1 }, { $project: { _id: 0, seq: 1, createdAt: '$envelope.createdAt' } }],
          },
        },
        // Envelope times are ISO strings; as ms, or the chat's creation when it has none.
        { $set: { lastActivityAt: { $ifNull: [{ $toLong: { $toDate: { $first: '$last.createdAt' } } }, '$createdAt'] } } },
        ...(after === undefined ? [] : [{
          $match: { $or: [{ lastActivityAt: { $lt: after.at } }, { lastActivityAt: after.at, number: { $lt: after.number } }] },
        }]),
        { $sort: { lastActivityAt: -1, number: -1 } },
        { $limit: page.limit + 1 },
      ])
      .toArray();
    return pageOf(docs, page.limit, (d) => ({ ...toChat(d, d.last[0]?.seq ?? 0), lastActivityAt: d.lastActivityAt }));
  }

  // ---- search

  async searchMessages(query: string, chatIds: readonly string[], page: { before?: string | undefined; limit: number }): Promise<{ messages: StoredMessage[]; hasMore: boolean }> {
    const tokens = distinctTokens(query);
    if (tokens.length === 0 || chatIds.length === 0) return { messages: [], hasMore: false };
    const filter: Filter<MessageDoc> = { chatId: { $in: [...new Set(chatIds)] }, grams: { $all: tokens } };
    if (page.before !== undefined) {
      if (!(await this.messages.findOne({ _id: page.before }, { projection: { _id: 1 } }))) return { messages: [], hasMore: false };
      filter._id = { $lt: page.before };
    }
    // $all finds the messages holding every bigram of the query, but anywhere in the text and
    // in any order: each candidate's substring is confirmed here. Deleted messages have no
    // grams, so they are never candidates. Newest first by id (UUIDv7: time order), fetched in
    // batches of a page until a page and one more are confirmed (breaking out closes the cursor),
    // or SEARCH_CANDIDATES were looked at (the budget: store.ts).
    const found: StoredMessage[] = [];
    const candidates = this.messages.find(filter, { sort: { _id: -1 }, projection: { envelope: 1 }, hint: SEARCH_INDEX, batchSize: page.limit + 1 });
    let examined = 0;
    let exhausted = false;
    for await (const d of candidates) {
      if (++examined > SEARCH_CANDIDATES) {
        exhausted = true;
        break;
      }
      const m = d.envelope;
      if (m.type === 'message' && 'text' in m && normalizeForSearch(m.text).includes(query)) found.push(m);
      if (found.length > page.limit) break;
    }
    const results = pageOf(found, page.limit);
    return { messages: results.items, hasMore: results.hasMore || (exhausted && found.length > 0) };
  }
}

const CHAT_NUMBER = 'chatNumber';
/** A chat's messages by seq (partial: type message), with what an unread count reads. */
const CHAT_MESSAGES_INDEX = 'chat_messages';
/** A chat's messages by bigram, newest first. */
const SEARCH_INDEX = 'search_grams';
/** A chat's edit entries by their target's seq. */
const EDITS_INDEX = 'message_edits';

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
  // Read pointers, edits and deletions, message search (docs/chat-features.md). Each backfill
  // touches only what lacks its new fields, so a second run, or two processes running it
  // together, change nothing more; and it never undoes what a process of this release wrote
  // meanwhile (a pointer moved, a message edited or deleted).
  async (db) => {
    const chats = db.collection<ChatDoc>('chats');
    const messages = db.collection<MessageDoc>('messages');
    // The members of existing chats have read everything: their pointers start at the chat's
    // highest seq (those that have one keep it).
    await inBatches(chats.find({ members: { $elemMatch: { readSeq: { $exists: false } } } }, { projection: { _id: 1 } }), async (batch) => {
      const ops = await Promise.all(batch.map(async ({ _id }) => {
        const lastSeq = await highestSeq(messages, _id);
        const member = { $mergeObjects: ['$$this', { readSeq: { $ifNull: ['$$this.readSeq', lastSeq] }, readAt: { $ifNull: ['$$this.readAt', null] } }] };
        return { updateOne: { filter: { _id }, update: [{ $set: { members: { $map: { input: '$members', in: member } } } }] } };
      }));
      await chats.bulkWrite(ops, { ordered: false });
    });
    // The search tokens and state of the messages stored before. One edited or deleted
    // meanwhile has its state already (an edit writes grams, a deletion deleted).
    const untouched = { 'envelope.type': 'message', grams: { $exists: false }, deleted: { $ne: true } } as const;
    await inBatches(messages.find(untouched, { projection: { 'envelope.text': 1 } }), (batch) =>
      messages.bulkWrite(batch.map((d) => ({
        updateOne: {
          filter: { _id: d._id, ...untouched },
          update: { $set: { deleted: false, editSeq: 0, grams: distinctTokens(normalizeForSearch((d.envelope as { text?: string }).text ?? '')) } },
        },
      })), { ordered: false }),
    );
    // Built after the backfill, rather than kept up by each of its writes.
    await messages.createIndexes([
      // Unread counts: a count over a chat's messages above a pointer reads the keys only
      // (deleted and senderId are in them). Messages only, so also a chat's newest message.
      { key: { chatId: 1, seq: 1, deleted: 1, senderId: 1 }, name: CHAT_MESSAGES_INDEX, partialFilterExpression: { 'envelope.type': 'message' } },
      // Search: a query's chats, then one of its bigrams, newest first within each.
      { key: { chatId: 1, grams: 1, _id: -1 }, name: SEARCH_INDEX },
      // A message's edits, whose text its deletion removes.
      { key: { chatId: 1, 'envelope.targetSeq': 1 }, name: EDITS_INDEX, partialFilterExpression: { 'envelope.type': 'edit' } },
    ]);
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
  directKey?: string; members: MemberDoc[];
  /** absent in documents written before it existed: 0 there ($inc then makes it 1) */
  membersVersion?: number;
  /** written by earlier releases, which read it; kept so that their nodes still work during
   * an upgrade, never read here */
  lastSeq?: number;
  createdAt: number;
}
/** readSeq and readAt are absent only for a member added by an earlier release during an
 * upgrade: read as 0 and null. */
interface MemberDoc { userId: string; joinedAt: number; readSeq?: number; readAt?: number | null }
interface MessageDoc {
  _id: string; chatId: string; seq: number; senderId: string | null; clientMsgId: string | null; envelope: Envelope;
  /** messages only (MongoStore's doc comment) */
  deleted?: boolean; editSeq?: number; grams?: string[];
}

const toUser = (d: UserDoc): UserRecord => ({
  id: d._id, username: d.username, displayName: d.displayName, passwordHash: d.passwordHash, createdAt: d.createdAt, lastSeenAt: d.lastSeenAt,
});

const toChat = (d: ChatDoc, lastSeq: number): ChatRecord => ({
  id: d._id, number: d.number, type: d.type, name: d.name, visibility: d.visibility, ownerId: d.ownerId,
  memberIds: d.members.map((m) => m.userId), membersVersion: d.membersVersion ?? 0, lastSeq, createdAt: d.createdAt,
});

const toMessages = (page: PageOf<MessageDoc>) => ({ messages: page.items.map((d) => d.envelope), hasMore: page.hasMore });

/** Highest seq stored for a chat, 0 when none: the newest entry of chat_seq. */
async function highestSeq(messages: Collection<MessageDoc>, chatId: string, session?: ClientSession): Promise<number> {
  const d = await messages.findOne({ chatId }, { sort: { seq: -1 }, projection: { seq: 1 }, ...(session ? { session } : {}) });
  return d?.seq ?? 0;
}

/** The search tokens of normalised text, each once: $all needs no repeats, and the array
 * (one index key per element) stays as small as it can. */
const distinctTokens = (normalized: string) => [...new Set(searchTokens(normalized))];

/** The state fields of a message being stored (as given: normally new, not edited). */
function messageState(e: MessageEnvelope | StoredMessage): Pick<MessageDoc, 'deleted' | 'editSeq' | 'grams'> {
  return 'text' in e ? { deleted: false, editSeq: 0, grams: distinctTokens(normalizeForSearch(e.text)) } : { deleted: true, editSeq: 0 };
}

/** An edit of its target: only a message of the chat, not deleted, whose last applied edit is
 * older, so edits committed in any order leave the newest one's text. */
const edit = (e: EditEnvelope) => ({
  filter: { chatId: e.chatId, seq: e.targetSeq, 'envelope.type': 'message', deleted: { $ne: true }, editSeq: { $not: { $gte: e.seq } } },
  update: {
    $set: { 'envelope.text': e.text, 'envelope.editedAt': e.createdAt, editSeq: e.seq, grams: distinctTokens(normalizeForSearch(e.text)) },
  },
} satisfies { filter: Filter<MessageDoc>; update: UpdateFilter<MessageDoc> });

/** A deletion of its target: no text, no edit time, out of the search (no grams) and of the
 * unread counts (deleted). Deleting a deleted message writes nothing. */
const deletion = (e: DeleteEnvelope) => ({
  filter: { chatId: e.chatId, seq: e.targetSeq, 'envelope.type': 'message', deleted: { $ne: true } },
  update: { $set: { deleted: true, 'envelope.deleted': true }, $unset: { 'envelope.text': '', 'envelope.editedAt': '', grams: '' } },
} satisfies { filter: Filter<MessageDoc>; update: UpdateFilter<MessageDoc> });

/** Moves a member's pointer up to `readSeq`, and its time with it. The array filter picks the
 * member only while its pointer is lower (or absent), so the time does not move when the
 * pointer does not; $max states the rule on its own. */
const pointerMove = (chatId: string, userId: string, readSeq: number, at: number) => ({
  filter: { _id: chatId, 'members.userId': userId },
  update: { $max: { 'members.$[m].readSeq': readSeq }, $set: { 'members.$[m].readAt': at } },
  arrayFilters: [{ 'm.userId': userId, 'm.readSeq': { $not: { $gte: readSeq } } }],
} satisfies { filter: Filter<ChatDoc>; update: UpdateFilter<ChatDoc>; arrayFilters: object[] });

/** Whether a stored pointer is below `readSeq`, as pointerMove's array filter decides it. */
const below = (stored: number | undefined, readSeq: number) => stored === undefined || stored < readSeq;

const pointerOf = (m: MemberDoc): ReadPointer => ({ userId: m.userId, readSeq: m.readSeq ?? 0, at: m.readAt ?? null });

/** Documents were fetched with limit + 1: the extra one only tells that another page exists. */
function pageOf<D, T = D>(docs: D[], limit: number, map: (d: D) => T = (d) => d as unknown as T): PageOf<T> {
  return { items: docs.slice(0, limit).map(map), hasMore: docs.length > limit };
}

/** Runs `fn` on the cursor's documents, `size` at a time: a backfill in bounded memory, one
 * bulk write per batch. */
async function inBatches<T>(cursor: FindCursor<T>, fn: (batch: T[]) => Promise<unknown>, size = 1000): Promise<void> {
  let batch: T[] = [];
  for await (const d of cursor) {
    batch.push(d);
    if (batch.length === size) {
      await fn(batch);
      batch = [];
    }
  }
  if (batch.length > 0) await fn(batch);
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
