/**
 * The processes of the abuse bench (forked by bench/abuse.ts): one plays the bystander, others
 * the attackers. Never imported by the bench process; each method runs for a bounded time and
 * returns counts and latencies.
 */
import { Agent, request } from 'node:http';
import { type Socket, createConnection } from 'node:net';
import mqtt from 'mqtt';
import { serve } from './procs.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface Answer {
  status: number | string;
  ms: number;
  body: string;
  retryAfter?: string | undefined;
}

/** One HTTP request from `localAddress`; an error or a 10 s silence is a status of its own. */
function call(base: string, method: string, path: string, o: { agent?: Agent; localAddress: string; token?: string; body?: unknown }): Promise<Answer> {
  const url = new URL(base);
  const payload = o.body === undefined ? undefined : JSON.stringify(o.body);
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = request(
      {
        host: url.hostname, port: url.port, path, method, localAddress: o.localAddress, ...(o.agent ? { agent: o.agent } : { agent: false }),
        headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...(payload ? { 'content-type': 'application/json' } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0, body: Buffer.concat(chunks).toString('utf8'), retryAfter: res.headers['retry-after'] }));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: err.code ?? err.message, ms: performance.now() - t0, body: '' }));
    req.end(payload);
  });
}

const count = (into: Record<string, number>, key: number | string) => (into[String(key)] = (into[String(key)] ?? 0) + 1);

export interface BystanderArgs {
  base: string;
  localAddress: string;
  token: string;
  username: string;
  password: string;
  durationMs: number;
  /** GET /api/users/me per second, and logins per second. */
  meRate: number;
  loginRate: number;
}

export interface BystanderResult {
  /** ms, sorted */
  me: number[];
  login: number[];
  statuses: Record<string, number>;
}

/** A user going about its business: reads its profile, now and then logs in, on a schedule
 * that does not wait for slow answers (each request on time, on a connection of its own for
 * logins as a new app start would). */
async function bystander(a: BystanderArgs): Promise<BystanderResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const result: BystanderResult = { me: [], login: [], statuses: {} };
  const start = performance.now();
  const paced = async (rate: number, one: () => Promise<void>) => {
    const pending: Promise<void>[] = [];
    for (let k = 0; ; k++) {
      const due = start + (k * 1000) / rate;
      if (due - start >= a.durationMs) break;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      pending.push(one());
    }
    await Promise.all(pending);
  };
  await Promise.all([
    paced(a.meRate, async () => {
      const r = await call(a.base, 'GET', '/api/users/me', { agent, localAddress: a.localAddress, token: a.token });
      count(result.statuses, `me ${r.status}`);
      if (r.status === 200) result.me.push(r.ms);
    }),
    paced(a.loginRate, async () => {
      const r = await call(a.base, 'POST', '/api/users/login', { localAddress: a.localAddress, body: { username: a.username, password: a.password } });
      count(result.statuses, `login ${r.status}`);
      if (r.status === 200) result.login.push(r.ms);
    }),
  ]);
  agent.destroy();
  result.me.sort((x, y) => x - y);
  result.login.sort((x, y) => x - y);
  return result;
}

/** `concurrency` loops registering new accounts for `durationMs`, each loop from the next of
 * `addresses` in turn. */
async function registerFlood(a: { base: string; addresses: string[]; concurrency: number; durationMs: number; prefix: string }) {
  const statuses: Record<string, number> = {};
  const until = performance.now() + a.durationMs;
  let n = 0;
  await Promise.all(
    Array.from({ length: a.concurrency }, async () => {
      while (performance.now() < until) {
        const k = n++;
        const r = await call(a.base, 'POST', '/api/users', { localAddress: a.addresses[k % a.addresses.length]!, body: { username: `${a.prefix}${k}`, password: 'flood-password-1' } });
        count(statuses, r.status);
        // A refused request is answered at once: without a pause the loop would only measure
        // how fast 429s come back.
        if (r.status === 429 || r.status === 503) await sleep(20);
      }
    }),
  );
  return { statuses, requests: n };
}

