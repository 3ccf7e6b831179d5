import { readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaseResult, type FuzzTarget, MUTATION_NAMES, runCase } from './fuzz/mqtt-fuzz.js';
import { type Connected, connectAs, waitForMessage } from './helpers/mqtt.js';
import { type ReadyServer, launchServer, serverExit, serverReady } from './helpers/process.js';
import { type SeededUser, seed } from './helpers/seed.js';
import { TEST_SECRET, tempDir } from './helpers/server.js';

/**
 * Specification: no MQTT input, however malformed, crashes or stalls the server, or delivers
 * anything to anyone who may not see it. Seeded mutations of valid sessions (test/fuzz/
 * mqtt-fuzz.ts) over TCP and WebSocket against the built server in a process of its own;
 * after each batch a pair of legitimate users connects afresh, subscribes and exchanges a
 * message, and their chat holds only what they sent.
 *
 * `npm test` runs a fixed seed and about FUZZ_PACKETS=10,000 packets; `npm run fuzz` runs
 * 100,000 with a random seed. A failure prints `FUZZ_SEED=<seed> FUZZ_CASE=<case>`; set both
 * to replay that case alone.
 */
const SEED = Number(process.env.FUZZ_SEED ?? (process.env.FUZZ_RANDOM ? Math.floor(Math.random() * 2 ** 31) : 20261202));
const ONLY_CASE = process.env.FUZZ_CASE === undefined ? null : Number(process.env.FUZZ_CASE);
const PACKETS = Number(process.env.FUZZ_PACKETS ?? 10_000);
const CONCURRENCY = 32;
const BATCH = 500;
const FUZZ_USERS = 40;

