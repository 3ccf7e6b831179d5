import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { BlockList, type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../core/config.js';
import { needs } from './support/conditional.js';
import { pollUntil } from './helpers/poll.js';
import { launchServer, serverExit, serverReady } from './helpers/process.js';
import { TEST_SECRET, tempDir } from './helpers/server.js';

/**
 * No Docker engine runs here, so the deployment files are checked by the tools that can read
 * them without one: docker-compose's schema validation, HAProxy's config check, and a parse of
 * the Dockerfile. Where docker-compose or haproxy is missing, their specs say so and are not
 * run (.ci/run installs both from Debian).
 */
const run = promisify(execFile);

/** A TCP port nothing listens on now. */
const freePort = () =>
  new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });

describe('deployment files', () => {
  it('docker-compose.yml is valid and defines the scaled-out services', async (ctx) => {
    await needs(ctx, 'docker-compose');
    const env = { ...process.env, JWT_SECRET: 'compose-check-secret-compose-check-secret' };
    await run('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { env });
    const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config', '--services'], { env });
    expect(stdout.trim().split('\n').sort()).toEqual(['api', 'broker1', 'broker2', 'lb', 'mongo', 'rabbitmq', 'redis', 'worker']);
    const { stdout: full } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config'], { env });
    for (const role of ['broker', 'api', 'worker']) expect(full).toContain(`ROLES: ${role}`);
    expect(full.match(/healthcheck:/g)?.length).toBeGreaterThanOrEqual(7);
    // Every chat process shares the three engines; the store is a replica set (transactions).
    for (const v of ['REDIS_URL: redis://redis:6379', 'AMQP_URL: amqp://guest:guest@rabbitmq:5672', 'MONGO_URL: mongodb://mongo:27017/chat?replicaSet=rs0']) {
      expect(full.split(v).length - 1).toBe(4);
    }
    expect(full).toMatch(/- --replSet\s+- rs0/);
  });

  it('the chat processes believe the X-Forwarded-For of HAProxy only, at its fixed address in the fixed subnet', async (ctx) => {
    await needs(ctx, 'docker-compose');
    const env = { ...process.env, JWT_SECRET: 'compose-check-secret-compose-check-secret' };
    const { stdout: full } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config'], { env });
    const lb = /ipv4_address: ([\d.]+)/.exec(full)?.[1];
    const subnet = /subnet: ([\d.]+)\/(\d+)/.exec(full);
    expect(lb).toBeDefined();
    expect(subnet).not.toBeNull();
    const list = new BlockList();
    list.addSubnet(subnet![1]!, Number(subnet![2]), 'ipv4');
    expect(list.check(lb!, 'ipv4')).toBe(true);
    // Every chat process (broker1, broker2, api, worker) trusts that one address, which the
    // server's configuration accepts.
    expect(full.split(`TRUST_PROXY: ${lb}`).length - 1).toBe(4);
    expect(full.match(/TRUST_PROXY:/g)).toHaveLength(4);
    const dataDir = tempDir('chat-deploy-');
    try {
      expect(loadConfig({ JWT_SECRET: env.JWT_SECRET, DATA_DIR: dataDir, TRUST_PROXY: lb! }).trustProxy).toEqual([lb]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("HAProxy's HTTP frontend replaces the client's X-Forwarded-For with the address it sees", () => {
    const cfg = readFileSync('docker/haproxy.cfg', 'utf8');
    const frontend = /^frontend http\n((?:[ \t]+.*\n|\n)*?)(?=^\S)/m.exec(cfg)?.[1] ?? '';
    const lines = frontend.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    expect(lines).toContain('mode http');
    expect(lines).toContain('option forwardfor');
    expect(lines).toContain('http-request del-header X-Forwarded-For');
  });

  it("through HAProxy with docker/haproxy.cfg, the chat server sees the client's address, not one the client wrote in X-Forwarded-For", async (ctx) => {
    await needs(ctx, 'haproxy');
    const dataDir = tempDir('chat-lb-');
    const server = await serverReady(launchServer({ DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET, LOG_FORMAT: 'json', TRUST_PROXY: '127.0.0.1' }));
    // The deployment's config, with loopback ports for its names (no Docker DNS here), and
    // fewer connections than this machine's file limit allows.
    const [httpPort, mqttPort] = [await freePort(), await freePort()];
    const cfg = readFileSync('docker/haproxy.cfg', 'utf8')
      .replace(/^( +maxconn) \d+$/m, '$1 1000')
      .replace(/^resolvers docker\n.*\n/m, '')
      .replace('bind :3000', `bind 127.0.0.1:${httpPort}`)
      .replace('bind :1883', `bind 127.0.0.1:${mqttPort}`)
      .replace(/ (api|broker1|broker2):(3000|1883) resolvers docker/g, (_m, _name, port) => ` 127.0.0.1:${port === '3000' ? server.port : server.mqttPort}`);
    const cfgFile = join(dataDir, 'haproxy.cfg');
    writeFileSync(cfgFile, cfg);
    const lb = spawn('haproxy', ['-db', '-f', cfgFile], { stdio: 'ignore' });
    try {
      const status = () =>
        new Promise<number>((resolve) => {
          const req = httpRequest({ host: '127.0.0.1', port: httpPort, path: '/healthz?probe=lb', localAddress: '127.0.91.7', headers: { 'x-forwarded-for': '203.0.113.66' } }, (res) => {
            res.resume();
            resolve(res.statusCode!);
          });
          req.on('error', () => resolve(0));
          req.end();
        });
      expect(await pollUntil(status, { done: (s) => s === 200, within: 10_000 })).toBe(200);
      const line = await pollUntil(() => server.output().split('\n').find((l) => l.includes('/healthz?probe=lb')));
      expect((JSON.parse(line!) as { req: { remoteAddress: string } }).req.remoteAddress).toBe('127.0.91.7');
    } finally {
      lb.kill('SIGTERM');
      server.child.kill('SIGTERM');
      await serverExit(server);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("the MongoDB healthcheck's script parses (it initiates the replica set)", () => {
    const compose = readFileSync('docker-compose.yml', 'utf8');
    const script = /"--eval", "(.*)"\]/.exec(compose)?.[1];
    expect(script).toContain('rs.initiate');
    expect(() => new Function('rs', 'db', 'quit', script!)).not.toThrow();
  });

  it('docker-compose.yml refuses to start without JWT_SECRET', async (ctx) => {
    await needs(ctx, 'docker-compose');
    const env = { ...process.env };
    delete env.JWT_SECRET;
    await expect(run('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { env })).rejects.toThrow(/JWT_SECRET/);
  });

  it('the load balancer config is valid HAProxy', async (ctx) => {
    await needs(ctx, 'haproxy');
    const { stdout } = await run('haproxy', ['-c', '-f', 'docker/haproxy.cfg']);
    expect(stdout).toContain('Configuration file is valid');
  });

  it('the Dockerfile is multi-stage, runs as a non-root user, has a healthcheck, and copies files that exist', () => {
    const lines = readFileSync('Dockerfile', 'utf8').replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const known = new Set(['FROM', 'RUN', 'COPY', 'ENV', 'WORKDIR', 'USER', 'VOLUME', 'EXPOSE', 'HEALTHCHECK', 'CMD', 'ARG', 'LABEL']);
    const instructions = lines.map((l) => l.split(/\s+/)[0]!);
    for (const i of instructions) expect(known.has(i), `unknown instruction ${i}`).toBe(true);
    const froms = lines.filter((l) => l.startsWith('FROM '));
    expect(froms.length).toBe(2);
    expect(froms[0]).toMatch(/ AS build$/);
    const finalStage = lines.slice(lines.lastIndexOf(froms[1]!));
    expect(finalStage.find((l) => l.startsWith('USER '))).toBe('USER node');
    expect(finalStage.some((l) => l.startsWith('HEALTHCHECK '))).toBe(true);
    expect(finalStage.at(-1)).toBe('CMD ["node", "--max-semi-space-size=64", "dist/main.js"]');
    for (const copy of lines.filter((l) => l.startsWith('COPY ') && !l.includes('--from='))) {
      const sources = copy.split(/\s+/).slice(1, -1);
      for (const source of sources) expect(existsSync(source), `COPY source ${source}`).toBe(true);
    }
    expect(readFileSync('.dockerignore', 'utf8')).toMatch(/^node_modules$/m);
  });
});
