import { once } from 'node:events';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Connected, closed, connectAs, subscribeGranted, waitForMessage } from './helpers/mqtt.js';
import { testDeployment } from './helpers/deployment.js';
import { pollUntil } from './helpers/poll.js';
import { type ReadyServer, launchServer, serverReady } from './helpers/process.js';
import type { Json } from './helpers/server.js';

/**
 * Two broker nodes, each a real child process, clustered through this machine's Redis and
 * sharing one SQLite file; users on different nodes. A namespace of this run's own keeps it
 * apart from anything else using the same Redis.
 */
describe('a cluster of two broker nodes (Redis)', () => {
  const { env, procs, open } = testDeployment('cluster');
  let node1: ReadyServer;
  let node2: ReadyServer;
  const people: Record<string, { user: Json; token: string }> = {};
  let direct: Json;
  let group: Json;

  beforeAll(async () => {
    node1 = await serverReady(launchServer(env));
    node2 = await serverReady(launchServer(env));
    procs.push(node1, node2);
    for (const name of ['alice', 'bob', 'carol']) {
      await node1.http.post('/api/users', { username: name, password: 'cluster-pass' });
      const login = await node2.http.post('/api/users/login', { username: name, password: 'cluster-pass' });
      people[name] = { user: login.body.user, token: login.body.token };
    }
    direct = (await node1.http.post('/api/chats', { type: 'direct', memberIds: [people.bob!.user.id] }, people.alice!.token)).body.chat;
    group = (await node2.http.post('/api/chats', { type: 'group', name: 'across', memberIds: [people.alice!.user.id, people.carol!.user.id] }, people.bob!.token)).body.chat;
  });

  const connect = async (node: ReadyServer, who: string, opts: Parameters<typeof connectAs>[2] = {}) => {
    const c = await connectAs(node, people[who]!, opts);
    open.push(c);
    return c;
  };

  it('carries direct and group messages between nodes with contiguous seqs', async () => {
    const alice = await connect(node1, 'alice');
    const bob = await connect(node2, 'bob', { transport: 'ws' });
    const carol = await connect(node2, 'carol');
    const dTopic = `chats/${direct.id}/messages`;
    const gTopic = `chats/${group.id}/messages`;
    await alice.client.subscribeAsync([dTopic, gTopic], { qos: 1 });
    await bob.client.subscribeAsync([dTopic, gTopic], { qos: 1 });
    await carol.client.subscribeAsync(gTopic, { qos: 1 });

    await alice.client.publishAsync(dTopic, JSON.stringify({ text: 'hi from node 1', clientMsgId: 'd1' }), { qos: 1 });
    expect((await waitForMessage(bob, dTopic, (m) => m.json.clientMsgId === 'd1')).json).toMatchObject({ seq: 2, senderId: people.alice!.user.id });
    await bob.client.publishAsync(dTopic, JSON.stringify({ text: 'hi from node 2', clientMsgId: 'd2' }), { qos: 1 });
    expect((await waitForMessage(alice, dTopic, (m) => m.json.clientMsgId === 'd2')).json.seq).toBe(3);

    await Promise.all(
      [alice, bob, carol].flatMap((c, who) => Array.from({ length: 10 }, (_, i) => c.client.publishAsync(gTopic, JSON.stringify({ text: `${who}:${i}`, clientMsgId: `g${who}-${i}` }), { qos: 1 }))),
    );
    for (const c of [alice, bob, carol]) {
      const got = await c.waitFor(30, gTopic, 10_000);
      expect(got.map((m) => m.json.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => i + 2));
    }
    const history = (await node1.http.get(`/api/messages/${group.id}?limit=100`, people.carol!.token)).body.messages;
    expect(history.map((m: Json) => m.seq)).toEqual(Array.from({ length: 31 }, (_, i) => i + 1));
  });

  it('agrees on presence on every node', async () => {
    for (const node of [node1, node2]) {
      const online = (await node.http.get('/api/users', people.alice!.token)).body.users.map((u: Json) => u.username).sort();
      expect(online).toEqual(['alice', 'bob', 'carol']);
    }
  });

  it("answers a clean:false client's multi-topic SUBSCRIBE", async () => {
    const persistent = await connect(node2, 'carol', { clean: false, clientId: `${people.carol!.user.id}/persistent` });
    const granted = await subscribeGranted(persistent.client, [`chats/${group.id}/messages`, `chats/${group.id}/typing`, `users/${people.carol!.user.id}/inbox`, 'users/+/presence']);
    expect(granted).toEqual([1, 0, 1, 1]);
  });

  it("takes a killed node's users offline on the survivor within 30 s; they resume there with contiguous seqs", async () => {
    const observer = await connect(node2, 'bob');
    const aliceId = people.alice!.user.id;
    await observer.client.subscribeAsync(`users/${aliceId}/presence`, { qos: 1 });
    await waitForMessage(observer, `users/${aliceId}/presence`, (m) => m.json.status === 'online');

    node1.child.kill('SIGKILL');
    await once(node1.child, 'exit');
    const offline = await waitForMessage(observer, `users/${aliceId}/presence`, (m) => m.json.status === 'offline', 30_000);
    expect(offline.json.userId).toBe(aliceId);
    expect((await node2.http.get('/api/users', people.bob!.token)).body.users.map((u: Json) => u.username)).not.toContain('alice');

    const alice = await connect(node2, 'alice');
    const gTopic = `chats/${group.id}/messages`;
    await alice.client.subscribeAsync(gTopic, { qos: 1 });
    await alice.client.publishAsync(gTopic, JSON.stringify({ text: 'back, on node 2', clientMsgId: 'after-kill' }), { qos: 1 });
    expect((await waitForMessage(alice, gTopic, (m) => m.json.clientMsgId === 'after-kill')).json.seq).toBe(32);
  }, 45_000);
});

