import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Connected, closed, connectAs } from './helpers/mqtt.js';
import { tearDown } from './helpers/deployment.js';
import { pollUntil } from './helpers/poll.js';
import { type ReadyServer, launchServer, serverReady } from './helpers/process.js';
import { TcpProxy } from './helpers/proxy.js';
import { type Json, tempDir } from './helpers/server.js';
import { AMQP_URL, REDIS_URL } from './support/conditional.js';

/**
 * A scaled-out node whose Redis and RabbitMQ go away and come back (through proxies the test
 * cuts and restores). It must not crash, must refuse what it cannot guarantee (no PUBACK for
 * a message it cannot make durable), and must resume by itself.
 */
describe('a scaled-out node when Redis or RabbitMQ is unreachable', () => {
  const dataDir = tempDir('chat-outage-');
  const namespace = `test-outage-${process.pid}-${Date.now()}`;
  const [redis, rabbit] = [new URL(REDIS_URL), new URL(AMQP_URL)];
  const redisProxy = new TcpProxy(redis.hostname, Number(redis.port) || 6379);
  const amqpProxy = new TcpProxy(rabbit.hostname, Number(rabbit.port) || 5672);
  let node: ReadyServer;
  let who: { user: Json; token: string };
  let chat: Json;
  let topic: string;
  const open: Connected[] = [];

  beforeAll(async () => {
    await redisProxy.start();
    await amqpProxy.start();
    node = await serverReady(launchServer({
      DATA_DIR: dataDir, NAMESPACE: namespace,
      REDIS_URL: `redis://127.0.0.1:${redisProxy.port}`, AMQP_URL: `amqp://guest:guest@127.0.0.1:${amqpProxy.port}`,
    }));
    await node.http.post('/api/users', { username: 'olive', password: 'outage-pass' });
    await node.http.post('/api/users', { username: 'pete', password: 'outage-pass' });
    const login = await node.http.post('/api/users/login', { username: 'olive', password: 'outage-pass' });
    who = { user: login.body.user, token: login.body.token };
    const pete = (await node.http.get('/api/users/search?q=pete', who.token)).body.users[0];
    chat = (await node.http.post('/api/chats', { type: 'direct', memberIds: [pete.id] }, who.token)).body.chat;
    topic = `chats/${chat.id}/messages`;
  });

  afterAll(async () => {
    open.forEach((c) => c.client.end(true));
    await redisProxy.restore().catch(() => {});
    await amqpProxy.restore().catch(() => {});
    await tearDown({ procs: [node], namespace, dataDir, amqp: true });
    await redisProxy.cut();
    await amqpProxy.cut();
  });

  const connect = async () => {
    const c = await connectAs(node, who);
    open.push(c);
    await c.client.subscribeAsync(topic, { qos: 1 });
    return c;
  };
  /** Publishes QoS 1 and says whether a PUBACK came before the connection closed. */
  const acked = (c: Connected, clientMsgId: string) =>
    Promise.race([
      c.client.publishAsync(topic, JSON.stringify({ text: clientMsgId, clientMsgId }), { qos: 1 }).then(() => true, () => false),
      closed(c.client, 10_000).then(() => false, () => false),
    ]);
  const stored = async () =>
    ((await node.http.get(`/api/messages/${chat.id}?after=0&limit=100`, who.token)).body.messages as Json[])
      .filter((m) => m.type === 'message').map((m) => m.clientMsgId as string);
  /** How long a check may take to hold once the service is back. */
  const recovery = { within: 30_000, every: 200 };

  it('RabbitMQ away: no PUBACK and the node stays up; back: the retried send lands exactly once', async () => {
    const c = await connect();
    expect(await acked(c, 'before')).toBe(true);

    await amqpProxy.cut();
    const c2 = await connect();
    expect(await acked(c2, 'during-amqp-outage')).toBe(false);
    expect((await node.http.get('/healthz')).status).toBe(200);

    await amqpProxy.restore();
    // The client retries its unacknowledged send (same clientMsgId) until the node accepts it.
    const retried = await pollUntil(async () => {
      const retry = await connect();
      const ok = await acked(retry, 'during-amqp-outage');
      retry.client.end(true); // not end(false): it would wait for the unacknowledged publish
      return ok;
    }, recovery);
    expect(retried, 'a retry acknowledged once RabbitMQ is back').toBe(true);
    expect(await pollUntil(async () => (await stored()).includes('during-amqp-outage'), recovery), 'the retried send stored').toBe(true);
    const ids = await stored();
    expect(ids.filter((id) => id === 'during-amqp-outage')).toHaveLength(1);
    expect(ids).toContain('before');
  }, 60_000);

  it('Redis away: no PUBACK and the node stays up; back: sending works again', async () => {
    await redisProxy.cut();
    const c = await connect().catch(() => null); // connecting may or may not work without Redis
    if (c) expect(await acked(c, 'during-redis-outage')).toBe(false);
    expect((await node.http.get('/healthz')).status).toBe(200);
    // REST that needs Redis (the login limiter) says the service is unavailable, not that it broke.
    const login = await node.http.post('/api/users/login', { username: 'olive', password: 'outage-pass' });
    expect([login.status, login.body.error?.code, login.headers.get('retry-after')]).toEqual([503, 'unavailable', '5']);
    expect(node.child.exitCode).toBeNull();

    await redisProxy.restore();
    const sent = await pollUntil(async () => {
      const again = await connect().catch(() => null);
      if (!again) return false;
      const ok = await acked(again, 'after-redis-outage');
      again.client.end(true);
      return ok;
    }, recovery);
    expect(sent, 'a send acknowledged once Redis is back').toBe(true);
    expect(await pollUntil(async () => (await stored()).includes('after-redis-outage'), recovery), 'the send stored').toBe(true);
    expect(node.child.exitCode).toBeNull();
  }, 60_000);
});