/** Wrong passwords for someone else's username, then (from another address) the owner's own. */
async function guess(a: { base: string; username: string; password: string; attempts: number; attacker: string; owner: string }) {
  const statuses: Record<string, number> = {};
  for (let i = 0; i < a.attempts; i++) {
    const r = await call(a.base, 'POST', '/api/users/login', { localAddress: a.attacker, body: { username: a.username, password: `wrong-guess-${i}` } });
    count(statuses, r.status);
  }
  const owner = await call(a.base, 'POST', '/api/users/login', { localAddress: a.owner, body: { username: a.username, password: a.password } });
  const again = await call(a.base, 'POST', '/api/users/login', { localAddress: a.attacker, body: { username: a.username, password: 'one-more-guess' } });
  return { statuses, owner: owner.status, attackerAfter: again.status, retryAfter: again.retryAfter ?? null };
}

/** `concurrency` loops searching for `q` for `durationMs`, loop i as the user of `tokens[i]`
 * (modulo their number). */
async function searchFlood(a: { base: string; tokens: string[]; q: string; concurrency: number; durationMs: number; localAddress: string }) {
  const agent = new Agent({ keepAlive: true, maxSockets: a.concurrency });
  const statuses: Record<string, number> = {};
  const ok: number[] = [];
  const until = performance.now() + a.durationMs;
  await Promise.all(
    Array.from({ length: a.concurrency }, async (_, i) => {
      const token = a.tokens[i % a.tokens.length]!;
      while (performance.now() < until) {
        const r = await call(a.base, 'GET', `/api/messages/search?q=${encodeURIComponent(a.q)}&limit=100`, { agent, localAddress: a.localAddress, token });
        count(statuses, r.status);
        if (r.status === 200) ok.push(r.ms);
        else await sleep(20);
      }
    }),
  );
  agent.destroy();
  ok.sort((x, y) => x - y);
  return { statuses, ok };
}

const clients: mqtt.MqttClient[] = [];

