import type { Envelope, SentRef, StoredMessage } from '../envelope.js';

/**
 * The cost budget of one message search (`Store.searchMessages`): the candidates it looks at, so
 * that one query's work has a bound whatever the size of the data (worst case, q = 64 × "a"
 * against 1,000 candidates of 1,000 × "a": 40-90 ms on SQLite's search thread, measured on a
 * shared 2-core machine).
 */
export const SEARCH_CANDIDATES = 1000;

/**
 * The store seam: accounts, sessions, chats, members and the message log.
 *
 * Implementations: `sqlite.ts` (embedded default, one file shared safely by several processes
 * on one machine) and `mongo.ts` (MongoDB). Every implementation passes the contract suite in
 * `test/contracts/store.contract.ts`; the guarantees below are what that suite checks.
 *
 * General rules
 * - Times are milliseconds since the epoch. Ids are supplied by the caller (core/ids.ts).
 * - Methods that can fail on a business rule throw an AppError (core/errors.ts) with the code
 *   named on the method, and leave no partial state: each mutating method is atomic.
 * - Pages are keyset pages: `after` is the sort key of the last item already seen, `limit` the
 *   page size; `hasMore` says whether another page exists.
 */
export interface Store {
  /** Cheap round trip proving the store answers (for /readyz). */
  ping(): Promise<void>;
  close(): Promise<void>;

  // ---- users -----------------------------------------------------------------------------
  /** `username` is stored as given and must already be lower-cased by the caller; it is
   * unique. Throws `username_taken` when it exists. */
  createUser(user: NewUser): Promise<UserRecord>;
  getUser(id: string): Promise<UserRecord | null>;
  getUserByUsername(username: string): Promise<UserRecord | null>;
  /** The users among `ids` that exist, in any order; unknown ids are skipped. */
  getUsers(ids: readonly string[]): Promise<UserRecord[]>;
  /** Users whose username or display name contains `query` as literal text, compared after
   * Unicode lower-casing (no pattern syntax of any kind). Sorted by username; `after` is a
   * username. */
  searchUsers(query: string, page: Page<string>): Promise<PageOf<UserRecord>>;
  /** The users among `ids` that exist, each once, sorted by username; `after` is a username.
   * Unknown ids are skipped. Filtered, ordered and cut in the store, so that a caller with many
   * ids (the online list: every id presence knows) never gets more than the page. */
  listUsersAmong(ids: readonly string[], page: Page<string>): Promise<PageOf<UserRecord>>;
  /** Ids of the users who share at least one chat with `userId` (its co-members), each once, in
   * any order; never `userId` itself. With `among`, only those among it. Read from `userId`'s
   * chats, so the answer is bounded by their members (chats × MAX_GROUP_MEMBERS) however many
   * users exist or `among` holds. Whose presence a user may see (docs/security.md). */
  coMemberIds(userId: string, among?: readonly string[]): Promise<string[]>;
  /** Resolves once recorded. Calls made together may be written together; of one user's
   * calls, the last one made wins. */
  setLastSeen(userId: string, at: number): Promise<void>;

  // ---- sessions (one per login; revoked on logout) ----------------------------------------
  createSession(session: SessionRecord): Promise<void>;
  getSession(id: string): Promise<SessionRecord | null>;
  /** Marks the session revoked. Returns false when it does not exist or was already revoked. */
  revokeSession(id: string, at: number): Promise<boolean>;
  /** Forgets sessions that expired before `now`; returns how many. */
  deleteExpiredSessions(now: number): Promise<number>;

