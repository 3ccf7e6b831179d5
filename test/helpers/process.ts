import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pollUntil } from './poll.js';
import { Http, ROOMY_LIMITS } from './server.js';

export const MAIN = resolve('dist/main.js');

export interface ServerProcess {
  child: ChildProcess;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
}

export interface ReadyServer extends ServerProcess {
  url: string;
  port: number;
  mqttPort: number;
  http: Http;
}

/** Preloaded into each server: it ends when this test process ends (die-with-parent.mjs). */
const DIE_WITH_PARENT = new URL('./die-with-parent.mjs', import.meta.url).href;

/** Resolves once a launched process has ended and its output has all been read ('exit' may
 * come before the last lines). */
const closedOf = new WeakMap<ChildProcess, Promise<unknown>>();

/** Runs the built server as `npm start` does (node dist/main.js), on ephemeral loopback ports. */
export function launchServer(env: Record<string, string>): ServerProcess {
  if (!existsSync(MAIN)) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
  const child = spawn(process.execPath, ['--import', DIE_WITH_PARENT, MAIN], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', LOG_LEVEL: 'info', ...ROOMY_LIMITS, ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  child.channel?.unref();
  closedOf.set(child, once(child, 'close'));
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return { child, output: () => out };
}

/** Waits for the log lines that name the chosen HTTP and MQTT ports. */
export async function serverReady(proc: ServerProcess, ms = 20_000): Promise<ReadyServer> {
  const ready = () => {
    const http = /HTTP API listening on (https?:\/\/[\d.]+:(\d+))/.exec(proc.output());
    const mqtt = /MQTT listening on mqtts?:\/\/[\d.]+:(\d+)/.exec(proc.output());
    const started = /"msg":"(scaled-out seams in use|embedded deployment[^"]*)"/.test(proc.output());
    // A process without the broker role logs no MQTT line: its mqttPort is 0.
    return http && started ? { url: http[1]!, port: Number(http[2]), mqttPort: mqtt ? Number(mqtt[1]) : 0 } : undefined;
  };
  const found = await pollUntil(ready, { done: (r) => r !== undefined || proc.child.exitCode !== null, within: ms, every: 50 });
  if (found) return { ...proc, ...found, http: new Http(found.url) };
  if (proc.child.exitCode !== null) throw new Error(`server exited ${proc.child.exitCode}: ${proc.output()}`);
  throw new Error(`server did not start: ${proc.output()}`);
}

/** Waits for the process to end (SIGKILL after `ms`); its exit code and output. */
export async function serverExit(proc: ServerProcess, ms = 15_000): Promise<{ code: number | null; output: string }> {
  const closed = closedOf.get(proc.child);
  if (proc.child.exitCode === null && proc.child.signalCode === null) {
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), ms);
    await (closed ?? once(proc.child, 'exit'));
    clearTimeout(timer);
  } else if (closed) {
    await closed;
  }
  return { code: proc.child.exitCode, output: proc.output() };
}
