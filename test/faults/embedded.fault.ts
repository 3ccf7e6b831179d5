import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type ReadyServer, launchServer, serverExit, serverReady } from '../helpers/process.js';
import { type SeededUser, seed } from '../helpers/seed.js';
import { TEST_SECRET, tempDir } from '../helpers/server.js';
import { NOT_RUN_NOTE } from '../support/conditional.js';
import { figures, freePort, line, refusedByServer, startStream } from './stream.js';

/**
 * Faults of the embedded server (`npm run faults`): a steady stream of messages from 20 users
 * (160 msg/s), each resent after a reconnect until its PUBACK, while the server is killed,
 * stopped, or runs out of disk. Each scenario prints one line of figures; in every one, no
 * acknowledged message is lost and none is stored twice.
 */
const SENDERS = 20;

async function deployment(name: string, dataDir = tempDir(`chat-fault-${name}-`)) {
  let users: SeededUser[] = [];
  let chatId = '';
  await seed(dataDir, async (s) => {
    users = await s.users(SENDERS, name);
    chatId = (await s.group(users[0]!, users.slice(1))).id;
  });
  const env = { DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET, PORT: String(await freePort()), MQTT_PORT: String(await freePort()) };
  const start = () => serverReady(launchServer(env));
  return { dataDir, users, chatId, env, start };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

describe('faults of the embedded server', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  it('SIGKILL during a steady stream, five rounds: every acknowledged message stored once', { timeout: 120_000 }, async () => {
    const d = await deployment('kill');
    let srv: ReadyServer = await d.start();
    cleanup.push(async () => {
      srv.child.kill('SIGKILL');
      await serverExit(srv);
      rmSync(d.dataDir, { recursive: true, force: true });
    });
    const stream = await startStream(srv.mqttPort, d.users, d.chatId, 8, 'kill');
    const recoveries: number[] = [];
    for (let round = 0; round < 5; round++) {
      await sleep(1500 + round * 200);
      srv.child.kill('SIGKILL');
      await serverExit(srv);
      const restarted = performance.now();
      srv = await d.start();
      recoveries.push((await stream.nextAck()) - restarted);
    }
    await sleep(1000);
    await stream.stop();
    const f = await figures(srv.http, d.users[0]!.token, d.chatId, stream);
    console.log(line('SIGKILL x5', f, `first PUBACK after each restart: ${recoveries.map(seconds).join(', ')} (from spawning the new process)`));
    expect(f.lost).toEqual([]);
    expect(f.duplicated).toEqual([]);
    expect(f.increasing).toBe(true);
    expect(f.acked).toBeGreaterThan(SENDERS * 8 * 5);
  });

  it('SIGSTOP for 5 s, then SIGCONT: every acknowledged message stored once', { timeout: 90_000 }, async () => {
    const d = await deployment('stop');
    const srv = await d.start();
    cleanup.push(async () => {
      srv.child.kill('SIGKILL');
      await serverExit(srv);
      rmSync(d.dataDir, { recursive: true, force: true });
    });
    const stream = await startStream(srv.mqttPort, d.users, d.chatId, 8, 'stop');
    await sleep(2000);
    srv.child.kill('SIGSTOP');
    await sleep(5000);
    const continued = performance.now();
    srv.child.kill('SIGCONT');
    const recovery = (await stream.nextAck()) - continued;
    await sleep(2000);
    await stream.stop();
    const f = await figures(srv.http, d.users[0]!.token, d.chatId, stream, await refusedByServer(srv.url));
    console.log(line('SIGSTOP 5 s', f, `first PUBACK ${seconds(recovery)} after SIGCONT`));
    expect(f.lost).toEqual([]);
    expect(f.duplicated).toEqual([]);
    expect(srv.child.exitCode).toBeNull();
  });

  // A filesystem of its own, of 24 MiB, for the data directory: filled up while the stream
  // runs, then freed. Needs mount(8) and the right to use it (root here).
  const canMount = (() => {
    try {
      execFileSync('mount', ['--version'], { stdio: 'ignore' });
      return process.getuid?.() === 0;
    } catch {
      return false;
    }
  })();

  it("the data directory's disk full, then freed: nothing acknowledged is lost, the server stays up and recovers", { timeout: 120_000 }, async (ctx) => {
    if (!canMount) ctx.skip(`${NOT_RUN_NOTE}making a small filesystem needs mount(8) and root; to run it: run npm run faults as root`);
    const mnt = tempDir('chat-fault-disk-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mnt]);
    const dataDir = join(mnt, 'data');
    mkdirSync(dataDir);
    const d = await deployment('disk', dataDir);
    const srv = await d.start();
    cleanup.push(async () => {
      srv.child.kill('SIGKILL');
      await serverExit(srv);
      execFileSync('umount', ['-l', mnt]);
      rmSync(mnt, { recursive: true, force: true });
    });
    const stream = await startStream(srv.mqttPort, d.users, d.chatId, 8, 'disk');
    await sleep(1500);
    // Fill the filesystem: the WAL can no longer grow.
    const filler = join(mnt, 'filler');
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M', 'count=64'], { stdio: 'ignore' });
    } catch {
      // dd stops at "No space left on device": that is the point
    }
    const ackedWhenFull = stream.acked().size;
    await sleep(4000);
    const ackedWhileFull = stream.acked().size - ackedWhenFull;
    expect(srv.child.exitCode).toBeNull();
    const healthWhileFull = (await fetch(`${srv.url}/healthz`)).status;
    rmSync(filler);
    const freed = performance.now();
    const recovery = (await stream.nextAck()) - freed;
    await sleep(2000);
    await stream.stop();
    const f = await figures(srv.http, d.users[0]!.token, d.chatId, stream, await refusedByServer(srv.url));
    console.log(line('disk full', f, `first PUBACK ${seconds(recovery)} after space was freed (in the 4 s while full: ${ackedWhileFull} acked, /healthz ${healthWhileFull})`));
    expect(f.lost).toEqual([]);
    expect(f.duplicated).toEqual([]);
    expect(srv.child.exitCode).toBeNull();
  });
});
