import { connect as tcpConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAs } from './helpers/mqtt.js';
import { pollUntil } from './helpers/poll.js';
import { connectPacket } from './helpers/raw-mqtt.js';
import { type TestServer, type UserDto, startTestServer } from './helpers/server.js';

/**
 * Connections that end while the server is still setting them up. Aedes then reports the
 * disconnect before the connection is ready; none of them may be counted as online or hold
 * one of the user's connection slots.
 */
describe('connections that close during CONNECT', () => {
  let srv: TestServer;
  let who: { user: UserDto; token: string };

  beforeAll(async () => {
    srv = await startTestServer();
    who = await srv.signUp();
  });
  afterAll(() => srv.stop());

  /** Sends CONNECT on a raw socket and drops it: at once, or as soon as the CONNACK arrives. */
  const dropDuringConnect = (clientId: string, when: 'at-once' | 'on-connack') =>
    new Promise<void>((resolve) => {
      const socket = tcpConnect(srv.mqttPort, '127.0.0.1');
      socket.on('error', () => {});
      socket.on('close', () => resolve());
      socket.on('connect', () => {
        socket.write(connectPacket({ clientId, username: who.user.username, password: who.token, keepalive: 30 }));
        if (when === 'at-once') socket.destroy();
      });
      socket.on('data', () => socket.destroy());
    });

  it('leaves the user offline with every connection slot free', async () => {
    for (let i = 0; i < 30; i++) await dropDuringConnect(`${who.user.id}/race${i}`, i % 2 ? 'at-once' : 'on-connack');
    await Promise.all(Array.from({ length: 20 }, (_, i) => dropDuringConnect(`${who.user.id}/burst${i}`, 'on-connack')));

    expect(await pollUntil(() => srv.broker.clientCount(), { done: (n) => n === 0, every: 20 })).toBe(0);
    const online = await srv.http.get('/api/users', who.token);
    expect(online.body.users.map((u: UserDto) => u.id)).not.toContain(who.user.id);

    // All ten slots are free: ten devices connect.
    const devices = await Promise.all(Array.from({ length: 10 }, (_, i) => connectAs(srv, who, { clientId: `${who.user.id}/d${i}` })));
    expect(devices.every((d) => d.client.connected)).toBe(true);
    await Promise.all(devices.map((d) => d.end()));
  });
});
