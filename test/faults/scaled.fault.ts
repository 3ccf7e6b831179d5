import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { tearDown } from '../helpers/deployment.js';
import { pollUntil } from '../helpers/poll.js';
import { type ReadyServer, launchServer, serverExit, serverReady } from '../helpers/process.js';
import { TcpProxy } from '../helpers/proxy.js';
import { type SeededUser, seed } from '../helpers/seed.js';
import { TEST_SECRET, tempDir } from '../helpers/server.js';
import { AMQP_URL, NOT_RUN_NOTE, REDIS_URL, needs, onPath } from '../support/conditional.js';
import { type Stream, figures, freePort, line, refusedByServer, startStream } from './stream.js';

/**
 * Faults of the scaled-out deployment (`npm run faults`): a broker node (broker and api roles)
 * and an archive worker, sharing Redis and RabbitMQ (each reached through a proxy that a
 * scenario can cut) and the store. The same steady stream as the embedded scenarios runs while
 * Redis or RabbitMQ is cut for 3 s, the worker is SIGKILLed, or the broker node is. PUBACK
 * means confirmed by RabbitMQ; the worker stores each message once, so every acknowledged
 * message must end up in history exactly once.
 */
const SENDERS = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function deployment(name: string) {
  const dataDir = tempDir(`chat-fault-${name}-`);
  const namespace = `fault-${name}-${process.pid.toString(36)}-${Date.now().toString(36)}`.slice(0, 32);
  let users: SeededUser[] = [];
  let chatId = '';
  await seed(dataDir, async (s) => {
    users = await s.users(SENDERS, name);
    chatId = (await s.group(users[0]!, users.slice(1))).id;
  });
  const [redis, rabbit] = [new URL(REDIS_URL), new URL(AMQP_URL)];
  const redisProxy = await new TcpProxy(redis.hostname, Number(redis.port) || 6379).start();
  const amqpProxy = await new TcpProxy(rabbit.hostname, Number(rabbit.port) || 5672).start();
  const shared = {
    DATA_DIR: dataDir, NAMESPACE: namespace, JWT_SECRET: TEST_SECRET,
    REDIS_URL: `redis://127.0.0.1:${redisProxy.port}`, AMQP_URL: `amqp://${rabbit.username}:${rabbit.password}@127.0.0.1:${amqpProxy.port}`,
  };
  const brokerEnv = { ...shared, ROLES: 'broker,api', PORT: String(await freePort()), MQTT_PORT: String(await freePort()) };
  const workerEnv = { ...shared, ROLES: 'worker', PORT: String(await freePort()) };
  const d = {
    users, chatId, redisProxy, amqpProxy, namespace,
    broker: null as ReadyServer | null,
    worker: null as ReadyServer | null,
    startBroker: async () => (d.broker = await serverReady(launchServer(brokerEnv))),
    startWorker: async () => (d.worker = await serverReady(launchServer(workerEnv))),
    /** Redis as a restart without its data looks to the deployment: the connections drop, and
     * every key of the namespace is gone when it answers again (call restore). The number of
     * keys dropped. */
    redisComesBackEmpty: async () => {
      await redisProxy.cut();
      const redis = new Redis(REDIS_URL);
      const keys = await redis.keys(`${namespace}:*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
      return keys;
    },
    kill: async (which: 'broker' | 'worker') => {
      const p = d[which]!;
      p.child.kill('SIGKILL');
      await serverExit(p);
    },
    async end() {
      await redisProxy.restore();
      await amqpProxy.restore();
      await tearDown({ procs: [d.broker ?? undefined, d.worker ?? undefined], namespace, dataDir, amqp: true });
      await redisProxy.cut();
      await amqpProxy.cut();
    },
  };
  await d.startBroker();
  await d.startWorker();
  return d;
}

/** Waits until history holds every acknowledged message (the worker stores them behind the
 * PUBACK), at most `ms`; then the figures. */
function settled(d: Awaited<ReturnType<typeof deployment>>, stream: Stream, sameProcess: boolean, ms = 30_000) {
  const read = async () => figures(d.broker!.http, d.users[0]!.token, d.chatId, stream, sameProcess ? await refusedByServer(d.broker!.url) : undefined);
  return pollUntil(read, { done: (f) => f.lost.length === 0, within: ms, every: 250 });
}

describe('faults of the scaled-out deployment (Redis, RabbitMQ, worker, broker node)', () => {
  const deployments: { end(): Promise<void> }[] = [];
  afterAll(async () => {
    for (const d of deployments) await d.end();
  });

  const outage = (service: 'Redis' | 'RabbitMQ') =>
    it(`${service} cut for 3 s during a steady stream: nothing acknowledged is lost or stored twice, and sending resumes`, { timeout: 120_000 }, async (ctx) => {
      await needs(ctx, 'redis', 'rabbitmq');
      const d = await deployment(service === 'Redis' ? 'redis' : 'amqp');
      deployments.push(d);
      const stream = await startStream(d.broker!.mqttPort, d.users, d.chatId, 8, service);
      await sleep(2000);
      const proxy = service === 'Redis' ? d.redisProxy : d.amqpProxy;
      await proxy.cut();
      const ackedAtCut = stream.acked().size;
      await sleep(3000);
      const ackedDuring = stream.acked().size - ackedAtCut;
      const health = (await fetch(`${d.broker!.url}/healthz`)).status;
      const restored = performance.now();
      const next = stream.nextAck();
      await proxy.restore();
      const recovery = (await next) - restored;
      await sleep(2000);
      await stream.stop();
      const f = await settled(d, stream, true);
      console.log(line(`${service} cut 3 s`, f, `first PUBACK ${seconds(recovery)} after it was back (during the cut: ${ackedDuring} acked, /healthz ${health})`));
      expect(f.lost).toEqual([]);
      expect(f.duplicated).toEqual([]);
      expect(d.broker!.child.exitCode).toBeNull();
      expect(d.worker!.child.exitCode).toBeNull();
    });
  outage('Redis');
  outage('RabbitMQ');

  it('Redis restarted with nothing kept (cut, its keys gone, back) during a steady stream: nothing acknowledged is lost or stored twice', { timeout: 120_000 }, async (ctx) => {
    await needs(ctx, 'redis', 'rabbitmq');
    const d = await deployment('redisloss');
    deployments.push(d);
    const stream = await startStream(d.broker!.mqttPort, d.users, d.chatId, 8, 'loss');
    await sleep(2000);
    // As a restart of this machine's Redis (which keeps nothing on disk) looks to the
    // deployment, without disturbing anything else that uses it: the connections drop, and
    // when Redis answers again every key of the namespace (seqs, claims, sessions) is gone.
    const keys = await d.redisComesBackEmpty();
    await sleep(1000);
    const restored = performance.now();
    const next = stream.nextAck();
    await d.redisProxy.restore();
    const recovery = (await next) - restored;
    await sleep(3000);
    await stream.stop();
    const f = await settled(d, stream, true);
    console.log(line('Redis restarted empty', f, `first PUBACK ${seconds(recovery)} after it was back (${keys.length} keys were dropped)`));
    expect(f.lost).toEqual([]);
    expect(f.duplicated).toEqual([]);
    expect(d.broker!.child.exitCode).toBeNull();
  });

  it('Redis restarted empty while the archive worker is down: nothing acknowledged is lost or stored twice', { timeout: 120_000 }, async (ctx) => {
    await needs(ctx, 'redis', 'rabbitmq');
    const d = await deployment('lossnoworker');
    deployments.push(d);
    const stream = await startStream(d.broker!.mqttPort, d.users, d.chatId, 8, 'lossw');
    await sleep(1500);
    await d.kill('worker');
    await sleep(2000); // acknowledged messages wait in RabbitMQ: the store is behind
    const keys = await d.redisComesBackEmpty();
    await d.redisProxy.restore();
    await sleep(2000);
    await d.startWorker();
    await sleep(2000);
    await stream.stop();
    const f = await settled(d, stream, true);
    console.log(line('Redis restarted empty, worker down', f, `${keys.length} keys dropped while the store was behind`));
    expect(f.lost).toEqual([]);
    expect(f.duplicated).toEqual([]);
  });

  // A real restart of this machine's RabbitMQ (its application: the node stays, its queues are
  // recovered from disk), so only where rabbitmqctl runs it locally.
  it('RabbitMQ restarted while the worker is down and messages wait in its queue: every acknowledged message stored once', { timeout: 120_000 }, async (ctx) => {
    await needs(ctx, 'redis', 'rabbitmq');
    if (onPath('rabbitmqctl') !== null) ctx.skip(`${NOT_RUN_NOTE}restarting RabbitMQ needs rabbitmqctl here; to run it: apt-get install -y rabbitmq-server`);
    const d = await deployment('amqprestart');
    deployments.push(d);
    const stream = await startStream(d.broker!.mqttPort, d.users, d.chatId, 8, 'amqpr');
    await sleep(1500);
    await d.kill('worker');
    await sleep(2000); // acknowledged messages wait in the queue
    const ackedBefore = stream.acked().size;
    execFileSync('rabbitmqctl', ['stop_app'], { stdio: 'ignore' });
    execFileSync('rabbitmqctl', ['start_app'], { stdio: 'ignore' });
    const restarted = performance.now();
    const next = stream.nextAck();
    const recovery = (await next) - restarted;
    await d.startWorker();
    await sleep(2000);
    await stream.stop();
    const f = await settled(d, stream, true);
    console.log(line('RabbitMQ restarted', f, `first PUBACK ${seconds(recovery)} after it was back; ${ackedBefore} acknowledged before the restart, most of them only in its queue`));
    expect(f.lost).toEqual([]);
    expect(f.duplicated).toEqual([]);
    expect(d.broker!.child.exitCode).toBeNull();
  });

  it('the archive worker SIGKILLed mid-stream and restarted 3 s later: every acknowledged message stored once', { timeout: 120_000 }, async (ctx) => {
    await needs(ctx, 'redis', 'rabbitmq');
    const d = await deployment('worker');
    deployments.push(d);
    const stream = await startStream(d.broker!.mqttPort, d.users, d.chatId, 8, 'worker');
    await sleep(2000);
    await d.kill('worker');
    const ackedAtKill = stream.acked().size;
    await sleep(3000);
    const ackedWithoutWorker = stream.acked().size - ackedAtKill;
    const restarted = performance.now();
    await d.startWorker();
    const started = performance.now() - restarted;
    await sleep(2000);
    await stream.stop();
    const f = await settled(d, stream, true);
    console.log(line('worker SIGKILL', f, `the worker was back in ${seconds(started)}; PUBACKs went on without it (${ackedWithoutWorker} in the 3 s), queued in RabbitMQ`));
    expect(f.lost).toEqual([]);
    expect(f.duplicated).toEqual([]);
    expect(ackedWithoutWorker).toBeGreaterThan(0);
  });

  it('the broker node SIGKILLed mid-stream and restarted: every acknowledged message stored once, seqs increasing', { timeout: 120_000 }, async (ctx) => {
    await needs(ctx, 'redis', 'rabbitmq');
    const d = await deployment('broker');
    deployments.push(d);
    const stream = await startStream(d.broker!.mqttPort, d.users, d.chatId, 8, 'broker');
    await sleep(2000);
    await d.kill('broker');
    const restarted = performance.now();
    const next = stream.nextAck();
    await d.startBroker();
    const recovery = (await next) - restarted;
    await sleep(2000);
    await stream.stop();
    const f = await settled(d, stream, false);
    console.log(line('broker node SIGKILL', f, `first PUBACK ${seconds(recovery)} after spawning the new process`));
    expect(f.lost).toEqual([]);
    expect(f.duplicated).toEqual([]);
    expect(f.increasing).toBe(true);
  });
});
