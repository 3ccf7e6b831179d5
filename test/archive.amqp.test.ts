import amqp from 'amqplib';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmqpArchive } from '../core/amqp/archive.js';
import { queueNames } from '../core/amqp/topology.js';
import type { MessageEnvelope } from '../core/envelope.js';
import { newId } from '../core/ids.js';
import { SqliteStore } from '../core/store/sqlite.js';
import { Archiver } from '../worker/archiver.js';
import { tempDir } from './helpers/server.js';
import { AMQP_URL } from './support/conditional.js';

/**
 * The scaled-out archive path against this machine's RabbitMQ (AMQP_URL, default
 * amqp://guest:guest@127.0.0.1:5672): broker side publishes with confirms, the worker writes
 * to a real SQLite store. Each test uses queues of its own namespace and deletes them.
 */
const url = AMQP_URL;

describe('archive through RabbitMQ', () => {
  let dir: string;
  let store: SqliteStore;
  let chatId: string;
  const namespaces: string[] = [];
  const ns = () => {
    const n = `test-${process.pid}-${Date.now()}-${namespaces.length}`;
    namespaces.push(n);
    return n;
  };
  const envelope = (seq: number, chat = chatId): MessageEnvelope => ({
    type: 'message', id: newId(), chatId: chat, seq, senderId: 'u', senderName: 'U', text: `m${seq}`, clientMsgId: null, createdAt: new Date().toISOString(),
  });
  const until = async (check: () => Promise<boolean> | boolean, ms = 15_000) => {
    const deadline = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const allSeqs = async () => {
    const out: number[] = [];
    let after = 0;
    for (;;) {
      const page = await store.listMessages(chatId, { after, limit: 100 });
      out.push(...page.messages.map((m) => m.seq));
      if (!page.hasMore) return out;
      after = out.at(-1)!;
    }
  };

  beforeAll(async () => {
    dir = tempDir('chat-amqp-');
    store = new SqliteStore(join(dir, 'chat.db'));
    const owner = await store.createUser({ id: newId(), username: 'owner', displayName: 'Owner', passwordHash: 'x', createdAt: Date.now() });
    chatId = (await store.createGroupChat({ id: newId(), name: 'g', visibility: 'private', ownerId: owner.id, memberIds: [owner.id], createdAt: Date.now() })).id;
  });

  afterAll(async () => {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    for (const n of namespaces) for (const q of Object.values(queueNames(n))) await ch.deleteQueue(q).catch(() => {});
    await conn.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores every confirmed envelope once the worker runs, and the queue drains', async () => {
    const namespace = ns();
    const archive = await AmqpArchive.connect(url, namespace);
    await Promise.all(Array.from({ length: 300 }, (_, i) => archive.append(envelope(i + 1))));
    const worker = new Archiver(url, namespace, store);
    await worker.start();
    await until(async () => (await store.maxSeq(chatId)) === 300);
    expect(await allSeqs()).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    await until(async () => (await worker.lag()) === 0);
    await worker.stop();
    await archive.close();
  });

  it('loses nothing and duplicates nothing when a worker dies mid-stream', async () => {
    const namespace = ns();
    const archive = await AmqpArchive.connect(url, namespace);
    await Promise.all(Array.from({ length: 500 }, (_, i) => archive.append(envelope(300 + i + 1))));
    const first = new Archiver(url, namespace, store, { prefetch: 50, batchSize: 20, lingerMs: 1 });
    await first.start();
    await until(() => first.stored >= 100);
    // Abrupt death: the socket goes away with messages unacknowledged (as with SIGKILL).
    (first as unknown as { connection: { connection: { stream: { destroy(err: Error): void } } } }).connection.connection.stream.destroy(new Error('simulated death'));
    await first.stop();
    const second = new Archiver(url, namespace, store);
    await second.start();
    await until(async () => (await store.maxSeq(chatId)) === 800);
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
    await until(async () => (await ch.checkQueue(queueNames(namespace).dead)).messageCount === 2, 30_000);
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
    await until(async () => (await ch.checkQueue(queueNames(namespace).dead)).messageCount === 1 && (await store.maxSeq(chatId)) === 901);
    const dead = await ch.get(queueNames(namespace).dead, { noAck: true });
    expect(dead && JSON.parse(dead.content.toString()).id).toBe(usurper.id);
    expect(errors).toContain(`seq 900 of chat ${chatId} belongs to message ${held.id}; envelope ${usurper.id} dead-lettered`);
    const { messages } = await store.listMessages(chatId, { after: 899, limit: 10 });
    expect(messages.map((m) => [m.seq, m.id === held.id])).toEqual([[900, true], [901, false]]);
    await until(async () => (await worker.lag()) === 0);
    await worker.stop();
    await raw.close();
    await archive.close();
  });

  it('refuses appends while RabbitMQ is unreachable, and accepts them again once it is back', async () => {
    await expect(AmqpArchive.connect('amqp://guest:guest@127.0.0.1:1', ns())).rejects.toThrow();

    const namespace = ns();
    const archive = await AmqpArchive.connect(url, namespace);
    (archive as unknown as { connection: { connection: { stream: { destroy(err: Error): void } } } }).connection.connection.stream.destroy(new Error('simulated death'));
    await until(() => (archive as unknown as { channel: unknown }).channel === null, 5000);
    await expect(archive.append(envelope(9001))).rejects.toThrow(/unreachable/);
    // It reconnects by itself.
    await until(async () => archive.append(envelope(803)).then(() => true, () => false), 15_000);
    await archive.close();
  });
});
