import amqp, { type Channel } from 'amqplib';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmqpArchive } from '../core/amqp/archive.js';
import { queueNames } from '../core/amqp/topology.js';
import type { Envelope, MessageEnvelope } from '../core/envelope.js';
import { newId } from '../core/ids.js';
import { SqliteStore } from '../core/store/sqlite.js';
import { Archiver } from '../worker/archiver.js';
import { archiveContract } from './contracts/archive.contract.js';
import { pollUntil } from './helpers/poll.js';
import { TcpProxy } from './helpers/proxy.js';
import { tempDir } from './helpers/server.js';
import { AMQP_URL } from './support/conditional.js';

/**
 * The scaled-out archive path against this machine's RabbitMQ (AMQP_URL, default
 * amqp://guest:guest@127.0.0.1:5672): broker side publishes with confirms, the worker writes
 * to a real SQLite store. Each test uses queues of its own namespace and deletes them. Where a
 * side must lose RabbitMQ, it connects through a TcpProxy that is cut.
 */
const url = AMQP_URL;
const rabbit = new URL(url);
const proxied = () => new TcpProxy(rabbit.hostname, Number(rabbit.port) || 5672).start();
/** AMQP_URL, through the proxy. */
const through = (proxy: TcpProxy) => {
  const u = new URL(url);
  u.port = String(proxy.port);
  return u.toString();
};

let namespaceCount = 0;
const newNamespace = () => `test-${process.pid}-${Date.now()}-${namespaceCount++}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` on a channel of a connection of its own, closed afterwards. */
async function onChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => {}); // a passive check of a missing queue closes the channel: that is an answer
    return await fn(ch);
  } finally {
    await conn.close().catch(() => {});
  }
}

const deleteQueues = (namespace: string) =>
  onChannel(async (ch) => {
    for (const q of Object.values(queueNames(namespace))) await ch.deleteQueue(q);
  });

async function newChat(store: SqliteStore): Promise<string> {
  const owner = await store.createUser({ id: newId(), username: `owner-${newId()}`, displayName: 'Owner', passwordHash: 'x', createdAt: Date.now() });
  return (await store.createGroupChat({ id: newId(), name: 'g', visibility: 'private', ownerId: owner.id, memberIds: [owner.id], createdAt: Date.now() })).id;
}

async function history(store: SqliteStore, chatId: string): Promise<Envelope[]> {
  const out: Envelope[] = [];
  let after = 0;
  for (;;) {
    const page = await store.listMessages(chatId, { after, limit: 100 });
    out.push(...page.messages);
    if (!page.hasMore) return out;
    after = out.at(-1)!.seq;
  }
}

/**
 * The archive connects through a proxy, which `cut` cuts; durable means on the queue, which a
 * connection of the harness's own counts; `stored` runs a worker (connected directly) into a
 * SQLite store until the queue has drained.
 */
