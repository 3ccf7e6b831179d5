import { once } from 'node:events';
import { rmSync } from 'node:fs';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { SEND_BURST } from '../core/rules.js';
import { connectAs, waitForMessage } from './helpers/mqtt.js';
import { type ReadyServer, launchServer, serverReady } from './helpers/process.js';
import { type Json, tempDir } from './helpers/server.js';

/** Server processes on one data directory of the block's own: each `launch()` starts one (after
 * the previous has stopped); afterAll kills the last if still up and removes the directory. */
function onDisk(prefix: string, env: Record<string, string> = {}) {
  const dataDir = tempDir(prefix);
  let last: ReadyServer | undefined;
  afterAll(async () => {
    if (last && last.child.exitCode === null) {
      last.child.kill('SIGKILL');
      await once(last.child, 'exit');
    }
    rmSync(dataDir, { recursive: true, force: true });
  });
  return { launch: async () => (last = await serverReady(launchServer({ DATA_DIR: dataDir, ...env }))) };
}

describe('durability: a PUBACK means the message is stored', () => {
  const { launch } = onDisk('chat-kill-');

  it('loses none of the acknowledged messages when the server is SIGKILLed right after, and a retry stores each once', async () => {
    let server = await launch();
    const people: { user: Json; token: string }[] = [];
    for (const name of ['kay', 'lee', 'max']) {
      await server.http.post('/api/users', { username: name, password: 'durable-pass' });
      const login = await server.http.post('/api/users/login', { username: name, password: 'durable-pass' });
      people.push({ user: login.body.user, token: login.body.token });
    }
    const chat = (await server.http.post('/api/chats', { type: 'group', name: 'kept', memberIds: [people[1]!.user.id, people[2]!.user.id] }, people[0]!.token)).body.chat;
    const topic = `chats/${chat.id}/messages`;
    const clients = await Promise.all(people.map((p) => connectAs(server, p)));

    // Three senders pipeline 25 QoS 1 publishes each; the server dies the moment the 50th PUBACK arrives.
    const acked = new Set<string>();
    const sent: { client: mqtt.MqttClient; id: string; text: string }[] = [];
    const child = server.child;
    const killed = once(child, 'exit');
    await new Promise<void>((resolveKill) => {
      clients.forEach((c, who) => {
        for (let i = 0; i < 25; i++) {
          const id = `${who}-${i}`;
          const text = `message ${id}`;
          sent.push({ client: c.client, id, text });
          c.client.publish(topic, JSON.stringify({ text, clientMsgId: id }), { qos: 1 }, (err) => {
            if (err || child.exitCode !== null || child.signalCode !== null) return;
            acked.add(id);
            if (acked.size === 50) {
              child.kill('SIGKILL');
              resolveKill();
            }
          });
        }
      });
    });
    await killed;
    clients.forEach((c) => c.client.end(true));
    expect(acked.size).toBeGreaterThanOrEqual(50);

    server = await launch();
    const log = async () => (await server.http.get(`/api/messages/${chat.id}?limit=100`, people[0]!.token)).body.messages as Json[];
    const afterCrash = await log();
    const storedIds = afterCrash.filter((m) => m.type === 'message').map((m) => m.clientMsgId as string);
    for (const id of acked) expect(storedIds).toContain(id);
    expect(afterCrash.map((m) => m.seq)).toEqual(Array.from({ length: afterCrash.length }, (_, i) => i + 1));
    expect(new Set(storedIds).size).toBe(storedIds.length);

    // Every sender now retries everything it sent (what a client does with unacknowledged
    // messages after reconnecting, here also the acknowledged ones): each lands exactly once.
    const again = await Promise.all(people.map((p) => connectAs(server, p)));
    await Promise.all(
      again.flatMap((c, who) =>
        sent.filter((s) => s.id.startsWith(`${who}-`)).map((s) => c.client.publishAsync(topic, JSON.stringify({ text: s.text, clientMsgId: s.id }), { qos: 1 })),
      ),
    );
    await Promise.all(again.map((c) => c.end()));
    const final = await log();
    const finalIds = final.filter((m) => m.type === 'message').map((m) => m.clientMsgId as string);
    expect(finalIds.sort()).toEqual(sent.map((s) => s.id).sort());
    expect(final.map((m) => m.seq)).toEqual(Array.from({ length: 76 }, (_, i) => i + 1));
    for (const m of final.filter((x) => x.type === 'message')) expect(m.text).toBe(`message ${m.clientMsgId}`);

    server.child.kill('SIGTERM');
    expect((await once(server.child, 'exit'))[0]).toBe(0);
  });
});

describe('a retry of a message stored before a restart', () => {
  // The budget does not refill during the test, however slowly the machine runs it.
  const { launch } = onDisk('chat-retry-budget-', { SEND_RATE: '0.001' });

  it('is a duplicate even when the send budget is spent: no rate_limited, stored once', async () => {
    let server = await launch();
    await server.http.post('/api/users', { username: 'nia', password: 'budget-pass' });
    const login = await server.http.post('/api/users/login', { username: 'nia', password: 'budget-pass' });
    const nia = { user: login.body.user, token: login.body.token };
    const chat = (await server.http.post('/api/chats', { type: 'group', name: 'budget', memberIds: [] }, nia.token)).body.chat;
    const topic = `chats/${chat.id}/messages`;
    const inbox = `users/${nia.user.id}/inbox`;
    const before = await connectAs(server, nia);
    for (const id of ['old-1', 'old-2', 'old-3']) await before.client.publishAsync(topic, JSON.stringify({ text: id, clientMsgId: id }), { qos: 1 });
    before.client.end(true);

    // A restart empties the server's memory of recent keys: only the store knows them now.
    server.child.kill('SIGTERM');
    await once(server.child, 'exit');
    server = await launch();
    const after = await connectAs(server, nia);
    await after.client.subscribeAsync(inbox, { qos: 1 });
    await Promise.all(Array.from({ length: SEND_BURST }, (_, i) => after.client.publishAsync(topic, JSON.stringify({ text: `new ${i}`, clientMsgId: `new-${i}` }), { qos: 1 })));
    for (const id of ['old-1', 'old-2', 'old-3']) await after.client.publishAsync(topic, JSON.stringify({ text: id, clientMsgId: id }), { qos: 1 });
    // One more fresh send, over budget: its rejection arriving shows the inbox is flowing.
    await after.client.publishAsync(topic, JSON.stringify({ text: 'over', clientMsgId: 'over' }), { qos: 1 });
    await waitForMessage(after, inbox, (m) => m.json.clientMsgId === 'over');
    expect(after.on(inbox).map((m) => m.json.clientMsgId)).toEqual(['over']);
    after.client.end(true);

    const ids = (await server.http.history(chat.id, nia.token)).filter((m) => m.type === 'message').map((m) => m.clientMsgId);
    expect(ids.filter((id) => String(id).startsWith('old-'))).toEqual(['old-1', 'old-2', 'old-3']);
  });
});
