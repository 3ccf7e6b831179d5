import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServerProcess, launchServer, serverExit, serverReady } from './helpers/process.js';
import { type Connected, type Received, closed, connectAs, subscribeGranted, waitForMessage } from './helpers/mqtt.js';
import { pollUntil } from './helpers/poll.js';
import { Http, type Json, type TestServer, startTestServer, tempDir } from './helpers/server.js';

/**
 * Presence over MQTT: `users/{userId}/presence` carries, retained, {userId, status, lastSeenAt}.
 * A user is online while at least one of its connections is up; REST agrees. Presence reaches
 * only the user and those it shares a chat with (test/abuse.mqtt.test.ts), so the users here
 * share a group.
 */

type Who = { user: Json; token: string };

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const presenceTopic = (userId: string) => `users/${userId}/presence`;

/** Presence payloads about `userId` received so far by `c`. */
const presenceOf = (c: Connected, userId: string) => c.on(presenceTopic(userId)).map((m) => m.json as { userId: string; status: string; lastSeenAt: string });

/** Resolves once `c` has received a presence message about `userId` with `status` (beyond the first `skip`). */
const waitPresence = (c: Connected, userId: string, status: 'online' | 'offline', skip = 0, ms = 5000): Promise<Received> =>
  waitForMessage(c, presenceTopic(userId), (m, i) => i >= skip && m.json?.status === status, ms);