archiveContract('AmqpArchive (RabbitMQ, worker into SQLite)', async () => {
  const namespace = newNamespace();
  const names = queueNames(namespace);
  const dir = tempDir('chat-amqp-');
  const store = new SqliteStore(join(dir, 'chat.db'));
  const chatId = await newChat(store);
  const markerChat = await newChat(store);
  const proxy = await proxied();
  const archive = await AmqpArchive.connect(through(proxy), namespace);
  const errors: string[] = [];
  return {
    archive,
    chatId,
    durable: () => onChannel(async (ch) => (await ch.checkQueue(names.archive)).messageCount),
    cut: () => proxy.cut(),
    restore: () => proxy.restore(),
    stored: async () => {
      // The queue is first in, first out, and the worker writes in delivery order: once it has
      // stored a marker appended after the case's envelopes, it has stored all that came before.
      const publisher = await AmqpArchive.connect(url, namespace);
      await publisher.append({ type: 'message', id: newId(), chatId: markerChat, seq: 1, senderId: 'u', senderName: 'U', text: 'marker', clientMsgId: null, createdAt: new Date().toISOString() });
      await publisher.close();
      const worker = new Archiver(url, namespace, store, { lingerMs: 1, onError: (err) => errors.push(String(err)) });
      await worker.start();
      try {
        expect(await pollUntil(() => store.maxSeq(markerChat), { done: (n) => n === 1, within: 30_000, every: 25 }), 'the worker stored the marker').toBe(1);
        expect(await pollUntil(() => worker.lag(), { done: (n) => n === 0, within: 15_000, every: 25 }), "the worker's lag came to 0").toBe(0);
      } finally {
        await worker.stop();
      }
      const dead = await onChannel(async (ch) => (await ch.checkQueue(names.dead)).messageCount);
      if (dead > 0 || errors.length > 0) throw new Error(`${dead} envelopes dead-lettered; the worker's errors: ${errors.join('; ')}`);
      return history(store, chatId);
    },
    cleanup: async () => {
      await archive.close();
      await proxy.cut();
      await deleteQueues(namespace);
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('archive through RabbitMQ', () => {
  let dir: string;
  let store: SqliteStore;
  let chatId: string;
  const namespaces: string[] = [];
  const ns = () => {
    const n = newNamespace();
    namespaces.push(n);
    return n;
  };
  const envelope = (seq: number, chat = chatId): MessageEnvelope => ({
    type: 'message', id: newId(), chatId: chat, seq, senderId: 'u', senderName: 'U', text: `m${seq}`, clientMsgId: null, createdAt: new Date().toISOString(),
  });
  const allSeqs = async () => (await history(store, chatId)).map((m) => m.seq);

  beforeAll(async () => {
    dir = tempDir('chat-amqp-');
    store = new SqliteStore(join(dir, 'chat.db'));
    chatId = await newChat(store);
  });

  afterAll(async () => {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    for (const n of namespaces) for (const q of Object.values(queueNames(n))) await ch.deleteQueue(q).catch(() => {});
    await conn.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loses nothing and duplicates nothing when a worker dies mid-stream', async () => {
    const namespace = ns();
    const archive = await AmqpArchive.connect(url, namespace);
    await Promise.all(Array.from({ length: 800 }, (_, i) => archive.append(envelope(i + 1))));
    const proxy = await proxied();
    const first = new Archiver(through(proxy), namespace, store, { prefetch: 50, batchSize: 20, lingerMs: 1 });
    await first.start();
    expect(await pollUntil(() => first.stored, { done: (n) => n >= 100, within: 15_000, every: 25 }), 'the first worker stored 100 envelopes').toBeGreaterThanOrEqual(100);
    // Abrupt death: the socket goes away with messages unacknowledged (as with SIGKILL).
    await proxy.cut();
    await first.stop();
    const second = new Archiver(url, namespace, store);
    await second.start();
    expect(await pollUntil(() => store.maxSeq(chatId), { done: (n) => n === 800, within: 15_000, every: 25 }), 'the second worker stored up to seq 800').toBe(800);
    expect(await allSeqs()).toEqual(Array.from({ length: 800 }, (_, i) => i + 1));
    await second.stop();
    await archive.close();
  });

  it('dead-letters poison messages (after the delivery limit, or at once if not an envelope) and stores the rest', async () => {
    const namespace = ns();
    const archive = await AmqpArchive.connect(url, namespace);
    await archive.append(envelope(801));
    await archive.append(envelope(1, newId())); // a chat the store does not know: the write fails
    await archive.append(envelope(802));
    const raw = await amqp.connect(url);
    const ch = await raw.createChannel();
    ch.sendToQueue(queueNames(namespace).archive, Buffer.from('not json at all'), { persistent: true });
    const worker = new Archiver(url, namespace, store, { lingerMs: 1 });
    await worker.start();
    expect(await pollUntil(async () => (await ch.checkQueue(queueNames(namespace).dead)).messageCount, { done: (n) => n === 2, within: 30_000, every: 25 }), 'two messages dead-lettered').toBe(2);
    expect((await store.maxSeq(chatId))).toBe(802);
    expect(await worker.lag()).toBe(0);
    await worker.stop();
    await raw.close();
    await archive.close();
  });

  it('dead-letters an envelope whose seq another message holds; a redelivered one is acknowledged', async () => {
    const namespace = ns();
    const held = envelope(900);
    await store.appendMessages([held]);
    const archive = await AmqpArchive.connect(url, namespace);
    const usurper = envelope(900); // same seq, another message: what a reseeded sequencer would produce
    await archive.append(held); // a redelivery of what is stored
    await archive.append(usurper);
    await archive.append(envelope(901));
    const errors: string[] = [];
    const worker = new Archiver(url, namespace, store, { lingerMs: 1, onError: (err) => errors.push((err as Error).message) });
    await worker.start();
    const raw = await amqp.connect(url);
    const ch = await raw.createChannel();
    const settled = await pollUntil(
      async () => ({ dead: (await ch.checkQueue(queueNames(namespace).dead)).messageCount, maxSeq: await store.maxSeq(chatId) }),
      { done: (s) => s.dead === 1 && s.maxSeq === 901, within: 15_000, every: 25 },
    );
    expect(settled, 'one message dead-lettered and the rest stored up to seq 901').toEqual({ dead: 1, maxSeq: 901 });
    const dead = await ch.get(queueNames(namespace).dead, { noAck: true });
    expect(dead && JSON.parse(dead.content.toString()).id).toBe(usurper.id);
    expect(errors).toContain(`seq 900 of chat ${chatId} belongs to message ${held.id}; envelope ${usurper.id} dead-lettered`);
    const { messages } = await store.listMessages(chatId, { after: 899, limit: 10 });
    expect(messages.map((m) => [m.seq, m.id === held.id])).toEqual([[900, true], [901, false]]);
    expect(await pollUntil(() => worker.lag(), { done: (n) => n === 0, within: 15_000, every: 25 }), "the worker's lag came to 0").toBe(0);
    await worker.stop();
    await raw.close();
    await archive.close();
  });

  it('refuses to connect when RabbitMQ cannot be reached the first time, archive and worker alike', async () => {
    await expect(AmqpArchive.connect('amqp://guest:guest@127.0.0.1:1', ns())).rejects.toThrow();
    await expect(new Archiver('amqp://guest:guest@127.0.0.1:1', ns(), store).start()).rejects.toThrow();
  });

  it('connects no more once closed or stopped while RabbitMQ is unreachable, when it is back', async () => {
    const namespace = ns();
    const names = queueNames(namespace);
    const proxy = await proxied();
    const archive = await AmqpArchive.connect(through(proxy), namespace);
    const worker = new Archiver(through(proxy), namespace, store);
    await worker.start();
    await proxy.cut();
    // Both have noticed, and are reconnecting (the first attempt 200 ms after the loss).
    const refused = () => archive.append(envelope(9001)).then(() => false, () => true);
    expect(
      await pollUntil(async () => Number.isNaN(await worker.lag().catch(() => 0)) && (await refused()), { within: 5000, every: 25 }),
      'the worker lost its connection and the archive refuses appends',
    ).toBe(true);
    await archive.close();
    await worker.stop();
    // Both declare the queues each time they connect: without them, a connection made since shows.
    await deleteQueues(namespace);
    await proxy.restore();
    await sleep(1500); // past the attempts either had due by then (200, 600 and 1400 ms after the loss)
    const exists = (q: string) => onChannel((ch) => ch.checkQueue(q).then(() => true, () => false));
    expect([await exists(names.archive), await exists(names.dead)]).toEqual([false, false]);
    await proxy.cut();
  });
});
