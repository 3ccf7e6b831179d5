import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { membershipFixture, membershipProperty } from './fuzz/membership.js';
import { launchServer, serverExit, serverReady } from './helpers/process.js';
import { TEST_SECRET, tempDir } from './helpers/server.js';

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
  let f: Awaited<ReturnType<typeof membershipFixture>> | undefined;

  beforeAll(async () => {
    f = await membershipFixture(dataDir, async () => [await serverReady(launchServer({ DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET }))]);
  });
  afterAll(async () => {
    await Promise.all(f?.conns.map((c) => c.end()) ?? []);
    for (const node of f?.nodes ?? []) {
      node.child.kill('SIGTERM');
      await serverExit(node);
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('no delivery outside membership, no message numbered after its sender left, contiguous seqs, every PUBACKed send stored once or refused', { timeout: 300_000 }, async () => {
    const { problems, outside, lateSends, figures } = await membershipProperty({ seed: SEED, steps: STEPS, atOnce: 4, ...f! });
    console.log(`membership property, embedded: FUZZ_SEED=${SEED}: ${figures}; problems ${problems.length}; sends numbered after their sender's removal ${lateSends.length}`);
    expect(outside, `FUZZ_SEED=${SEED}`).toEqual([]);
    expect(problems, `FUZZ_SEED=${SEED}`).toEqual([]);
    expect(lateSends, `FUZZ_SEED=${SEED}: messages stored at a seq where their sender was not a member`).toEqual([]);
  });
});
