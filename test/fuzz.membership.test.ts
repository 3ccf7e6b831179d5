import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rng } from './fuzz/mqtt-fuzz.js';
import { testDeployment } from './helpers/deployment.js';
import { type Connected, connectAs, sleep } from './helpers/mqtt.js';
import { type ReadyServer, launchServer, serverReady } from './helpers/process.js';
import { type SeededUser, seed } from './helpers/seed.js';
import type { Json } from './helpers/server.js';
import { TEST_SECRET } from './helpers/server.js';

/**
 * A randomized property test of membership over two broker nodes clustered through Redis:
 * random joins, leaves, removals, sends and subscriptions, by users on either node, a few at a
 * time. Then, from the chat's history (its system messages say who was a member from which
 * seq), the invariants:
 * - nobody ever receives live a message of the chat at a seq after their removal (and before a
 *   re-join), nor at all if never a member;
 * - the history's seqs are contiguous from 1;
 * - every PUBACKed send is stored exactly once, or was refused (the sender's inbox says so).
 * FUZZ_SEED picks the run (printed); FUZZ_STEPS its length.
 */
const SEED = Number(process.env.FUZZ_SEED ?? (process.env.FUZZ_RANDOM ? Math.floor(Math.random() * 2 ** 31) : 20261202));
const STEPS = Number(process.env.FUZZ_STEPS ?? 300);
const USERS = 8;
const AT_ONCE = 4;

