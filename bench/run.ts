/**
 * `npm run bench [-- scenario ... | --only a,b] [--servers chat,aedes,mosquitto] [--quick]`
 *
 * Runs the scenarios (all by default) against the chat server, plain Aedes and Mosquitto, one
 * server at a time, with the same generator clients, and prints one line of figures per server
 * and the chat server's ratios to each baseline. The generators and every server run in
 * processes of their own; this process only orchestrates. See bench/README.md.
 */
import { cpus, platform, release, totalmem } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Context, type Options, harness, out, progress } from './lib/common.js';
import { installCleanup, killAll } from './lib/procs.js';
import { loadSeed } from './lib/seed.js';
import { DIST, SERVER_KINDS, type ServerKind, findMosquitto, mosquittoVersion, startAedes, startChat, startMosquitto } from './lib/servers.js';
import { chatlist } from './scenarios/chatlist.js';
import { conns } from './scenarios/conns.js';
import { fanout } from './scenarios/fanout.js';
import { history } from './scenarios/history.js';
import { mix, overload } from './scenarios/mix.js';
import { search } from './scenarios/search.js';
import { slow } from './scenarios/slow.js';

const SCENARIOS: Record<string, (ctx: Context) => Promise<void>> = { fanout, mix, overload, slow, conns, history, chatlist, search };

const USAGE = `usage: npm run bench -- [scenario ...] [options]
scenarios: ${Object.keys(SCENARIOS).join(', ')} (default: all, in that order)
options:
  --only a,b          same as naming scenarios
  --servers a,b       servers to run: chat, aedes, mosquitto (default: all three)
  --quick             short runs (smoke test): fewer messages, steps and connections
  --steps 1000,2500   mix: the rate steps (msg/s)
  --step-seconds 10   mix: seconds per step
  --rounds 3          fanout: rounds of all servers in turn (default 3, 1 with --quick)
  -h, --help`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      only: { type: 'string' },
      servers: { type: 'string' },
      quick: { type: 'boolean', default: false },
      steps: { type: 'string' },
      'step-seconds': { type: 'string' },
      rounds: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const names = [...positionals, ...(values.only?.split(',') ?? [])].map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => !(n in SCENARIOS));
  const named = (values.servers?.split(',').map((s) => s.trim()) ?? SERVER_KINDS) as ServerKind[];
  const badServers = named.filter((s) => !SERVER_KINDS.includes(s));
  // Always in the same order, whatever order they were named in.
  const servers = SERVER_KINDS.filter((s) => named.includes(s));
  const steps = values.steps?.split(',').map(Number);
  const stepSeconds = values['step-seconds'] === undefined ? undefined : Number(values['step-seconds']);
  const rounds = values.rounds === undefined ? undefined : Number(values.rounds);
  if (unknown.length || badServers.length || steps?.some((s) => !(s > 0)) || (stepSeconds !== undefined && !(stepSeconds > 0)) || (rounds !== undefined && !(Number.isInteger(rounds) && rounds > 0))) {
    console.error(`${[...unknown, ...badServers].map((n) => `unknown: ${n}`).join('\n')}\n${USAGE}`);
    return 2;
  }
  const selected = names.length ? Object.keys(SCENARIOS).filter((n) => names.includes(n)) : Object.keys(SCENARIOS);
  const opts: Options = { quick: values.quick, servers, ...(steps ? { steps } : {}), ...(stepSeconds ? { stepSeconds } : {}), ...(rounds ? { rounds } : {}) };

  installCleanup();

  const unavailable = new Map<ServerKind, string>();
  const mosquitto = findMosquitto();
  if (servers.includes('mosquitto') && !mosquitto) unavailable.set('mosquitto', 'mosquitto is not installed (not on PATH nor in /usr/sbin); install the Debian package mosquitto to run this baseline');
  const run = servers.filter((s) => !unavailable.has(s));
  const graceEnv = process.env.OUTGOING_QUEUE_GRACE_MS;
  const graceMs = graceEnv !== undefined && /^\d+$/.test(graceEnv) ? Number(graceEnv) : 5000;

  const aedesVersion = (JSON.parse(readFileSync(join(DIST, '..', 'node_modules', 'aedes', 'package.json'), 'utf8')) as { version: string }).version;
  const cpu = cpus();
  out(`mqtt-chat benchmarks, ${new Date().toISOString()}${opts.quick ? ' (--quick: reduced counts and durations)' : ''}`);
  out(`node ${process.version}, ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GB RAM, ${platform()} ${release()}`);
  out(`servers: ${run.map((s) => s === 'chat'
    ? `chat (node dist/main.js, default limits, OUTGOING_QUEUE_GRACE_MS ${graceEnv === undefined ? 'not set: server default 5000' : `=${graceEnv}`})`
    : s === 'aedes' ? `aedes ${aedesVersion} (plain, default options)` : `mosquitto ${mosquittoVersion(mosquitto!)}`).join(', ')}`);
  for (const [kind, why] of unavailable) out(`${kind}: baseline not run: ${why}`);
  out();

  const seed = await loadSeed(progress);
  const ctx: Context = {
    opts,
    seed,
    servers: run,
    unavailable,
    graceMs,
    start: (kind, extra) => {
      if (kind === 'chat') return startChat(extra?.templateDb ?? seed.templateDb);
      if (kind === 'aedes') return startAedes();
      return startMosquitto(mosquitto!);
    },
  };

  let failed = 0;
  for (const name of selected) {
    const t0 = performance.now();
    try {
      await SCENARIOS[name]!(ctx);
    } catch (err) {
      failed++;
      out(`== ${name}: harness error: ${(err as Error).stack ?? String(err)}`);
      out();
    }
    progress(`${name} took ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  if (failed || harness.errors) out(`harness errors: ${failed + harness.errors} (see above); exit code 1`);
  return failed || harness.errors ? 1 : 0;
}

main().then(
  (code) => {
    killAll();
    process.exit(code);
  },
  (err: unknown) => {
    console.error(err);
    killAll();
    process.exit(1);
  },
);
