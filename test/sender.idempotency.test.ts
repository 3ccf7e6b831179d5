import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createAedes } from '../broker/aedes.js';
import { brokerOutbox } from '../broker/outbox.js';
import { memoryPersistence } from '../broker/retained.js';
import { StoreArchive } from '../core/archive.js';
import { LocalBus } from '../core/bus.js';
import { newId } from '../core/ids.js';
import { Membership } from '../core/membership.js';
import { Metrics } from '../core/metrics.js';
import { LocalRateLimiter } from '../core/rate-limit.js';
import { ReplyTargets } from '../core/replies.js';
import { Sender } from '../core/sender.js';
import { LocalSendClaims } from '../core/send-claims.js';
import { LocalSequencer } from '../core/sequencer.js';
import { SqliteStore } from '../core/store/sqlite.js';
import { tempDir } from './helpers/server.js';

/**
 * Idempotency past the claims' memory, with the real pieces of the embedded pipeline (SQLite
 * file, group commit, in-process seams): a retry whose key the claims have forgotten is still a
 * duplicate, caught by the store's unique index when it is appended, and nothing is stored or
 * delivered for it.
 */
const aedes = await createAedes({ persistence: memoryPersistence() });

describe('a retry older than the send claims remember', () => {
  const dir = tempDir('chat-idem-');
  const store = new SqliteStore(join(dir, 'chat.db'));
  const bus = new LocalBus();
  const archive = new StoreArchive(store);
  const sequencer = new LocalSequencer((chatId) => store.maxSeq(chatId));
  const sender = new Sender({
    sequencer,
    replyTargets: new ReplyTargets(store, sequencer, false),
    archive,
    membership: new Membership(store, bus, {
      onError: (err) => {
        throw err;
      },
      connectedHere: () => false,
    }),
    rateLimiter: new LocalRateLimiter(100, 100),
    claims: new LocalSendClaims(1), // remembers one key: every other send pushes the previous one out
    outbox: brokerOutbox(aedes, pino({ level: 'silent' })),
    metrics: new Metrics(),
    maxInFlight: 10,
    onError: (err) => {
      throw err;
    },
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await archive.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is a duplicate of the stored message: no second message, no second seq in history', async () => {
    const now = Date.now();
    const owner = await store.createUser({ id: newId(), username: 'idem', displayName: 'Idem', passwordHash: 'x', createdAt: now });
    const chat = await store.createGroupChat({ id: newId(), name: 'g', visibility: 'private', ownerId: owner.id, memberIds: [owner.id], createdAt: now });
    const send = (clientMsgId: string) => sender.send(owner, chat.id, Buffer.from(JSON.stringify({ text: `text of ${clientMsgId}`, clientMsgId })));

    const first = await send('a');
    expect(first.status).toBe('accepted');
    expect((await send('b')).status).toBe('accepted'); // 'a' is forgotten by the claims now
    const retry = await send('a');
    expect(retry).toEqual({ status: 'duplicate', sent: { id: first.status === 'accepted' ? first.envelope.id : '', seq: 1 } });
    // Remembered again: the next retry is answered by the claims.
    expect(await send('a')).toEqual(retry);

    const { messages } = await store.listMessages(chat.id, { limit: 10 });
    expect(messages.map((m) => [m.seq, m.type === 'message' ? m.clientMsgId : null])).toEqual([[1, 'a'], [2, 'b']]);
  });
});
