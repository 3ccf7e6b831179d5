import type { Envelope, SentRef } from './envelope.js';
import type { Appended, Store } from './store/store.js';

/**
 * The archive seam: where an envelope becomes durable.
 *
 * Contract: `append` resolves only once the envelope is durable (committed to the store, or
 * confirmed by a durable queue that will commit it); it rejects if that cannot be promised.
 * Appending the same (chatId, seq) twice stores it once. It resolves with null, or, when the
 * archive commits to the store itself and finds the message's idempotency key already
 * another message's, with that message: nothing was stored, the send is a duplicate. (A queue
 * cannot know: its worker finds out later and skips the envelope.) `close` waits for
 * pending appends.
 */
export interface Archive {
  append(envelope: Envelope): Promise<SentRef | null>;
  close(): Promise<void>;
}

/**
 * Embedded archive: group commit. Appends made together are written in one store call; up to
 * `concurrency` such calls run at once, so a batch does not wait for the previous one's commit
 * to finish (the SQLite store's writer thread joins what reaches it while it commits into its
 * next transaction). A lone message is committed at once.
 */
export class StoreArchive implements Archive {
  private queue: { envelope: Envelope; resolve: (held: SentRef | null) => void; reject: (err: unknown) => void }[] = [];
  private scheduled = false;
  private inFlight = 0;
  private idle: (() => void)[] = [];

  constructor(
    private readonly store: Store,
    private readonly maxBatch = 500,
    private readonly concurrency = 4,
  ) {}

  append(envelope: Envelope): Promise<SentRef | null> {
    return new Promise((resolve, reject) => {
      this.queue.push({ envelope, resolve, reject });
      this.schedule();
    });
  }

  /** Flushes once the current task's microtasks have run, so that the appends they make (the
   * sends of one read from a socket, say) join the batch. Not later: the store groups what
   * reaches it while it commits, and a lone message should not wait for the next turn. */
  private schedule() {
    if (this.scheduled || this.queue.length === 0 || this.inFlight >= this.concurrency) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush() {
    while (this.queue.length > 0 && this.inFlight < this.concurrency) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      this.store.appendMessages(batch.map((b) => b.envelope)).then(
        (outcomes) => batch.forEach((b, i) => settle(b, outcomes[i]!)),
        (err: unknown) => batch.forEach((b) => b.reject(err)),
      ).finally(() => {
        this.inFlight--;
        this.schedule();
        if (this.inFlight === 0 && this.queue.length === 0) this.idle.splice(0).forEach((done) => done());
      });
    }
  }

  /** Waits for the appends under way. */
  async close(): Promise<void> {
    while (this.inFlight > 0 || this.queue.length > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
  }
}

function settle(b: { envelope: Envelope; resolve: (held: SentRef | null) => void; reject: (err: unknown) => void }, outcome: Appended) {
  if (outcome === 'stored' || outcome === 'present') b.resolve(null);
  else if ('keyHeldBy' in outcome) b.resolve(outcome.keyHeldBy);
  // The sequencer of this deployment gave out a seq the store already holds: another process
  // numbers this chat too (an embedded server started twice on one DATA_DIR, without Redis).
  else b.reject(new Error(`seq ${b.envelope.seq} of chat ${b.envelope.chatId} is already message ${outcome.seqHeldBy}'s`));
}
