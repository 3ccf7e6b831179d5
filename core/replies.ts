import type { Sequencer } from './sequencer.js';
import type { StoredMessage } from './envelope.js';
import type { Store } from './store/store.js';

/** How long a lookup waits for a seq given out but not stored yet (behind a queue). */
const LAG_WAIT_MS = 2000;
const LAG_POLL_MS = 50;

/**
 * Finds the message a reply, edit or deletion names. Embedded, the archive commits to the store
 * before a message is delivered, so whatever a client has seen is in the store and one indexed
 * read answers. Behind the RabbitMQ archive the store lags live delivery by the worker's batch:
 * a seq the sequencer has given out but the store does not hold yet is waited for, up to 2 s,
 * before it counts as missing (docs/chat-features.md, "Replies").
 */
export class ReplyTargets {
  constructor(
    private readonly store: Store,
    private readonly sequencer: Sequencer,
    /** true when the archive is a queue whose worker commits later */
    private readonly storeLags: boolean,
  ) {}

  async has(chatId: string, seq: number): Promise<boolean> {
    return (await this.get(chatId, seq)) !== null;
  }

  /** The message at `seq` of the chat in its current state, or null. */
  async get(chatId: string, seq: number): Promise<StoredMessage | null> {
    const found = await this.store.getMessage(chatId, seq);
    if (found || !this.storeLags || seq > (await this.sequencer.current(chatId))) return found;
    const until = Date.now() + LAG_WAIT_MS;
    while (Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, LAG_POLL_MS));
      const late = await this.store.getMessage(chatId, seq);
      // Stored, or the seq holds another kind of envelope (stored, but not a message).
      if (late || (await this.store.maxSeq(chatId)) >= seq) return late;
    }
    return null;
  }
}