describe(`membership over two nodes, randomized: FUZZ_SEED=${SEED}, ${STEPS} steps`, () => {
  const { env, procs, open, dataDir } = testDeployment('membership');
  const nodes: ReadyServer[] = [];
  let users: SeededUser[] = [];
  let chat: Json;
  const conns: Connected[] = [];

  beforeAll(async () => {
    await seed(dataDir, async (s) => {
      users = await s.users(USERS, 'member');
    });
    const shared = { ...env, JWT_SECRET: TEST_SECRET };
    nodes.push(await serverReady(launchServer(shared)), await serverReady(launchServer(shared)));
    procs.push(...nodes);
    // user 0 owns the group and never leaves; users 1..3 start in it, 4..7 outside.
    chat = (await nodes[0]!.http.post('/api/chats', { type: 'group', name: 'property', memberIds: users.slice(1, 4).map((u) => u.user.id) }, users[0]!.token)).body.chat;
    for (const [i, u] of users.entries()) {
      const c = await connectAs(nodes[i % 2]!, u, { transport: i % 3 === 0 ? 'ws' : 'tcp' });
      open.push(c);
      conns.push(c);
      await c.client.subscribeAsync(`users/${u.user.id}/inbox`, { qos: 1 });
    }
  });
  afterAll(() => undefined);

  it('no delivery outside membership, contiguous seqs, every PUBACKed send stored once or refused', { timeout: 300_000 }, async () => {
    const r = rng(SEED);
    const pick = <T>(items: readonly T[]) => items[Math.floor(r() * items.length)]!;
    const topic = `chats/${chat.id}/messages`;
    const acked = new Map<string, number>(); // clientMsgId -> sender index
    let sends = 0;
    const ops = new Map<string, number>();
    const step = async () => {
      const who = Math.floor(r() * USERS);
      const node = pick(nodes);
      const u = users[who]!;
      const roll = r();
      const op = roll < 0.45 ? 'send' : roll < 0.6 ? 'subscribe' : roll < 0.75 ? 'add' : roll < 0.85 ? 'remove' : roll < 0.95 ? 'leave' : 'add self';
      ops.set(op, (ops.get(op) ?? 0) + 1);
      if (op === 'send') {
        const clientMsgId = `p${sends++}`;
        await conns[who]!.client.publishAsync(topic, JSON.stringify({ text: `from ${who}`, clientMsgId }), { qos: 1 });
        acked.set(clientMsgId, who);
      } else if (op === 'subscribe') {
        await conns[who]!.client.subscribeAsync(topic, { qos: 1 }).catch(() => {}); // refused (0x80) for a non-member
      } else if (op === 'add') {
        await node.http.post(`/api/chats/${chat.number}/members`, { userIds: [pick(users.slice(1)).user.id] }, users[0]!.token);
      } else if (op === 'add self') {
        await node.http.post(`/api/chats/${chat.number}/members`, { userIds: [u.user.id] }, u.token); // refused: the group is private
      } else if (op === 'remove') {
        await node.http.delete(`/api/chats/${chat.number}/members/${pick(users.slice(1)).user.id}`, users[0]!.token);
      } else if (who !== 0) {
        await node.http.delete(`/api/chats/${chat.number}/members/${u.user.id}`, u.token);
      }
    };
    for (let done = 0; done < STEPS; done += AT_ONCE) await Promise.all(Array.from({ length: Math.min(AT_ONCE, STEPS - done) }, step));
    await sleep(1500); // deliveries in flight arrive

    const history = await nodes[1]!.http.history(chat.id, users[0]!.token);
    // Contiguous.
    expect(history.map((m) => m.seq)).toEqual(history.map((_m, i) => i + 1));
    // Who was a member at each seq, from the system messages: member at s if the last
    // membership event about them at or before s added them (creation counts for 0..3).
    const events = new Map<string, { seq: number; member: boolean }[]>();
    for (const u of users) events.set(u.user.id, users.slice(0, 4).includes(u) ? [{ seq: 1, member: true }] : []);
    for (const m of history) {
      if (m.type !== 'system' || m.event === 'chat.created') continue;
      events.get(m.userId)!.push({ seq: m.seq, member: m.event === 'member.joined' });
    }
    const memberAt = (userId: string, seq: number) => {
      let member = false;
      for (const e of events.get(userId)!) if (e.seq <= seq) member = e.member;
      return member;
    };
    const problems: string[] = [];
    // A send that passed the membership check while its sender was being removed can still be
    // numbered after the removal's system message: reported, not asserted (a known gap, see
    // docs/architecture.md, "Membership changes and sends in flight").
    const lateSends = history.filter((m) => m.type === 'message' && !memberAt(m.senderId, m.seq)).map((m) => m.seq as number);
    // No live delivery after a removal (a delivery before joining is no leak: history shows it).
    for (const [i, c] of conns.entries()) {
      const id = users[i]!.user.id;
      for (const got of c.on(topic)) {
        const seq = got.json.seq as number;
        const before = events.get(id)!.filter((e) => e.seq < seq);
        const removed = before.length > 0 && !before.at(-1)!.member;
        const never = events.get(id)!.length === 0;
        if (removed || never) problems.push(`user ${i} received seq ${seq} (${got.json.type}) while not a member`);
      }
    }
    // Every PUBACKed send stored once, or refused in the sender's inbox.
    const stored = new Map<string, number>();
    for (const m of history) if (m.type === 'message') stored.set(m.clientMsgId, (stored.get(m.clientMsgId) ?? 0) + 1);
    const refused = new Set(conns.flatMap((c) => c.received.filter((m) => m.json?.type === 'message.rejected').map((m) => m.json.clientMsgId as string)));
    for (const [clientMsgId, who] of acked) {
      const n = stored.get(clientMsgId) ?? 0;
      if (n > 1) problems.push(`${clientMsgId} stored ${n} times`);
      if (n === 0 && !refused.has(clientMsgId)) problems.push(`${clientMsgId} (user ${who}) acknowledged, neither stored nor refused`);
    }
    const delivered = conns.reduce((n, c) => n + c.on(topic).length, 0);
    console.log(
      `membership property: FUZZ_SEED=${SEED}: ${STEPS} steps (${[...ops].map(([o, n]) => `${o} ${n}`).join(', ')}); ` +
        `history ${history.length} seqs, ${stored.size} messages stored, ${refused.size} sends refused; ${delivered} live deliveries checked; problems ${problems.length}; ` +
        `sends numbered after their sender's removal ${lateSends.length}${lateSends.length ? ` (seqs ${lateSends.join(', ')})` : ''}`,
    );
    expect(problems, `FUZZ_SEED=${SEED}`).toEqual([]);
  });
});
