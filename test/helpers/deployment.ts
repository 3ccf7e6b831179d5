import { rmSync } from 'node:fs';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { queueNames } from '../../core/amqp/topology.js';
import type { Connected } from './mqtt.js';
import { type ServerProcess, serverExit } from './process.js';
import { tempDir } from './server.js';
import { AMQP_URL, REDIS_URL } from '../support/conditional.js';

/** This machine's services, as the scaled-out specs use them. */
export { AMQP_URL, REDIS_URL };

/**
 * Ends a test deployment and removes what it left: stops its processes (SIGTERM), deletes its
 * namespace's Redis keys and RabbitMQ queues, and its data directory.
 */
export async function tearDown(d: { procs: (ServerProcess | undefined)[]; namespace: string; dataDir: string; amqp?: boolean }) {
  for (const p of d.procs) {
    if (p && p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGTERM');
      await serverExit(p);
    }
  }
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${d.namespace}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  if (d.amqp) {
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createChannel();
    for (const q of Object.values(queueNames(d.namespace))) await ch.deleteQueue(q).catch(() => {});
    await conn.close();
  }
  rmSync(d.dataDir, { recursive: true, force: true });
}

/**
 * A deployment of the enclosing describe block: its own namespace and data directory, the
 * environment its processes share (Redis, and RabbitMQ with `amqp`), and lists of the
 * processes and MQTT clients to end in afterAll, when everything it left is removed.
 */
export function testDeployment(name: string, opts: { amqp?: boolean } = {}) {
  const dataDir = tempDir(`chat-${name}-`);
  // NAMESPACE allows 32 characters.
  const namespace = `test-${name}-${process.pid.toString(36)}-${Date.now().toString(36)}`;
  const env: Record<string, string> = { DATA_DIR: dataDir, REDIS_URL, NAMESPACE: namespace, ...(opts.amqp ? { AMQP_URL } : {}) };
  const procs: ServerProcess[] = [];
  const open: Connected[] = [];
  afterAll(async () => {
    open.forEach((c) => c.client.end(true));
    await tearDown({ procs, namespace, dataDir, amqp: opts.amqp });
  });
  return { env, procs, open, namespace, dataDir };
}