  // ---- chats -----------------------------------------------------------------------------
  /** Returns the one direct chat of the pair {a, b}, creating it with `chat.id` if none
   * exists. Exactly one chat per unordered pair, also under concurrent calls from several
   * processes. The new chat gets the next chat number. */
  createDirectChat(chat: NewDirectChat): Promise<{ chat: ChatRecord; created: boolean }>;
  /** Creates a group whose members are `memberIds` (owner first, no duplicates). The chat
   * number is the next integer after the highest one in use, assigned atomically: no two
   * chats share a number and concurrent creations leave no holes. */
  createGroupChat(chat: NewGroupChat): Promise<ChatRecord>;
  getChat(id: string): Promise<ChatRecord | null>;
  getChatByNumber(number: number): Promise<ChatRecord | null>;
  /** The ids of every chat `userId` is a member of, in any order. */
  chatIdsOfMember(userId: string): Promise<string[]>;
  /** Chats of `type` that `userId` is a member of, by number; `after` is a chat number. */
  listChatsOfMember(userId: string, type: ChatType, page: Page<number>): Promise<PageOf<ChatRecord>>;
  /** Public groups by number; `after` is a chat number. */
  listPublicGroups(page: Page<number>): Promise<PageOf<ChatRecord>>;
  /** Adds the users not yet members, atomically. Throws `group_full` (adding nobody) when the
   * member count would exceed `maxMembers`, also under concurrent calls; `not_found` when the
   * chat does not exist. Returns the chat after the change and the ids actually added. */
  addMembers(chatId: string, userIds: readonly string[], maxMembers: number, at: number): Promise<{ chat: ChatRecord; added: string[] }>;
  /** Removes a member. If it owned the chat, ownership passes to the longest-standing
   * remaining member (or to nobody when none is left). Returns null when the chat does not
   * exist; `removed` is false when the user was not a member. */
  removeMember(chatId: string, userId: string): Promise<{ chat: ChatRecord; removed: boolean } | null>;

  // ---- message log -----------------------------------------------------------------------
  /** Appends envelopes in one atomic write and says, in order, what became of each: stored;
   * present (that very envelope was stored before: a redelivered batch changes nothing); or
   * skipped, nothing written for it, because its (chatId, seq) holds another message or its
   * idempotency key (chatId, senderId, clientMsgId) is another message's (then which one).
   * So one key never has two messages. The whole batch fails for a chat that does not exist.
   * The chat's lastSeq is then the highest seq stored.
   * Besides storing it, a stored envelope has effects, in the same atomic write:
   * - a message moves its sender's read pointer up to its seq, and is indexed for search;
   * - an edit changes its target (a message of the chat at `targetSeq`) to the edit's text, with
   *   `editedAt` = the edit's createdAt, and re-indexes it; only if the target is not deleted and
   *   no edit with a higher seq was applied to it already;
   * - a delete marks its target deleted (`deleted: true`, no text, no editedAt), takes it out of
   *   the search index and the unread counts, and removes the text of the target's edit
   *   events (which stay in the log).
   * An edit or delete whose target is missing is stored and changes nothing. */
  appendMessages(envelopes: readonly Envelope[]): Promise<Appended[]>;
  /** Envelopes of a chat ascending by seq, strictly between `after` and `before` when given.
   * Without `after`, the newest `limit` envelopes (still ascending) are returned, and
   * `hasMore` says whether older ones exist; with `after`, the oldest `limit` after it, and
   * `hasMore` says whether newer ones exist. */
  listMessages(chatId: string, range: MessageRange): Promise<{ messages: Envelope[]; hasMore: boolean }>;
  /** The message (type `message`) at `seq` of the chat in its current state, or null when the
   * seq holds nothing or another kind of envelope. */
  getMessage(chatId: string, seq: number): Promise<StoredMessage | null>;
  /** Highest seq stored for the chat, 0 when none (seeds the sequencer). */
  maxSeq(chatId: string): Promise<number>;
  /** The idempotency keys of the newest `limit` messages that have one, newest first (seeds
   * a process's send claims at start, so that a retry across a restart is known). */
  recentSends(limit: number): Promise<RecentSend[]>;

