import type { ControlBus } from './bus.js';
import type { Admission } from './sequencer.js';
import type { Store } from './store/store.js';

/** Store reads at once when every cached chat is read again. */
const RELOAD_CONCURRENCY = 16;

interface Members {
  ids: Set<string>;
  /** ChatRecord.membersVersion of these members */
  version: number;
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

  constructor(
    private readonly store: Store,
    bus: ControlBus,
    private readonly onError: (err: unknown, what: string) => void = () => {},
  ) {
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
    if (cached ? version > cached.version : this.loading.has(chatId)) this.chats.set(chatId, { ids: new Set(memberIds), version });
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
          const members = { ids: new Set(chat.memberIds), version: chat.membersVersion };
          this.chats.set(chatId, members);
          return members;
        }
      })().finally(() => this.loading.delete(chatId));
      this.loading.set(chatId, p);
    }
    return p;
  }
}
