import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { ensureDataDir } from './data-dir.js';
import { StartupError } from './errors.js';
import * as rules from './rules.js';

/** Everything the process reads from its environment, validated once at start. */
export interface Config {
  host: string;
  /** HTTP + WebSocket port; 0 picks a free port (the chosen one is logged). */
  port: number;
  /** MQTT over TCP port; 0 picks a free port. */
  mqttPort: number;
  dataDir: string;
  redisUrl: string | undefined;
  amqpUrl: string | undefined;
  mongoUrl: string | undefined;
  jwtSecret: string;
  /** Lifetime of a login token, in seconds. */
  tokenTtl: number;
  logLevel: LogLevel;
  /** `pretty` (for a person at a terminal) or `json` (one object per line, for collectors). */
  logFormat: 'pretty' | 'json';
  tls: { cert: Buffer; key: Buffer } | undefined;
  /** Prefix of every Redis key and channel and RabbitMQ queue, so deployments can share them. */
  namespace: string;
  /** What this process does: `broker` (MQTT), `api` (REST), `worker` (archive consumer). */
  roles: Set<Role>;
  /** Proxies whose X-Forwarded-For is believed (addresses, CIDR ranges, or `loopback`,
   * `linklocal`, `uniquelocal`); empty: the socket's peer is the client. Their sockets are
   * not counted against the per-address HTTP socket cap. */
  trustProxy: string[];
  limits: Limits;
}

/** Protection limits, each from its own variable (defaults in core/rules.ts; see docs/mqtt.md). */
export interface Limits {
  /** Largest MQTT packet, fixed header included, on every transport. */
  maxPacketBytes: number;
  /** New MQTT connections per client IP address (per node): a burst, then a rate per second. */
  connectBurstPerIp: number;
  connectRatePerIp: number;
  /** Chat messages per user: a burst, then a rate per second. */
  sendBurst: number;
  sendRate: number;
  maxConnectionsPerUser: number;
  /** A connection's outgoing queue: bytes and packets waiting for a client that reads too slowly. */
  outgoingQueueBytes: number;
  outgoingQueuePackets: number;
  /** How long a connection may stay past that bound before it is closed. */
  outgoingQueueGraceMs: number;
  /** Chat sends in the pipeline of this process at once (validated, not yet durable). */
  maxSendsInFlight: number;
  /** Registrations per client IP address: a burst, then a rate per second (429 past it). */
  registerBurstPerIp: number;
  registerRatePerIp: number;
  /** Login attempts per client IP address, right or wrong: a burst, then a rate per second. */
  loginBurstPerIp: number;
  loginRatePerIp: number;
  /** Failed logins per username and client IP address: a burst, then a rate per second. */
  loginFailureBurst: number;
  loginFailureRate: number;
  /** Password hashes (scrypt) computed at once in this process; more are answered 503. */
  passwordHashesInFlight: number;
  /** MQTT subscriptions a connection, and a user over all its connections, may hold. */
  maxSubscriptionsPerConnection: number;
  maxSubscriptionsPerUser: number;
  /** Message searches per user: a burst, then a rate per second. */
  searchBurst: number;
  searchRate: number;
  /** Open HTTP (and WebSocket) sockets per client IP address on this node. */
  httpSocketsPerIp: number;
  /** Time a client has to send a request's headers, in milliseconds. */
  httpHeadersTimeoutMs: number;
}

export const ROLES = ['broker', 'api', 'worker'] as const;
export type Role = (typeof ROLES)[number];

const PROXY_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

// Beside ConfigError for the callers; defined in errors.ts, which core/data-dir.ts imports too.
export { StartupError };