describe('a cluster with the RabbitMQ archive (Redis + AMQP)', () => {
  const { env, procs: nodes, open } = testDeployment('cluster-amqp', { amqp: true });

  it('stores every message PUBACKed by either node once, also when a node dies mid-stream', async () => {
    nodes.push(await serverReady(launchServer(env)), await serverReady(launchServer(env)));
    const [n1, n2] = nodes as [ReadyServer, ReadyServer];
    const who: Record<string, { user: Json; token: string }> = {};
    for (const name of ['dora', 'evan']) {
      await n1.http.post('/api/users', { username: name, password: 'cluster-pass' });
      const login = await n1.http.post('/api/users/login', { username: name, password: 'cluster-pass' });
      who[name] = { user: login.body.user, token: login.body.token };
    }
    const chat = (await n2.http.post('/api/chats', { type: 'group', name: 'queued', memberIds: [who.evan!.user.id] }, who.dora!.token)).body.chat;
    const topic = `chats/${chat.id}/messages`;
    const dora = await connectAs(n1, who.dora!);
    const evan = await connectAs(n2, who.evan!);
    open.push(dora, evan);

    // Both send; node 1 is SIGKILLed while its sender still has messages in flight.
    const acked: string[] = [];
    const send = (c: Connected, id: string) =>
      new Promise<void>((resolve) => c.client.publish(topic, JSON.stringify({ text: id, clientMsgId: id }), { qos: 1 }, (err) => {
        if (!err) acked.push(id);
        resolve();
      }));
    // Each sender stays within the per-user burst (30): a rate-limited send is acknowledged too.
    await Promise.all(Array.from({ length: 12 }, (_, i) => send(evan, `evan-${i}`)));
    const doraSends = Array.from({ length: 25 }, (_, i) => send(dora, `dora-${i}`));
    await new Promise((r) => setTimeout(r, 5));
    n1.child.kill('SIGKILL');
    await once(n1.child, 'exit');
    dora.client.end(true);
    await Promise.race([Promise.all(doraSends), new Promise((r) => setTimeout(r, 2000))]);
    await Promise.all(Array.from({ length: 12 }, (_, i) => send(evan, `evan-late-${i}`)));

    // History may lag the live stream by the archive delay: wait for node 2's worker.
    const stored: Json[] = await pollUntil(async () => (await n2.http.get(`/api/messages/${chat.id}?after=0&limit=100`, who.evan!.token)).body.messages, {
      done: (messages: Json[]) => {
        const ids = new Set(messages.filter((m) => m.type === 'message').map((m) => m.clientMsgId));
        return acked.every((id) => ids.has(id));
      },
      within: 20_000,
      every: 100,
    });
    const ids = stored.filter((m: Json) => m.type === 'message').map((m: Json) => m.clientMsgId as string);
    for (const id of acked) expect(ids).toContain(id);
    expect(new Set(ids).size).toBe(ids.length); // no duplicate
    const seqs = stored.map((m: Json) => m.seq as number);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
  }, 60_000);
});

