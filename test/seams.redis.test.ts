import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { connectRedis, redisReady } from '../core/redis/client.js';
import { MQEmitterRedisPrefix } from 'mqemitter-redis';
import type { ControlEvent } from '../core/bus.js';
import { RedisBus } from '../core/redis/bus.js';
import { membersVersionKey, raiseMembersVersion } from '../core/redis/members-version.js';
import { RedisPresence } from '../core/redis/presence.js';
import { RedisRateLimiter } from '../core/redis/rate-limit.js';
import { RedisSendClaims } from '../core/redis/send-claims.js';
import type { Claim, ClaimHold } from '../core/send-claims.js';
import { RedisSequencer } from '../core/redis/sequencer.js';
import { RedisThrottle } from '../core/redis/throttle.js';
import { claimKey } from '../core/redis/send-claims.js';
import { membersLock } from '../core/send-claims.js';
import { pollUntil } from './helpers/poll.js';
import { REDIS_URL } from './support/conditional.js';
import { busContract, presenceContract, rateLimiterContract, sendClaimsContract, sequencerContract, throttleContract } from './contracts/seams.contract.js';

/**
 * The Redis seams against this machine's Redis (REDIS_URL, default redis://127.0.0.1:6379).
 * Two connections stand for two broker nodes; each test gets a namespace of its own and
 * deletes its keys afterwards.
 */
const url = REDIS_URL;
let counter = 0;

async function nodes(n = 2): Promise<{ conns: Redis[]; namespace: string; cleanup: () => Promise<void> }> {
  const namespace = `test-${process.pid}-${Date.now()}-${counter++}`;
  const conns = Array.from({ length: n }, () => connectRedis(url));
  await Promise.all(conns.map((c) => redisReady(c)));
  return {
    conns,
    namespace,
    cleanup: async () => {
      const keys = await conns[0]!.keys(`${namespace}:*`);
      if (keys.length > 0) await conns[0]!.del(...keys);
      conns.forEach((c) => c.disconnect());
    },
  };
}

/** Runs `fn` with two connections and a namespace, cleaned up afterwards. */
async function withNodes(fn: (conns: Redis[], namespace: string) => Promise<void>) {
  const { conns, namespace, cleanup } = await nodes();
  try {
    await fn(conns, namespace);
  } finally {
    await cleanup();
  }
}

sequencerContract('Redis', async (seed) => {
  const { conns, namespace, cleanup } = await nodes();
  return { nodes: [new RedisSequencer(conns[0]!, namespace, seed), new RedisSequencer(conns[1]!, namespace, seed)], cleanup };
});

rateLimiterContract('Redis', async (burst, perSecond) => {
  const { conns, namespace, cleanup } = await nodes();
  const make = (c: Redis) => new RedisRateLimiter(c, namespace, 'test', burst, perSecond);
  return { nodes: [make(conns[0]!), make(conns[1]!)], cleanup };
});

sendClaimsContract('Redis', async () => {
  const { conns, namespace, cleanup } = await nodes();
  return { nodes: [new RedisSendClaims(conns[0]!, namespace), new RedisSendClaims(conns[1]!, namespace)], cleanup };
});

throttleContract('Redis', async () => {
  const { conns, namespace, cleanup } = await nodes();
  return { nodes: [new RedisThrottle(conns[0]!, namespace), new RedisThrottle(conns[1]!, namespace)], cleanup };
});

/** A node's MQTT cluster emitter, as server.ts makes it (createAedesCluster). */
async function emitter(namespace: string): Promise<MQEmitterRedisPrefix> {
  const mq = new MQEmitterRedisPrefix(`${namespace}/`, { connectionString: url });
  await Promise.all([redisReady(mq.subConn), redisReady(mq.pubConn)]);
  return mq;
}
const closeEmitter = (mq: MQEmitterRedisPrefix) => new Promise<void>((resolve) => mq.close(() => resolve()));

/** Two nodes' buses: per node a connection for commands and the cluster's emitter. */
async function busNodes() {
  const { conns, namespace, cleanup } = await nodes();
  const mqs = [await emitter(namespace), await emitter(namespace)];
  const buses = [await RedisBus.create(conns[0]!, mqs[0]!, namespace), await RedisBus.create(conns[1]!, mqs[1]!, namespace)] as const;
  return {
    conns, namespace, mqs, buses,
    cleanup: async () => {
      buses.forEach((b) => b.close());
      await Promise.all(mqs.map(closeEmitter));
      await cleanup();
    },
  };
}

busContract('Redis', async () => {
  const { buses, cleanup } = await busNodes();
  return { nodes: [buses[0], buses[1]], cleanup };
});

