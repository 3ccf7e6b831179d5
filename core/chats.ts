import { AppError, forbidden, groupFull, invalidInput, isOutage, notFound, notMember } from './errors.js';
import { newId } from './ids.js';
import { CHAT_NAME_MAX, MAX_GROUP_MEMBERS, MESSAGE_SEARCH_MAX as SEARCH_MAX, MESSAGE_SEARCH_MIN as SEARCH_MIN, cleanName } from './rules.js';
import type { ActivityKey, ChatRecord, ChatState, ChatType, MessageRange, Page, PageOf, ReadPointer, Store, Visibility } from './store/store.js';
import { normalizeForSearch } from './search-text.js';
import type { ChatEvents } from './chat-events.js';
import type { RateLimiter } from './rate-limit.js';
import type { Envelope, StoredMessage } from './envelope.js';
import { type SendClaims, membersLock } from './send-claims.js';

export type { ChatRecord };

/**
 * Chat rules: who may create, see, join and leave what. Every method takes the caller's id
 * and checks permission before touching the store; store methods are atomic, so a refused
 * request leaves nothing behind.
 */
export class Chats {
  constructor(
    private readonly store: Store,
    private readonly events: ChatEvents,
    /** Claims of `members:<chatId>` make a chat's membership changes one at a time (below). */
    private readonly claims: SendClaims,
    /** Message searches per user (config.limits.searchBurst, searchRate). */
    private readonly searchLimiter: RateLimiter,
  ) {}

  /**
   * Runs a change of a chat's members, from the store's write to its system messages and
   * announcement, while no other change of that chat runs, on any node: so the order of the
   * changes in the store (their members versions) is the order of their system messages in the
   * chat's history, and a send numbered against one version sits between the right system
   * messages (docs/architecture.md, "Membership changes and sends in flight").
   */
  private async exclusively<T>(chatId: string, change: () => Promise<T>): Promise<T> {
    const claim = await this.claims.claim(membersLock(chatId)).catch((err: unknown) => {
      // An unreachable Redis is answered as any outage is; this is the wait running out.
      if (isOutage(err)) throw err;
      throw Object.assign(new AppError('unavailable', "another change of this chat's members is still in progress; retry shortly"), { cause: err });
    });
    // Never completed, only released: a completed claim would hold the key for good.
    if (!claim.claimed) throw new Error(`the members lock of chat ${chatId} was completed`);
    try {
      return await change();
    } finally {
      await claim.hold.release().catch(() => {}); // if Redis is gone, its TTL frees it
    }
  }

  /** One direct chat per pair: returns the existing one when there is one. */
  async openDirect(callerId: string, otherId: string): Promise<{ chat: ChatRecord; created: boolean }> {
    if (otherId === callerId) throw invalidInput('a direct chat needs another user');
    await this.requireUsers([otherId]);
    const id = newId();
    return this.exclusively(id, async () => {
      const made = await this.store.createDirectChat({ id, userIds: [callerId, otherId], createdAt: Date.now() });
      if (!made.created) return made;
      return { chat: after(made.chat, await this.events.chatCreated(made.chat, callerId)), created: true };
    });
  }

  async createGroup(callerId: string, input: { name: string; memberIds: readonly string[]; visibility?: Visibility | undefined }): Promise<ChatRecord> {
    const name = cleanName(input.name, CHAT_NAME_MAX);
    if (name === null) throw invalidInput(`name must be 1-${CHAT_NAME_MAX} characters, not only spaces, without control characters`);
    const memberIds = [...new Set([callerId, ...input.memberIds])];
    if (memberIds.length > MAX_GROUP_MEMBERS) throw groupFull(MAX_GROUP_MEMBERS);
    await this.requireUsers(memberIds);
    const id = newId();
    return this.exclusively(id, async () => {
      const made = await this.store.createGroupChat({ id, name, visibility: input.visibility ?? 'private', ownerId: callerId, memberIds, createdAt: Date.now() });
      return after(made, await this.events.chatCreated(made, callerId));
    });
  }

  /** Members see any chat; everyone sees public groups. */
  async getByNumber(callerId: string, number: number): Promise<ChatRecord> {
    const chat = await this.store.getChatByNumber(number);
    if (!chat) throw notFound(`no chat number ${number}`);
    if (!isPublic(chat) && !chat.memberIds.includes(callerId)) throw notMember();
    return chat;
  }

  /** A chat by number for one of its members only (also of a public group). */
  async ofMember(callerId: string, number: number): Promise<ChatRecord> {
    const chat = await this.getByNumber(callerId, number);
    if (!chat.memberIds.includes(callerId)) throw notMember();
    return chat;
  }

  /** The caller's figures of each of the chats it is a member of: read pointer, unread count,
   * last message, last activity (Store.chatStates). */
  states(callerId: string, chats: readonly ChatRecord[]): Promise<Map<string, ChatState>> {
    return this.store.chatStates(callerId, chats.filter((c) => c.memberIds.includes(callerId)).map((c) => c.id));
  }

  /** The members' read pointers, for members. */
  async receipts(callerId: string, number: number): Promise<ReadPointer[]> {
    return this.store.readPointers((await this.ofMember(callerId, number)).id);
  }

