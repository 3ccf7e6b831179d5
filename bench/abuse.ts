/**
 * `npm run abuse`: the attacks of issue 20 against the chat server at its default limits, each
 * beside a bystander, a user of its own on an address of its own reading its profile
 * (GET /api/users/me, 20/s) and logging in (1/s). Prints, per attack, what the attack got, the
 * bystander's p50/p99 beside its quiet value (the same bystander with no attack, measured
 * first), and the server's RSS. Attackers and the bystander run in processes of their own
 * (bench/lib/abuse-generator.ts), the server in its own; this process only orchestrates.
 * Loopback only, bounded in time (about 4 minutes).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { newId } from '../core/ids.js';
import { hashPassword } from '../core/passwords.js';
import { SqliteStore } from '../core/store/sqlite.js';
import { issueToken } from '../core/tokens.js';
import { ms, out, percentile, progress, sleep } from './lib/common.js';
import type { BystanderArgs, BystanderResult } from './lib/abuse-generator.js';
import { Worker, installCleanup, removeDir, stopChild, track, trackDir } from './lib/procs.js';
import { DIST, JWT_SECRET, memoryKb, sampleRss, startChat } from './lib/servers.js';

const PASSWORD = 'abuse-bench-password';
const BYSTANDER_ADDRESS = '127.30.0.1';
/** The worst-case search of the issue: 64 × "a" over 600 messages that hold it. */
const SEARCH_Q = 'a'.repeat(64);

const SEARCH_MESSAGES = 600;

interface Account {
  id: string;
  username: string;
  token: string;
}

/** A store with the accounts the attacks need, written before the server starts. */
async function buildStore(dir: string) {
  const store = new SqliteStore(join(dir, 'chat.db'));
  const now = Date.now();
  const iat = Math.floor(now / 1000);
  const exp = iat + 24 * 3600;
  const passwordHash = await hashPassword(PASSWORD);
  const account = async (username: string): Promise<Account> => {
    const id = newId(now);
    await store.createUser({ id, username, displayName: username, passwordHash, createdAt: now });
    const sid = newId(now);
    await store.createSession({ id: sid, userId: id, createdAt: now, expiresAt: exp * 1000, revokedAt: null });
    return { id, username, token: issueToken(JWT_SECRET, { sub: id, sid, iat, exp }) };
  };
  const accounts = {
    bystander: await account('bystander'),
    victim: await account('victim'),
    attacker: await account('attacker'),
    stranger: await account('stranger'),
    friend: await account('friend'),
  };
  const searchers = await Promise.all(Array.from({ length: 8 }, (_, i) => account(`searcher${i}`)));
  // The chat of the attacker, its friend and the searchers holds 600 messages of 900 × "a"; a
  // chat of the stranger and the friend, which the others are not in, 600 of 900 × "b" (the
  // index finds them for 64 × "b", the search must pass them over). The stranger shares no chat
  // with the attacker.
  const chatWith = async (name: string, owner: Account, members: Account[], letter: string) => {
    const chat = await store.createGroupChat({ id: newId(now), name, visibility: 'private', ownerId: owner.id, memberIds: members.map((m) => m.id), createdAt: now });
    const at = new Date(now).toISOString();
    await store.appendMessages([
      { type: 'system', id: newId(now), chatId: chat.id, seq: 1, event: 'chat.created', userId: owner.id, createdAt: at },
      ...Array.from({ length: SEARCH_MESSAGES }, (_, k) => ({
        type: 'message' as const, id: newId(now), chatId: chat.id, seq: k + 2, senderId: owner.id, senderName: owner.username,
        text: `${letter.repeat(900)} ${k}`, clientMsgId: `${name}-${k}`, createdAt: at,
      })),
    ]);
  };
  await chatWith('search', accounts.attacker, [accounts.attacker, accounts.friend, ...searchers], 'a');
  await chatWith('elsewhere', accounts.stranger, [accounts.stranger, accounts.friend], 'b');
  await store.close();
  return { ...accounts, searchers };
}

