import type { Envelope } from './envelope.js';
import type { Store } from './store/store.js';

/**
 * The archive seam: where an envelope becomes durable.
 *
 * Contract: `append` resolves only once the envelope is durable (committed to the store, or
 * confirmed by a durable queue that will commit it); it rejects if that cannot be promised.
 * Appending the same (chatId, seq) twice stores it once. `close` waits for pending appends.
 */
export interface Archive {
  append(envelope: Envelope): Promise<void>;
  close(): Promise<void>;
}

/**
 * Embedded archive: group commit. Appends that arrive while a commit is running are written
 * together in the next transaction, so one fsync serves many messages under load while a lone
 * message is committed at once.
 */
export class StoreArchive implements Archive {
  private queue: { envelope: Envelope; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly maxBatch = 500,
  ) {}

  append(envelope: Envelope): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ envelope, resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  private async flush(): Promise<void> {
    // Let the current tick's appends join the first batch.
    await new Promise<void>((r) => setImmediate(r));
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        await this.store.appendMessages(batch.map((b) => b.envelope));
        for (const b of batch) b.resolve();
      } catch (err) {
        for (const b of batch) b.reject(err);
      }
    }
    this.flushing = null;
  }

  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
  }
}
