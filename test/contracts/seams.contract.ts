import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ControlBus, ControlEvent } from '../../core/bus.js';
import type { PresenceRegistry } from '../../core/presence.js';
import type { RateLimiter } from '../../core/rate-limit.js';
import type { Claim, ClaimHold, SendClaims } from '../../core/send-claims.js';
import type { Sequencer } from '../../core/sequencer.js';
import type { Throttle } from '../../core/throttle.js';
import { pollUntil } from '../helpers/poll.js';

/**
 * Contract suites of the small seams. Each implementation (in-process, Redis) runs them against
 * itself. `nodes` gives two handles that stand for two broker nodes: for an in-process
 * implementation both are the same object (one node), for a shared one they are separate
 * connections, and the guarantees must hold across them.
 */
interface Opened<T> {
  nodes: [T, T];
  cleanup: () => Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function sequencerContract(name: string, open: (seed: (chatId: string) => Promise<number>) => Promise<Opened<Sequencer>>) {
  describe(`Sequencer contract: ${name}`, () => {
    let seeds: string[];
    let opened: Opened<Sequencer>;
    const stored: Record<string, number> = { 'chat-with-history': 41 };
    beforeEach(async () => {
      seeds = [];
      opened = await open(async (chatId) => {
        seeds.push(chatId);
        return stored[chatId] ?? 0;
      });
    });
    afterEach(() => opened.cleanup());

    it('starts after the highest stored seq and counts up by one', async () => {
      const [a] = opened.nodes;
      expect([await a.next('chat-with-history'), await a.next('chat-with-history')]).toEqual([42, 43]);
      expect([await a.next('new-chat'), await a.next('new-chat')]).toEqual([1, 2]);
    });

    it('current answers the highest number given out on any node, or the stored seq before any', async () => {
      const [a, b] = opened.nodes;
      expect(await a.current('chat-with-history')).toBe(41);
      expect(await b.current('untouched')).toBe(0);
      await a.next('counted');
      await b.next('counted');
      expect([await a.current('counted'), await b.current('counted')]).toEqual([2, 2]);
      expect(await b.next('counted')).toBe(3);
    });

    it('nextIf gives no number when the sender is not admitted, and the next one follows on', async () => {
      const [a, b] = opened.nodes;
      const member = { version: 1, member: true };
      const notMember = { version: 1, member: false };
      expect(await a.nextIf('guarded', () => member)).toBe(1);
      expect(await b.nextIf('guarded', () => notMember)).toBe('refused');
      expect(await a.nextIf('guarded', () => notMember)).toBe('refused');
      expect(await b.next('guarded')).toBe(2);
      expect(await b.nextIf('guarded', () => member)).toBe(3);
    });

    it('reads the store once per chat, also under concurrent first use', async () => {
      const [a, b] = opened.nodes;
      await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).next('cold')));
      await a.next('cold');
      // Concurrent first calls may each find the key cold; at most one read per node.
      expect(seeds.filter((c) => c === 'cold').length).toBeLessThanOrEqual(2);
    });

    it('gives 200 concurrent calls from two nodes 200 distinct, contiguous numbers', async () => {
      const [a, b] = opened.nodes;
      const got = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).next('busy')));
      expect([...got].sort((x, y) => x - y)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    });

    it('keeps chats independent', async () => {
      const [a] = opened.nodes;
      await a.next('one');
      await a.next('one');
      expect(await a.next('two')).toBe(1);
      expect(await a.next('one')).toBe(3);
    });
  });
}