const gen = (name: string) => new Worker(join(DIST, 'bench', 'lib', 'abuse-generator.js'), [], name);

const addresses = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}.${Math.floor(i / 250)}.${1 + (i % 250)}`);

const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;

interface Row {
  attack: string;
  outcome: string;
  by?: BystanderResult;
  rss: string;
}

async function main(): Promise<number> {
  installCleanup();
  const dir = trackDir(mkdtempSync(join(tmpdir(), 'mqtt-chat-abuse-')));
  progress('building the store');
  const acc = await buildStore(dir);
  progress('starting the chat server at its default limits');
  const server = await startChat(join(dir, 'chat.db'), {}, { roomy: false });
  const base = server.httpUrl!;
  const port = Number(new URL(base).port);
  const watcher = gen('bystander');
  const attackers = [gen('attacker 0'), gen('attacker 1')];
  const rows: Row[] = [];
  const by = (durationMs: number) =>
    watcher.call<BystanderResult>('bystander', {
      base, localAddress: BYSTANDER_ADDRESS, token: acc.bystander.token, username: 'bystander', password: PASSWORD, durationMs, meRate: 20, loginRate: 1,
    } satisfies BystanderArgs);
  /** Runs `attack` beside the bystander for `seconds`; the RSS peak over the phase. */
  const phase = async <T>(seconds: number, attack: () => Promise<T>) => {
    const rss = sampleRss(server.pid);
    const [result, bystander] = await Promise.all([attack(), by(seconds * 1000)]);
    return { result, bystander, peak: rss.stop() };
  };
  const rssNow = () => mb(memoryKb(server.pid)?.rss ?? NaN);
  try {
    progress('quiet: the bystander alone, 15 s');
    const quiet = await phase(15, async () => undefined);
    rows.push({ attack: 'none (quiet)', outcome: '', by: quiet.bystander, rss: mb(quiet.peak) });

    for (const [what, addrs] of [['one IP', ['127.20.0.1']], ['spread over 1,000 addresses 127.20.x.y', addresses('127.20', 1000)]] as const) {
      progress(`registration flood, 16 concurrent, ${what}, 20 s`);
      const p = await phase(20, () => attackers[0]!.call<{ statuses: Record<string, number>; requests: number }>('registerFlood', { base, addresses: addrs, concurrency: 16, durationMs: 20_000, prefix: `f${rows.length}x` }));
      rows.push({ attack: `registration flood, 16 concurrent, ${what}, 20 s`, outcome: statusText(p.result.statuses), by: p.bystander, rss: mb(p.peak) });
    }

    progress('11 wrong passwords for the victim, then the victim from its own address');
    const g = await attackers[0]!.call<{ statuses: Record<string, number>; owner: number; attackerAfter: number; retryAfter: string | null }>('guess', {
      base, username: 'victim', password: PASSWORD, attempts: 11, attacker: '127.21.0.1', owner: '127.21.0.2',
    });
    rows.push({ attack: "11 wrong passwords for someone else's username", outcome: `guesses ${statusText(g.statuses)}; then the owner (another address) ${g.owner}, the guesser ${g.attackerAfter} (Retry-After ${g.retryAfter ?? '—'})`, rss: rssNow() });

    progress('108,000 presence subscriptions to made-up ids over 4 connections of one user');
    const s = await phase(20, () => attackers[0]!.call<{ granted: number; refused: number; failed: string }>('subscribeFlood', {
      port: server.mqttPort, userId: acc.attacker.id, username: 'attacker', token: acc.attacker.token, connections: 4, perConnection: 27_000, batch: 250, localAddress: '127.22.0.1',
    }));
    const held = rssNow();
    await attackers[0]!.call('closeAll');
    await sleep(2000);
    rows.push({ attack: '108,000 presence subscriptions to made-up ids, 4 connections of one user', outcome: `${s.result.granted.toLocaleString('en-US')} granted, ${s.result.refused.toLocaleString('en-US')} refused${s.result.failed ? ` (${s.result.failed})` : ''}; RSS ${held} with them held, ${rssNow()} 2 s after the connections closed`, by: s.bystander, rss: mb(s.peak) });

    progress('users/+/presence: a watcher, while a co-member and a stranger come and go');
    const [w] = await Promise.all([
      attackers[0]!.call<{ granted: boolean; messages: number; users: number }>('presenceWatch', { port: server.mqttPort, userId: acc.attacker.id, username: 'attacker', token: acc.attacker.token, durationMs: 5000, localAddress: '127.23.0.1' }),
      sleep(500).then(() => Promise.all([
        attackers[1]!.call('comeAndGo', { port: server.mqttPort, userId: acc.stranger.id, username: 'stranger', token: acc.stranger.token, times: 3, localAddress: '127.23.0.2' }),
        attackers[1]!.call('comeAndGo', { port: server.mqttPort, userId: acc.friend.id, username: 'friend', token: acc.friend.token, times: 3, localAddress: '127.23.0.3' }),
      ])),
    ]);
    rows.push({ attack: '`users/+/presence` while a co-member and a stranger each come online 3 times', outcome: `subscription ${w.granted ? 'granted' : 'refused'}; ${w.messages} presence messages about ${w.users} other user${w.users === 1 ? '' : 's'} (the co-member's only: ${w.users <= 1 ? 'yes' : 'NO'})`, rss: rssNow() });

    const searches: [string, string[], string, string][] = [
      ['one user, 8 concurrent', [acc.attacker.token], SEARCH_Q, '600 messages in its own chat'],
      ['8 users, one loop each', acc.searchers.map((x) => x.token), SEARCH_Q, '600 messages in their chat'],
      ['8 users, one loop each', acc.searchers.map((x) => x.token), 'b'.repeat(64), '600 messages, all in a chat they are not in'],
    ];
    for (const [who, tokens, q, where] of searches) {
      progress(`search flood: ${who}, q = 64 × "${q[0]}", ${where}, 20 s`);
      const f = await phase(20, () => attackers[0]!.call<{ statuses: Record<string, number>; ok: number[] }>('searchFlood', { base, tokens, q, concurrency: 8, durationMs: 20_000, localAddress: '127.24.0.1' }));
      rows.push({ attack: `search q = 64 × "${q[0]}" by ${who}; it matches ${where}; 20 s`, outcome: `${statusText(f.result.statuses)}; answered searches p50 ${ms(percentile(f.result.ok, 0.5))}, p99 ${ms(percentile(f.result.ok, 0.99))}`, by: f.bystander, rss: mb(f.peak) });
    }

    progress('4 MiB body without Expect: 100-continue');
    const big = await attackers[0]!.call<{ outcome: string }>('bigBody', { port, bytes: 4 * 1024 * 1024, localAddress: '127.25.0.1' });
    rows.push({ attack: '4 MiB body without `Expect: 100-continue`, written whole', outcome: `the client reads: ${big.outcome}`, rss: rssNow() });

    progress('400 sockets trickling headers from one address, 15 s');
    const t = await phase(15, () => attackers[0]!.call<{ held: number; closedWithin1s: number; closedLater: number[] }>('trickle', { port, sockets: 400, addresses: ['127.26.0.1'], durationMs: 15_000, everyMs: 500 }));
    const later = t.result.closedLater;
    rows.push({
      attack: '400 sockets trickling HTTP headers from one address, 15 s',
      outcome: `${t.result.closedWithin1s} closed by the server within 1 s of connecting, ${later.length} later (after ${later.length ? `${(later[0]! / 1000).toFixed(1)}-${(later.at(-1)! / 1000).toFixed(1)} s` : '—'}), ${t.result.held} still open at the end`,
      by: t.bystander, rss: mb(t.peak),
    });

  } finally {
    await Promise.all([watcher, ...attackers].map((w) => w.stop()));
    await server.stop();
    removeDir(dir);
  }
  rows.push({ attack: 'files of a server started on a new DATA_DIR', outcome: await freshModes(), rss: '—' });
  rows.push({ attack: '`DATA_DIR=/proc/x`', outcome: `the server says: ${badDataDir('/proc/x')}`, rss: '—' });

  out(`== abuse: issue 20's attacks at the default limits; ${new Date().toISOString()}, Node ${process.version}`);
  out('bystander: GET /api/users/me 20/s and POST /api/users/login 1/s from 127.30.0.1, paced (not waiting for slow answers); latency p50 / p99 of its 200s');
  out();
  const quiet = rows[0]!.by!;
  const fig = (r: BystanderResult | undefined, k: 'me' | 'login') => (r ? `${ms(percentile(r[k], 0.5))} / ${ms(percentile(r[k], 0.99))}` : '—');
  const ratio = (r: BystanderResult | undefined, k: 'me' | 'login') => (r ? `${(percentile(r[k], 0.99) / percentile(quiet[k], 0.99)).toFixed(1)}×` : '');
  const refusedOf = (r: BystanderResult | undefined) => {
    const bad = Object.entries(r?.statuses ?? {}).filter(([k]) => !k.endsWith(' 200'));
    return bad.length ? ` (bystander refused: ${bad.map(([k, v]) => `${v}× ${k}`).join(', ')})` : '';
  };
  out(`| attack | what it got | bystander /me p50 / p99 (quiet ${fig(quiet, 'me')}) | p99 vs quiet | bystander login p50 / p99 (quiet ${fig(quiet, 'login')}) | p99 vs quiet | server RSS (peak) |`);
  out('|---|---|---|---|---|---|---|');
  for (const r of rows.slice(1)) out(`| ${r.attack} | ${r.outcome}${refusedOf(r.by)} | ${fig(r.by, 'me')} | ${ratio(r.by, 'me')} | ${fig(r.by, 'login')} | ${ratio(r.by, 'login')} | ${r.rss} |`);
  out(`quiet RSS: ${rows[0]!.rss}`);
  return 0;
}

