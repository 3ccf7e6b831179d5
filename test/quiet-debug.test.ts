import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { resolve } from 'node:path';
import mqttPacket from 'mqtt-packet';
import { afterAll, describe, expect, it } from 'vitest';
import { pollUntil } from './helpers/poll.js';
import { launchServer, serverExit, serverReady } from './helpers/process.js';
import { tempDir } from './helpers/server.js';

/** What the `debug` that mqtt-packet loads is in a process that imported core/quiet-debug first. */
function debugSeenByMqttPacket(env: Record<string, string>): { quiet: boolean; printed: string } {
  const script = `
    await import(${JSON.stringify(resolve('dist/core/quiet-debug.js'))});
    const { createRequire } = await import('node:module');
    const require = createRequire(createRequire(import.meta.url).resolve('mqtt-packet'));
    const debug = require('debug');
    debug('mqtt-packet:parser')('a line');
    console.log(JSON.stringify({ quiet: typeof debug.save !== 'function' }));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: resolve('.'), env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { ...(JSON.parse(out) as { quiet: boolean }), printed: out };
}

describe("the debug package in the server's process (core/quiet-debug.ts)", () => {
  it('without DEBUG, mqtt-packet gets loggers that do nothing', () => {
    expect(debugSeenByMqttPacket({})).toEqual({ quiet: true, printed: '{"quiet":true}\n' });
  });

  it('with DEBUG set, the real package is left in place', () => {
    expect(debugSeenByMqttPacket({ DEBUG: 'nothing-matches' }).quiet).toBe(false);
  });

  describe('the server started with DEBUG=mqtt-packet:*', () => {
    const dataDir = tempDir('chat-debug-');
    afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

    it("prints mqtt-packet's debug lines for a packet it parses", async () => {
      const srv = await serverReady(launchServer({ DATA_DIR: dataDir, DEBUG: 'mqtt-packet:*' }));
      try {
        const socket = createConnection({ host: '127.0.0.1', port: srv.mqttPort });
        socket.on('error', () => {});
        socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'debug-probe', keepalive: 30 }));
        await pollUntil(() => /mqtt-packet:parser/.test(srv.output()), { done: Boolean, within: 10_000, every: 50 });
        socket.destroy();
        expect(srv.output()).toMatch(/mqtt-packet:parser/);
      } finally {
        srv.child.kill('SIGTERM');
        await serverExit(srv);
      }
    });
  });
});
