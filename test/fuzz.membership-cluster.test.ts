import { beforeAll, describe, expect, it } from 'vitest';
import { membershipProperty } from './fuzz/membership.js';
import { testDeployment } from './helpers/deployment.js';
import { type Connected, connectAs } from './helpers/mqtt.js';
import { type ReadyServer, launchServer, serverReady } from './helpers/process.js';
import { type SeededUser, seed } from './helpers/seed.js';
import { type Json, TEST_SECRET } from './helpers/server.js';

/**
 * The randomized membership property (test/fuzz/membership.ts) over two broker nodes clustered
 * through Redis, users and REST calls on both. One gap is reported rather than asserted: a send
 * racing its sender's removal on another node can be numbered after the removal
 * (docs/architecture.md, "Membership changes and sends in flight"). FUZZ_SEED picks the run
 * (printed), FUZZ_STEPS its length.
 */
const SEED = Number(process.env.FUZZ_SEED ?? (process.env.FUZZ_RANDOM ? Math.floor(Math.random() * 2 ** 31) : 20261202));
const STEPS = Number(process.env.FUZZ_STEPS ?? 300);

describe(`membership over two clustered nodes, randomized: FUZZ_SEED=${SEED}, ${STEPS} steps`, () => {
  const { env, procs, open, dataDir } = testDeployment('membership');
  const nodes: ReadyServer[] = [];
  let users: SeededUser[] = [];
  let chat: Json;
  const conns: Connected[] = [];

  beforeAll(async () => {
    await seed(dataDir, async (s) => {
      users = await s.users(8, 'member');
    });
    const shared = { ...env, JWT_SECRET: TEST_SECRET };
    nodes.push(await serverReady(launchServer(shared)), await serverReady(launchServer(shared)));
    procs.push(...nodes);
    chat = (await nodes[0]!.http.post('/api/chats', { type: 'group', name: 'property', memberIds: users.slice(1, 4).map((u) => u.user.id) }, users[0]!.token)).body.chat;
    for (const [i, u] of users.entries()) {
      const c = await connectAs(nodes[i % 2]!, u, { transport: i % 3 === 0 ? 'ws' : 'tcp' });
      open.push(c);
      conns.push(c);
      await c.client.subscribeAsync(`users/${u.user.id}/inbox`, { qos: 1 });
    }
  });

  it('no delivery outside membership, contiguous seqs, every PUBACKed send stored once or refused', { timeout: 300_000 }, async () => {
    const { problems, lateSends, figures } = await membershipProperty({ seed: SEED, steps: STEPS, atOnce: 4, nodes, users, conns, chat });
    console.log(`membership property, two nodes: FUZZ_SEED=${SEED}: ${figures}; problems ${problems.length}; sends numbered after their sender's removal ${lateSends.length}${lateSends.length ? ` (seqs ${lateSends.join(', ')}; the known gap)` : ''}`);
    expect(problems, `FUZZ_SEED=${SEED}`).toEqual([]);
  });
});
