import { describe, expect, it } from 'vitest';
import { type Connected, connectAs, waitForMessage } from './helpers/mqtt.js';
import { testDeployment } from './helpers/deployment.js';
import { pollUntil } from './helpers/poll.js';
import { type ReadyServer, launchServer, serverReady } from './helpers/process.js';
import { type SeededUser, seed } from './helpers/seed.js';
import { type Json, TEST_SECRET } from './helpers/server.js';
import { missing, needs } from './support/conditional.js';

/**
 * Issue 12 across nodes (docs/chat-features.md): read receipts coalesced per user, chat and
 * second across two broker processes clustered through this machine's Redis; edits, deletions
 * and replies through the RabbitMQ archive and its worker. Each spec is not run (and says so)
 * where its services are missing; a deployment is only set up where they are.
 */
const lacksRedis = await missing('redis');
const lacksAmqp = await missing('rabbitmq');

const messages = (chatId: string) => `chats/${chatId}/messages`;
const receipts = (chatId: string) => `chats/${chatId}/receipts`;
const inbox = (userId: string) => `users/${userId}/inbox`;

/** The largest number of deliveries that arrived within any one second. */
function mostInAnySecond(times: number[]): number {
  let most = 0;
  for (let i = 0; i < times.length; i++) {
    let n = 0;
    for (let j = i; j < times.length && times[j]! - times[i]! < 1000; j++) n++;
    most = Math.max(most, n);
  }
  return most;
}

describe('read receipts on two broker nodes (Redis)', () => {
  const d = lacksRedis === null ? testDeployment('chatf') : null;

  it('coalesces one user\'s receipts published on node 1 and node 2 within a second: a subscriber on node 1 gets at most two per second, the last with the max pointer', { timeout: 60_000 }, async (ctx) => {
    await needs(ctx, 'redis');
    const { env, procs, open, dataDir } = d!;
    let alice!: SeededUser;
    let bob!: SeededUser;
    let carol!: SeededUser;
    let chat!: { id: string; number: number };
    await seed(dataDir, async (s) => {
      [alice, bob, carol] = (await s.users(3, 'rc')) as [SeededUser, SeededUser, SeededUser];
      chat = await s.group(carol, [alice, bob]);
    });
    const shared = { ...env, JWT_SECRET: TEST_SECRET };
    const [node1, node2] = (await Promise.all([serverReady(launchServer(shared)), serverReady(launchServer(shared))])) as [ReadyServer, ReadyServer];
    procs.push(node1, node2);
    const connect = async (node: ReadyServer, who: SeededUser, clientId: string, subscribe: string[] = []) => {
      const c = await connectAs(node, who, { clientId });
      open.push(c);
      if (subscribe.length > 0) await c.client.subscribeAsync(subscribe, { qos: 1 });
      return c;
    };

    const sender = await connect(node2, carol, `${carol.user.id}/s`, [messages(chat.id)]);
    for (let i = 0; i < 21; i++) await sender.client.publishAsync(messages(chat.id), JSON.stringify({ text: `m${i}` }), { qos: 1 }); // seqs 1..21
    await waitForMessage(sender, messages(chat.id), (m) => m.json.seq === 21);
    const watcher = await connect(node1, bob, `${bob.user.id}/w`, [receipts(chat.id)]);
    const times: number[] = [];
    watcher.client.on('message', (topic) => {
      if (topic === receipts(chat.id)) times.push(performance.now());
    });
    const onNode1 = await connect(node1, alice, `${alice.user.id}/a`);
    const onNode2 = await connect(node2, alice, `${alice.user.id}/b`);
    const receipt = (c: Connected, readSeq: number) => c.client.publishAsync(receipts(chat.id), JSON.stringify({ readSeq }), { qos: 1 });

    // The first receipt of the second is announced at once; 19 more at once, the odd ones
    // through node 1 and the even ones through node 2, come within that second.
    await receipt(onNode1, 1);
    await waitForMessage(watcher, receipts(chat.id), (m) => m.json.readSeq === 1);
    await Promise.all(Array.from({ length: 19 }, (_, i) => receipt(i % 2 ? onNode1 : onNode2, i + 2)));
    const pointer = await node2.http.get(`/api/chats/${chat.number}`, alice.token);
    expect(pointer.body.chat).toMatchObject({ readSeq: 20, unread: 1 });
    await waitForMessage(watcher, receipts(chat.id), (m) => m.json.readSeq === 20, 10_000);
    // A later receipt (21, through node 2) is a marker: what the burst still had to deliver,
    // from either node, comes before it.
    await receipt(onNode2, 21);
    await waitForMessage(watcher, receipts(chat.id), (m) => m.json.readSeq === 21, 10_000);

    const got = watcher.on(receipts(chat.id)).map((m) => m.json);
    const ofBurst = got.slice(0, got.findIndex((r) => r.readSeq === 21));
    expect(ofBurst.length).toBeLessThanOrEqual(2);
    expect(ofBurst[0].readSeq).toBe(1);
    expect(ofBurst.at(-1)).toEqual({ type: 'read', chatId: chat.id, userId: alice.user.id, readSeq: 20, at: expect.any(String) });
    expect(got.every((r) => r.userId === alice.user.id)).toBe(true);
    const seqs = got.map((r) => r.readSeq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y)); // never backwards
    expect(mostInAnySecond(times), `arrivals (ms after the first): ${times.map((t) => Math.round(t - times[0]!)).join(', ')}`).toBeLessThanOrEqual(2);
    // Both nodes list the same pointers.
    for (const node of [node1, node2]) {
      const listed = (await node.http.get(`/api/chats/${chat.number}/receipts`, bob.token)).body.receipts;
      expect(listed.find((p: Json) => p.userId === alice.user.id)).toMatchObject({ readSeq: 21 });
    }
  });
});