describe('presence (in-process server)', () => {
  let srv: TestServer;
  let alice: Who;
  let observer: Who;
  let marker: Who;
  let obs: Connected;
  const open: Connected[] = [];

  const track = async (c: Promise<Connected>) => {
    const conn = await c;
    open.push(conn);
    return conn;
  };

  /** The REST view of `who` as another user sees it: in GET /api/users, and in search. */
  async function restView(who: Who, as: Who = observer) {
    const listed = await srv.http.get('/api/users?limit=100', as.token);
    expect(listed.status).toBe(200);
    const search = await srv.http.get(`/api/users/search?q=${encodeURIComponent(who.user.username)}`, as.token);
    expect(search.status).toBe(200);
    const found = (search.body.users as Json[]).find((u) => u.id === who.user.id);
    expect(found).toBeDefined();
    const inList = (listed.body.users as Json[]).find((u) => u.id === who.user.id);
    return { inList, found: found as { online: boolean; lastSeenAt: string | null } };
  }

  /** Marker: another user's presence change, which the observer sees after anything published before it. */
  async function markerRoundTrip() {
    const seen = presenceOf(obs, marker.user.id).length;
    const m = await connectAs(srv, marker);
    await waitPresence(obs, marker.user.id, 'online', seen);
    await m.end();
    await waitPresence(obs, marker.user.id, 'offline', seen + 1);
  }

  beforeAll(async () => {
    srv = await startTestServer();
    [alice, observer, marker] = await Promise.all([srv.signUp(), srv.signUp(), srv.signUp()]);
    const together = await srv.http.post('/api/chats', { type: 'group', name: 'presence', memberIds: [alice.user.id, marker.user.id] }, observer.token);
    expect(together.status).toBe(201);
    obs = await track(connectAs(srv, observer));
    expect(await subscribeGranted(obs.client, ['users/+/presence'])).toEqual([1]);
  });
  afterAll(async () => {
    for (const c of open) c.client.end(true);
    await srv.stop();
  });

  it('a user nobody has seen is offline with no lastSeenAt', async () => {
    const { inList, found } = await restView(alice);
    expect(inList).toBeUndefined();
    expect(found.online).toBe(false);
    expect(found.lastSeenAt).toBeNull();
  });

  it('online on connect, still online with a second device, offline only when the last one disconnects cleanly', async () => {
    const t0 = Date.now();
    const phone = await track(connectAs(srv, alice, { transport: 'tcp' }));
    const online = await waitPresence(obs, alice.user.id, 'online');
    expect(online.json).toEqual({ userId: alice.user.id, status: 'online', lastSeenAt: expect.stringMatching(ISO) });
    expect(Date.parse(online.json.lastSeenAt)).toBeGreaterThanOrEqual(t0 - 1);

    // REST agrees: listed among online users, and online in search results.
    let view = await restView(alice);
    expect(view.inList).toMatchObject({ id: alice.user.id, username: alice.user.username, online: true });
    expect(view.found.online).toBe(true);
    // The user itself sees it too.
    expect((await srv.http.get('/api/users/me', alice.token)).body.user.online).toBe(true);

    // A second device, over WebSocket: no offline, still online.
    const browser = await track(connectAs(srv, alice, { transport: 'ws' }));
    await markerRoundTrip();
    expect(presenceOf(obs, alice.user.id).map((p) => p.status)).not.toContain('offline');
    view = await restView(alice);
    expect(view.inList?.online).toBe(true);
    expect(view.found.online).toBe(true);

    // The first device leaves cleanly: the browser is still connected, so no offline.
    await phone.end();
    await markerRoundTrip();
    expect(presenceOf(obs, alice.user.id).map((p) => p.status)).not.toContain('offline');
    view = await restView(alice);
    expect(view.inList?.online).toBe(true);
    expect(view.found.online).toBe(true);

    // The last device leaves cleanly: offline, with lastSeenAt.
    const beforeLast = Date.now();
    await browser.end();
    const offline = await waitPresence(obs, alice.user.id, 'offline');
    expect(offline.json).toEqual({ userId: alice.user.id, status: 'offline', lastSeenAt: expect.stringMatching(ISO) });
    expect(Date.parse(offline.json.lastSeenAt)).toBeGreaterThanOrEqual(beforeLast - 1);
    expect(presenceOf(obs, alice.user.id).filter((p) => p.status === 'offline')).toHaveLength(1);

    const offlineInRest = await pollUntil(async () => {
      const v = await restView(alice);
      return v.inList === undefined && v.found.online === false && v.found.lastSeenAt !== null && Date.parse(v.found.lastSeenAt) >= beforeLast - 1;
    }, { every: 25 });
    expect(offlineInRest, 'REST shows alice offline with a lastSeenAt from her last disconnect').toBe(true);
    view = await restView(alice);
    expect(view.found.lastSeenAt).toMatch(ISO);
  });

  it('offline when the TCP connection drops without DISCONNECT', async () => {
    const before = presenceOf(obs, alice.user.id).length;
    const device = await track(connectAs(srv, alice));
    await waitPresence(obs, alice.user.id, 'online', before);
    expect((await restView(alice)).found.online).toBe(true);

    const beforeDrop = Date.now();
    device.client.stream.destroy(); // no DISCONNECT packet: the socket just goes away
    const offline = await waitPresence(obs, alice.user.id, 'offline', before);
    expect(offline.json).toEqual({ userId: alice.user.id, status: 'offline', lastSeenAt: expect.stringMatching(ISO) });
    // The server's offline, not a client-supplied will: its time is the server's.
    expect(Date.parse(offline.json.lastSeenAt)).toBeGreaterThanOrEqual(beforeDrop - 1);

    const offlineInRest = await pollUntil(async () => {
      const v = await restView(alice);
      return v.inList === undefined && v.found.online === false && v.found.lastSeenAt !== null && Date.parse(v.found.lastSeenAt) >= beforeDrop - 1;
    }, { every: 25 });
    expect(offlineInRest, 'REST shows alice offline after the dropped connection').toBe(true);
  });

  it('a late subscriber gets the retained current value, on the user topic and on users/+/presence', async () => {
    const late = await track(connectAs(srv, marker));
    const retainFlags: boolean[] = [];
    late.client.on('message', (_topic, _raw, packet) => retainFlags.push(packet.retain));
    expect(await subscribeGranted(late.client, [presenceTopic(alice.user.id)])).toEqual([1]);
    const [one] = await late.waitFor(1);
    expect(one!.topic).toBe(presenceTopic(alice.user.id));
    expect(one!.json).toEqual({ userId: alice.user.id, status: 'offline', lastSeenAt: expect.stringMatching(ISO) });
    expect(retainFlags[0]).toBe(true);

    const late2 = await track(connectAs(srv, marker));
    const retained: { topic: string; retain: boolean }[] = [];
    late2.client.on('message', (topic, _raw, packet) => retained.push({ topic, retain: packet.retain }));
    expect(await subscribeGranted(late2.client, ['users/+/presence'])).toEqual([1]);
    const [aliceRetained] = await late2.waitFor(1, presenceTopic(alice.user.id));
    expect(aliceRetained!.json).toEqual({ userId: alice.user.id, status: 'offline', lastSeenAt: expect.stringMatching(ISO) });
    expect(retained.find((r) => r.topic === presenceTopic(alice.user.id))?.retain).toBe(true);
    // The observer, still connected, is retained as online.
    const [observerRetained] = await late2.waitFor(1, presenceTopic(observer.user.id));
    expect(observerRetained!.json).toMatchObject({ userId: observer.user.id, status: 'online' });
    // Exactly one retained value per user, the current one.
    expect(late2.on(presenceTopic(alice.user.id))).toHaveLength(1);

    await late.end();
    await late2.end();
  });

  it('a late subscriber sees a user that is online as online', async () => {
    const device = await track(connectAs(srv, alice, { transport: 'ws' }));
    const late = await track(connectAs(srv, marker));
    expect(await subscribeGranted(late.client, [presenceTopic(alice.user.id)])).toEqual([1]);
    const [msg] = await late.waitFor(1, presenceTopic(alice.user.id));
    expect(msg!.json).toEqual({ userId: alice.user.id, status: 'online', lastSeenAt: expect.stringMatching(ISO) });
    await late.end();
    const before = presenceOf(obs, alice.user.id).length;
    await device.end();
    await waitPresence(obs, alice.user.id, 'offline', before);
  });

  it('takeover (same client id) leaves the user online; the new connection leaving cleanly makes it offline', async () => {
    const clientId = `${alice.user.id}/phone`;
    const before = presenceOf(obs, alice.user.id).length;
    const first = await track(connectAs(srv, alice, { clientId }));
    await waitPresence(obs, alice.user.id, 'online', before);

    const firstClosed = closed(first.client, 5000);
    const second = await track(connectAs(srv, alice, { clientId }));
    await firstClosed; // the old connection is taken over
    expect(first.client.connected).toBe(false);
    expect(second.client.connected).toBe(true);

    // Whatever transitions the takeover published, the latest one is online.
    await markerRoundTrip();
    const statuses = presenceOf(obs, alice.user.id).slice(before).map((p) => p.status);
    expect(statuses.at(-1)).toBe('online');
    const view = await restView(alice);
    expect(view.inList?.online).toBe(true);
    expect(view.found.online).toBe(true);
    const late = await track(connectAs(srv, marker));
    expect(await subscribeGranted(late.client, [presenceTopic(alice.user.id)])).toEqual([1]);
    expect((await late.waitFor(1, presenceTopic(alice.user.id)))[0]!.json.status).toBe('online');
    await late.end();

    // The user's only connection is now `second`: its clean disconnect makes the user offline.
    const beforeEnd = presenceOf(obs, alice.user.id).length;
    await second.end();
    await waitPresence(obs, alice.user.id, 'offline', beforeEnd);
    const offlineInRest = await pollUntil(async () => (await restView(alice)).found.online === false, { every: 25 });
    expect(offlineInRest, 'REST shows alice offline after the taken-over session ends').toBe(true);
    expect((await restView(alice)).inList).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Graceful shutdown, with the built server as a child process (node dist/main.js).

const launch = (dataDir: string) => launchServer({ DATA_DIR: dataDir });
const ready = (proc: ServerProcess) => serverReady(proc);
const exitCode = async (proc: ServerProcess) => (await serverExit(proc)).code;

describe('presence on graceful shutdown (node dist/main.js, SIGTERM)', () => {
  const dataDir = tempDir('chat-presence-proc-');
  const procs: ServerProcess[] = [];
  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('publishes every local user offline before closing, exits 0, and keeps lastSeenAt across a restart', async () => {
    const first = launch(dataDir);
    procs.push(first);
    const addr = await ready(first);
    const http = new Http(addr.url);
    const password = 'shutdown-pass-1';
    const signUp = async (username: string): Promise<Who> => {
      expect((await http.post('/api/users', { username, password })).status).toBe(201);
      const login = await http.post('/api/users/login', { username, password });
      expect(login.status).toBe(200);
      return { user: login.body.user, token: login.body.token };
    };
    const alice = await signUp('shut_alice');
    const bob = await signUp('shut_bob');
    expect((await http.post('/api/chats', { type: 'direct', memberIds: [alice.user.id] }, bob.token)).status).toBe(201);

    const a = await connectAs(addr, alice);
    const b = await connectAs(addr, bob);
    expect(await subscribeGranted(b.client, ['users/+/presence'])).toEqual([1]);
    await waitPresence(b, alice.user.id, 'online');
    expect((await http.get(`/api/users/search?q=shut_alice`, bob.token)).body.users[0].online).toBe(true);

    // Order of what bob's connection observes: messages, then its close.
    const events: string[] = [];
    b.client.on('message', (topic, raw) => {
      const p = JSON.parse(raw.toString());
      events.push(`${topic === presenceTopic(p.userId) ? p.userId : topic}:${p.status}`);
    });
    b.client.on('close', () => events.push('close'));
    const aClosed = closed(a.client, 15_000);
    const bClosed = closed(b.client, 15_000);

    const beforeStop = Date.now();
    first.child.kill('SIGTERM');
    await bClosed;
    await aClosed;
    expect(await exitCode(first)).toBe(0);

    const aliceOffline = events.indexOf(`${alice.user.id}:offline`);
    expect(aliceOffline, `bob saw: ${events.join(', ')}`).toBeGreaterThanOrEqual(0);
    expect(aliceOffline).toBeLessThan(events.indexOf('close'));
    const payload = b.on(presenceTopic(alice.user.id)).find((m) => m.json.status === 'offline')!.json;
    expect(payload).toEqual({ userId: alice.user.id, status: 'offline', lastSeenAt: expect.stringMatching(ISO) });
    expect(Date.parse(payload.lastSeenAt)).toBeGreaterThanOrEqual(beforeStop - 1);
    a.client.end(true);
    b.client.end(true);

    // After a restart, REST shows alice offline with the stored lastSeenAt from the shutdown.
    const second = launch(dataDir);
    procs.push(second);
    try {
      const addr2 = await ready(second);
      const http2 = new Http(addr2.url);
      const login = await http2.post('/api/users/login', { username: 'shut_bob', password });
      expect(login.status).toBe(200);
      const found = (await http2.get('/api/users/search?q=shut_alice', login.body.token)).body.users as Json[];
      expect(found).toHaveLength(1);
      expect(found[0].online).toBe(false);
      expect(found[0].lastSeenAt).toMatch(ISO);
      expect(Date.parse(found[0].lastSeenAt)).toBeGreaterThanOrEqual(beforeStop - 1);
      const online = (await http2.get('/api/users', login.body.token)).body.users as Json[];
      expect(online.map((u) => u.id)).not.toContain(alice.user.id);
    } finally {
      second.child.kill('SIGTERM');
      expect(await exitCode(second)).toBe(0);
    }
  });
});
