import { expect } from 'vitest';
import { type Connected, connectAs, sleep } from '../helpers/mqtt.js';
import type { ReadyServer } from '../helpers/process.js';
import { type SeededUser, seed } from '../helpers/seed.js';
import type { Json } from '../helpers/server.js';
import { rng } from './mqtt-fuzz.js';

/**
 * The property's set-up: 8 users seeded into `dataDir`, then `start()` runs the nodes on it;
 * user 0 creates the private group with users 1..3, and user i connects to node i mod n (one
 * in three over WebSocket), subscribed to their inbox.
 */
export async function membershipFixture(dataDir: string, start: () => Promise<ReadyServer[]>) {
  let users: SeededUser[] = [];
  await seed(dataDir, async (s) => {
    users = await s.users(8, 'member');
  });
  const nodes = await start();
  const chat: Json = (await nodes[0]!.http.post('/api/chats', { type: 'group', name: 'property', memberIds: users.slice(1, 4).map((u) => u.user.id) }, users[0]!.token)).body.chat;
  const conns: Connected[] = [];
  for (const [i, u] of users.entries()) {
    const c = await connectAs(nodes[i % nodes.length]!, u, { transport: i % 3 === 0 ? 'ws' : 'tcp' });
    conns.push(c);
    await c.client.subscribeAsync(`users/${u.user.id}/inbox`, { qos: 1 });
  }
  return { nodes, users, chat, conns };
}

/**
 * The randomized membership property (test/fuzz.membership*.test.ts): `steps` random joins,
 * leaves, removals, sends and subscriptions, `atOnce` at a time, by `users` (user 0 owns the
 * group `chat` and never leaves; 1..3 start in it) connected in order to `nodes` (`conns`,
 * subscribed to their inboxes). Then, from the chat's history (its system messages say who was
 * a member from which seq): nobody received live a message of the chat at a seq after their
 * removal unless they joined again later (history then shows it to them anyway), nor at all if
 * never a member; the seqs are contiguous from 1;
 * every PUBACKed send is stored exactly once, or was refused (the sender's inbox says so).
 * Returns the deliveries outside membership (`outside`), what failed the other checks
 * (`problems`), the messages stored from a sender who was not a member at their seq (`lateSends`), and
 * a line of figures.
 */
export async function membershipProperty(o: {
  seed: number; steps: number; atOnce: number; nodes: ReadyServer[]; users: SeededUser[]; conns: Connected[]; chat: Json;
}): Promise<{ problems: string[]; outside: string[]; lateSends: string[]; figures: string }> {
  const { nodes, users, conns, chat } = o;
  const USERS = users.length;
  const SEED = o.seed;
  const STEPS = o.steps;
  const AT_ONCE = o.atOnce;
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

  const history = await nodes.at(-1)!.http.history(chat.id, users[0]!.token);
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
  /** Live deliveries outside the recipient's membership. */
  const outside: string[] = [];
  // Messages numbered while their sender was not a member (after a removal, before a join).
  const lateSends = history
    .filter((m) => m.type === 'message' && !memberAt(m.senderId, m.seq))
    .map((m) => `seq ${m.seq} from user ${users.findIndex((u) => u.user.id === m.senderId)}, whose membership changed at ${events.get(m.senderId)!.map((e) => `${e.seq} ${e.member ? 'in' : 'out'}`).join(', ')}`);
  // No live delivery after a removal (a delivery before joining is no leak: history shows it).
  for (const [i, c] of conns.entries()) {
    const id = users[i]!.user.id;
    for (const got of c.on(topic)) {
      const seq = got.json.seq as number;
      // A member from its member.joined on (that notice included), as memberAt counts it.
      const before = events.get(id)!.filter((e) => e.seq <= seq);
      const removed = before.length > 0 && !before.at(-1)!.member;
      const never = events.get(id)!.length === 0;
      // A message numbered while the user was out but delivered once they were back in (its
      // delivery outran by their re-join) is no leak: history shows it to them as a member.
      const rejoined = events.get(id)!.some((e) => e.seq > seq && e.member);
      if ((removed && !rejoined) || never) outside.push(`user ${i} received seq ${seq} (${got.json.type}) while not a member, and not one again later`);
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
  return { problems, outside, lateSends, figures: `${STEPS} steps (${[...ops].map(([op, n]) => `${op} ${n}`).join(', ')}); history ${history.length} seqs, ${stored.size} messages stored, ${refused.size} sends refused; ${delivered} live deliveries checked` };
}