  /** A user's own direct or group chats, newest activity first; nobody may list another user's. */
  async listByActivity(callerId: string, userId: string, type: ChatType, page: Page<ActivityKey>): Promise<PageOf<ChatRecord & { lastActivityAt: number }>> {
    if (userId !== callerId) throw forbidden('you can only list your own chats');
    return this.store.listChatsOfMemberByActivity(callerId, type, page);
  }

  /**
   * Messages of the caller's chats (or of `chatId`, for its members) containing `q` as literal
   * text, newest first (docs/chat-features.md, "Search").
   */
  async search(callerId: string, query: { q: string; chatId?: string | undefined; before?: string | undefined; limit: number }): Promise<{ messages: StoredMessage[]; hasMore: boolean }> {
    const raw = [...query.q].length;
    const q = normalizeForSearch(query.q);
    if (raw < SEARCH_MIN || raw > SEARCH_MAX || [...q].length < SEARCH_MIN) throw invalidInput(`q must be ${SEARCH_MIN}-${SEARCH_MAX} characters`);
    // Per user, so that one user's searches cannot take the search thread from everyone else's.
    if (!(await this.searchLimiter.take(callerId))) {
      throw new AppError('rate_limited', 'too many searches; retry later', { retryAfter: await this.searchLimiter.wait(callerId) });
    }
    let chatIds: string[];
    if (query.chatId !== undefined) {
      const chat = await this.store.getChat(query.chatId);
      if (!chat) throw notFound('chat not found');
      if (!chat.memberIds.includes(callerId)) throw notMember();
      chatIds = [chat.id];
    } else {
      chatIds = await this.store.chatIdsOfMember(callerId);
    }
    return this.store.searchMessages(q, chatIds, { before: query.before, limit: query.limit });
  }

  /** A user's own direct or group chats; nobody may list another user's. */
  async listOf(callerId: string, userId: string, type: ChatType, page: Page<number>): Promise<PageOf<ChatRecord>> {
    if (userId !== callerId) throw forbidden('you can only list your own chats');
    return this.store.listChatsOfMember(callerId, type, page);
  }

  listPublic(page: Page<number>): Promise<PageOf<ChatRecord>> {
    return this.store.listPublicGroups(page);
  }

  /** The owner adds anyone; anyone else may add only itself, and only to a public group. */
  async addMembers(callerId: string, number: number, userIds: readonly string[]): Promise<{ chat: ChatRecord; added: string[] }> {
    const chat = await this.getByNumber(callerId, number);
    if (chat.type === 'direct') throw forbidden('direct chats have fixed members');
    const joiningSelf = userIds.length > 0 && userIds.every((id) => id === callerId);
    // getByNumber has already refused non-members of private chats (not_member).
    if (chat.ownerId !== callerId && !joiningSelf) throw forbidden('only the owner can add other members');
    await this.requireUsers(userIds);
    return this.exclusively(chat.id, async () => {
      const changed = await this.store.addMembers(chat.id, userIds, MAX_GROUP_MEMBERS, Date.now());
      return { chat: after(changed.chat, await this.events.membersAdded(changed.chat, changed.added, callerId)), added: changed.added };
    });
  }

  /** A member leaves, or the owner removes a member. */
  async removeMember(callerId: string, number: number, userId: string): Promise<void> {
    const chat = await this.getByNumber(callerId, number);
    if (chat.type === 'direct') throw forbidden('direct chats have fixed members');
    if (userId !== callerId && chat.ownerId !== callerId) throw forbidden('only the owner can remove other members');
    if (!chat.memberIds.includes(userId)) throw notFound('that user is not a member of this chat');
    const result = await this.exclusively(chat.id, async () => {
      const changed = await this.store.removeMember(chat.id, userId);
      if (changed?.removed) await this.events.memberRemoved(changed.chat, userId, callerId);
      return changed;
    });
    if (!result) throw notFound(`no chat number ${number}`);
  }

  /** History is for current members only. */
  async history(callerId: string, chatId: string, range: MessageRange): Promise<{ messages: Envelope[]; hasMore: boolean }> {
    const chat = await this.store.getChat(chatId);
    if (!chat) throw notFound('chat not found');
    if (!chat.memberIds.includes(callerId)) throw notMember();
    if (range.after !== undefined && range.before !== undefined && range.after >= range.before) {
      throw invalidInput('after must be smaller than before');
    }
    return this.store.listMessages(chatId, range);
  }

  private async requireUsers(ids: readonly string[]): Promise<void> {
    const unique = [...new Set(ids)];
    const found = new Set((await this.store.getUsers(unique)).map((u) => u.id));
    const missing = unique.filter((id) => !found.has(id));
    if (missing.length > 0) throw notFound(`unknown user id${missing.length > 1 ? 's' : ''}: ${missing.slice(0, 5).join(', ')}`);
  }
}

/** The chat as its change left it: lastSeq counts the change's system messages. */
const after = (chat: ChatRecord, lastSeq: number): ChatRecord => (lastSeq > chat.lastSeq ? { ...chat, lastSeq } : chat);

const isPublic = (chat: ChatRecord) => chat.type === 'group' && chat.visibility === 'public';