describe('separate broker, api and worker processes (ROLES)', () => {
  const { env, procs, open } = testDeployment('roles', { amqp: true });

  it('serves MQTT from the broker, REST from the api, history through the worker; logout and removal reach the broker', async () => {
    const [broker, api, worker] = await Promise.all(
      (['broker', 'api', 'worker'] as const).map((role) => serverReady(launchServer({ ...env, ROLES: role }))),
    );
    procs.push(broker!, api!, worker!);
    expect(api!.mqttPort).toBe(0);
    expect(broker!.mqttPort).toBeGreaterThan(0);
    expect((await broker!.http.get('/api/users/me')).status).toBe(404);
    for (const p of [broker!, api!, worker!]) expect((await p.http.get('/healthz')).status).toBe(200);
    expect((await fetch(`${broker!.url}/metrics`)).status).toBe(200);

    const who: Record<string, { user: Json; token: string }> = {};
    for (const name of ['fay', 'gus']) {
      await api!.http.post('/api/users', { username: name, password: 'roles-pass' });
      const login = await api!.http.post('/api/users/login', { username: name, password: 'roles-pass' });
      who[name] = { user: login.body.user, token: login.body.token };
    }
    const chat = (await api!.http.post('/api/chats', { type: 'group', name: 'split', memberIds: [who.gus!.user.id] }, who.fay!.token)).body.chat;
    const topic = `chats/${chat.id}/messages`;
    const fay = await connectAs(broker!, who.fay!);
    const gus = await connectAs(broker!, who.gus!);
    open.push(fay, gus);
    await fay.client.subscribeAsync(topic, { qos: 1 });
    await gus.client.subscribeAsync([topic, `users/${who.gus!.user.id}/inbox`], { qos: 1 });

    await fay.client.publishAsync(topic, JSON.stringify({ text: 'split roles', clientMsgId: 'r1' }), { qos: 1 });
    await waitForMessage(gus, topic, (m) => m.json.clientMsgId === 'r1');
    const history: Json[] = await pollUntil(async () => (await api!.http.get(`/api/messages/${chat.id}?after=0`, who.gus!.token)).body.messages, {
      done: (messages: Json[]) => messages.some((m) => m.clientMsgId === 'r1'),
      within: 15_000,
      every: 100,
    });
    expect(history.map((m: Json) => m.event ?? m.clientMsgId)).toEqual(['chat.created', 'r1']);

    // The api removes gus: the broker ends his subscription and his inbox says so.
    expect((await api!.http.delete(`/api/chats/${chat.number}/members/${who.gus!.user.id}`, who.fay!.token)).status).toBe(204);
    await waitForMessage(gus, `users/${who.gus!.user.id}/inbox`, (m) => m.json.type === 'chat.removed');
    // The api logs fay out: the broker closes her connection.
    expect((await api!.http.post('/api/users/logout', undefined, who.fay!.token)).status).toBe(204);
    await closed(fay.client, 3000);
  }, 60_000);
});

