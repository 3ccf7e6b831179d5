import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { BlockList } from 'node:net';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../core/config.js';
import { needs } from './support/conditional.js';
import { tempDir } from './helpers/server.js';

/**
 * No Docker engine runs here, so the deployment files are checked by the tools that can read
 * them without one: docker-compose's schema validation, HAProxy's config check, and a parse of
 * the Dockerfile. Where docker-compose or haproxy is missing, their specs say so and are not
 * run (.ci/run installs both from Debian).
 */
const run = promisify(execFile);

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
