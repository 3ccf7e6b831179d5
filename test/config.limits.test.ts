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
      registerBurstPerIp: rules.REGISTER_BURST_PER_IP,
      registerRatePerIp: rules.REGISTER_PER_SECOND_PER_IP,
      loginBurstPerIp: rules.LOGIN_BURST_PER_IP,
      loginRatePerIp: rules.LOGIN_PER_SECOND_PER_IP,
      loginFailureBurst: rules.LOGIN_FAILURE_BURST,
      loginFailureRate: rules.LOGIN_FAILURE_PER_SECOND,
      passwordHashesInFlight: rules.PASSWORD_HASHES_IN_FLIGHT,
      maxSubscriptionsPerConnection: rules.MAX_SUBSCRIPTIONS_PER_CONNECTION,
      maxSubscriptionsPerUser: rules.MAX_SUBSCRIPTIONS_PER_USER,
      searchBurst: rules.SEARCH_BURST,
      searchRate: rules.SEARCH_PER_SECOND,
      httpSocketsPerIp: rules.HTTP_SOCKETS_PER_IP,
      httpHeadersTimeoutMs: rules.HTTP_HEADERS_TIMEOUT_MS,
    });
    expect(rules).toMatchObject({ MAX_PACKET_BYTES: 16384, CONNECT_BURST: 200, CONNECT_PER_SECOND: 50, SEND_BURST: 30, SEND_PER_SECOND: 10, MAX_CONNECTIONS_PER_USER: 10 });
  });

  it('are read from their variables', () => {
    const env = {
      MAX_PACKET_BYTES: '65536', CONNECT_BURST_PER_IP: '1000', CONNECT_RATE_PER_IP: '0.5', SEND_BURST: '5', SEND_RATE: '2.5',
      MAX_CONNECTIONS_PER_USER: '3', OUTGOING_QUEUE_BYTES: '262144', OUTGOING_QUEUE_PACKETS: '50', OUTGOING_QUEUE_GRACE_MS: '0', MAX_SENDS_IN_FLIGHT: '7',
      REGISTER_BURST_PER_IP: '3', REGISTER_RATE_PER_IP: '0.5', LOGIN_BURST_PER_IP: '4', LOGIN_RATE_PER_IP: '1.5', LOGIN_FAILURE_BURST: '5',
      LOGIN_FAILURE_RATE: '0.01', PASSWORD_HASHES_IN_FLIGHT: '3', MAX_SUBSCRIPTIONS_PER_CONNECTION: '20', MAX_SUBSCRIPTIONS_PER_USER: '40',
      SEARCH_BURST: '6', SEARCH_RATE: '0.25', HTTP_SOCKETS_PER_IP: '16', HTTP_HEADERS_TIMEOUT_MS: '2000',
    };
    expect(load(env).limits).toEqual({
      maxPacketBytes: 65536, connectBurstPerIp: 1000, connectRatePerIp: 0.5, sendBurst: 5, sendRate: 2.5, maxConnectionsPerUser: 3,
      outgoingQueueBytes: 262144, outgoingQueuePackets: 50, outgoingQueueGraceMs: 0, maxSendsInFlight: 7,
      registerBurstPerIp: 3, registerRatePerIp: 0.5, loginBurstPerIp: 4, loginRatePerIp: 1.5, loginFailureBurst: 5, loginFailureRate: 0.01,
      passwordHashesInFlight: 3, maxSubscriptionsPerConnection: 20, maxSubscriptionsPerUser: 40, searchBurst: 6, searchRate: 0.25,
      httpSocketsPerIp: 16, httpHeadersTimeoutMs: 2000,
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
    ['REGISTER_BURST_PER_IP', '0', /REGISTER_BURST_PER_IP must be a whole number from 1/],
    ['LOGIN_RATE_PER_IP', 'lots', /LOGIN_RATE_PER_IP must be a number/],
    ['PASSWORD_HASHES_IN_FLIGHT', '5000', /PASSWORD_HASHES_IN_FLIGHT must be a whole number from 1 to 1024/],
    ['MAX_SUBSCRIPTIONS_PER_USER', '-3', /MAX_SUBSCRIPTIONS_PER_USER must be a whole number/],
    ['HTTP_HEADERS_TIMEOUT_MS', '10', /HTTP_HEADERS_TIMEOUT_MS must be a whole number from 1000/],
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

describe('trusted proxies', () => {
  it('are none by default, and a comma list of addresses, ranges and proxy-addr names when set', () => {
    expect(load({}).trustProxy).toEqual([]);
    expect(load({ TRUST_PROXY: '10.0.0.7, 172.16.0.0/12,loopback,::1,fd00::/8' }).trustProxy).toEqual(['10.0.0.7', '172.16.0.0/12', 'loopback', '::1', 'fd00::/8']);
  });

  it.each(['true', '10.0.0.0/33', '10.0.0.1/8/2', '*', 'example.com', '::1/129'])('TRUST_PROXY=%s is refused', (value) => {
    expect(() => load({ TRUST_PROXY: value })).toThrow(/TRUST_PROXY must be a comma list of addresses/);
  });
});
