import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from './procs.js';
import { DIST, cpuSeconds } from './servers.js';

/**
 * REST load for the chatlist and search scenarios: a process of its own
 * (bench/lib/rest-generator.ts, forked), never the server's, that sends requests paced at a
 * fixed rate from a few concurrent requesters on keep-alive connections for a fixed time.
 */

/** One kind of request: `label` groups the figures; each request is one of `requests`. */
export interface RestRequest {
  label: string;
  path: string;
  token: string;
  /** Responses of the same key: the first `samples` bodies are kept for the scenario to check. */
  key: string;
}

export interface RestLoadArgs {
  base: string;
  requests: RestRequest[];
  /** Requests per second in all; request k is due at start + k / rate, and sent when it is due
   * and one of the `concurrency` requesters is free (a closed loop that never runs ahead). */
  rate: number;
  concurrency: number;
  durationMs: number;
  /** Bodies kept per key (default 1). */
  samples?: number;
}

export interface LabelFigures {
  /** ms, sorted; from the request's start to its response's last byte. */
  latencies: number[];
  statuses: Record<string, number>;
  bytes: number;
}

export interface RestLoadResult {
  byLabel: Record<string, LabelFigures>;
  seconds: number;
  /** Requests sent later than 10 ms after they were due (the requesters were all busy). */
  late: number;
  samples: Record<string, { status: number; body: string }[]>;
}

let count = 0;
const GEN_NODE_ARGS = process.env.BENCH_GEN_NODE_ARGS?.split(' ').filter(Boolean) ?? [];

/** A REST generator process (BENCH_GEN_NODE_ARGS applies to it as to the MQTT generators). */
export function restGenerator(): Worker {
  const execArgv = GEN_NODE_ARGS.length ? [...process.execArgv, ...GEN_NODE_ARGS] : undefined;
  return new Worker(join(DIST, 'bench', 'lib', 'rest-generator.js'), [], `rest generator ${count++}`, undefined, execArgv);
}

/** USER_HZ, as in servers.ts. */
const TICKS = 100;

function machineTicks(): { busy: number; steal: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return { busy: user + nice + system + irq + softirq, steal };
}

/**
 * CPU of the server, of the load's generator, and of everything else on the machine (other
 * processes, the kernel's own threads) between `start` and `stop`, in % of one core: the
 * machine is shared, and a run beside someone's test suite measures the suite too.
 */
export function cpuShares(serverPid: number, genPid: number) {
  const read = () => ({ at: performance.now(), machine: machineTicks(), server: cpuSeconds(serverPid) ?? NaN, gen: cpuSeconds(genPid) ?? NaN });
  const a = read();
  return () => {
    const b = read();
    const s = (b.at - a.at) / 1000;
    const server = (100 * (b.server - a.server)) / s;
    const gen = (100 * (b.gen - a.gen)) / s;
    const busy = (100 * (b.machine.busy - a.machine.busy)) / TICKS / s;
    return { server, gen, others: Math.max(0, busy - server - gen), steal: (100 * (b.machine.steal - a.machine.steal)) / TICKS / s };
  };
}

/** "server 18 %, generator 6 %, everything else 3 % of a core (steal 1 %)" */
export function sharesText(c: ReturnType<ReturnType<typeof cpuShares>>, requests: number, seconds: number): string {
  const each = (c.server * seconds * 10) / requests;
  return `CPU: server ${c.server.toFixed(0)} % (${each.toFixed(1)} ms per request), generator ${c.gen.toFixed(0)} %, everything else on the machine ${c.others.toFixed(0)} % of a core (hypervisor steal ${c.steal.toFixed(0)} %)`;
}
