import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Archive } from '../../core/archive.js';
import type { Envelope } from '../../core/envelope.js';
import { newId } from '../../core/ids.js';
import { pollUntil } from '../helpers/poll.js';

/**
 * The archive contract (core/archive.ts): every Archive implementation runs this suite against
 * itself, e.g.
 *
 *   archiveContract('StoreArchive', async () => {
 *     const archive = new StoreArchive(store);
 *     return { archive, chatId, durable, cut, restore, stored, cleanup };
 *   });
 *
 * `open` gives a fresh archive over a fresh backend each time. The hooks look at the backend
 * as another process would: through connections of their own, never through the archive.
 */
export interface ArchiveBackend {
  archive: Archive;
  /** A chat the store knows, with no messages yet. */
  chatId: string;
  /** How many envelopes the backend holds durably now (a store's rows, a queue's messages),
   * counted through a fresh connection, also while the archive is cut off. Called only before
   * `stored`. */
  durable(): Promise<number>;
  /** Makes the backend unreachable for the archive, without warning, as a failure would. What
   * the backend holds stays readable to others. */
  cut(): Promise<void>;
  /** Makes it reachable again; absent where the implementation does not recover. */
  restore?: () => Promise<void>;
  /** The chat's envelopes in seq order, read from the store through a fresh connection once
   * everything the backend holds durably has reached the store (a queue: once a worker emptied it). */
  stored(): Promise<Envelope[]>;
  /** Closes the archive, whether or not the case did, and removes the backend. */
  cleanup(): Promise<void>;
}

/** `p`, or a rejection saying what did not settle within `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

export function archiveContract(name: string, open: () => Promise<ArchiveBackend>) {
  describe(`Archive contract: ${name}`, () => {
    let backend: ArchiveBackend;
    beforeEach(async () => {
      backend = await open();
    });
    afterEach(async () => {
      await backend.cleanup();
    });

    /** Every fifth a system envelope: both kinds go the same way. */
    const envelope = (seq: number): Envelope =>
      seq % 5 === 0
        ? { type: 'system', id: newId(), chatId: backend.chatId, seq, event: 'member.joined', userId: 'u', createdAt: new Date().toISOString() }
        : { type: 'message', id: newId(), chatId: backend.chatId, seq, senderId: 'u', senderName: 'U', text: `m${seq}`, clientMsgId: null, createdAt: new Date().toISOString() };
    const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => envelope(from + i));

    it('resolves append only once the envelope is durable: another connection counts it at once, and it reaches the store with the archive cut off', async () => {
      const { archive } = backend;
      const sent: Envelope[] = [];
      for (const e of range(1, 10)) {
        expect(await archive.append(e)).toBeNull();
        sent.push(e);
        expect(await backend.durable()).toBe(sent.length);
      }
      const together = range(11, 300);
      const resolved = await Promise.all(together.map((e) => archive.append(e)));
      // Cut the moment they resolved: nothing more gets from the archive to the backend.
      await backend.cut();
      expect(resolved).toEqual(together.map(() => null));
      sent.push(...together);
      expect(await backend.durable()).toBe(310);
      expect(await backend.stored()).toEqual(sent);
    }, 60_000);

    it('takes edits and deletions like messages: stored in seq order, each applied to its target', async () => {
      const { archive } = backend;
      const at = new Date().toISOString();
      const log: Envelope[] = [
        ...range(1, 3),
        { type: 'edit', id: newId(), chatId: backend.chatId, seq: 4, targetSeq: 1, text: 'edited', senderId: 'u', createdAt: at },
        { type: 'delete', id: newId(), chatId: backend.chatId, seq: 5, targetSeq: 2, actorId: 'u', createdAt: at },
      ];
      expect(await Promise.all(log.map((e) => archive.append(e)))).toEqual(log.map(() => null));
      const stored = await backend.stored();
      expect(stored.map((e) => [e.seq, e.type])).toEqual([[1, 'message'], [2, 'message'], [3, 'message'], [4, 'edit'], [5, 'delete']]);
      expect(stored[0]).toMatchObject({ text: 'edited', editedAt: at });
      expect(stored[1]).toMatchObject({ deleted: true });
      expect(stored[1]).not.toHaveProperty('text');
      expect(stored.slice(3)).toEqual(log.slice(3));
    });

    it('stores a (chatId, seq) appended twice once, and resolves both appends', async () => {
      const { archive } = backend;
      const [a, b] = range(1, 2) as [Envelope, Envelope];
      expect(await Promise.all([archive.append(a), archive.append(a), archive.append(b)])).toEqual([null, null, null]);
      // Again once durable, as a copy (a retried send's envelope is rebuilt, not the same object).
      expect(await archive.append({ ...a })).toBeNull();
      expect(await archive.append({ ...b })).toBeNull();
      expect(await backend.stored()).toEqual([a, b]);
    }, 60_000);

    it('close waits for the appends made before it: each resolves before close does, and is stored', async () => {
      const { archive } = backend;
      // More than the group commit takes at once (4 batches of 500).
      const envelopes = range(1, 2500);
      let settled = 0;
      const outcomes = Promise.allSettled(envelopes.map((e) => archive.append(e).finally(() => settled++)));
      await within(archive.close(), 30_000, 'close');
      expect(settled).toBe(envelopes.length);
      expect(await outcomes).toEqual(envelopes.map(() => ({ status: 'fulfilled', value: null })));
      expect(await backend.stored()).toEqual(envelopes);
    }, 60_000);

    it('rejects appends while the backend is unreachable, and accepts them again once it is back', async () => {
      const { archive } = backend;
      const first = envelope(1);
      expect(await archive.append(first)).toBeNull();
      await backend.cut();
      // Made at once (the archive may not know yet), then once those failed (it knows).
      const refused = range(2, 3);
      const outcomes = await within(Promise.allSettled(refused.map((e) => archive.append(e))), 20_000, 'appends while unreachable');
      expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected']);
      const late = envelope(5);
      expect(await within(archive.append(late).then(() => 'resolved', () => 'rejected'), 20_000, 'an append while unreachable')).toBe('rejected');
      const attempted = [first, ...refused, late];
      if (!backend.restore) return;
      await backend.restore();
      // An archive that reconnects in the background refuses until it has.
      let seq = 6;
      const accepted = await pollUntil(
        () => {
          const e = envelope(seq++);
          attempted.push(e);
          return within(archive.append(e).then(() => e, () => null), 20_000, 'an append once reachable');
        },
        { within: 20_000, every: 50 },
      );
      expect(accepted, 'appends still refused 20 s after the backend was back').not.toBeNull();
      const stored = await backend.stored();
      expect(stored).toEqual(expect.arrayContaining([first, accepted]));
      // A refused append promised nothing (a queue's confirm can be lost on the way), but what
      // is stored was appended.
      const ids = new Set(attempted.map((e) => e.id));
      expect(stored.filter((e) => !ids.has(e.id))).toEqual([]);
    }, 90_000);
  });
}