describe('edits, deletions and replies through the RabbitMQ archive (Redis + AMQP)', () => {
  const d = lacksRedis === null && lacksAmqp === null ? testDeployment('chatf-amqp', { amqp: true }) : null;

  it('stores an edit and a delete made over REST through the worker, and accepts a reply to a message received live a moment earlier', { timeout: 60_000 }, async (ctx) => {
    await needs(ctx, 'redis', 'rabbitmq');
    const { env, procs, open, dataDir } = d!;
    let dora!: SeededUser;
    let evan!: SeededUser;
    let chat!: { id: string; number: number };
    await seed(dataDir, async (s) => {
      [dora, evan] = (await s.users(2, 'ar')) as [SeededUser, SeededUser];
      chat = await s.direct(dora, evan);
    });
    const shared = { ...env, JWT_SECRET: TEST_SECRET };
    const [n1, n2] = (await Promise.all([serverReady(launchServer(shared)), serverReady(launchServer(shared))])) as [ReadyServer, ReadyServer];
    procs.push(n1, n2);
    const dc = await connectAs(n1, dora);
    const ec = await connectAs(n2, evan);
    open.push(dc, ec);
    await dc.client.subscribeAsync([messages(chat.id)], { qos: 1 });
    await ec.client.subscribeAsync([messages(chat.id), inbox(evan.user.id)], { qos: 1 });

    // Dora sends a few; evan answers the last the moment it reaches him (the store may not
    // hold it yet: the worker commits behind the live stream).
    await Promise.all(Array.from({ length: 5 }, (_, i) => dc.client.publishAsync(messages(chat.id), JSON.stringify({ text: `q${i}`, clientMsgId: `q${i}` }), { qos: 1 })));
    const question = (await waitForMessage(ec, messages(chat.id), (m) => m.json.clientMsgId === 'q4')).json;
    await ec.client.publishAsync(messages(chat.id), JSON.stringify({ text: 'an answer', clientMsgId: 'reply', replyTo: question.seq }), { qos: 1 });
    const reply = (await waitForMessage(dc, messages(chat.id), (m) => m.json.clientMsgId === 'reply')).json;
    expect(reply).toMatchObject({ senderId: evan.user.id, text: 'an answer', replyTo: question.seq });
    expect(ec.on(inbox(evan.user.id)).filter((m) => m.json.type === 'message.rejected')).toEqual([]);

    // Dora edits her question over node 2's REST, evan deletes his answer over node 1's.
    const edited = await n2.http.request('PATCH', `/api/messages/${chat.id}/${question.seq}`, { body: { text: 'q4, edited' }, token: dora.token });
    expect(edited.status).toBe(200);
    expect(edited.body.message).toMatchObject({ seq: question.seq, text: 'q4, edited', editedAt: expect.any(String) });
    expect((await n1.http.delete(`/api/messages/${chat.id}/${reply.seq}`, evan.token)).status).toBe(204);
    const editEvent = (await waitForMessage(ec, messages(chat.id), (m) => m.json.type === 'edit')).json;
    const deleteEvent = (await waitForMessage(dc, messages(chat.id), (m) => m.json.type === 'delete')).json;
    expect(editEvent).toMatchObject({ targetSeq: question.seq, text: 'q4, edited', senderId: dora.user.id });
    expect(deleteEvent).toMatchObject({ targetSeq: reply.seq, actorId: evan.user.id });

    // History reaches that state through the worker.
    const history: Json[] = await pollUntil(() => n1.http.history(chat.id, evan.token), {
      done: (h: Json[]) => h.some((m) => m.seq === deleteEvent.seq) && h.some((m) => m.seq === editEvent.seq),
      within: 20_000,
      every: 100,
    });
    expect(history.map((m) => m.seq)).toEqual(Array.from({ length: deleteEvent.seq }, (_, i) => i + 1));
    expect(history.find((m) => m.seq === question.seq)).toEqual({ ...question, text: 'q4, edited', editedAt: edited.body.message.editedAt });
    const { text: _text, ...kept } = reply;
    expect(history.find((m) => m.seq === reply.seq)).toEqual({ ...kept, deleted: true });
    expect(history.find((m) => m.seq === editEvent.seq)).toEqual(editEvent);
    expect(history.find((m) => m.seq === deleteEvent.seq)).toEqual(deleteEvent);
    // The answer was deleted: dora has nothing unread; evan has read up to his answer, so
    // nothing of dora's is unread for him either.
    const views = await Promise.all([n2.http.get(`/api/chats/${chat.number}`, dora.token), n1.http.get(`/api/chats/${chat.number}`, evan.token)]);
    expect(views.map((v) => [v.body.chat.unread, v.body.chat.lastSeq])).toEqual([[0, deleteEvent.seq], [0, deleteEvent.seq]]);
  });
});
