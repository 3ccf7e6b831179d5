import type { ControlBus } from './bus.js';
import type { Admission } from './sequencer.js';
import { MEMBERSHIP_CACHE_CHATS } from './rules.js';
import type { Store } from './store/store.js';

/** Store reads at once when every cached chat is read again. */
const RELOAD_CONCURRENCY = 16;
/** A chat read this recently is never evicted: a subscription being set up may rely on it
 * before its connection counts as connected here. */
const KEEP_LOADED_MS = 60_000;

interface Members {
  ids: Set<string>;
  /** ChatRecord.membersVersion of these members */
  version: number;
  /** When it was read from the store or learnt from an event (ms). */
  at: number;
}

export interface MembershipOptions {
  onError: (err: unknown, what: string) => void;
  /** Whether a user has a connection to this node. A chat with such a member is never evicted:
   * the member may be subscribed to it, and deliveries ask the cache. */
  connectedHere: (userId: string) => boolean;
  /** Chats kept when more are cached, besides those that cannot be evicted (default
   * MEMBERSHIP_CACHE_CHATS). */
  capacity?: number;
  /** A chat read this recently is never evicted (default KEEP_LOADED_MS). */
  keepLoadedMs?: number;
}

/**
 * Who is in which chat, cached in memory so the per-recipient path (authorizeForward) asks a
 * Set, not the store. A chat is loaded on first use (subscribe or publish) and then kept
 * current by the control bus, so a removal takes effect on every node at once.
 *
 * Every load and every membership event carries the chat's members version, and the cache keeps
 * the newest: a load that raced an event, or events that arrive out of order from two nodes,
 * never bring back an older membership. When the bus may have lost events (`bus.resumed`),
 * every cached chat is read again; until then its deliveries are refused (none can have
 * arrived over a lost connection anyway).
 */
export class Membership {
  private readonly chats = new Map<string, Members>();
  private readonly loading = new Map<string, Promise<Members | null>>();
  /** Raised by `bus.resumed`: a load begun before it may miss a change made during the loss. */
  private epoch = 0;
  private readonly unsubscribe: () => void;
  private readonly onError: MembershipOptions['onError'];
  private readonly connectedHere: MembershipOptions['connectedHere'];
  private readonly capacity: number;
  private readonly keepLoadedMs: number;
  /** The size past which the next eviction runs (above capacity while most chats are in use). */
  private evictAt: number;

  constructor(
    private readonly store: Store,
    bus: ControlBus,
    options: MembershipOptions,
  ) {
    this.onError = options.onError;
    this.connectedHere = options.connectedHere;
    this.capacity = options.capacity ?? MEMBERSHIP_CACHE_CHATS;
    this.keepLoadedMs = options.keepLoadedMs ?? KEEP_LOADED_MS;
    this.evictAt = this.capacity;
    this.unsubscribe = bus.subscribe((e) => {
      if (e.type === 'member.added' || e.type === 'member.removed') this.learn(e.chatId, e.memberIds, e.version);
      else if (e.type === 'bus.resumed') this.reloadAll();
    });
  }

  /** Synchronous check for hot paths: false for a chat not loaded yet. */
  isMember(chatId: string, userId: string): boolean {
    return this.chats.get(chatId)?.ids.has(userId) ?? false;
  }

  /** The chat's members version as cached here and whether `userId` is a member at it; null
   * when the chat is not cached. */
  admit(chatId: string, userId: string): Admission | null {
    const members = this.chats.get(chatId);
    return members ? { version: members.version, member: members.ids.has(userId) } : null;
  }

  /** Loads the chat if needed; false for unknown chats. */
  async check(chatId: string, userId: string): Promise<boolean> {
    const members = this.chats.get(chatId) ?? (await this.load(chatId));
    return members?.ids.has(userId) ?? false;
  }

  /** Reads the chat from the store again: a newer membership was announced elsewhere. */
  async refresh(chatId: string): Promise<void> {
    await this.load(chatId);
  }

  close() {
    this.unsubscribe();
  }

  /** Keeps the newer of what is cached and what an event says; an event about a chat not
   * cached here is dropped, unless a load of it is under way (the load may have read older). */
  private learn(chatId: string, memberIds: readonly string[], version: number) {
    const cached = this.chats.get(chatId);
    if (cached ? version > cached.version : this.loading.has(chatId)) this.keep(chatId, { ids: new Set(memberIds), version, at: Date.now() });
  }

  private keep(chatId: string, members: Members) {
    this.chats.set(chatId, members);
    if (this.chats.size > this.evictAt) this.evict();
  }

  /**
   * Drops the chats read longest ago down to 90 % of the capacity, skipping those read in the
   * last minute and those with a member connected here (moved to the newest end). A dropped
   * chat is read again on its next use. When most chats cannot be dropped, the next eviction
   * waits until a tenth of the capacity more is cached, so inserts stay cheap.
   */
  private evict() {
    const now = Date.now();
    let over = this.chats.size - Math.floor(this.capacity * 0.9);
    let left = this.chats.size;
    for (const [chatId, members] of this.chats) {
      if (over <= 0 || left-- <= 0) break;
      this.chats.delete(chatId);
      if (now - members.at < this.keepLoadedMs || [...members.ids].some(this.connectedHere)) this.chats.set(chatId, members);
      else over--;
    }
    this.evictAt = Math.max(this.capacity, this.chats.size + Math.ceil(this.capacity / 10));
  }

  /** Chats cached (for tests and metrics). */
  get size(): number {
    return this.chats.size;
  }

  /** Reads every cached chat again, RELOAD_CONCURRENCY at a time (a node may have many). */
  private reloadAll() {
    this.epoch++;
    const chatIds = [...this.chats.keys()];
    this.chats.clear();
    const next = async () => {
      for (let chatId = chatIds.pop(); chatId !== undefined; chatId = chatIds.pop()) {
        await this.load(chatId).catch((err: unknown) => this.onError(err, `reloading the members of chat ${chatId}`));
      }
    };
    for (let i = 0; i < RELOAD_CONCURRENCY; i++) void next();
  }

  private load(chatId: string): Promise<Members | null> {
    let p = this.loading.get(chatId);
    if (!p) {
      p = (async () => {
        for (;;) {
          const epoch = this.epoch;
          const chat = await this.store.getChat(chatId);
          if (epoch !== this.epoch) continue; // read across a loss of the bus: read again
          if (!chat) return null;
          const cached = this.chats.get(chatId);
          if (cached && cached.version >= chat.membersVersion) return cached;
          const members = { ids: new Set(chat.memberIds), version: chat.membersVersion, at: Date.now() };
          this.keep(chatId, members);
          return members;
        }
      })().finally(() => this.loading.delete(chatId));
      this.loading.set(chatId, p);
    }
    return p;
  }
}