export function sendClaimsContract(name: string, open: () => Promise<Opened<SendClaims>>) {
  describe(`SendClaims contract: ${name}`, () => {
    let opened: Opened<SendClaims>;
    beforeEach(async () => {
      opened = await open();
    });
    afterEach(() => opened.cleanup());

    /** Resolves to the claim's outcome, or 'waiting' if it has not settled after `ms`. */
    const within = (p: Promise<Claim>, ms: number) => Promise.race([p, sleep(ms).then(() => 'waiting' as const)]);
    const hold = (c: Claim | 'waiting'): ClaimHold => {
      if (c === 'waiting' || !c.claimed) throw new Error(`expected a granted claim, got ${JSON.stringify(c)}`);
      return c.hold;
    };

    it('grants exactly one of 20 concurrent claims of a key from two nodes; the others get what it sent', async () => {
      const [a, b] = opened.nodes;
      const claims = Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).claim('k'));
      const early = await Promise.all(claims.map((c) => within(c, 150)));
      const granted = early.filter((c) => c !== 'waiting');
      expect(granted).toHaveLength(1);
      await hold(granted[0]!).complete({ id: 'm1', seq: 7 });
      const outcomes = await Promise.all(claims);
      expect(outcomes.filter((c) => !c.claimed)).toEqual(Array.from({ length: 19 }, () => ({ claimed: false, sent: { id: 'm1', seq: 7 } })));
    });

    it('tells a later claim on either node what the completed send was', async () => {
      const [a, b] = opened.nodes;
      await hold(await a.claim('done')).complete({ id: 'm2', seq: 3 });
      expect(await b.claim('done')).toEqual({ claimed: false, sent: { id: 'm2', seq: 3 } });
      expect(await a.claim('done')).toEqual({ claimed: false, sent: { id: 'm2', seq: 3 } });
    });

    it('hands a released key to a waiting claim on the other node', async () => {
      const [a, b] = opened.nodes;
      const first = hold(await a.claim('retry'));
      const waiting = b.claim('retry');
      expect(await within(waiting, 150)).toBe('waiting');
      await first.release();
      const second = hold(await waiting);
      await first.complete({ id: 'stale', seq: 9 }); // already settled: no effect
      await second.complete({ id: 'm3', seq: 1 });
      expect(await a.claim('retry')).toEqual({ claimed: false, sent: { id: 'm3', seq: 1 } });
    });

    it('keeps keys independent', async () => {
      const [a, b] = opened.nodes;
      const one = hold(await a.claim('one'));
      const two = hold(await b.claim('two'));
      await one.release();
      await two.complete({ id: 'm4', seq: 2 });
      expect((await b.claim('one')).claimed).toBe(true);
    });
  });
}

export function throttleContract(name: string, open: () => Promise<Opened<Throttle>>) {
  describe(`Throttle contract: ${name}`, () => {
    let opened: Opened<Throttle>;
    beforeEach(async () => {
      opened = await open();
    });
    afterEach(() => opened.cleanup());

    it('grants one claim per key and period across nodes, and says how long the claim has left', async () => {
      const [a, b] = opened.nodes;
      expect(await a.claim('k', 300)).toBe(true);
      const left = await b.claim('k', 300);
      expect(left).toBeGreaterThan(0);
      expect(left).toBeLessThanOrEqual(300);
      expect(await a.claim('other', 300)).toBe(true);
      await sleep((left as number) + 20);
      expect(await b.claim('k', 300)).toBe(true);
    });

    it('grants exactly one of 20 concurrent claims of a free key', async () => {
      const [a, b] = opened.nodes;
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).claim('race', 1000)));
      expect(answers.filter((x) => x === true)).toHaveLength(1);
    });
  });
}

export function rateLimiterContract(name: string, open: (burst: number, perSecond: number) => Promise<Opened<RateLimiter>>) {
  describe(`RateLimiter contract: ${name}`, () => {
    let opened: Opened<RateLimiter> | undefined;
    afterEach(async () => {
      await opened?.cleanup();
      opened = undefined;
    });

    it('allows a burst, then refuses; keys are independent; has() spends nothing', async () => {
      opened = await open(3, 0.001);
      const [a] = opened.nodes;
      expect(await a.has('k')).toBe(true);
      expect([await a.take('k'), await a.take('k'), await a.take('k'), await a.take('k')]).toEqual([true, true, true, false]);
      expect(await a.has('k')).toBe(false);
      expect(await a.take('other')).toBe(true);
      expect(await a.has('other')).toBe(true);
    });

    it('says how long until a refused key has a unit again (wait), spending nothing', async () => {
      opened = await open(2, 0.5); // one unit every 2 s
      const [a, b] = opened.nodes;
      expect(await a.wait('w')).toBe(0);
      expect([await a.take('w'), await a.take('w')]).toEqual([true, true]);
      const wait = await b.wait('w');
      expect(wait).toBeGreaterThan(1);
      expect(wait).toBeLessThanOrEqual(2);
      expect(await a.wait('w')).toBeLessThanOrEqual(wait);
      expect(await a.take('w')).toBe(false);
      expect(await a.wait('fresh')).toBe(0);
    });

    it('holds the budget under concurrent takes from two nodes', async () => {
      opened = await open(10, 0.001);
      const [a, b] = opened.nodes;
      const got = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).take('shared')));
      expect(got.filter(Boolean)).toHaveLength(10);
    });

    it('refills over time', async () => {
      opened = await open(1, 20); // one unit every 50 ms
      const [a] = opened.nodes;
      expect(await a.take('r')).toBe(true);
      expect(await a.take('r')).toBe(false);
      expect(await pollUntil(() => a.has('r'), { within: 2000, every: 50 })).toBe(true);
      expect(await a.take('r')).toBe(true);
    });
  });
}

