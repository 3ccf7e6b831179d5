import { createServer } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { pollUntil } from '../helpers/poll.js';
import type { Http } from '../helpers/server.js';
import type { SeededUser } from '../helpers/seed.js';

/**
 * A steady stream of chat messages from several users, as app clients send them: each message
 * has a clientMsgId, a client keeps it until its PUBACK, and after a reconnect mqtt.js sends the
 * unacknowledged ones again (same packet, same clientMsgId). The server may die, stop or fail
 * to store; the stream keeps going and reconnects on its own.
 */
export interface Stream {
  /** Stops sending, waits up to `ms` for the PUBACKs still due, then closes the clients. */
  stop(ms?: number): Promise<void>;
  sent(): number;
  acked(): Set<string>;
  /** Acknowledged but refused (the inbox's message.rejected), by clientMsgId: the reason. */
  refused(): Map<string, string>;
  /** When the last PUBACK arrived (performance.now()), -1 before any. */
  lastAckAt(): number;
  /** Resolves at the first PUBACK after this call, with its time. */
  nextAck(): Promise<number>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `perUserPerSecond` stays under the per-user send rate (10/s). */
export async function startStream(mqttPort: number, users: SeededUser[], chatId: string, perUserPerSecond = 8, tag = 'f'): Promise<Stream> {
  const topic = `chats/${chatId}/messages`;
  const acked = new Set<string>();
  let sent = 0;
  let lastAck = -1;
  let waiters: ((t: number) => void)[] = [];
  const clients: MqttClient[] = users.map((u, i) =>
    mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, {
      username: u.user.username, password: u.token, clientId: `${u.user.id}/fault${i}`,
      // A persistent session keeps the inbox subscription across reconnects to the same server
      // process, so that a refusal of a resent message is never missed.
      reconnectPeriod: 100, connectTimeout: 2000, keepalive: 30, clean: false, resubscribe: false,
    }),
  );
  const refused = new Map<string, string>();
  const sentIds: [string, number][] = [];
  clients.forEach((c, i) => {
    c.on('error', () => {}); // refused while the server is away: it reconnects
    // A refused send is acknowledged too (so that it is not resent forever); the inbox says why.
    c.on('connect', (connack) => {
      if (!connack.sessionPresent) c.subscribe(`users/${users[i]!.user.id}/inbox`, { qos: 1 });
    });
    c.on('message', (_topic, payload) => {
      const event = JSON.parse(payload.toString());
      if (event.type === 'message.rejected' && event.clientMsgId) refused.set(event.clientMsgId, event.reason);
    });
  });
  // Subscribed to their inboxes before the first message.
  await Promise.all(clients.map((c, i) => new Promise<void>((resolve) => {
    c.once('connect', () => c.subscribe(`users/${users[i]!.user.id}/inbox`, { qos: 1 }, () => resolve()));
  })));
  let running = true;
  const timers = clients.map((client, i) =>
    setInterval(() => {
      if (!running) return;
      const clientMsgId = `${tag}-${i}-${sent++}`;
      sentIds.push([clientMsgId, performance.now()]);
      client.publish(topic, JSON.stringify({ text: `stream ${clientMsgId}`, clientMsgId }), { qos: 1 }, (err) => {
        if (err) return; // the client was ended with it unacknowledged: counted as sent, not acked
        acked.add(clientMsgId);
        lastAck = performance.now();
        for (const w of waiters.splice(0)) w(lastAck);
      });
    }, 1000 / perUserPerSecond),
  );
  return {
    async stop(ms = 15_000) {
      running = false;
      timers.forEach(clearInterval);
      // Every message is PUBACKed in the end (a refused one too), unless the clients give up.
      await pollUntil(() => acked.size >= sent, { within: ms, every: 50 });
      if (process.env.FAULT_DEBUG) {
        const t0 = sentIds[0]?.[1] ?? 0;
        console.log('unacked:', sentIds.filter(([id]) => !acked.has(id)).map(([id, t]) => `${id}@${((t - t0) / 1000).toFixed(2)}`).join(' '));
        console.log('connected:', clients.map((c) => (c.connected ? 1 : 0)).join(''), 'outgoing:', clients.map((c) => Object.keys((c as unknown as { outgoing: object }).outgoing).length).join(','));
      }
      await Promise.all(clients.map((c) => c.endAsync(true)));
    },
    sent: () => sent,
    acked: () => acked,
    refused: () => refused,
    lastAckAt: () => lastAck,
    nextAck: () => new Promise((resolve) => waiters.push(resolve)),
  };
}

/** How many sends the server process at `url` refused (its metrics; since it started). */
export async function refusedByServer(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^chat_messages_total\{[^}]*result="rejected"[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

/**
 * What became of a stream: every acknowledged message must be stored exactly once, or have
 * been refused. A refusal is seen in the sender's inbox, unless it came while the client was
 * resubscribing after a reconnect; with `serverRefused` (the server's own count, when one
 * process served the whole stream) such unseen refusals are told apart from losses: `lost`
 * lists only what the refusals the server counted cannot explain.
 */
export async function figures(http: Http, token: string, chatId: string, stream: Stream, serverRefused?: number) {
  const history = await http.history(chatId, token);
  const stored = new Map<string, number>();
  for (const m of history) if (m.type === 'message' && m.clientMsgId) stored.set(m.clientMsgId, (stored.get(m.clientMsgId) ?? 0) + 1);
  const acked = stream.acked();
  const refused = stream.refused();
  const missing = [...acked].filter((id) => !stored.has(id) && !refused.has(id));
  const unseen = serverRefused === undefined ? 0 : Math.max(0, serverRefused - refused.size);
  const lost = missing.length <= unseen ? [] : missing;
  const reasons = new Map<string, number>();
  for (const reason of refused.values()) reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  const duplicated = [...stored].filter(([, n]) => n > 1).map(([id]) => id);
  const seqs = history.map((m) => m.seq as number);
  const contiguous = seqs.every((s, i) => i === 0 || s > seqs[i - 1]!);
  const seen = [...reasons].map(([r, n]) => `${n} ${r}`).join(', ') || '0';
  const refusedText = serverRefused === undefined ? seen : `${seen} (the server counted ${serverRefused})`;
  return { sent: stream.sent(), acked: acked.size, stored: stored.size, refused: refusedText, lost, duplicated, increasing: contiguous };
}

export const line = (name: string, f: Awaited<ReturnType<typeof figures>>, recovery: string) =>
  `fault ${name}: sent ${f.sent}, acked ${f.acked}, stored ${f.stored}, refused ${f.refused}, lost ${f.lost.length}, duplicated ${f.duplicated.length}; recovery ${recovery}`;
