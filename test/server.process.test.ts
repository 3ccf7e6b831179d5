import { readFileSync, rmSync, statSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pollUntil } from './helpers/poll.js';
import { launchServer, serverExit, serverReady } from './helpers/process.js';
import { Http, TEST_TLS, tempDir } from './helpers/server.js';

const launch = launchServer;
const ready = serverReady;
const exitOf = serverExit;

describe('the server process (npm start)', () => {
  describe('embedded, with no external service', () => {
    const dataDir = tempDir('chat-proc-');
    afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

    it('serves the API, keeps data and tokens across a restart, and stops cleanly on SIGTERM', async () => {
      const first = await ready(launch({ DATA_DIR: dataDir }));
      const http = new Http(first.url);
      expect((await http.get('/healthz')).body).toEqual({ status: 'ok' });
      expect((await http.get('/readyz')).body).toEqual({ status: 'ready' });
      await http.post('/api/users', { username: 'keeper', password: 'persist-me' });
      await http.post('/api/users', { username: 'friend', password: 'persist-me' });
      const login = await http.post('/api/users/login', { username: 'keeper', password: 'persist-me' });
      const friend = (await http.get('/api/users/search?q=friend', login.body.token)).body.users[0];
      const chat = (await http.post('/api/chats', { type: 'direct', memberIds: [friend.id] }, login.body.token)).body.chat;

      // The generated signing secret is kept in DATA_DIR, readable by its owner only.
      expect(statSync(join(dataDir, 'jwt-secret')).mode & 0o077).toBe(0);
      first.child.kill('SIGTERM');
      expect((await exitOf(first)).code).toBe(0);

      const second = await ready(launch({ DATA_DIR: dataDir }));
      try {
        const http2 = new Http(second.url);
        const me = await http2.get('/api/users/me', login.body.token);
        expect(me.status).toBe(200);
        expect(me.body.user.username).toBe('keeper');
        expect((await http2.get(`/api/chats/${chat.number}`, login.body.token)).body.chat.id).toBe(chat.id);
        expect((await http2.post('/api/users/login', { username: 'keeper', password: 'persist-me' })).status).toBe(200);
      } finally {
        second.child.kill('SIGTERM');
        await exitOf(second);
      }
    });

    it('publishes the OpenAPI document with every REST route, and the browsable UI at /docs', async () => {
      const proc = await ready(launch({ DATA_DIR: dataDir }));
      try {
        const http = new Http(proc.url);
        const doc = (await http.get('/docs/json')).body;
        expect(doc.openapi).toMatch(/^3\./);
        expect(Object.keys(doc.paths).sort()).toEqual([
          '/api/chats', '/api/chats/group/{userId}', '/api/chats/one-to-one/{userId}', '/api/chats/{number}',
          '/api/chats/{number}/members', '/api/chats/{number}/members/{userId}', '/api/chats/{number}/read', '/api/chats/{number}/receipts',
          '/api/messages/search', '/api/messages/{chatId}', '/api/messages/{chatId}/{seq}',
          '/api/users', '/api/users/login', '/api/users/logout', '/api/users/me', '/api/users/search',
        ]);
        const ui = await fetch(`${proc.url}/docs/`);
        expect(ui.status).toBe(200);
        expect(await ui.text()).toContain('swagger');
      } finally {
        proc.child.kill('SIGTERM');
        await exitOf(proc);
      }
    });
  });

  describe('with TLS_CERT and TLS_KEY', () => {
    const dataDir = tempDir('chat-tls-');
    afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

    it('serves the API over HTTPS with the given certificate', async () => {
      const { cert, key } = TEST_TLS;
      const proc = await ready(launch({ DATA_DIR: dataDir, TLS_CERT: cert, TLS_KEY: key }));
      try {
        expect(proc.url).toMatch(/^https:/);
        const body = await new Promise<string>((resolve, reject) => {
          const req = httpsRequest(`${proc.url}/healthz`, { ca: readFileSync(cert) }, (res) => {
            let text = '';
            res.on('data', (d) => (text += d));
            res.on('end', () => resolve(text));
          });
          req.on('error', reject);
          req.end();
        });
        expect(JSON.parse(body)).toEqual({ status: 'ok' });
      } finally {
        proc.child.kill('SIGTERM');
        await exitOf(proc);
      }
    });
  });

  describe('refuses bad configuration with a message naming what to change', () => {
    const dataDir = tempDir('chat-conf-');
    afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

    it.each([
      [{ PORT: 'abc' }, /PORT must be a port number/],
      [{ PORT: '70000' }, /PORT must be a port number/],
      [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of/],
      [{ JWT_SECRET: 'short' }, /JWT_SECRET must be at least 32 characters/],
      [{ TLS_CERT: '/nonexistent.pem' }, /TLS_CERT and TLS_KEY must be set together/],
      [{ REDIS_URL: 'http://x' }, /REDIS_URL must start with redis:\/\//],
      [{ MONGO_URL: 'postgres://127.0.0.1/chat' }, /MONGO_URL must start with mongodb:\/\/ or mongodb\+srv:\/\//],
      [{ MONGO_URL: 'mongodb://127.0.0.1:1/chat?serverSelectionTimeoutMS=500' }, /cannot use the MongoDB store at MONGO_URL: connect ECONNREFUSED 127.0.0.1:1/],
      // Something that is not MongoDB on the port (Redis).
      [{ MONGO_URL: 'mongodb://127.0.0.1:6379/chat?serverSelectionTimeoutMS=1000' }, /cannot use the MongoDB store at MONGO_URL: .*no MongoDB primary answered/],
      [{ REDIS_URL: 'redis://127.0.0.1:6379', MONGO_URL: 'mongodb://127.0.0.1:1/chat' }, /set JWT_SECRET \(at least 32 characters\), the same for every process/],
      [{ NAMESPACE: 'Bad Name' }, /NAMESPACE must be 1-32 of/],
      [{ ROLES: 'broker,chef' }, /ROLES must be a comma list of broker, api, worker, got "chef"/],
      [{ ROLES: 'api' }, /ROLES=api runs part of the system in this process: .* set REDIS_URL/],
      [{ REDIS_URL: 'redis://127.0.0.1:1' }, /cannot reach Redis at REDIS_URL/],
      [{ AMQP_URL: 'amqp://127.0.0.1:1' }, /cannot reach RabbitMQ at AMQP_URL/],
    ])('%o', async (env, message) => {
      const { code, output } = await exitOf(launch({ DATA_DIR: dataDir, ...env }));
      expect(code).toBe(1);
      expect(output).toMatch(message);
    });

    it('logs lines a person can read with LOG_FORMAT=pretty (the default on a terminal), JSON otherwise', async () => {
      const proc = launch({ DATA_DIR: dataDir, LOG_FORMAT: 'pretty' });
      await pollUntil(() => proc.output().includes('MQTT listening on'), { within: 10_000, every: 50 });
      // Still starting (the MQTT line comes before start-up ends): stopped gracefully once started.
      proc.child.kill('SIGTERM');
      const { code, output } = await exitOf(proc);
      expect(code).toBe(0);
      expect(output).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: HTTP API listening on http:\/\/127\.0\.0\.1:\d+/m);
      expect(output).toMatch(/INFO: SIGTERM: shutting down/);
      expect(output.split('\n').filter((l) => l.startsWith('{'))).toEqual([]);
    });

    it('names PORT when the HTTP port is taken', async () => {
      const blocker = createServer();
      await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
      const port = (blocker.address() as { port: number }).port;
      try {
        const { code, output } = await exitOf(launch({ DATA_DIR: dataDir, PORT: String(port) }));
        expect(code).toBe(1);
        expect(output).toContain(`HTTP port ${port} is in use on 127.0.0.1; set PORT`);
      } finally {
        blocker.close();
      }
    });
  });
});