describe(`MQTT fuzz: FUZZ_SEED=${SEED}, about ${PACKETS.toLocaleString('en-US')} packets`, () => {
  const dataDir = tempDir('chat-fuzz-mqtt-');
  let srv: ReadyServer;
  let target: FuzzTarget;
  let alice: SeededUser;
  let bob: SeededUser;
  let pairChat: string;

  beforeAll(async () => {
    await seed(dataDir, async (s) => {
      const users = await s.users(FUZZ_USERS, 'fuzz');
      const chats: string[] = [];
      for (let g = 0; g < FUZZ_USERS; g += 10) chats.push((await s.group(users[g]!, users.slice(g + 1, g + 10))).id);
      [alice, bob] = (await s.users(2, 'legit')) as [SeededUser, SeededUser];
      pairChat = (await s.direct(alice, bob)).id;
      target = {
        mqttPort: 0, httpPort: 0, foreignChatId: pairChat, foreignUserId: alice.user.id,
        users: users.map((u, i) => {
          const g = Math.floor(i / 10);
          return { id: u.user.id, username: u.user.username, token: u.token, chatId: chats[g]!, memberIds: users.slice(g * 10, g * 10 + 10).map((m) => m.user.id) };
        }),
      };
    });
    srv = await serverReady(launchServer({ DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET }));
    target.mqttPort = srv.mqttPort;
    target.httpPort = srv.port;
  });
  afterAll(async () => {
    srv?.child.kill('SIGTERM');
    if (srv) await serverExit(srv);
    rmSync(dataDir, { recursive: true, force: true });
  });

  const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${srv.child.pid}/status`, 'utf8'))?.[1]);

  /** A legitimate pair, connected afresh, exchanges a message; their chat holds only theirs. */
  async function legitimateExchange(tag: string) {
    const topic = `chats/${pairChat}/messages`;
    const a: Connected = await connectAs(srv, alice);
    const b: Connected = await connectAs(srv, bob, { transport: 'ws' });
    try {
      await Promise.all([a.client.subscribeAsync(topic, { qos: 1 }), b.client.subscribeAsync(topic, { qos: 1 })]);
      await a.client.publishAsync(topic, JSON.stringify({ text: `after ${tag}`, clientMsgId: tag }), { qos: 1 });
      const got = await waitForMessage(b, topic, (m) => m.json?.text === `after ${tag}`);
      expect(got.json).toMatchObject({ type: 'message', senderId: alice.user.id, clientMsgId: tag });
      expect(a.received.concat(b.received).filter((m) => m.json?.senderId !== alice.user.id && m.json?.senderId !== bob.user.id)).toEqual([]);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  }

  /**
   * While the cases run, the pair chats: a message every 60 ms, alternating, on connections of
   * their own (within the per-user send rate). A case that could see their chat, or any other
   * that is not its user's, would receive some of it within the time it stays connected.
   */
  async function chatter() {
    const topic = `chats/${pairChat}/messages`;
    const a = await connectAs(srv, alice);
    const b = await connectAs(srv, bob);
    let n = 0;
    const timer = setInterval(() => {
      const from = n % 2 ? b : a;
      from.client.publishAsync(topic, JSON.stringify({ text: `chatter ${n}`, clientMsgId: `chatter-${n++}` }), { qos: 1 }).catch(() => {});
    }, 60);
    return {
      sent: () => n,
      stop: async () => {
        clearInterval(timer);
        await Promise.all([a.end(), b.end()]);
      },
    };
  }

  it('crashes nothing, delivers nothing forbidden, and legitimate users keep chatting', { timeout: 600_000 }, async () => {
    const talk = await chatter();
    const results: CaseResult[] = [];
    let packets = 0;
    let next = ONLY_CASE ?? 0;
    const last = ONLY_CASE ?? Infinity;
    const rss0 = rssKb();
    let batches = 0;
    while (next <= last && packets < PACKETS) {
      const batchEnd = Math.min(next + BATCH, last + 1);
      const worker = async () => {
        while (next < batchEnd && packets < PACKETS) {
          const index = next++;
          const source = `127.77.${(index >> 8) & 255}.${(index & 255) || 1}`;
          const result = await runCase(SEED, index, target, source);
          packets += result.packets;
          results.push(result);
          if (result.wrongAnswer) {
            throw new Error(`FUZZ_SEED=${SEED} FUZZ_CASE=${index} (${result.mutation}, ${result.transport}): ${result.wrongAnswer}`);
          }
          if (result.forbidden.length > 0) {
            throw new Error(`FUZZ_SEED=${SEED} FUZZ_CASE=${index} (${result.mutation}, ${result.transport}) received what it may not: ${result.forbidden.join(', ')}`);
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      expect(srv.child.exitCode, `the server exited during the batch before case ${next}: ${srv.output().slice(-2000)}`).toBeNull();
      expect((await fetch(`${srv.url}/healthz`)).status).toBe(200);
      await legitimateExchange(`batch-${++batches}`);
    }

    await talk.stop();
    const history = await srv.http.history(pairChat, alice.token);
    expect(history.filter((m) => m.type === 'message' && m.senderId !== alice.user.id && m.senderId !== bob.user.id)).toEqual([]);
    expect(history.filter((m) => m.type === 'message' && m.text.startsWith('after batch-'))).toHaveLength(batches);

    const by = (key: (r: CaseResult) => string) => {
      const counts = new Map<string, number>();
      for (const r of results) counts.set(key(r), (counts.get(key(r)) ?? 0) + 1);
      return counts;
    };
    const mutations = by((r) => r.mutation);
    const transports = by((r) => r.transport);
    const closed = results.filter((r) => r.closedByServer).length;
    const bytes = results.reduce((n, r) => n + r.bytes, 0);
    console.log(
      `mqtt fuzz: FUZZ_SEED=${SEED}: ${results.length.toLocaleString('en-US')} sessions, ${packets.toLocaleString('en-US')} packets, ${(bytes / 1024).toFixed(0)} KB ` +
        `(tcp ${transports.get('tcp') ?? 0}, ws ${transports.get('ws') ?? 0}); closed by the server ${closed}; forbidden deliveries 0; ` +
        `CONNACK 0x01 to ${results.filter((r) => r.answered).length} unsupported protocol levels; ` +
        `legitimate exchange after each of ${batches} batches, ${talk.sent()} chatter messages meanwhile; server RSS ${(rss0 / 1024).toFixed(0)} -> ${(rssKb() / 1024).toFixed(0)} MB\n` +
        `  sessions per mutation: ${MUTATION_NAMES.map((m) => `${m} ${mutations.get(m) ?? 0}`).join(', ')}`,
    );
    if (ONLY_CASE === null) for (const m of MUTATION_NAMES) expect(mutations.get(m), `mutation "${m}" never ran`).toBeGreaterThan(0);
  });
});
