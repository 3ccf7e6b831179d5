import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { accessSync, chmodSync, constants, copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Worker, removeDir, stopChild, track, trackDir } from './procs.js';

export type ServerKind = 'chat' | 'aedes' | 'mosquitto';
export const SERVER_KINDS: ServerKind[] = ['chat', 'aedes', 'mosquitto'];

/** The compiled project (dist/): the bench runs from dist/bench/lib/. */
export const DIST = fileURLToPath(new URL('../../', import.meta.url));

/** Fixed, so the seeded tokens stay valid between runs; the chat server is given the same. */
export const JWT_SECRET = 'bench-only-secret-not-for-production-use-0123456789';
/** Seeding signs many users up from one address at once: the per-address credential limits
 * are raised (the abuse bench, bench/abuse.ts, measures them at their defaults). */
const ROOMY_LIMITS = { REGISTER_BURST_PER_IP: '1000000', LOGIN_BURST_PER_IP: '1000000', PASSWORD_HASHES_IN_FLIGHT: '64', SEARCH_BURST: '1000000', HTTP_SOCKETS_PER_IP: '100000' };

export interface Server {
  kind: ServerKind;
  pid: number;
  mqttPort: number;
  /** chat only: the REST base URL and the data directory (chat.db) of this run. */
  httpUrl?: string;
  dataDir?: string;
  /** null while the process runs; otherwise how it ended. */
  exited(): string | null;
  /** Log lines at warn level and above, and stderr, counted by text (what misbehaved). */
  problems: Map<string, number>;
  /** SIGTERM (graceful), SIGKILL after a while; then `inspect` (e.g. read chat.db) runs before
   * the temporary files are removed. */
  stop(inspect?: () => Promise<void> | void): Promise<void>;
}

function exitText(child: ChildProcess): string | null {
  if (child.signalCode) return `killed by ${child.signalCode}`;
  if (child.exitCode !== null) return `exited with code ${child.exitCode}`;
  return null;
}

function note(problems: Map<string, number>, line: string) {
  // Keep the text recognisable but bounded; count repeats.
  const key = line.length > 300 ? `${line.slice(0, 300)}…` : line;
  if (problems.size < 200 || problems.has(key)) problems.set(key, (problems.get(key) ?? 0) + 1);
}

/**
 * The chat server as it is run for real: `node dist/main.js`, default limits (but the
 * credential limits raised unless `roomy` is false: see ROOMY_LIMITS), fresh data
 * directory holding a copy of the seeded template store. Ports come from its pino log lines.
 */
