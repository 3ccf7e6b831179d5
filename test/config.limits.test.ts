import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../core/config.js';
import * as rules from '../core/rules.js';
import { TEST_SECRET, tempDir } from './helpers/server.js';

/** The protection limits are settings: each has a variable, today's value as its default, and
 * a bad value stops the start with a message naming it. */

const dataDir = tempDir('chat-limits-');
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
const load = (env: Record<string, string>) => loadConfig({ DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET, ...env });

describe('protection limits from the environment', () => {
  it('default to the documented values', () => {
    expect(load({}).limits).toEqual({
      maxPacketBytes: rules.MAX_PACKET_BYTES,
      connectBurstPerIp: rules.CONNECT_BURST,
      connectRatePerIp: rules.CONNECT_PER_SECOND,
      sendBurst: rules.SEND_BURST,
      sendRate: rules.SEND_PER_SECOND,
      maxConnectionsPerUser: rules.MAX_CONNECTIONS_PER_USER,
      outgoingQueueBytes: rules.OUTGOING_QUEUE_BYTES,
      outgoingQueuePackets: rules.OUTGOING_QUEUE_PACKETS,
      outgoingQueueGraceMs: rules.OUTGOING_QUEUE_GRACE_MS,
      maxSendsInFlight: rules.MAX_SENDS_IN_FLIGHT,
    });
    expect(rules).toMatchObject({ MAX_PACKET_BYTES: 16384, CONNECT_BURST: 200, CONNECT_PER_SECOND: 50, SEND_BURST: 30, SEND_PER_SECOND: 10, MAX_CONNECTIONS_PER_USER: 10 });
  });

  it('are read from their variables', () => {
    const env = {
      MAX_PACKET_BYTES: '65536', CONNECT_BURST_PER_IP: '1000', CONNECT_RATE_PER_IP: '0.5', SEND_BURST: '5', SEND_RATE: '2.5',
      MAX_CONNECTIONS_PER_USER: '3', OUTGOING_QUEUE_BYTES: '262144', OUTGOING_QUEUE_PACKETS: '50', OUTGOING_QUEUE_GRACE_MS: '0', MAX_SENDS_IN_FLIGHT: '7',
    };
    expect(load(env).limits).toEqual({
      maxPacketBytes: 65536, connectBurstPerIp: 1000, connectRatePerIp: 0.5, sendBurst: 5, sendRate: 2.5, maxConnectionsPerUser: 3,
      outgoingQueueBytes: 262144, outgoingQueuePackets: 50, outgoingQueueGraceMs: 0, maxSendsInFlight: 7,
    });
  });

  it.each([
    ['MAX_PACKET_BYTES', '4096', /MAX_PACKET_BYTES must be a whole number from 8192 to 268435455, got "4096"/],
    ['MAX_PACKET_BYTES', '16k', /MAX_PACKET_BYTES must be a whole number/],
    ['CONNECT_BURST_PER_IP', '0', /CONNECT_BURST_PER_IP must be a whole number from 1/],
    ['CONNECT_RATE_PER_IP', '-1', /CONNECT_RATE_PER_IP must be a number from 0.001/],
    ['SEND_BURST', '1.5', /SEND_BURST must be a whole number/],
    ['SEND_RATE', 'fast', /SEND_RATE must be a number/],
    ['SEND_RATE', '1e3', /SEND_RATE must be a number/],
    ['MAX_CONNECTIONS_PER_USER', '0x10', /MAX_CONNECTIONS_PER_USER must be a whole number/],
    ['OUTGOING_QUEUE_BYTES', '1000', /OUTGOING_QUEUE_BYTES must be a whole number from 65536/],
    ['OUTGOING_QUEUE_PACKETS', '5', /OUTGOING_QUEUE_PACKETS must be a whole number from 10/],
    ['OUTGOING_QUEUE_GRACE_MS', '999999999', /OUTGOING_QUEUE_GRACE_MS must be a whole number from 0 to 600000/],
    ['MAX_SENDS_IN_FLIGHT', '0', /MAX_SENDS_IN_FLIGHT must be a whole number from 1/],
  ])('%s=%s is refused', (name, value, message) => {
    expect(() => load({ [name]: value })).toThrow(ConfigError);
    expect(() => load({ [name]: value })).toThrow(message);
  });

  it('reports every bad limit at once', () => {
    expect(() => load({ SEND_BURST: 'x', SEND_RATE: 'y' })).toThrow(/SEND_BURST[\s\S]*SEND_RATE/);
  });
});

describe('log format', () => {
  it('is JSON when stdout is not a terminal (as here), pretty or JSON when asked, and refuses anything else', () => {
    expect(process.stdout.isTTY).not.toBe(true);
    expect(load({}).logFormat).toBe('json');
    expect(load({ LOG_FORMAT: 'auto' }).logFormat).toBe('json');
    expect(load({ LOG_FORMAT: 'pretty' }).logFormat).toBe('pretty');
    expect(load({ LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(() => load({ LOG_FORMAT: 'xml' })).toThrow(ConfigError);
  });
});
