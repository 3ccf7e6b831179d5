import type { SentRef } from './envelope.js';

export type { SentRef };

/** A granted claim, to be settled exactly once. */
export interface ClaimHold {
  /** The send is durable: later claims of the key get `sent`. */
  complete(sent: SentRef): Promise<void>;
  /** The send failed or was refused: the key is free for a retry. */
  release(): Promise<void>;
}

export type Claim = { claimed: true; hold: ClaimHold } | { claimed: false; sent: SentRef };

/**
 * Idempotency claims: at most one send per key (chat, sender, clientMsgId) is made, across every
 * node, while the key is remembered.
 *
 * - `claim(key)`: granted (with a hold to settle once the outcome is known), or, if a send with
 *   the key completed, what it sent. While another send holds the key, waits for it to settle;
 *   if that one is released, claims afresh. Of concurrent claims of one key, exactly one is
 *   granted.
 * - Keys are remembered for a window (the in-process twin: its most recent keys, seeded at
 *   start with the newest ones in the store; the Redis twin: an hour); beyond it the store's
 *   unique index is the record: the append then reports the key as another message's, and the
 *   send is a duplicate after all (its seq stays unused).
 *
 * The key is claimed before anything about the send is decided, so that a retry and its
 * original never both get a seq.
 */
export interface SendClaims {
  claim(key: string): Promise<Claim>;
}

/** The key that makes a chat's membership changes one at a time (core/chats.ts). */
export const membersLock = (chatId: string) => `members:${chatId}`;

/** The key of a send: (chat, sender, clientMsgId). */
/** Of a message's deletion: one deletion event per message, also when requested at once. */
export const deletionKey = (chatId: string, seq: number) => `delete:${chatId}:${seq}`;

export const sendKey = (chatId: string, senderId: string, clientMsgId: string) => `${chatId}:${senderId}:${clientMsgId}`;

/** A claim being sent: later claims of its key wait for it. */
interface Pending {
  settled: Promise<void>;
}

/** How many recent keys the in-process claims keep. */
export const SEND_CLAIMS_KEPT = 100_000;

/**
 * One process's claims, in memory: the most recent `capacity` keys. A completed key keeps
 * only what it sent (a hundred thousand of them are a few megabytes).
 */
export class LocalSendClaims implements SendClaims {
  private readonly entries = new Map<string, SentRef | Pending>();

  constructor(private readonly capacity = SEND_CLAIMS_KEPT) {}

  /** Records sends made before this process started (oldest first), as if completed here. */
  remember(sends: Iterable<{ key: string; sent: SentRef }>) {
    for (const { key, sent } of sends) {
      if (this.entries.has(key)) continue;
      this.entries.set(key, { id: sent.id, seq: sent.seq });
      this.evict();
    }
  }

  async claim(key: string): Promise<Claim> {
    for (;;) {
      const entry = this.entries.get(key);
      if (!entry) return { claimed: true, hold: this.grant(key) };
      if (!('settled' in entry)) return { claimed: false, sent: entry };
      await entry.settled;
    }
  }

  /** Synchronous from lookup to set: concurrent claims cannot both be granted. */
  private grant(key: string): ClaimHold {
    let settle!: () => void;
    const pending: Pending = { settled: new Promise<void>((resolve) => (settle = resolve)) };
    this.entries.set(key, pending);
    this.evict();
    let done = false;
    const mine = () => this.entries.get(key) === pending;
    return {
      complete: async (sent) => {
        if (done) return;
        done = true;
        if (mine()) this.entries.set(key, { id: sent.id, seq: sent.seq });
        settle();
      },
      release: async () => {
        if (done) return;
        done = true;
        if (mine()) this.entries.delete(key);
        settle();
      },
    };
  }

  /** Forgets the oldest completed key when over capacity; claims in progress are kept. */
  private evict() {
    if (this.entries.size <= this.capacity) return;
    for (const [key, entry] of this.entries) {
      if (!('settled' in entry)) {
        this.entries.delete(key);
        return;
      }
    }
  }
}
