import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { throttledLog } from '../core/log-throttle.js';
import { MAX_PACKET_BYTES } from '../core/rules.js';
import { sleep } from './helpers/mqtt.js';
import { type ReadyServer, launchServer, serverExit, serverReady } from './helpers/process.js';
import { Raw, publishHeader } from './helpers/raw-mqtt.js';
import { TEST_SECRET, tempDir } from './helpers/server.js';

/**
 * Specification: what any client can make the server log costs it nothing to fill. An oversize
 * packet closes its connection and is logged, but at most one line per 10 s says so; the rest
 * are counted (in a summary line and in /metrics).
 */
describe('log lines clients can cause are throttled', () => {
  it('throttledLog: the first at once, the rest of the window in one summary line at its end', async () => {
    const lines: { fields: { n: number; more?: number }; message: string }[] = [];
    const log = throttledLog<{ n: number }>((fields, message) => lines.push({ fields, message }), 'too large', 200);
    for (let n = 1; n <= 50; n++) log({ n });
    expect(lines).toEqual([{ fields: { n: 1 }, message: 'too large' }]);
    await sleep(350);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toEqual({ fields: { n: 50, more: 49 }, message: 'too large (49 more in the last 0.2 s, the last shown)' });
    // The summary opened a window: one more event is counted, then summarised.
    log({ n: 51 });
    expect(lines).toHaveLength(2);
    await sleep(350);
    expect(lines[2]).toMatchObject({ fields: { n: 51, more: 1 } });
    // A quiet spell: the next one is logged at once.
    await sleep(250);
    log({ n: 52 });
    expect(lines[3]).toEqual({ fields: { n: 52 }, message: 'too large' });
  });

  describe('the server', () => {
    const dataDir = tempDir('chat-logflood-');
    let server: ReadyServer;
    beforeAll(async () => {
      server = await serverReady(launchServer({ DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET }));
    });
    afterAll(async () => {
      server.child.kill('SIGTERM');
      await serverExit(server);
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('logs one line for 100 oversize packets from 100 connections, and counts all 100', async () => {
      const N = 100;
      await Promise.all(Array.from({ length: N }, async (_, i) => {
        // Spread over source addresses: the per-IP connect limit is not what is tested here.
        const raw = new Raw(server.mqttPort, { localAddress: `127.0.${10 + Math.floor(i / 10)}.${1 + (i % 10)}` });
        await raw.opened();
        await raw.write(publishHeader('chats/x/messages', MAX_PACKET_BYTES, 1));
        await raw.closedWithin(5000);
      }));
      const lines = server.output().split('\n').filter((l) => l.includes('mqtt packet too large'));
      expect(lines, server.output().slice(0, 2000)).toHaveLength(1);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(new RegExp(`^chat_mqtt_oversize_closed_total ${N}$`, 'm'));
    });
  });
});