/**
 * Reads and checks the environment. All problems are reported together, each naming the
 * variable to change. Without JWT_SECRET: creates DATA_DIR (0700; a StartupError when it cannot
 * be used, core/data-dir.ts), and on first start a JWT secret kept in it (0600).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const str = (name: string) => {
    const v = env[name]?.trim();
    return v === '' ? undefined : v;
  };

  const port = (name: string, fallback: number) => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n > 65535) {
      problems.push(`${name} must be a port number from 0 to 65535 (0 picks a free port), got "${raw}"`);
      return fallback;
    }
    return n;
  };

  const url = (name: string, protocols: string[]) => {
    const raw = str(name);
    if (raw === undefined) return undefined;
    try {
      const u = new URL(raw);
      if (!protocols.includes(u.protocol)) {
        problems.push(`${name} must start with ${protocols.map((p) => `${p}//`).join(' or ')}, got "${u.protocol}//..."`);
      }
    } catch {
      problems.push(`${name} is not a valid URL`);
    }
    return raw;
  };

  const logLevel = (str('LOG_LEVEL') ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);

  const logFormatRaw = str('LOG_FORMAT') ?? 'auto';
  if (!['auto', 'json', 'pretty'].includes(logFormatRaw)) problems.push(`LOG_FORMAT must be auto, json or pretty, got "${logFormatRaw}"`);
  // auto: pretty when a person reads stdout on a terminal, JSON when anything else does.
  const logFormat: Config['logFormat'] = logFormatRaw === 'pretty' || (logFormatRaw === 'auto' && process.stdout.isTTY === true) ? 'pretty' : 'json';

  const ttlRaw = str('TOKEN_TTL');
  let tokenTtl = 7 * 24 * 3600;
  if (ttlRaw !== undefined) {
    if (!/^\d+$/.test(ttlRaw) || Number(ttlRaw) < 60 || Number(ttlRaw) > 365 * 24 * 3600) {
      problems.push(`TOKEN_TTL must be a number of seconds from 60 to 31536000, got "${ttlRaw}"`);
    } else tokenTtl = Number(ttlRaw);
  }

  let tls: Config['tls'];
  const certPath = str('TLS_CERT');
  const keyPath = str('TLS_KEY');
  if ((certPath === undefined) !== (keyPath === undefined)) {
    problems.push('TLS_CERT and TLS_KEY must be set together (paths to PEM files)');
  } else if (certPath !== undefined && keyPath !== undefined) {
    try {
      tls = { cert: readFileSync(certPath), key: readFileSync(keyPath) };
    } catch (err) {
      problems.push(`cannot read TLS_CERT/TLS_KEY: ${(err as Error).message}`);
    }
  }

  const jwtFromEnv = str('JWT_SECRET');
  if (jwtFromEnv !== undefined && jwtFromEnv.length < 32) problems.push('JWT_SECRET must be at least 32 characters long');
  if (jwtFromEnv === undefined && str('REDIS_URL') !== undefined && str('MONGO_URL') !== undefined) {
    // A cluster on MongoDB spans machines: secrets generated into each DATA_DIR would differ,
    // and a token signed by one process would be refused by the next.
    problems.push('REDIS_URL and MONGO_URL make a cluster across machines: set JWT_SECRET (at least 32 characters), the same for every process');
  }

  const namespace = str('NAMESPACE') ?? 'chat';
  if (!/^[a-z0-9][a-z0-9_-]{0,31}$/.test(namespace)) problems.push(`NAMESPACE must be 1-32 of [a-z0-9_-], starting with a letter or digit, got "${namespace}"`);

  const rolesRaw = str('ROLES');
  const roles = new Set<Role>();
  for (const r of (rolesRaw ?? ROLES.join(',')).split(',').map((x) => x.trim()).filter(Boolean)) {
    if ((ROLES as readonly string[]).includes(r)) roles.add(r as Role);
    else problems.push(`ROLES must be a comma list of ${ROLES.join(', ')}, got "${r}"`);
  }
  if (roles.size === 0) problems.push(`ROLES must name at least one of ${ROLES.join(', ')}`);
  if (roles.size > 0 && roles.size < ROLES.length && str('REDIS_URL') === undefined) {
    problems.push(`ROLES=${[...roles].join(',')} runs part of the system in this process: the parts share state through Redis, so set REDIS_URL`);
  }
  if (rolesRaw !== undefined && roles.has('worker') && roles.size === 1 && str('AMQP_URL') === undefined) {
    problems.push('ROLES=worker consumes the RabbitMQ archive queue: set AMQP_URL');
  }

  const trustProxy = (str('TRUST_PROXY') ?? '').split(',').map((x) => x.trim()).filter(Boolean);
  for (const entry of trustProxy) {
    const [addr = '', bits, extra] = entry.split('/');
    const family = isIP(addr);
    const bitsOk = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= (family === 6 ? 128 : 32));
    if (!(PROXY_NAMES.includes(entry) || (family !== 0 && bitsOk && extra === undefined))) {
      problems.push(`TRUST_PROXY must be a comma list of addresses, CIDR ranges (10.0.0.0/8) or ${PROXY_NAMES.join(', ')}, got "${entry}"`);
    }
  }

  /** A whole number (or, with `fraction`, a decimal) from `min` to `max`. */
  const number = (name: string, fallback: number, min: number, max: number, fraction = false) => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!(fraction ? /^\d+(\.\d+)?$/ : /^\d+$/).test(raw) || n < min || n > max) {
      problems.push(`${name} must be ${fraction ? 'a number' : 'a whole number'} from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return n;
  };
  const limits: Limits = {
    // Below 8 KiB a valid chat message (1,000 four-byte code points and its JSON) may not fit.
    maxPacketBytes: number('MAX_PACKET_BYTES', rules.MAX_PACKET_BYTES, 8192, 268_435_455),
    connectBurstPerIp: number('CONNECT_BURST_PER_IP', rules.CONNECT_BURST, 1, 1_000_000),
    connectRatePerIp: number('CONNECT_RATE_PER_IP', rules.CONNECT_PER_SECOND, 0.001, 1_000_000, true),
    sendBurst: number('SEND_BURST', rules.SEND_BURST, 1, 1_000_000),
    sendRate: number('SEND_RATE', rules.SEND_PER_SECOND, 0.001, 1_000_000, true),
    maxConnectionsPerUser: number('MAX_CONNECTIONS_PER_USER', rules.MAX_CONNECTIONS_PER_USER, 1, 10_000),
    outgoingQueueBytes: number('OUTGOING_QUEUE_BYTES', rules.OUTGOING_QUEUE_BYTES, 65_536, 1 << 30),
    outgoingQueuePackets: number('OUTGOING_QUEUE_PACKETS', rules.OUTGOING_QUEUE_PACKETS, 10, 1_000_000),
    outgoingQueueGraceMs: number('OUTGOING_QUEUE_GRACE_MS', rules.OUTGOING_QUEUE_GRACE_MS, 0, 600_000),
    maxSendsInFlight: number('MAX_SENDS_IN_FLIGHT', rules.MAX_SENDS_IN_FLIGHT, 1, 1_000_000),
    registerBurstPerIp: number('REGISTER_BURST_PER_IP', rules.REGISTER_BURST_PER_IP, 1, 1_000_000),
    registerRatePerIp: number('REGISTER_RATE_PER_IP', rules.REGISTER_PER_SECOND_PER_IP, 0.001, 1_000_000, true),
    loginBurstPerIp: number('LOGIN_BURST_PER_IP', rules.LOGIN_BURST_PER_IP, 1, 1_000_000),
    loginRatePerIp: number('LOGIN_RATE_PER_IP', rules.LOGIN_PER_SECOND_PER_IP, 0.001, 1_000_000, true),
    loginFailureBurst: number('LOGIN_FAILURE_BURST', rules.LOGIN_FAILURE_BURST, 1, 1_000_000),
    loginFailureRate: number('LOGIN_FAILURE_RATE', rules.LOGIN_FAILURE_PER_SECOND, 0.0001, 1_000_000, true),
    passwordHashesInFlight: number('PASSWORD_HASHES_IN_FLIGHT', rules.PASSWORD_HASHES_IN_FLIGHT, 1, 1024),
    maxSubscriptionsPerConnection: number('MAX_SUBSCRIPTIONS_PER_CONNECTION', rules.MAX_SUBSCRIPTIONS_PER_CONNECTION, 1, 1_000_000),
    maxSubscriptionsPerUser: number('MAX_SUBSCRIPTIONS_PER_USER', rules.MAX_SUBSCRIPTIONS_PER_USER, 1, 10_000_000),
    searchBurst: number('SEARCH_BURST', rules.SEARCH_BURST, 1, 1_000_000),
    searchRate: number('SEARCH_RATE', rules.SEARCH_PER_SECOND, 0.001, 1_000_000, true),
    httpSocketsPerIp: number('HTTP_SOCKETS_PER_IP', rules.HTTP_SOCKETS_PER_IP, 1, 1_000_000),
    httpHeadersTimeoutMs: number('HTTP_HEADERS_TIMEOUT_MS', rules.HTTP_HEADERS_TIMEOUT_MS, 1000, 600_000),
  };

  const cfg = {
    roles,
    trustProxy,
    limits,
    namespace,
    host: str('HOST') ?? '0.0.0.0',
    port: port('PORT', 3000),
    mqttPort: port('MQTT_PORT', 1883),
    dataDir: resolve(str('DATA_DIR') ?? './data'),
    redisUrl: url('REDIS_URL', ['redis:', 'rediss:']),
    amqpUrl: url('AMQP_URL', ['amqp:', 'amqps:']),
    mongoUrl: url('MONGO_URL', ['mongodb:', 'mongodb+srv:']),
    tokenTtl,
    logLevel,
    logFormat,
    tls,
  };
  if (problems.length > 0) throw new ConfigError(problems);

  let jwtSecret = jwtFromEnv;
  if (jwtSecret === undefined) {
    try {
      jwtSecret = embeddedSecret(cfg.dataDir);
    } catch (err) {
      if (err instanceof StartupError) throw err; // DATA_DIR itself is unusable: one line names it
      throw new ConfigError([`cannot create or read the JWT secret in DATA_DIR (${cfg.dataDir}): ${(err as Error).message}; set DATA_DIR or JWT_SECRET`]);
    }
  }
  return { ...cfg, jwtSecret };
}

/** The embedded deployment generates its signing secret once and keeps it beside the data. */
function embeddedSecret(dataDir: string): string {
  ensureDataDir(dataDir);
  const file = join(dataDir, 'jwt-secret');
  if (!existsSync(file)) {
    // Written whole under a name of our own, then linked into place: link fails if another
    // process got there first (then we read theirs), and nobody ever reads a half-written file.
    const draft = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
    writeFileSync(draft, randomBytes(48).toString('base64url'), { mode: 0o600, flag: 'wx' });
    try {
      linkSync(draft, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(draft);
    }
  }
  const secret = readFileSync(file, 'utf8').trim();
  if (secret.length < 32) throw new Error(`${file} holds no usable secret (under 32 characters): delete it, or set JWT_SECRET`);
  return secret;
}