describe('RedisBus', () => {
  const removal = (i: number): Exclude<ControlEvent, { type: 'bus.resumed' }> => ({ type: 'member.removed', chatId: 'c', userId: `u${i}`, memberIds: [], version: i + 2 });

  // What keeps a removed member from a message numbered after the removal, on a node that
  // hears of the removal over Redis: the removal arrives there first.
  it('brings an event to every node before any MQTT publish made after it resolved', async () => {
    const { mqs, buses, cleanup } = await busNodes();
    try {
      const order: string[] = [];
      buses[1].subscribe((e) => e.type === 'member.removed' && order.push(`event ${e.userId}`));
      await new Promise<void>((resolve) => mqs[1]!.on('chats/c/messages', (m, done) => { order.push(`message ${String(m.payload)}`); done(); }, resolve));
      const ROUNDS = 300;
      await Promise.all(Array.from({ length: ROUNDS }, async (_, i) => {
        await buses[0].publish(removal(i));
        mqs[i % 2]!.emit({ topic: 'chats/c/messages', payload: `u${i}` });
      }));
      await pollUntil(() => order.length >= 2 * ROUNDS, { within: 2000, every: 10 });
      expect(order).toHaveLength(2 * ROUNDS);
      for (let i = 0; i < ROUNDS; i++) expect(order.indexOf(`event u${i}`)).toBeLessThan(order.indexOf(`message u${i}`));
    } finally {
      await cleanup();
    }
  });

  it('raises the announced members version with a membership event, never lowering it', async () => {
    const { conns, namespace, buses, cleanup } = await busNodes();
    try {
      await buses[0].publish(removal(5));
      expect(await conns[0]!.get(membersVersionKey(namespace, 'c'))).toBe('7');
      await buses[1].publish(removal(2));
      expect(await conns[0]!.get(membersVersionKey(namespace, 'c'))).toBe('7');
    } finally {
      await cleanup();
    }
  });

  it("says bus.resumed on a node whose connection was lost, once it is back, then delivers again", async () => {
    const { mqs, buses, cleanup } = await busNodes();
    try {
      const onA: ControlEvent[] = [];
      const onB: ControlEvent[] = [];
      buses[0].subscribe((e) => onA.push(e));
      buses[1].subscribe((e) => onB.push(e));
      mqs[1]!.subConn.disconnect(true); // dropped; ioredis reconnects at once
      await pollUntil(() => onB.some((e) => e.type === 'bus.resumed'), { within: 3000, every: 10 });
      expect(onB).toEqual([{ type: 'bus.resumed' }]);
      // Subscribed again a moment after 'ready': a removal published every 20 ms until one arrives.
      let published = 0;
      await pollUntil(async () => {
        if (onB.length >= 2) return true;
        await buses[0].publish(removal(published++));
        return false;
      }, { within: 6000, every: 20 });
      expect(onB.at(-1)).toMatchObject({ type: 'member.removed' });
      expect(onA.some((e) => e.type === 'bus.resumed')).toBe(false);
    } finally {
      await cleanup();
    }
  });
});

presenceContract('Redis', async () => {
  const { conns, namespace, cleanup } = await nodes();
  const a = new RedisPresence(conns[0]!, namespace, 'node-a');
  const b = new RedisPresence(conns[1]!, namespace, 'node-b');
  await Promise.all([a.start(), b.start()]);
  const registries = [a, b] as const;
  return {
    nodes: [a, b],
    // As after SIGKILL: no more heartbeats, and the last one has expired.
    kill: async (i) => {
      await registries[i].close();
      await conns[i]!.del(`${namespace}:presence:alive:${i === 0 ? 'node-a' : 'node-b'}`);
    },
    sweep: (i) => registries[i].sweep(),
    cleanup: async () => {
      await Promise.all(registries.map((r) => r.close()));
      await cleanup();
    },
  };
}, { nodeFailure: true });

describe('RedisSendClaims', () => {
  const granted = (c: Claim): ClaimHold => {
    if (!c.claimed) throw new Error('expected a granted claim');
    return c.hold;
  };

  it("frees a dead node's claim after its TTL; the late holder cannot overwrite the new one", () =>
    withNodes(async (conns, namespace) => {
      const dying = new RedisSendClaims(conns[0]!, namespace, { claimTtlMs: 300 });
      const survivor = new RedisSendClaims(conns[1]!, namespace, { claimTtlMs: 300, waitMs: 5000 });
      const old = granted(await dying.claim('k'));
      // As if the node died: renewals stop (its connection drops them), the TTL runs out.
      conns[0]!.disconnect();
      const fresh = granted(await survivor.claim('k'));
      await conns[0]!.connect();
      await expect(old.complete({ id: 'stale', seq: 1 })).rejects.toThrow('expired before its send completed');
      await fresh.complete({ id: 'fresh', seq: 2 });
      expect(await dying.claim('k')).toEqual({ claimed: false, sent: { id: 'fresh', seq: 2 } });
    }));

  it('keeps a slow send\'s claim alive past its TTL, on the same node too', () =>
    withNodes(async (conns, namespace) => {
      const node = new RedisSendClaims(conns[0]!, namespace, { claimTtlMs: 200, waitMs: 600 });
      const slow = granted(await node.claim('k'));
      await expect(node.claim('k')).rejects.toThrow('still in progress'); // waited 600 ms, 3 TTLs
      await slow.complete({ id: 'm', seq: 1 });
      expect(await node.claim('k')).toEqual({ claimed: false, sent: { id: 'm', seq: 1 } });
    }));

  it('gives up waiting after waitMs with a clear error', () =>
    withNodes(async (conns, namespace) => {
      const holder = new RedisSendClaims(conns[0]!, namespace);
      const waiter = new RedisSendClaims(conns[1]!, namespace, { waitMs: 300 });
      const held = granted(await holder.claim('k'));
      await expect(waiter.claim('k')).rejects.toThrow('another send with this clientMsgId is still in progress');
      await held.release();
    }));
});