export function busContract(name: string, open: () => Promise<Opened<ControlBus>>) {
  describe(`ControlBus contract: ${name}`, () => {
    let opened: Opened<ControlBus>;
    beforeEach(async () => {
      opened = await open();
    });
    afterEach(() => opened.cleanup());

    const collect = (bus: ControlBus) => {
      const got: ControlEvent[] = [];
      const stop = bus.subscribe((e) => got.push(e));
      return { got, stop };
    };
    /** Events travel between nodes: each test waits up to 2 s for them, then says what came. */
    const transit = { within: 2000, every: 10 };

    it('delivers every event, in order, to subscribers on every node, the publisher included', async () => {
      const [a, b] = opened.nodes;
      const onA = collect(a);
      const onB = collect(b);
      const events: Exclude<ControlEvent, { type: 'bus.resumed' }>[] = [
        { type: 'session.revoked', sessionId: 's1', userId: 'u1' },
        { type: 'member.added', chatId: 'c1', userIds: ['u1', 'u2'], memberIds: ['u0', 'u1', 'u2'], version: 2 },
        { type: 'member.removed', chatId: 'c1', userId: 'u2', memberIds: ['u0', 'u1'], version: 3 },
      ];
      for (const e of events) await a.publish(e);
      await pollUntil(() => onA.got.length === 3 && onB.got.length === 3, transit);
      expect(onA.got).toEqual(events);
      expect(onB.got).toEqual(events);
      onA.stop();
      onB.stop();
    });

    it('stops delivering to a handler once it unsubscribes', async () => {
      const [a, b] = opened.nodes;
      const gone = collect(b);
      const stays = collect(b);
      gone.stop();
      await a.publish({ type: 'member.removed', chatId: 'c2', userId: 'u3', memberIds: [], version: 2 });
      await pollUntil(() => stays.got.length === 1, transit);
      expect(stays.got).toHaveLength(1);
      expect(gone.got).toHaveLength(0);
      stays.stop();
    });
  });
}

/** A shared registry can lose a node: `kill(0)` makes node 0 look dead (as if SIGKILLed) and
 * `sweep(1)` runs node 1's sweep. An in-process registry is one node and has neither. */
export interface NodeFailure {
  kill: (node: 0 | 1) => Promise<void>;
  sweep: (node: 0 | 1) => Promise<string[]>;
}

export function presenceContract(name: string, open: () => Promise<Opened<PresenceRegistry> & Partial<NodeFailure>>, { nodeFailure = false } = {}) {
  describe(`PresenceRegistry contract: ${name}`, () => {
    let opened: Opened<PresenceRegistry> & Partial<NodeFailure>;
    beforeEach(async () => {
      opened = await open();
    });
    afterEach(() => opened.cleanup());

    const views = async (user: string) => {
      const out = [];
      for (const node of opened.nodes) {
        out.push({
          among: [...(await node.onlineAmong([user, 'nobody']))],
          listed: (await node.listOnline()).includes(user),
          count: await node.count(),
        });
      }
      return out;
    };

    it('reports the first connection anywhere as coming online, and every node agrees', async () => {
      const [a, b] = opened.nodes;
      expect(await a.connected('u1')).toBe(true);
      expect(await b.connected('u1')).toBe(false);
      expect(await a.connected('u1')).toBe(false);
      for (const v of await views('u1')) expect(v).toEqual({ among: ['u1'], listed: true, count: 1 });
    });

    it('reports the last disconnection anywhere as going offline, exactly once', async () => {
      const [a, b] = opened.nodes;
      await a.connected('u2');
      await b.connected('u2');
      expect(await a.disconnected('u2')).toBe(false);
      expect(await b.disconnected('u2')).toBe(true);
      for (const v of await views('u2')) expect(v).toEqual({ among: [], listed: false, count: 0 });
      expect(await a.disconnected('u2')).toBe(false); // nothing left to count out
    });

    it('reports one transition each way under concurrent connects and disconnects on two nodes', async () => {
      const [a, b] = opened.nodes;
      const ups = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).connected('u3')));
      expect(ups.filter(Boolean)).toHaveLength(1);
      const downs = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).disconnected('u3')));
      expect(downs.filter(Boolean)).toHaveLength(1);
      expect(await a.count()).toBe(0);
    });

    if (nodeFailure) {
      it("a dead node's users go offline when a survivor sweeps, unless connected elsewhere", async () => {
        const { kill, sweep } = opened as NodeFailure;
        const [a, b] = opened.nodes;
        await a.connected('only-on-a');
        await a.connected('on-both');
        await b.connected('on-both');
        await kill(0);
        expect((await sweep(1)).sort()).toEqual(['only-on-a']);
        expect([...(await b.onlineAmong(['only-on-a', 'on-both']))]).toEqual(['on-both']);
        expect(await sweep(1)).toEqual([]);
      });
    }
  });
}