export async function startChat(templateDb: string, extraEnv: Record<string, string> = {}, o: { roomy?: boolean } = {}): Promise<Server> {
  const dataDir = trackDir(mkdtempSync(join(tmpdir(), 'mqtt-chat-bench-run-')));
  copyFileSync(templateDb, join(dataDir, 'chat.db'));
  // As the server creates it: a copy made with the umask's mode is warned about at start.
  chmodSync(join(dataDir, 'chat.db'), 0o600);
  const env: NodeJS.ProcessEnv = { ...process.env };
  // The embedded deployment is what is measured: no cluster or external store from the caller's shell.
  for (const name of ['REDIS_URL', 'AMQP_URL', 'MONGO_URL', 'ROLES', 'TLS_CERT', 'TLS_KEY', 'NODE_OPTIONS']) delete env[name];
  Object.assign(env, { HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', DATA_DIR: dataDir, JWT_SECRET, LOG_LEVEL: 'info', ...(o.roomy === false ? {} : ROOMY_LIMITS), ...extraEnv });
  // BENCH_CHAT_NODE_ARGS: extra node flags for the chat server, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = process.env.BENCH_CHAT_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  // The flags `npm start` (package.json) and the Dockerfile run the server with.
  const child = track(spawn(process.execPath, ['--max-semi-space-size=64', ...nodeArgs, join(DIST, 'main.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  const problems = new Map<string, number>();
  let port = 0;
  let mqttPort = 0;
  let ready: () => void = () => {};
  const readyPromise = new Promise<void>((r) => (ready = r));

  createInterface({ input: child.stdout! }).on('line', (line) => {
    let entry: { level?: number; msg?: string; port?: number; mqttPort?: number; err?: { message?: string; type?: string } };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      note(problems, `stdout: ${line}`);
      return;
    }
    if (typeof entry.port === 'number') port = entry.port;
    if (typeof entry.mqttPort === 'number') mqttPort = entry.mqttPort;
    if (port && mqttPort) ready();
    if ((entry.level ?? 0) >= 40) {
      const err = entry.err ? ` (${entry.err.type ?? 'error'}: ${entry.err.message ?? ''})` : '';
      note(problems, `log level ${entry.level}: ${entry.msg ?? ''}${err}`);
    }
  });
  createInterface({ input: child.stderr! }).on('line', (line) => { if (process.env.BENCH_CHAT_STDERR) process.stderr.write(line + '\n'); note(problems, `stderr: ${line}`); });

  const started = await Promise.race([
    readyPromise.then(() => true),
    new Promise<boolean>((r) => child.once('exit', () => r(false))),
    new Promise<boolean>((r) => setTimeout(() => r(false), 30_000)),
  ]);
  if (!started) {
    await stopChild(child, 'SIGKILL');
    removeDir(dataDir);
    throw new Error(`chat server did not start: ${exitText(child) ?? 'no ports logged within 30 s'}\n${[...problems.keys()].join('\n')}`);
  }
  return {
    kind: 'chat',
    pid: child.pid!,
    mqttPort,
    httpUrl: `http://127.0.0.1:${port}`,
    dataDir,
    exited: () => exitText(child),
    problems,
    stop: async (inspect) => {
      await stopChild(child, 'SIGTERM', 15_000);
      try {
        await inspect?.();
      } finally {
        removeDir(dataDir);
      }
    },
  };
}

/** Plain Aedes in a process of its own (bench/aedes-server.ts). */
export async function startAedes(): Promise<Server> {
  const problems = new Map<string, number>();
  const worker = new Worker(join(DIST, 'bench', 'aedes-server.js'), [], 'aedes', (line) => note(problems, line));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('plain Aedes did not report its port within 10 s')), 10_000);
    worker.onEvent = (event) => {
      clearTimeout(timer);
      resolve((event as { port: number }).port);
    };
    worker.child.once('exit', () => reject(new Error(`plain Aedes ${exitText(worker.child)}`)));
  });
  return {
    kind: 'aedes',
    pid: worker.child.pid!,
    mqttPort: port,
    exited: () => exitText(worker.child),
    problems,
    stop: async (inspect) => {
      await worker.stop();
      await inspect?.();
    },
  };
}

/** Where mosquitto is, if installed: PATH, then the sbin directories a non-root PATH lacks. */
export function findMosquitto(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const file = join(dir, 'mosquitto');
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

export function mosquittoVersion(bin: string): string {
  const out = spawnSync(bin, ['-h'], { encoding: 'utf8' });
  return /mosquitto version (\S+)/.exec(`${out.stdout}${out.stderr}`)?.[1] ?? 'unknown version';
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Mosquitto from the system package, on a port of its own (a system mosquitto may hold 1883):
 * anonymous, TCP_NODELAY, no connection cap, no persistence, no logging.
 */
export async function startMosquitto(bin: string): Promise<Server> {
  const dir = trackDir(mkdtempSync(join(tmpdir(), 'mqtt-chat-bench-mosquitto-')));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'set_tcp_nodelay true',
    'max_connections -1',
    'persistence false',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    '',
  ].join('\n'), { mode: 0o644 });
  const child = track(spawn(bin, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const problems = new Map<string, number>();
  for (const stream of [child.stdout!, child.stderr!]) createInterface({ input: stream }).on('line', (line) => note(problems, line));
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (exitText(child) || Date.now() > deadline) {
      await stopChild(child, 'SIGKILL');
      removeDir(dir);
      throw new Error(`mosquitto did not start: ${exitText(child) ?? 'port not open within 10 s'}\n${[...problems.keys()].join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    kind: 'mosquitto',
    pid: child.pid!,
    mqttPort: port,
    exited: () => exitText(child),
    problems,
    stop: async (inspect) => {
      await stopChild(child, 'SIGTERM', 5000);
      removeDir(dir);
      await inspect?.();
    },
  };
}

/** Resident and peak resident memory of a process, in KB (null when it is gone). */
export function memoryKb(pid: number): { rss: number; hwm: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rss: field('VmRSS'), hwm: field('VmHWM') };
  } catch {
    return null;
  }
}

/** CPU time (user + system) a process has used so far, in seconds; null when it is gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}
/** USER_HZ: /proc times are in these ticks; 100 on every Linux configuration Node runs on. */
const CLOCK_TICKS = 100;

/** Samples a process's RSS every 100 ms; `stop()` returns the peak seen (KB). */
export function sampleRss(pid: number): { stop(): number; peak(): number } {
  let peak = 0;
  const take = () => {
    const m = memoryKb(pid);
    if (m && m.rss > peak) peak = m.rss;
  };
  take();
  const timer = setInterval(take, 100);
  return {
    peak: () => peak,
    stop: () => {
      clearInterval(timer);
      take();
      return peak;
    },
  };
}

export interface TcpEntry {
  local: string;
  remote: string;
  /** Kernel TCP state: 1 ESTABLISHED, 4 FIN_WAIT1, 8 CLOSE_WAIT, ... */
  state: number;
  txQueue: number;
  rxQueue: number;
}

/** `0100007F:0B5C` (as /proc/net/tcp writes it: IPv4 in host byte order) -> `127.0.0.1:2908` */
function hexAddress(hex: string): string {
  const [ip, port] = hex.split(':') as [string, string];
  const bytes = [0, 1, 2, 3].map((i) => parseInt(ip.slice(i * 2, i * 2 + 2), 16)).reverse();
  return `${bytes.join('.')}:${parseInt(port, 16)}`;
}

/** IPv4 TCP sockets of this network namespace, with their queue sizes (bytes). */
export function tcpTable(): TcpEntry[] {
  if (!existsSync('/proc/net/tcp')) return [];
  const lines = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1);
  const out: TcpEntry[] = [];
  for (const line of lines) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    const [tx, rx] = f[4]!.split(':') as [string, string];
    out.push({ local: hexAddress(f[1]!), remote: hexAddress(f[2]!), state: parseInt(f[3]!, 16), txQueue: parseInt(tx, 16), rxQueue: parseInt(rx, 16) });
  }
  return out;
}
