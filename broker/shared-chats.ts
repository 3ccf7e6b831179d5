import type { Client } from 'aedes';
import type { ControlBus } from '../core/bus.js';
import type { Membership } from '../core/membership.js';
import type { Store } from '../core/store/store.js';

/** Store reads at once when the chat lists are read again after a loss of the bus. */
const RELOAD_CONCURRENCY = 16;

interface ChatsOf {
  /** The user's chats: read at its first connection, then grown by the bus. It may still hold
   * a chat the user has left (an event raced the read): `share` asks the membership cache,
   * which is current, so such a chat only costs its entry. */
  chats: Set<string>;
  /** Connections of the user that opened it. */
  holders: number;
  ready: Promise<void>;
}

/**
 * Who shares a chat with whom, for the users connected to this node: presence is delivered only
 * to the user itself and to its co-members (authorizeForward, synchronous). Each connected user
 * has the ids of its chats; whether another user is in one of them is asked of the membership
 * cache, which the bus keeps current, so an added member's presence starts flowing and a
 * removed one's stops at the change. A user's entry lives while it has a connection here.
 */
export class SharedChats {
  private readonly ofUser = new Map<string, ChatsOf>();
  private readonly opened = new WeakMap<Client, string>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly store: Store,
    private readonly membership: Membership,
    bus: ControlBus,
    private readonly onError: (err: unknown, what: string) => void,
  ) {
    // Subscribed after the membership cache (built first), so it has learnt each change.
    this.unsubscribe = bus.subscribe((e) => {
      if (e.type === 'member.added') {
        for (const userId of e.userIds) {
          const entry = this.ofUser.get(userId);
          if (!entry) continue;
          entry.chats.add(e.chatId);
          // The cache drops news of a chat it does not hold: read it (a new chat, say).
          this.membership.check(e.chatId, userId).catch((err: unknown) => this.onError(err, `reading the members of chat ${e.chatId}`));
        }
      } else if (e.type === 'member.removed') {
        const entry = this.ofUser.get(e.userId);
        if (entry && !this.membership.isMember(e.chatId, e.userId)) entry.chats.delete(e.chatId);
      } else if (e.type === 'bus.resumed') {
        this.reloadAll(); // additions may have been missed
      }
    });
  }

  /**
   * Before the connection is accepted: its user's chats are known, and their members cached,
   * so that the retained presence sent at its first SUBSCRIBE is filtered right. Throws when
   * the store cannot be read (the connection is then refused).
   */
  async open(client: Client, userId: string): Promise<void> {
    let entry = this.ofUser.get(userId);
    if (!entry) {
      const created: ChatsOf = { chats: new Set(), holders: 0, ready: Promise.resolve() };
      created.ready = this.read(userId, created);
      this.ofUser.set(userId, created);
      // Failed before anyone held it: dropped, so the next connection reads again.
      created.ready.catch(() => created.holders === 0 && this.ofUser.get(userId) === created && this.ofUser.delete(userId));
      entry = created;
    }
    await entry.ready;
    entry.holders++;
    this.opened.set(client, userId);
  }

  /** The connection has gone. Idempotent. */
  close(client: Client) {
    const userId = this.opened.get(client);
    if (userId === undefined) return;
    this.opened.delete(client);
    const entry = this.ofUser.get(userId);
    if (entry && --entry.holders === 0) this.ofUser.delete(userId);
  }

  /** Whether `otherId`'s presence may reach `userId`: itself, or a member of a chat with it. */
  share(userId: string, otherId: string): boolean {
    if (userId === otherId) return true;
    const entry = this.ofUser.get(userId);
    if (!entry) return false;
    for (const chatId of entry.chats) if (this.membership.isMember(chatId, otherId) && this.membership.isMember(chatId, userId)) return true;
    return false;
  }

  /** Users with an entry (a metric: 0 once every connection has gone). */
  get users(): number {
    return this.ofUser.size;
  }

  /** Stops following the bus (the broker is closing). */
  stop() {
    this.unsubscribe();
  }

  private async read(userId: string, entry: ChatsOf): Promise<void> {
    const chatIds = await this.store.chatIdsOfMember(userId);
    for (const chatId of chatIds) entry.chats.add(chatId);
    await Promise.all(chatIds.map((chatId) => this.membership.check(chatId, userId)));
  }

  private reloadAll() {
    const users = [...this.ofUser.entries()];
    const next = async () => {
      for (let item = users.pop(); item !== undefined; item = users.pop()) {
        const [userId, entry] = item;
        await this.read(userId, entry).catch((err: unknown) => this.onError(err, `reading the chats of user ${userId}`));
      }
    };
    for (let i = 0; i < RELOAD_CONCURRENCY; i++) void next();
  }
}
