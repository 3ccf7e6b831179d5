import { accessSync, constants, existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { delimiter, join } from 'node:path';

/**
 * What some specs need beyond Node.js, and how each spec that needs one says so.
 *
 * On a machine without it, such a spec is not run and says so at the end of the run (the
 * summary reporter prints a `not run:` line with the reason and the command that enables it);
 * it never counts as passed, nor as skipped. With TEST_STRICT=1 (what .ci/run sets) nothing
 * but MongoDB may be missing: a spec that needs anything else runs, and fails without it.
 *
 * - A whole file that needs a service is listed in CONDITIONAL_SPECS: vitest.config.ts leaves
 *   it out when the service is missing.
 * - A single spec calls `await needs(ctx, 'haproxy')` first.
 */
export type Need = 'redis' | 'rabbitmq' | 'mongodb' | 'haproxy' | 'docker-compose' | 'mosquitto-clients' | 'chromium';

interface Requirement {
  /** Resolves with null when the machine has it, else with why not. */
  check(): Promise<string | null>;
  /** The command that provides it (Debian). */
  enable: string;
}

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

export const STRICT = process.env.TEST_STRICT === '1';

const REQUIREMENTS: Record<Need, Requirement> = {
  redis: {
    check: () => listening(REDIS_URL, 6379, 'Redis (REDIS_URL)'),
    enable: 'apt-get install -y redis-server && redis-server --daemonize yes --port 6379 --save "" --appendonly no',
  },
  rabbitmq: {
    check: () => listening(AMQP_URL, 5672, 'RabbitMQ (AMQP_URL)'),
    enable: 'apt-get install -y rabbitmq-server && rabbitmq-server -detached',
  },
  mongodb: {
    check: async () => (process.env.MONGO_URL ? null : 'MONGO_URL is not set'),
    enable: 'MONGO_URL=mongodb://HOST:27017/chat_test?replicaSet=rs0 npm test (a replica set: transactions need one)',
  },
  haproxy: { check: async () => onPath('haproxy'), enable: 'apt-get install -y haproxy' },
  'docker-compose': { check: async () => onPath('docker-compose'), enable: 'apt-get install -y docker-compose' },
  'mosquitto-clients': {
    check: async () => onPath('mosquitto_pub') ?? onPath('mosquitto_sub'),
    enable: 'apt-get install -y mosquitto-clients',
  },
  // Debian's Chromium, driven by playwright-core; never a downloaded browser.
  chromium: {
    check: async () => (existsSync(CHROMIUM) ? null : `${CHROMIUM} is not installed`),
    enable: 'apt-get install -y chromium',
  },
};

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Spec files that need a service as a whole (their set-up starts servers that use it). */
export const CONDITIONAL_SPECS: { file: string; what: string; needs: Need[] }[] = [
  { file: 'test/store.mongo.test.ts', what: 'MongoDB store contract', needs: ['mongodb'] },
  { file: 'test/seams.redis.test.ts', what: 'Redis seam contracts', needs: ['redis'] },
  { file: 'test/cluster.test.ts', what: 'two broker nodes clustered through Redis', needs: ['redis'] },
  { file: 'test/fuzz.membership-cluster.test.ts', what: 'randomized membership over two clustered nodes', needs: ['redis'] },
  { file: 'test/cluster.outage.test.ts', what: 'a node through Redis and RabbitMQ outages', needs: ['redis', 'rabbitmq'] },
  { file: 'test/archive.amqp.test.ts', what: 'the RabbitMQ archive and its worker', needs: ['rabbitmq'] },
  { file: 'test/web.browser.test.ts', what: 'the web client in Chromium', needs: ['chromium'] },
];

/** A spec or file that is not run, and why. */
export interface NotRun {
  what: string;
  file: string;
  why: string;
}

const checked = new Map<Need, Promise<string | null>>();

/** Why the machine lacks `need` (null: it has it); checked once per process. */
export function missing(need: Need): Promise<string | null> {
  let result = checked.get(need);
  if (!result) checked.set(need, (result = REQUIREMENTS[need].check()));
  return result;
}

/** The reason line for a missing need: why, and the command that enables it. */
export const reason = (need: Need, why: string) => `${why}; to run it: ${REQUIREMENTS[need].enable}`;

/** The files of CONDITIONAL_SPECS to leave out of this run. Under TEST_STRICT only MongoDB's
 * may be; every other file is run, and fails where its service is missing. */
export async function specsNotRun(): Promise<NotRun[]> {
  const out: NotRun[] = [];
  for (const spec of CONDITIONAL_SPECS) {
    for (const need of spec.needs) {
      if (STRICT && need !== 'mongodb') continue;
      const why = await missing(need);
      if (why !== null) {
        out.push({ what: spec.what, file: spec.file, why: reason(need, why) });
        break;
      }
    }
  }
  return out;
}

/** Under TEST_STRICT, what this machine lacks of everything but MongoDB, one line each (empty
 * when it has it all), so that a strict run fails at once, saying what to install. */
export async function strictlyMissing(): Promise<string[]> {
  if (!STRICT) return [];
  const lines: string[] = [];
  for (const need of Object.keys(REQUIREMENTS) as Need[]) {
    if (need === 'mongodb') continue;
    const why = await missing(need);
    if (why !== null) lines.push(`${need}: ${reason(need, why)}`);
  }
  return lines;
}

/** Prefix of the skip note of a spec that is not run for want of something. */
export const NOT_RUN_NOTE = 'not run: ';

/**
 * First line of a spec that needs `what`: when the machine lacks one, the spec stops here and
 * is reported as not run (under TEST_STRICT it fails instead).
 */
export async function needs(ctx: { skip: (note?: string) => never }, ...what: Need[]): Promise<void> {
  for (const need of what) {
    const why = await missing(need);
    if (why === null) continue;
    if (STRICT) throw new Error(`TEST_STRICT=1 requires ${need}: ${reason(need, why)}`);
    ctx.skip(`${NOT_RUN_NOTE}${reason(need, why)}`);
  }
}

/** Null when `command` is on PATH, else why not. */
export function onPath(command: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return null;
    } catch {
      // not in this directory
    }
  }
  return `${command} is not installed`;
}

function listening(url: string, defaultPort: number, what: string): Promise<string | null> {
  const { hostname, port } = new URL(url);
  const host = hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const at = `${host}:${port || defaultPort}`;
  return new Promise((resolve) => {
    const socket = createConnection({ host, port: Number(port) || defaultPort });
    const done = (why: string | null) => {
      socket.destroy();
      resolve(why);
    };
    socket.setTimeout(2000, () => done(`${what}: nothing answers at ${at} within 2 s`));
    socket.once('connect', () => done(null));
    socket.once('error', (err: NodeJS.ErrnoException) => done(`${what}: nothing listens at ${at} (${err.code ?? err.message})`));
  });
}
