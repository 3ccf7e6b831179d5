import { beforeAll, describe, expect, it } from 'vitest';
import { membershipFixture, membershipProperty } from './fuzz/membership.js';
import { testDeployment } from './helpers/deployment.js';
import { launchServer, serverReady } from './helpers/process.js';
import { TEST_SECRET } from './helpers/server.js';

/**
 * The randomized membership property (test/fuzz/membership.ts) over two broker nodes clustered
 * through Redis, users and REST calls on both: no delivery outside membership, no message
 * numbered while its sender was not a member, contiguous seqs, every PUBACKed send stored once
 * or refused. What makes it hold across nodes (docs/architecture.md, "Membership changes and
 * sends in flight"): a send is numbered against the chat's announced members version, the
 * membership caches keep the newest version, and the control bus shares the deliveries' ordered
 * stream. FUZZ_SEED picks the run (printed), FUZZ_STEPS its length.
 */
const SEED = Number(process.env.FUZZ_SEED ?? (process.env.FUZZ_RANDOM ? Math.floor(Math.random() * 2 ** 31) : 20261202));
const STEPS = Number(process.env.FUZZ_STEPS ?? 300);

describe(`membership over two clustered nodes, randomized: FUZZ_SEED=${SEED}, ${STEPS} steps`, () => {
  const { env, procs, open, dataDir } = testDeployment('membership');
  let f: Awaited<ReturnType<typeof membershipFixture>> | undefined;

  beforeAll(async () => {
    const shared = { ...env, JWT_SECRET: TEST_SECRET };
    f = await membershipFixture(dataDir, async () => [await serverReady(launchServer(shared)), await serverReady(launchServer(shared))]);
    procs.push(...f.nodes);
    open.push(...f.conns);
  });

  it('no delivery outside membership, no message numbered while its sender was not a member, contiguous seqs, every PUBACKed send stored once or refused', { timeout: 300_000 }, async () => {
    const { problems, outside, lateSends, figures } = await membershipProperty({ seed: SEED, steps: STEPS, atOnce: 4, ...f! });
    console.log(`membership property, two nodes: FUZZ_SEED=${SEED}: ${figures}; problems ${problems.length}; sends numbered after their sender's removal ${lateSends.length}; deliveries outside membership ${outside.length}`);
    expect(outside, `FUZZ_SEED=${SEED}`).toEqual([]);
    expect(problems, `FUZZ_SEED=${SEED}`).toEqual([]);
    expect(lateSends, `FUZZ_SEED=${SEED}: messages stored at a seq where their sender was not a member`).toEqual([]);
  });
});