describe('the archive worker process killed mid-stream (ROLES=worker)', () => {
  const { env, procs, open } = testDeployment('wkill', { amqp: true });

  it('loses nothing and duplicates nothing after a restart', async () => {
    const front = await serverReady(launchServer({ ...env, ROLES: 'broker,api' }));
    procs.push(front);
    await front.http.post('/api/users', { username: 'hana', password: 'worker-pass' });
    const login = await front.http.post('/api/users/login', { username: 'hana', password: 'worker-pass' });
    const hana = { user: login.body.user, token: login.body.token };
    const chat = (await front.http.post('/api/chats', { type: 'group', name: 'archive', memberIds: [] }, hana.token)).body.chat;
    const topic = `chats/${chat.id}/messages`;

    // 25 messages wait in the queue (within the per-user burst); then a worker starts, is
    // killed while draining, and a new one finishes the job.
    const sender = await connectAs(front, hana);
    open.push(sender);
    await Promise.all(Array.from({ length: 25 }, (_, i) => sender.client.publishAsync(topic, JSON.stringify({ text: `q${i}`, clientMsgId: `q${i}` }), { qos: 1 })));
    const first = await serverReady(launchServer({ ...env, ROLES: 'worker' }));
    procs.push(first);
    first.child.kill('SIGKILL');
    await once(first.child, 'exit');
    const second = await serverReady(launchServer({ ...env, ROLES: 'worker' }));
    procs.push(second);

    const ids = await pollUntil(async () => {
      const messages = (await front.http.get(`/api/messages/${chat.id}?after=0&limit=100`, hana.token)).body.messages as Json[];
      return messages.filter((m) => m.type === 'message').map((m) => m.clientMsgId as string);
    }, { done: (stored) => stored.length >= 25, within: 20_000, every: 100 });
    expect(ids.sort()).toEqual(Array.from({ length: 25 }, (_, i) => `q${i}`).sort());
    const seqs = ((await front.http.get(`/api/messages/${chat.id}?after=0&limit=100`, hana.token)).body.messages as Json[]).map((m) => m.seq);
    expect(seqs).toEqual(Array.from({ length: 26 }, (_, i) => i + 1));
  }, 60_000);
});

describe('a retried send that reaches another node before the archive has stored it', () => {
  const deployment = testDeployment('retry', { amqp: true });
  const { procs, open } = deployment;
  // No worker at first: the first copy waits in RabbitMQ, so the store cannot know about it.
  const env = { ...deployment.env, ROLES: 'broker,api' };

  it('is acknowledged as a duplicate: one seq, one live delivery, one stored message', async () => {
    const [node1, node2] = await Promise.all([serverReady(launchServer(env)), serverReady(launchServer(env))]);
    procs.push(node1!, node2!);
    const who: Record<string, { user: Json; token: string }> = {};
    for (const name of ['ivy', 'jon']) {
      await node1!.http.post('/api/users', { username: name, password: 'retry-pass' });
      const login = await node1!.http.post('/api/users/login', { username: name, password: 'retry-pass' });
      who[name] = { user: login.body.user, token: login.body.token };
    }
    const chat = (await node1!.http.post('/api/chats', { type: 'direct', memberIds: [who.jon!.user.id] }, who.ivy!.token)).body.chat;
    const topic = `chats/${chat.id}/messages`;
    const jon = await connectAs(node2!, who.jon!);
    open.push(jon);
    await jon.client.subscribeAsync(topic, { qos: 1 });

    // The first copy goes to node 1; the client "lost" the PUBACK and resends from node 2.
    const first = await connectAs(node1!, who.ivy!);
    open.push(first);
    await first.client.publishAsync(topic, JSON.stringify({ text: 'once', clientMsgId: 'x1' }), { qos: 1 });
    const again = await connectAs(node2!, who.ivy!);
    open.push(again);
    await again.client.publishAsync(topic, JSON.stringify({ text: 'once', clientMsgId: 'x1' }), { qos: 1 });
    await again.client.publishAsync(topic, JSON.stringify({ text: 'next', clientMsgId: 'x2' }), { qos: 1 });
    await waitForMessage(jon, topic, (m) => m.json.clientMsgId === 'x2');
    expect(jon.received.filter((m) => m.topic === topic).map((m) => [m.json.clientMsgId, m.json.seq])).toEqual([['x1', 2], ['x2', 3]]);

    procs.push(await serverReady(launchServer({ ...env, ROLES: 'worker' })));
    const history = await pollUntil(() => node1!.http.history(chat.id, who.ivy!.token), { done: (h) => h.length >= 3, within: 20_000, every: 100 });
    expect(history.map((m: Json) => [m.event ?? m.clientMsgId, m.seq])).toEqual([['chat.created', 1], ['x1', 2], ['x2', 3]]);
  }, 60_000);
});
