import type { ControlBus } from './bus.js';
import type { Store } from './store/store.js';

/**
 * Who is in which chat, cached in memory so the per-recipient path (authorizeForward) asks a
 * Set, not the store. A chat is loaded on first use (subscribe or publish) and then kept
 * current by the control bus, so a removal takes effect on every node at once.
 */
export class Membership {
  private readonly members = new Map<string, Set<string>>();
  private readonly loading = new Map<string, Promise<Set<string> | null>>();
  /** Bumped by every membership event, so a load that raced an event is redone. */
  private readonly versions = new Map<string, number>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly store: Store,
    bus: ControlBus,
  ) {
    this.unsubscribe = bus.subscribe((e) => {
      if (e.type === 'member.added') this.apply(e.chatId, (set) => e.userIds.forEach((u) => set.add(u)));
      else if (e.type === 'member.removed') this.apply(e.chatId, (set) => set.delete(e.userId));
    });
  }

  /** Synchronous check for hot paths: false for a chat not loaded yet. */
  isMember(chatId: string, userId: string): boolean {
    return this.members.get(chatId)?.has(userId) ?? false;
  }

  /** Loads the chat if needed; false for unknown chats. */
  async check(chatId: string, userId: string): Promise<boolean> {
    const set = this.members.get(chatId) ?? (await this.load(chatId));
    return set?.has(userId) ?? false;
  }

  close() {
    this.unsubscribe();
  }

  private apply(chatId: string, change: (set: Set<string>) => void) {
    this.versions.set(chatId, (this.versions.get(chatId) ?? 0) + 1);
    const set = this.members.get(chatId);
    if (set) change(set);
  }

  private load(chatId: string): Promise<Set<string> | null> {
    let p = this.loading.get(chatId);
    if (!p) {
      p = (async () => {
        for (;;) {
          const version = this.versions.get(chatId) ?? 0;
          const chat = await this.store.getChat(chatId);
          if ((this.versions.get(chatId) ?? 0) !== version) continue; // an event raced the read
          if (!chat) return null;
          const set = new Set(chat.memberIds);
          this.members.set(chatId, set);
          return set;
        }
      })().finally(() => this.loading.delete(chatId));
      this.loading.set(chatId, p);
    }
    return p;
  }
}