function connect(port: number, o: { clientId: string; username: string; token: string; localAddress: string }): Promise<mqtt.MqttClient> {
  return new Promise((resolve, reject) => {
    // mqtt.js does not pass a source address to its socket: the stream is built here.
    const stream = () => createConnection({ host: '127.0.0.1', port, localAddress: o.localAddress });
    const c = new mqtt.MqttClient(stream, {
      protocolVersion: 4, clean: true, clientId: o.clientId, username: o.username, password: o.token, reconnectPeriod: 0, connectTimeout: 10_000,
    });
    clients.push(c);
    c.once('connect', () => resolve(c));
    c.once('error', reject);
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

/** Subscriptions to the presence of made-up users: `connections` connections of one user,
 * `perConnection` topics each, in SUBSCRIBE packets of `batch` topics. Counts what the
 * SUBACKs granted. The connections stay open until `closeAll`. */
async function subscribeFlood(a: { port: number; userId: string; username: string; token: string; connections: number; perConnection: number; batch: number; localAddress: string }) {
  let granted = 0;
  let refused = 0;
  let failed = '';
  await Promise.all(
    Array.from({ length: a.connections }, async (_, c) => {
      try {
        const client = await connect(a.port, { clientId: `${a.userId}/flood${c}`, username: a.username, token: a.token, localAddress: a.localAddress });
        for (let k = 0; k < a.perConnection && client.connected; k += a.batch) {
          const topics = Array.from({ length: Math.min(a.batch, a.perConnection - k) }, (_, j) => `users/fake${c}x${k + j}/presence`);
          // The SUBACK's return codes as sent: mqtt.js rejects a SUBACK holding 0x80, with the
          // packet on the error (its grants list then shows the QoS asked for).
          const codes = await client.subscribeAsync(topics, { qos: 0 }).then(
            () => topics.map(() => 0),
            (err: { packet?: { granted?: number[] } }) => {
              if (!err.packet?.granted) throw err;
              return err.packet.granted;
            },
          );
          for (const code of codes) ((code & 0x80) !== 0 ? refused++ : granted++);
        }
      } catch (err) {
        failed ||= (err as Error).message;
      }
    }),
  );
  return { granted, refused, failed };
}

/** Subscribes to `users/+/presence` and counts, for `durationMs`, presence messages by whose. */
async function presenceWatch(a: { port: number; userId: string; username: string; token: string; durationMs: number; localAddress: string }) {
  const client = await connect(a.port, { clientId: `${a.userId}/watch`, username: a.username, token: a.token, localAddress: a.localAddress });
  const seen = new Set<string>();
  let messages = 0;
  client.on('message', (topic) => {
    const who = topic.split('/')[1]!;
    if (who === a.userId) return;
    messages++;
    seen.add(who);
  });
  const grants = await client.subscribeAsync('users/+/presence', { qos: 0 });
  await sleep(a.durationMs);
  await client.endAsync(true);
  return { granted: grants[0]?.qos !== 128, messages, users: seen.size };
}

/** A user coming online and going offline, `times` times (whose presence a watcher may see). */
async function comeAndGo(a: { port: number; userId: string; username: string; token: string; times: number; localAddress: string }) {
  for (let i = 0; i < a.times; i++) {
    const client = await connect(a.port, { clientId: `${a.userId}/app`, username: a.username, token: a.token, localAddress: a.localAddress });
    await sleep(300);
    await client.endAsync();
    await sleep(300);
  }
  return { times: a.times };
}

/** Sockets that send a request's headers one byte at a time, every `everyMs`, for `durationMs`;
 * returns how many the server still held open at the end, how many it closed within a second
 * of their connecting, and when it closed the others (ms after connecting, sorted). */
async function trickle(a: { port: number; sockets: number; addresses: string[]; durationMs: number; everyMs: number }) {
  const head = Buffer.from('GET /api/health HTTP/1.1\r\nHost: x\r\nX-Pad: ' + 'a'.repeat(4000));
  /** Each open socket and how much of the head it has sent. */
  const open = new Map<Socket, number>();
  /** ms from connecting to being closed by the server, of the sockets it closed. */
  const lifetimes: number[] = [];
  let ending = false;
  const sockets = Array.from({ length: a.sockets }, (_, i) => {
    const s = createConnection({ host: '127.0.0.1', port: a.port, localAddress: a.addresses[i % a.addresses.length]! });
    let connectedAt = 0;
    s.on('connect', () => {
      connectedAt = performance.now();
      open.set(s, 0);
    });
    s.on('error', () => {});
    s.on('close', () => {
      open.delete(s);
      if (!ending) lifetimes.push(connectedAt ? performance.now() - connectedAt : 0);
    });
    s.on('data', () => {});
    return s;
  });
  const until = performance.now() + a.durationMs;
  while (performance.now() < until) {
    for (const [s, sent] of open) {
      s.write(head.subarray(sent % head.length, (sent % head.length) + 1));
      open.set(s, sent + 1);
    }
    await sleep(a.everyMs);
  }
  const held = open.size;
  ending = true;
  for (const s of sockets) s.destroy();
  lifetimes.sort((x, y) => x - y);
  return { held, closedWithin1s: lifetimes.filter((t) => t < 1000).length, closedLater: lifetimes.filter((t) => t >= 1000), };
}

/** A 4 MiB JSON body sent whole, without `Expect: 100-continue`, as simple clients do: what
 * the client gets to read. */
async function bigBody(a: { port: number; bytes: number; localAddress: string }) {
  return new Promise<{ outcome: string }>((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port: a.port, localAddress: a.localAddress });
    let answer = '';
    s.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    s.on('error', (err: NodeJS.ErrnoException) => resolve({ outcome: answer.startsWith('HTTP/1.1') ? answer.split('\r\n')[0]! : `error ${err.code ?? err.message}` }));
    s.on('close', () => resolve({ outcome: answer.startsWith('HTTP/1.1') ? answer.split('\r\n')[0]! : 'closed without an answer' }));
    s.on('connect', () => {
      s.write(`POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${a.bytes}\r\n\r\n`);
      s.end(Buffer.alloc(a.bytes, 0x20));
    });
    setTimeout(() => { s.destroy(); resolve({ outcome: answer ? answer.split('\r\n')[0]! : 'no answer within 15 s' }); }, 15_000).unref();
  });
}

async function closeAll() {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
}

serve({ bystander, registerFlood, guess, searchFlood, subscribeFlood, presenceWatch, comeAndGo, trickle, bigBody, closeAll });
