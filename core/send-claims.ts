/** What a later send with the same idempotency key learns about the first one. */
export interface SentRef {
  id: string;
  seq: number;
}

export type Claim = { claimed: true } | { claimed: false; sent: SentRef };

/**
 * Idempotency claims: at most one send per key (chat, sender, clientMsgId) is made, across every
 * node, while the key is remembered.
 *
 * - `claim(key)`: 'claimed' means go ahead, then settle the claim with `complete` (the message
 *   is durable) or `release` (it failed or was refused). If the key was completed, returns what
 *   was sent. While another send holds the claim, waits for it to settle; if that one is
 *   released, claims afresh. Claims made concurrently with one key: exactly one is granted.
 * - Keys are remembered for a window (the in-process twin: its most recent keys); beyond it the
 *   store's unique index is the record.
 *
 * The key must be claimed before anything about the send is decided, so that a retry and its
 * original never both get a seq.
 */
export interface SendClaims {
  claim(key: string): Promise<Claim>;
  complete(key: string, sent: SentRef): Promise<void>;
  release(key: string): Promise<void>;
}

interface Entry {
  sent?: SentRef;
  settled: Promise<void>;
  settle: () => void;
}

/** One process's claims, in memory: the most recent `capacity` keys. */
export class LocalSendClaims implements SendClaims {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly capacity = 100_000) {}

  async claim(key: string): Promise<Claim> {
    for (;;) {
      const entry = this.entries.get(key);
      if (!entry) {
        // No await between the lookup and the set: concurrent claims cannot both get here.
        let settle!: () => void;
        const settled = new Promise<void>((resolve) => (settle = resolve));
        this.entries.set(key, { settled, settle });
        this.evict();
        return { claimed: true };
      }
      if (entry.sent) return { claimed: false, sent: entry.sent };
      await entry.settled;
    }
  }

  async complete(key: string, sent: SentRef): Promise<void> {
    const entry = this.entries.get(key);
    if (!entry || entry.sent) return;
    entry.sent = sent;
    entry.settle();
  }

  async release(key: string): Promise<void> {
    const entry = this.entries.get(key);
    if (!entry || entry.sent) return;
    this.entries.delete(key);
    entry.settle();
  }

  /** Forgets the oldest completed key when over capacity; claims in progress are kept. */
  private evict() {
    if (this.entries.size <= this.capacity) return;
    for (const [key, entry] of this.entries) {
      if (entry.sent) {
        this.entries.delete(key);
        return;
      }
    }
  }
}