  // ---- read pointers (docs/chat-features.md) ---------------------------------------------
  // A member's pointer starts at 0 for the members a chat is created with, and at the chat's
  // highest stored seq for a member added later. `appendMessages` moves a message's sender's
  // pointer to its seq (never back) in the same atomic write.
  /** Moves the member's pointer to `readSeq` if that is higher, recording `at`. Returns the
   * pointer after the call (unchanged, with its own `at`, when it was already at or past
   * `readSeq`; `moved` says which), or null when the user is not a member. */
  setReadPointer(chatId: string, userId: string, readSeq: number, at: number): Promise<(ReadPointer & { moved: boolean }) | null>;
  /** Every member's pointer, in join order. `at` is null for a pointer never moved by a
   * receipt or a send. */
  readPointers(chatId: string): Promise<ReadPointer[]>;
  /** For each of `chatIds` of which `userId` is a member: its pointer, unread count (messages of
   * other members above the pointer, not deleted), newest message (current state) and the
   * time of its newest envelope of any kind (the chat's creation time when it has none).
   * Chats it is not a member of, and unknown ids, are left out. */
  chatStates(userId: string, chatIds: readonly string[]): Promise<Map<string, ChatState>>;
  /** Chats of `type` that `userId` is a member of, newest activity first (ties: higher number
   * first); `after` is the last chat seen. */
  listChatsOfMemberByActivity(userId: string, type: ChatType, page: Page<ActivityKey>): Promise<PageOf<ChatRecord & { lastActivityAt: number }>>;

  // ---- search (docs/chat-features.md, "Search") ------------------------------------------
  /** Messages (not deleted, current text) of `chatIds` whose text, normalised by
   * `normalizeForSearch`, contains `query` (already normalised, at least 2 code points) as a
   * substring; newest first (the order the store received them). `before` is a message id
   * (of the last result already seen: results older than it). Indexed: never a scan of the
   * log. An unknown `before` id gives an empty page. A call looks at no more than
   * SEARCH_CANDIDATES candidates (messages the index offers for the query; the SQLite index is
   * not per chat, so there they include other chats' messages); when they run out first, the page holds what was found among them, and
   * `hasMore` is true if that is anything (the next page goes on from its last result), false if
   * not (the search ends there). */
  searchMessages(query: string, chatIds: readonly string[], page: { before?: string | undefined; limit: number }): Promise<{ messages: StoredMessage[]; hasMore: boolean }>;
}

export interface ReadPointer {
  userId: string;
  readSeq: number;
  /** ms; null when never moved */
  at: number | null;
}

export interface ChatState {
  readSeq: number;
  unread: number;
  lastMessage: StoredMessage | null;
  /** ms */
  lastActivityAt: number;
}

/** Keyset of the activity order. */
export interface ActivityKey {
  at: number;
  number: number;
}

/** What became of an envelope given to `appendMessages`. */
export type Appended = 'stored' | 'present' | { seqHeldBy: string } | { keyHeldBy: SentRef };

export interface RecentSend {
  chatId: string;
  senderId: string;
  clientMsgId: string;
  sent: SentRef;
}

export type ChatType = 'direct' | 'group';
export type Visibility = 'public' | 'private';

export interface NewUser {
  id: string;
  username: string;
  displayName: string;
  passwordHash: string;
  createdAt: number;
}

export interface UserRecord extends NewUser {
  lastSeenAt: number | null;
}

export interface SessionRecord {
  id: string;
  userId: string;
  createdAt: number;
  expiresAt: number;
  revokedAt: number | null;
}

export interface ChatRecord {
  id: string;
  number: number;
  type: ChatType;
  /** null for direct chats */
  name: string | null;
  visibility: Visibility;
  /** null for direct chats, and for a group whose last member left */
  ownerId: string | null;
  /** in the order they joined */
  memberIds: string[];
  /** Counts the changes of `memberIds`: raised by one, in the same atomic step, by every change
   * that adds or removes someone (creation makes it 1), so a record with a higher version
   * always shows a later membership. Caches across nodes compare it (core/membership.ts). */
  membersVersion: number;
  lastSeq: number;
  createdAt: number;
}

export interface NewDirectChat {
  id: string;
  userIds: readonly [string, string];
  createdAt: number;
}

export interface NewGroupChat {
  id: string;
  name: string;
  visibility: Visibility;
  ownerId: string;
  memberIds: readonly string[];
  createdAt: number;
}

export interface Page<K> {
  after?: K | undefined;
  limit: number;
}

export interface PageOf<T> {
  items: T[];
  hasMore: boolean;
}

export interface MessageRange {
  after?: number | undefined;
  before?: number | undefined;
  limit: number;
}
