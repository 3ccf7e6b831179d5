import type { Membership } from './membership.js';
import type { Outbox } from './outbox.js';
import type { Sequencer } from './sequencer.js';
import type { ReadPointer, Store } from './store/store.js';
import type { Throttle } from './throttle.js';

/** A user's receipts in a chat are delivered at most this often (the latest wins). */
export const RECEIPT_PERIOD_MS = 1000;

/**
 * Read pointers (docs/chat-features.md): moved by receipts over MQTT and REST, announced to the
 * chat's members at most once per user, chat and second, across every node.
 *
 * Coalescing: the first move of a period is announced at once and claims the period (the
 * throttle seam: in Redis when scaled out). A move within a claimed period schedules one
 * announcement on this node for the period's end, which reads the pointer then: so the latest
 * pointer is announced, once, whichever node it was moved on.
 */
export class Receipts {
  /** Announcements scheduled for the end of a period, by `chatId/userId`. */
  private readonly trailing = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly deps: {
      store: Store;
      sequencer: Sequencer;
      membership: Membership;
      throttle: Throttle;
      outbox: Outbox;
      onError: (err: unknown, what: string) => void;
    },
  ) {}

  /**
   * Moves the member's pointer forward to `readSeq`, lowered to the chat's last seq (as the
   * sequencer knows it: the store may lag live delivery). Resolves with the pointer after the
   * move, durable, or null when the user is not a member.
   */
  async read(userId: string, chatId: string, readSeq: number): Promise<ReadPointer | null> {
    // The cached check first: the sequencer keeps a counter for every chat it is asked about.
    if (!(await this.deps.membership.check(chatId, userId))) return null;
    const last = await this.deps.sequencer.current(chatId);
    const pointer = await this.deps.store.setReadPointer(chatId, userId, Math.min(readSeq, last), Date.now());
    if (!pointer) return null;
    if (pointer.moved) this.announce(chatId, userId);
    return { userId, readSeq: pointer.readSeq, at: pointer.at };
  }

  private announce(chatId: string, userId: string) {
    const key = `${chatId}/${userId}`;
    if (this.trailing.has(key) || this.closed) return; // the scheduled one will read the latest
    this.deps.throttle.claim(`receipt:${key}`, RECEIPT_PERIOD_MS).then(
      async (granted) => {
        if (granted !== true) return this.schedule(key, chatId, userId, granted);
        const pointer = (await this.deps.store.readPointers(chatId)).find((p) => p.userId === userId);
        if (pointer?.at != null) this.deps.outbox.toReceipts(chatId, { type: 'read', chatId, userId, readSeq: pointer.readSeq, at: new Date(pointer.at).toISOString() });
      },
      (err: unknown) => this.deps.onError(err, `announcing a read receipt in chat ${chatId}`),
    ).catch((err: unknown) => this.deps.onError(err, `announcing a read receipt in chat ${chatId}`));
  }

  private schedule(key: string, chatId: string, userId: string, ms: number) {
    if (this.trailing.has(key) || this.closed) return;
    const timer = setTimeout(() => {
      this.trailing.delete(key);
      this.announce(chatId, userId);
    }, ms);
    timer.unref();
    this.trailing.set(key, timer);
  }

  /** Drops the announcements not made yet (pointers are stored; members catch up by REST). */
  close() {
    this.closed = true;
    for (const timer of this.trailing.values()) clearTimeout(timer);
    this.trailing.clear();
  }
}
