/**
 * `npm run bench:append [-- --rate 2500 --seconds 10 --rounds 3 --chats 680 --log segments|sqlite|both]`
 *
 * A component benchmark of the durable append, the step every message pays before its PUBACK:
 * envelopes go through the embedded archive (`StoreArchive`) into a SQLite store on a file in
 * the temporary directory, open loop at a fixed rate, each in a random one of `chats` direct
 * chats (the mix scenario's spread), and the CPU they cost is read per thread from
 * `/proc/self/task`. No server and no sockets: it measures the store's part alone, in this
 * process, so its figures are CPU per message, not latency. See bench/README.md.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { StoreArchive } from '../core/archive.js';
import type { MessageEnvelope } from '../core/envelope.js';
import { newId } from '../core/ids.js';
import { SqliteStore } from '../core/store/sqlite.js';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '2500' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    chats: { type: 'string', default: '680' },
    // segments: the embedded deployment's store (exclusive: the segment log in front of SQLite);
    // sqlite: a store that shares its file (each group commit a SQLite transaction); both: rounds
    // alternate between them.
    log: { type: 'string', default: 'segments' },
  },
});
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const CHATS = Number(values.chats);
const LOGS = values.log === 'both' ? ['segments', 'sqlite'] : [values.log!];
if (!LOGS.every((l) => l === 'segments' || l === 'sqlite')) throw new Error('--log is segments, sqlite or both');
const TICK_US = 1e6 / 100; // USER_HZ: /proc reports CPU in 10 ms ticks

/** Threads that exist before any store opens: the main thread, V8's and libuv's. */
const PROCESS_THREADS = new Set(readdirSync('/proc/self/task'));

/** CPU ticks (user, sys) and bytes written per thread: 'main', the store's threads by the order
 * they started ('writer', 'checkpointer', 'indexer': see core/store/sqlite-log-writer.ts), the
 * rest as 'other'. */
function threadTicks(): Map<string, [number, number, number]> {
  const ticks = new Map<string, [number, number, number]>();
  const storeThreads = readdirSync('/proc/self/task').filter((t) => !PROCESS_THREADS.has(t)).sort((a, b) => Number(a) - Number(b));
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const name = tid === String(process.pid) ? 'main' : (['writer', 'checkpointer', 'indexer'][storeThreads.indexOf(tid)] ?? 'other');
    const written = Number(/^wchar: (\d+)$/m.exec(readFileSync(`/proc/self/task/${tid}/io`, 'utf8'))?.[1] ?? 0);
    const [u, s, w] = ticks.get(name) ?? [0, 0, 0];
    ticks.set(name, [u + Number(fields[11]), s + Number(fields[12]), w + written]);
  }
  return ticks;
}

function io(): { wchar: number; syscw: number } {
  const lines = readFileSync('/proc/self/io', 'utf8').trim().split('\n').map((l) => l.split(': '));
  const get = (key: string) => Number(lines.find(([k]) => k === key)?.[1] ?? 0);
  return { wchar: get('wchar'), syscw: get('syscw') };
}

async function round(n: number, log: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mqtt-chat-append-'));
  const store = new SqliteStore(join(dir, 'chat.db'), { exclusive: log === 'segments' });
  try {
    const chats: { id: string; sender: string; seq: number }[] = [];
    for (let c = 0; c < CHATS; c++) {
      const users = [newId(), newId()] as const;
      for (const [i, id] of users.entries()) {
        await store.createUser({ id, username: `u${c}x${i}`, displayName: `User ${c}.${i}`, passwordHash: 'x', createdAt: Date.now() });
      }
      const id = newId();
      await store.createDirectChat({ id, userIds: users, createdAt: Date.now() });
      chats.push({ id, sender: users[0], seq: 0 });
    }
    const archive = new StoreArchive(store);
    const text = `${'x'.repeat(200)} bench append`;
    let sent = 0;
    let settled = 0;
    const send = () => {
      const chat = chats[Math.floor(Math.random() * CHATS)]!;
      const envelope: MessageEnvelope = {
        type: 'message', id: newId(), chatId: chat.id, seq: ++chat.seq, senderId: chat.sender, senderName: 'User',
        text, clientMsgId: `bench.${sent++}`, createdAt: new Date().toISOString(),
      };
      void archive.append(envelope).then(() => settled++);
    };
    // Warm-up: 2,000 appends one turn apart, then a pause.
    for (let i = 0; i < 2000; i++) {
      send();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await new Promise((resolve) => setTimeout(resolve, 500));

    const total = RATE * SECONDS;
    const ticks0 = threadTicks();
    const io0 = io();
    const start = performance.now();
    let due = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const now = Math.min(total, Math.floor(((performance.now() - start) / 1000) * RATE));
        for (; due < now; due++) send();
        if (due >= total) {
          clearInterval(timer);
          resolve();
        }
      }, 1);
    });
    while (settled < sent) await new Promise((resolve) => setTimeout(resolve, 5));
    const elapsed = (performance.now() - start) / 1000;
    const io1 = io();
    const ticks1 = threadTicks();
    await archive.close();

    const per = (ticks: number) => ((ticks * TICK_US) / total).toFixed(0);
    let user = 0;
    let sys = 0;
    const threads: string[] = [];
    const writes: string[] = [];
    for (const [name, [u1, s1, w1]] of ticks1) {
      const [u0, s0, w0] = ticks0.get(name) ?? [0, 0, 0];
      user += u1 - u0;
      sys += s1 - s0;
      threads.push(`${name} ${per(u1 - u0)}+${per(s1 - s0)}`);
      if (w1 - w0 >= total * 10) writes.push(`${name} ${((w1 - w0) / total / 1024).toFixed(1)}`);
    }
    const core = (((user + sys) * TICK_US) / 1e6 / elapsed) * 100;
    console.log(
      `round ${n} (${log}): ${total.toLocaleString('en-US')} appends at ${RATE.toLocaleString('en-US')}/s in ${elapsed.toFixed(1)} s: ` +
        `${per(user)} µs user + ${per(sys)} µs sys per message (${core.toFixed(0)} % of a core); ` +
        `written ${((io1.wchar - io0.wchar) / total / 1024).toFixed(1)} KB and ${((io1.syscw - io0.syscw) / total).toFixed(1)} write calls per message`,
    );
    console.log(`         per thread, µs user+sys per message: ${threads.join(', ')}; KB written per message: ${writes.join(', ')}`);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`append: StoreArchive -> SqliteStore (${tmpdir()}), ${CHATS} chats, random chat per message, ${new Date().toISOString()}`);
for (let n = 1; n <= ROUNDS; n++) for (const log of LOGS) await round(n, log);
