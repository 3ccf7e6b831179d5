import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Connected, connectAs } from './helpers/mqtt.js';
import { type Json, type TestServer, type UserDto, startTestServer } from './helpers/server.js';
import { needs } from './support/conditional.js';

const run = promisify(execFile);
type Who = { user: UserDto; token: string };

describe('MQTT messaging', () => {
  let srv: TestServer;
  const open: Connected[] = [];
  const connect = async (...args: Parameters<typeof connectAs>) => {
    const c = await connectAs(...args);
    open.push(c);
    return c;
  };
  const history = async (chatId: string, token: string, query = '?limit=100') => {
    const res = await srv.http.get(`/api/messages/${chatId}${query}`, token);
    expect(res.status).toBe(200);
    return res.body.messages as Json[];
  };

  beforeAll(async () => {
    srv = await startTestServer();
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await srv.stop();
  });

  describe('a direct chat between a TCP client and a WebSocket client', () => {
    let alice: Who;
    let bob: Who;
    let chat: Json;
    let a: Connected;
    let b: Connected;
    let topic: string;

    beforeAll(async () => {
      [alice, bob] = await Promise.all([srv.signUp('alice', 'Alice'), srv.signUp('bob', 'Bob')]);
      chat = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id] }, alice.token)).body.chat;
      topic = `chats/${chat.id}/messages`;
      a = await connect(srv, alice, { transport: 'tcp' });
      b = await connect(srv, bob, { transport: 'ws' });
      await a.client.subscribeAsync(topic, { qos: 1 });
      await b.client.subscribeAsync(topic, { qos: 1 });
    });

    it('delivers the envelope to both members, the sender included, with server-set fields', async () => {
      await a.client.publishAsync(topic, JSON.stringify({ text: 'Hi Bob! 안녕 👋', clientMsgId: 'a-1' }), { qos: 1 });
      const [toAlice] = await a.waitFor(1, topic);
      const [toBob] = await b.waitFor(1, topic);
      expect(toBob!.json).toEqual(toAlice!.json);
      expect(toBob!.json).toEqual({
        type: 'message', id: expect.stringMatching(/^[0-9a-f-]{36}$/), chatId: chat.id, seq: 2, senderId: alice.user.id,
        senderName: 'Alice', text: 'Hi Bob! 안녕 👋', clientMsgId: 'a-1', createdAt: expect.any(String),
      });
      expect(Math.abs(Date.parse(toBob!.json.createdAt) - Date.now())).toBeLessThan(60_000);
    });

    it('carries replies the other way, and history equals what was delivered, in seq order', async () => {
      await b.client.publishAsync(topic, JSON.stringify({ text: 'Hello Alice', clientMsgId: 'b-1' }), { qos: 1 });
      await a.client.publishAsync(topic, JSON.stringify({ text: 'line one\nline two\ttabbed' }), { qos: 1 });
      const delivered = (await b.waitFor(3, topic)).map((m) => m.json);
      expect((await a.waitFor(3, topic)).map((m) => m.json)).toEqual(delivered);
      expect(delivered.map((m) => m.seq)).toEqual([2, 3, 4]);
      expect(delivered[2].clientMsgId).toBeNull();

      const log = await history(chat.id, bob.token);
      expect(log[0]).toMatchObject({ type: 'system', event: 'chat.created', seq: 1, userId: alice.user.id });
      expect(log.slice(1)).toEqual(delivered);
      expect((await srv.http.get(`/api/chats/${chat.number}`, alice.token)).body.chat.lastSeq).toBe(4);
    });

    it('works with a client that is not JavaScript: mosquitto_sub and mosquitto_pub', async (ctx) => {
      await needs(ctx, 'mosquitto-clients');
      const before = a.on(topic).length;
      const cliId = `${bob.user.id}/cli`;
      const aedes = srv.broker.ctx.aedes;
      const subscribed = new Promise<void>((resolve) => {
        const onSubscribe = (_subs: unknown, client: { id: string }) => {
          if (client.id !== cliId) return;
          aedes.off('subscribe', onSubscribe);
          resolve();
        };
        aedes.on('subscribe', onSubscribe);
      });
      const sub = spawn('mosquitto_sub', [
        '-h', '127.0.0.1', '-p', String(srv.mqttPort), '-u', 'bob', '-P', bob.token, '-i', cliId,
        '-q', '1', '-t', topic, '-C', '1', '-W', '20',
      ]);
      // Listen for the end now: mosquitto_sub may exit before mosquitto_pub returns. 'close',
      // not 'exit': 'exit' may come before the last of its output has been read.
      const exited = new Promise<number | null>((resolve) => sub.on('close', resolve));
      let out = '';
      sub.stdout.on('data', (d) => (out += d));
      await subscribed; // bob's command-line client is connected and subscribed
      await run('mosquitto_pub', [
        '-h', '127.0.0.1', '-p', String(srv.mqttPort), '-u', 'alice', '-P', alice.token, '-i', `${alice.user.id}/cli`,
        '-q', '1', '-t', topic, '-m', JSON.stringify({ text: 'sent from mosquitto_pub', clientMsgId: 'cli-1' }),
      ]);
      expect(await exited).toBe(0);
      const envelope = JSON.parse(out.trim());
      expect(envelope).toMatchObject({ type: 'message', senderId: alice.user.id, text: 'sent from mosquitto_pub', clientMsgId: 'cli-1', seq: 5 });
      const [, ...fromMqttJs] = await a.waitFor(before + 1, topic);
      expect(fromMqttJs.at(-1)!.json).toEqual(envelope);
    });
  });

  it('in a 100-member group, one publish reaches each of the 100 subscribers exactly once', async () => {
    const owner = await srv.signUp('owner100');
    const others = await srv.seedUsers(99, 'member');
    const chat = (await srv.http.post('/api/chats', { type: 'group', name: 'hundred', memberIds: others.map((u) => u.id) }, owner.token)).body.chat;
    expect(chat.memberCount).toBe(100);
    const topic = `chats/${chat.id}/messages`;

    const members: Who[] = [owner];
    for (let i = 0; i < others.length; i += 10) {
      const batch = others.slice(i, i + 10);
      const logins = await Promise.all(batch.map((u) => srv.http.post('/api/users/login', { username: u.username, password: 'seeded-password' })));
      members.push(...logins.map((l) => ({ user: l.body.user, token: l.body.token })));
    }
    const clients = await Promise.all(members.map((m, i) => connect(srv, m, { transport: i % 2 ? 'ws' : 'tcp' })));
    await Promise.all(clients.map((c) => c.client.subscribeAsync(topic, { qos: 1 })));

    await clients[0]!.client.publishAsync(topic, JSON.stringify({ text: 'hello, hundred', clientMsgId: 'h-1' }), { qos: 1 });
    await clients[57]!.client.publishAsync(topic, JSON.stringify({ text: 'marker', clientMsgId: 'h-2' }), { qos: 1 });
    const got = await Promise.all(clients.map((c) => c.waitFor(2, topic, 15_000)));
    for (const messages of got) {
      expect(messages.map((m) => m.json.text)).toEqual(['hello, hundred', 'marker']);
    }
    await Promise.all(clients.map((c) => c.end()));
  });

  it('numbers concurrent sends from several members contiguously, and history is in seq order', async () => {
    const people = await Promise.all([srv.signUp(), srv.signUp(), srv.signUp()]);
    const chat = (await srv.http.post('/api/chats', { type: 'group', name: 'busy', memberIds: people.slice(1).map((p) => p.user.id) }, people[0]!.token)).body.chat;
    const topic = `chats/${chat.id}/messages`;
    const clients = await Promise.all(people.map((p) => connect(srv, p)));
    await clients[0]!.client.subscribeAsync(topic, { qos: 1 });
    await Promise.all(
      clients.flatMap((c, who) => Array.from({ length: 10 }, (_, i) => c.client.publishAsync(topic, JSON.stringify({ text: `${who}:${i}`, clientMsgId: `${who}-${i}` }), { qos: 1 }))),
    );
    const live = await clients[0]!.waitFor(30, topic);
    expect(live.map((m) => m.json.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => i + 2));
    const log = await history(chat.id, people[1]!.token);
    expect(log.map((m) => m.seq)).toEqual(Array.from({ length: 31 }, (_, i) => i + 1));
    // Each sender's own messages keep the order in which it sent them.
    for (let who = 0; who < 3; who++) {
      const mine = log.filter((m) => m.type === 'message' && m.text.startsWith(`${who}:`)).map((m) => m.text);
      expect(mine).toEqual(Array.from({ length: 10 }, (_, i) => `${who}:${i}`));
    }
  });

  it('records group creation and membership changes as system messages in the stream', async () => {
    const [owner, joiner] = await Promise.all([srv.signUp(), srv.signUp()]);
    const chat = (await srv.http.post('/api/chats', { type: 'group', name: 'events', memberIds: [], visibility: 'public' }, owner.token)).body.chat;
    const o = await connect(srv, owner);
    await o.client.subscribeAsync(`chats/${chat.id}/messages`, { qos: 1 });
    await srv.http.post(`/api/chats/${chat.number}/members`, { userIds: [joiner.user.id] }, joiner.token);
    await srv.http.delete(`/api/chats/${chat.number}/members/${joiner.user.id}`, joiner.token);
    const live = await o.waitFor(2, `chats/${chat.id}/messages`);
    expect(live.map((m) => [m.json.event, m.json.userId, m.json.seq])).toEqual([
      ['member.joined', joiner.user.id, 2],
      ['member.left', joiner.user.id, 3],
    ]);
    const log = await history(chat.id, owner.token);
    expect(log.map((m) => m.event)).toEqual(['chat.created', 'member.joined', 'member.left']);
    expect(log.slice(1)).toEqual(live.map((m) => m.json));
  });

  it('exposes Prometheus metrics at /metrics that count what happened', async () => {
    const scrape = async () => {
      const res = await fetch(`${srv.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await res.text();
      const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}"+.]/g, '\\$&')} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
      return { text, value };
    };
    const counter = 'chat_messages_total{result="accepted"}';
    const before = (await scrape()).value(counter);
    const who = await srv.signUp('metrics');
    const chat = (await srv.http.post('/api/chats', { type: 'group', name: 'metrics', memberIds: [] }, who.token)).body.chat;
    const c = await connect(srv, who);
    await c.client.publishAsync(`chats/${chat.id}/messages`, JSON.stringify({ text: 'counted' }), { qos: 1 });
    await c.client.publishAsync(`chats/${chat.id}/messages`, JSON.stringify({ text: 'counted too' }), { qos: 1 });
    const { text, value } = await scrape();
    // This file's specs run one after another: only these two sends happened in between.
    expect(value(counter)).toBe(before + 2);
    expect(value('chat_mqtt_connections')).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^# TYPE chat_http_responses_total counter$/m);
    expect(value('chat_http_responses_total{status="200"}')).toBeGreaterThan(0);
    // Latency histograms: publish to PUBACK, and REST by route pattern (never the raw path).
    expect(value('chat_send_duration_seconds_count{result="accepted"}')).toBe(before + 2);
    expect(value('chat_send_duration_seconds_bucket{le="+Inf",result="accepted"}')).toBe(before + 2);
    expect(value('chat_http_request_duration_seconds_count{method="POST",route="/api/chats",status="201"}')).toBeGreaterThanOrEqual(1);
    await fetch(`${srv.url}/no/such/path/${Math.random()}`);
    expect((await scrape()).value('chat_http_request_duration_seconds_count{method="GET",route="unmatched",status="404"}')).toBeGreaterThanOrEqual(1);
    // The process itself, so an operator sees overload coming: memory, heap, event-loop lag, GC.
    for (const family of ['process_resident_memory_bytes', 'process_cpu_seconds_total', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_gc_duration_seconds']) {
      expect(text, family).toMatch(new RegExp(`^# TYPE ${family} `, 'm'));
    }
    expect(value('process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);
  });
});