function statusText(statuses: Record<string, number>): string {
  return Object.entries(statuses).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v.toLocaleString('en-US')}× ${k}`).join(', ');
}

/** The modes of what a server creates on a DATA_DIR that does not exist yet (two levels). */
async function freshModes(): Promise<string> {
  const parent = trackDir(mkdtempSync(join(tmpdir(), 'mqtt-chat-abuse-fresh-')));
  const dataDir = join(parent, 'a', 'data');
  const child = track(spawn(process.execPath, [join(DIST, 'main.js')], {
    env: { PATH: process.env.PATH ?? '', DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'inherit'],
  }));
  try {
    // Up once it has logged its MQTT port.
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => line.includes('"mqttPort"') && resolve());
      child.once('exit', () => reject(new Error('the server exited')));
      setTimeout(() => reject(new Error('no start within 15 s')), 15_000).unref();
    });
    const mode = (f: string) => (statSync(join(dataDir, f)).mode & 0o777).toString(8).padStart(4, '0');
    return `DATA_DIR ${mode('.')} (its new parent ${(statSync(join(parent, 'a')).mode & 0o777).toString(8).padStart(4, '0')}), ${readdirSync(dataDir).sort().map((f) => `${f} ${mode(f)}`).join(', ')}`;
  } catch (err) {
    return `not measured: ${(err as Error).message}`;
  } finally {
    await stopChild(child, 'SIGTERM', 5000);
    removeDir(parent);
  }
}

/** The first line the server prints when started on an unusable DATA_DIR, and how it ends. */
function badDataDir(path: string): string {
  const r = spawnSync(process.execPath, [join(DIST, 'main.js')], {
    env: { PATH: process.env.PATH ?? '', DATA_DIR: path, HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', LOG_FORMAT: 'json' },
    encoding: 'utf8', timeout: 15_000,
  });
  const line = `${r.stderr}${r.stdout}`.trim().split('\n')[0] ?? '';
  return `"${line.slice(0, 160)}", exit ${r.status ?? r.signal}`;
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
