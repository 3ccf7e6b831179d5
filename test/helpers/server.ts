import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../core/config.js';
import { newId } from '../../core/ids.js';
import { hashPassword } from '../../core/passwords.js';
import type { UserRecord } from '../../core/store/store.js';
import { type Running, startServer } from '../../server.js';

/** A self-signed certificate for 127.0.0.1 and its key, committed (test/fixtures/tls). */
export const TEST_TLS = {
  cert: fileURLToPath(new URL('../fixtures/tls/cert.pem', import.meta.url)),
  key: fileURLToPath(new URL('../fixtures/tls/key.pem', import.meta.url)),
};

export const TEST_SECRET = 'test-secret-that-is-long-enough-0123456789';

/** The token with the last character of its signature changed in its two low bits, which a
 * 43-character base64url text of 32 bytes does not use: it decodes to the same signature. */
export function sameBitsOtherText(token: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(token.at(-1)!);
  const changed = `${token.slice(0, -1)}${alphabet[last ^ 1]}`;
  if (Buffer.compare(Buffer.from(changed.split('.')[2]!, 'base64url'), Buffer.from(token.split('.')[2]!, 'base64url')) !== 0) throw new Error('not the same signature');
  return changed;
}

/**
 * Specs sign up many users, from one address, often at once: the per-address credential
 * limits and the bound on concurrent password hashes are raised for them. The specs of those
 * limits (test/abuse.*.test.ts) set their own values.
 */
export const ROOMY_LIMITS: Record<string, string> = {
  REGISTER_BURST_PER_IP: '1000000',
  LOGIN_BURST_PER_IP: '1000000',
  PASSWORD_HASHES_IN_FLIGHT: '64',
  SEARCH_BURST: '1000000',
  HTTP_SOCKETS_PER_IP: '100000',
};

export function tempDir(prefix = 'chat-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestServer extends Running {
  dataDir: string;
  http: Http;
  /** Registers and logs in a new user over REST. */
  signUp(name?: string, displayName?: string): Promise<{ user: UserDto; token: string }>;
  /** Inserts `n` users straight into the store (bulk set-up, skipping n slow password hashes). */
  seedUsers(n: number, prefix?: string): Promise<UserRecord[]>;
  /** Closes the server and deletes its data directory. */
  stop(): Promise<void>;
}

export interface UserDto { id: string; username: string; displayName: string; online: boolean; lastSeenAt: string | null }

/** The embedded server on an ephemeral loopback port with its own data directory. */
export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = env.DATA_DIR ?? tempDir();
  const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', LOG_LEVEL: 'silent', JWT_SECRET: TEST_SECRET, DATA_DIR: dataDir, ...ROOMY_LIMITS, ...env });
  const running = await startServer(config);
  const http = new Http(running.url);
  let counter = 0;
  const seedHash = hashPassword('seeded-password');
  return {
    ...running,
    dataDir,
    http,
    async signUp(name, displayName) {
      const username = name ?? `user${++counter}_${Math.random().toString(36).slice(2, 8)}`;
      const password = 'correct horse battery';
      const reg = await http.post('/api/users', { username, password, ...(displayName ? { displayName } : {}) });
      if (reg.status !== 201) throw new Error(`register ${username}: ${reg.status} ${JSON.stringify(reg.body)}`);
      const login = await http.post('/api/users/login', { username, password });
      if (login.status !== 200) throw new Error(`login ${username}: ${login.status} ${JSON.stringify(login.body)}`);
      return { user: login.body.user as UserDto, token: login.body.token as string };
    },
    async seedUsers(n, prefix = 'seed') {
      const passwordHash = await seedHash;
      const tag = Math.random().toString(36).slice(2, 8);
      const users: UserRecord[] = [];
      for (let i = 0; i < n; i++) {
        users.push(
          await running.store.createUser({ id: newId(), username: `${prefix}${i}_${tag}`, displayName: `${prefix} ${i}`, passwordHash, createdAt: Date.now() }),
        );
      }
      return users;
    },
    async stop() {
      await running.close();
      if (env.DATA_DIR === undefined) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;
export interface HttpResult { status: number; body: Json; headers: Headers }

/** A small JSON client over real HTTP (fetch). */
export class Http {
  constructor(readonly base: string) {}

  async request(method: string, path: string, opts: { body?: unknown; raw?: string | Uint8Array; token?: string; headers?: Record<string, string> } = {}): Promise<HttpResult> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    let body: string | Uint8Array | undefined;
    if (opts.raw !== undefined) body = opts.raw;
    else if (opts.body !== undefined) body = JSON.stringify(opts.body);
    if (body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.base + path, { method, headers, body: body as BodyInit | undefined });
    const text = await res.text();
    let parsed: Json = text;
    try {
      parsed = text === '' ? null : JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  /** Every envelope of a chat after `after`, ascending, following the REST pages. */
  async history(chatId: string, token: string, after = 0): Promise<Json[]> {
    const all: Json[] = [];
    for (;;) {
      const res = await this.get(`/api/messages/${chatId}?after=${after}&limit=100`, token);
      if (res.status !== 200) throw new Error(`history of ${chatId}: ${res.status} ${JSON.stringify(res.body)}`);
      all.push(...res.body.messages);
      if (!res.body.hasMore) return all;
      after = res.body.messages.at(-1).seq;
    }
  }

  get(path: string, token?: string) {
    return this.request('GET', path, { token });
  }
  post(path: string, body?: unknown, token?: string) {
    return this.request('POST', path, { body, token });
  }
  delete(path: string, token?: string) {
    return this.request('DELETE', path, { token });
  }
}