describe('RedisSequencer when Redis loses a chat key', () => {
  it('seeds it again from the store', () =>
    withNodes(async (conns, namespace) => {
      let stored = 10;
      const seq = new RedisSequencer(conns[0]!, namespace, async () => stored);
      expect([await seq.next('c'), await seq.next('c')]).toEqual([11, 12]);
      stored = 12; // both archived
      await conns[1]!.del(`${namespace}:seq:c`);
      expect(await seq.next('c')).toBe(13);
    }));

  // With the RabbitMQ archive a seq is acknowledged before the store holds it: a seed from
  // the store alone would give out again seqs whose messages are still queued (and the worker
  // would then skip them: acknowledged messages lost; test/faults/scaled.fault.ts).
  it('never gives out again a seq it gave out before, when the store is behind', () =>
    withNodes(async (conns, namespace) => {
      const seq = new RedisSequencer(conns[0]!, namespace, async () => 3); // the store holds up to 3
      expect([await seq.next('c'), await seq.next('c'), await seq.next('c')]).toEqual([4, 5, 6]);
      await conns[1]!.del(`${namespace}:seq:c`); // Redis restarted without its data
      expect(await seq.next('c')).toBe(7);
    }));
});

describe('RedisSequencer numbering a send against the announced members version', () => {
  const at = (version: number, member = true) => () => ({ version, member });
  const lock = (namespace: string, chatId: string) => claimKey(namespace, membersLock(chatId));

  it('answers a send checked at an older version stale, member or not, without using a number', () =>
    withNodes(async (conns, namespace) => {
      const seq = new RedisSequencer(conns[0]!, namespace, async () => 0);
      await raiseMembersVersion(conns[1]!, namespace, 'c', 3);
      expect(await seq.nextIf('c', at(2))).toBe('stale');
      // A node that has not heard of the join yet: not a refusal, a reason to read again.
      expect(await seq.nextIf('c', at(2, false))).toBe('stale');
      expect(await seq.nextIf('c', at(3, false))).toBe('refused');
      expect(await seq.nextIf('c', at(3))).toBe(1);
      expect(await seq.next('c')).toBe(2);
    }));

  it('answers stale for a chat the node does not hold', () =>
    withNodes(async (conns, namespace) => {
      const seq = new RedisSequencer(conns[0]!, namespace, async () => 0);
      expect(await seq.nextIf('c', () => null)).toBe('stale');
    }));

  it('waits, while the change is in progress, for the announcement of a version the sender was checked at', () =>
    withNodes(async (conns, namespace) => {
      const seq = new RedisSequencer(conns[0]!, namespace, async () => 0);
      await raiseMembersVersion(conns[1]!, namespace, 'c', 3);
      await conns[1]!.set(lock(namespace, 'c'), 'claim:held', 'PX', 30_000); // the changing node's members lock
      let announced = false;
      setTimeout(() => {
        announced = true;
        void raiseMembersVersion(conns[1]!, namespace, 'c', 4).then(() => conns[1]!.del(lock(namespace, 'c')));
      }, 300);
      expect(await seq.nextIf('c', at(4))).toBe(1);
      expect(announced).toBe(true);
    }));

  it('takes the version as announced at once when no change is in progress (its announcement failed, or its node died)', () =>
    withNodes(async (conns, namespace) => {
      const seq = new RedisSequencer(conns[0]!, namespace, async () => 0);
      await raiseMembersVersion(conns[1]!, namespace, 'c', 3);
      expect(await seq.nextIf('c', at(5))).toBe(1);
      expect(await conns[1]!.get(membersVersionKey(namespace, 'c'))).toBe('5');
      // Nodes still at 3 are stale now.
      expect(await seq.nextIf('c', at(3))).toBe('stale');
    }));

  it('asks admit again while it waits: a removal that arrives meanwhile refuses the send', () =>
    withNodes(async (conns, namespace) => {
      const seq = new RedisSequencer(conns[0]!, namespace, async () => 0);
      await raiseMembersVersion(conns[1]!, namespace, 'c', 3);
      await conns[1]!.set(lock(namespace, 'c'), 'claim:held', 'PX', 30_000);
      let member = true;
      setTimeout(() => {
        member = false;
      }, 50);
      expect(await seq.nextIf('c', () => (member ? { version: 4, member: true } : { version: 4, member: false }))).toBe('refused');
    }));

  it("takes the sender's version when Redis has none (first use, or Redis lost it)", () =>
    withNodes(async (conns, namespace) => {
      const seq = new RedisSequencer(conns[0]!, namespace, async () => 0);
      expect(await seq.nextIf('c', at(7))).toBe(1);
      expect(await conns[1]!.get(membersVersionKey(namespace, 'c'))).toBe('7');
    }));
});
