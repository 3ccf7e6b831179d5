/**
 * Fan-out benchmark: a group of N members, all subscribed; the members take turns sending
 * (as people in a busy group do, and so no one exceeds the per-user send limit), each message
 * reaches all N. QoS 1, one publish in flight, on loopback.
 *
 *   baseline  plain Aedes (in-memory, no hooks) on an ephemeral port
 *   chat      the embedded chat server: token auth, ACL, payload validation, dedupe,
 *             per-chat seq, group commit to SQLite (fsync) before each PUBACK, envelope rewrite
 *
 * Both run in this process, one after the other, with the same clients and payload size, so
 * the ratio between them is what to read; absolute numbers depend on the machine.
 *
 *   npm run bench -- [--members 100] [--messages 1000]
 */
import { Aedes } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../core/config.js';
import { startServer } from '../server.js';

const { values } = parseArgs({ options: { members: { type: 'string', default: '100' }, messages: { type: 'string', default: '1000' } } });
/** A group holds at most 100 members; both runs use the same clients. */
const MEMBERS = Math.min(Number(values.members), 100);
const MESSAGES = Number(values.messages);
const TEXT = 'x'.repeat(200); // ~256-byte payload with the JSON around it

interface Result { deliveriesPerSec: number; p50: number; p99: number }

async function connect(url: string, opts: mqtt.IClientOptions): Promise<MqttClient> {
  const c = mqtt.connect(url, { reconnectPeriod: 0, ...opts });
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  // Without TCP_NODELAY, small packets wait for delayed ACKs (about 40 ms each on Linux).
  (c.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  return c;
}

/** Member i % N sends message i; waits until every member has it before sending the next. */
async function measure(members: MqttClient[], topic: string, payload: (i: number) => string): Promise<Result> {
  let waiting = 0;
  let release: () => void = () => {};
  for (const m of members) m.on('message', () => {
    if (--waiting === 0) release();
  });
  const latencies: number[] = [];
  const warmup = Math.min(50, MESSAGES / 10);
  let started = 0;
  for (let i = 0; i < MESSAGES + warmup; i++) {
    if (i === warmup) started = performance.now();
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const all = new Promise<void>((resolve, reject) => {
      release = resolve;
      timer = setTimeout(() => reject(new Error(`message ${i}: ${waiting} of ${members.length} deliveries missing after 10 s`)), 10_000);
    });
    waiting = members.length;
    await members[i % members.length]!.publishAsync(topic, payload(i), { qos: 1 });
    await all.finally(() => clearTimeout(timer));
    if (i >= warmup) latencies.push(performance.now() - t0);
  }
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    deliveriesPerSec: Math.round((MESSAGES * members.length) / seconds),
    p50: latencies[Math.floor(latencies.length * 0.5)]!,
    p99: latencies[Math.floor(latencies.length * 0.99)]!,
  };
}

async function baseline(): Promise<Result> {
  const aedes = await Aedes.createBroker();
  const server = createServer((socket) => {
    socket.setNoDelay(true); // as the chat server does
    aedes.handle(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const members = await Promise.all(Array.from({ length: MEMBERS }, () => connect(url, {})));
  await Promise.all(members.map((m) => m.subscribeAsync('chats/bench/messages', { qos: 1 })));
  const result = await measure(members, 'chats/bench/messages', (i) => JSON.stringify({ text: TEXT, clientMsgId: `b-${i}` }));
  await Promise.all(members.map((c) => c.endAsync()));
  await new Promise<void>((r) => aedes.close(() => r()));
  server.close();
  return result;
}

async function chat(): Promise<Result> {
  const dataDir = mkdtempSync(join(tmpdir(), 'chat-bench-'));
  const srv = await startServer(loadConfig({ HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', LOG_LEVEL: 'warn', DATA_DIR: dataDir, JWT_SECRET: 'bench-secret-bench-secret-bench-secret!' }));
  const post = async (path: string, body: unknown, token?: string) =>
    (await fetch(srv.url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) })).json() as Promise<any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const users = [];
  for (let i = 0; i < MEMBERS; i++) {
    await post('/api/users', { username: `bench${i}`, password: 'bench-password' });
    users.push(await post('/api/users/login', { username: `bench${i}`, password: 'bench-password' }));
  }
  const owner = users[0];
  const group = await post('/api/chats', { type: 'group', name: 'bench', memberIds: users.slice(1).map((u) => u.user.id) }, owner.token);
  const topic = `chats/${group.chat.id}/messages`;
  const url = `mqtt://127.0.0.1:${srv.mqttPort}`;
  const as = (u: { user: { id: string; username: string }; token: string }) => connect(url, { username: u.user.username, password: u.token, clientId: u.user.id });
  const members = await Promise.all(users.map(as));
  await Promise.all(members.map((m) => m.subscribeAsync(topic, { qos: 1 })));
  const result = await measure(members, topic, (i) => JSON.stringify({ text: TEXT, clientMsgId: `c-${i}` }));
  await Promise.all(members.map((c) => c.endAsync()));
  await srv.close();
  rmSync(dataDir, { recursive: true, force: true });
  return result;
}

const base = await baseline();
const ours = await chat();
const row = (name: string, r: Result) => `${name.padEnd(10)} ${String(r.deliveriesPerSec).padStart(8)} deliveries/s   p50 ${r.p50.toFixed(2)} ms   p99 ${r.p99.toFixed(2)} ms`;
console.log(`group of ${MEMBERS}, every message to all ${MEMBERS}, QoS 1, ${MESSAGES} messages, one in flight`);
console.log(row('baseline', base));
console.log(row('chat', ours));
console.log(`chat / baseline throughput: ${(ours.deliveriesPerSec / base.deliveriesPerSec).toFixed(2)}`);
