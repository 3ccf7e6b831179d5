import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { membershipProperty } from './fuzz/membership.js';
import { type Connected, connectAs } from './helpers/mqtt.js';
import { type ReadyServer, launchServer, serverExit, serverReady } from './helpers/process.js';
import { type SeededUser, seed } from './helpers/seed.js';
import { type Json, TEST_SECRET, tempDir } from './helpers/server.js';

/**
 * The randomized membership property (test/fuzz/membership.ts) on the embedded server: random
 * joins, leaves, removals, sends and subscriptions, four at a time. Here, also: no message is
 * ever numbered after its sender's removal (the membership check and the number are taken in
 * one step, Sequencer.nextIf). FUZZ_SEED picks the run (printed), FUZZ_STEPS its length.
 */
const SEED = Number(process.env.FUZZ_SEED ?? (process.env.FUZZ_RANDOM ? Math.floor(Math.random() * 2 ** 31) : 20261202));
const STEPS = Number(process.env.FUZZ_STEPS ?? 300);

describe(`membership on the embedded server, randomized: FUZZ_SEED=${SEED}, ${STEPS} steps`, () => {
  const dataDir = tempDir('chat-membership-');
  let node: ReadyServer;
  let users: SeededUser[] = [];
  let chat: Json;
  const conns: Connected[] = [];

  beforeAll(async () => {
    await seed(dataDir, async (s) => {
      users = await s.users(8, 'member');
    });
    node = await serverReady(launchServer({ DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET }));
    chat = (await node.http.post('/api/chats', { type: 'group', name: 'property', memberIds: users.slice(1, 4).map((u) => u.user.id) }, users[0]!.token)).body.chat;
    for (const [i, u] of users.entries()) {
      const c = await connectAs(node, u, { transport: i % 3 === 0 ? 'ws' : 'tcp' });
      conns.push(c);
      await c.client.subscribeAsync(`users/${u.user.id}/inbox`, { qos: 1 });
    }
  });
  afterAll(async () => {
    await Promise.all(conns.map((c) => c.end()));
    node?.child.kill('SIGTERM');
    if (node) await serverExit(node);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('no delivery outside membership, no message numbered after its sender left, contiguous seqs, every PUBACKed send stored once or refused', { timeout: 300_000 }, async () => {
    const { problems, lateSends, figures } = await membershipProperty({ seed: SEED, steps: STEPS, atOnce: 4, nodes: [node], users, conns, chat });
    console.log(`membership property, embedded: FUZZ_SEED=${SEED}: ${figures}; problems ${problems.length}; sends numbered after their sender's removal ${lateSends.length}`);
    expect(problems, `FUZZ_SEED=${SEED}`).toEqual([]);
    expect(lateSends, `FUZZ_SEED=${SEED}: messages stored at a seq where their sender was not a member`).toEqual([]);
  });
});
