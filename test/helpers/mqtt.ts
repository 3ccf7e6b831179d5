import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { TestServer } from './server.js';

export interface Received {
  topic: string;
  /** Parsed JSON payload (null when the payload is not JSON). */
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  raw: Buffer;
}

export interface Connected {
  client: MqttClient;
  received: Received[];
  /** Resolves with the messages on `topic` (all topics when omitted) once there are `count`;
   * rejects after `ms`. */
  waitFor(count: number, topic?: string, ms?: number): Promise<Received[]>;
  /** Messages received on a topic so far. */
  on(topic: string): Received[];
  end(): Promise<void>;
}

export type Transport = 'tcp' | 'ws';

export function brokerUrl(srv: Pick<TestServer, 'port' | 'mqttPort'>, transport: Transport = 'tcp') {
  return transport === 'tcp' ? `mqtt://127.0.0.1:${srv.mqttPort}` : `ws://127.0.0.1:${srv.port}/mqtt`;
}

/**
 * Connects with mqtt.js as `who` (username + login token) and collects every message.
 * Rejects with the CONNACK error when the server refuses. Reconnection is off: a test sees
 * exactly what the server did.
 */
export async function connectAs(
  srv: Pick<TestServer, 'port' | 'mqttPort'>,
  who: { user: { id: string; username: string }; token: string },
  opts: { transport?: Transport } & IClientOptions = {},
): Promise<Connected> {
  const { transport, ...rest } = opts;
  const client = mqtt.connect(brokerUrl(srv, transport), {
    username: who.user.username,
    password: who.token,
    clientId: `${who.user.id}/t${Math.random().toString(36).slice(2, 10)}`,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ...rest,
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
  client.on('error', () => {}); // later errors show up as test failures, not crashes
  return collector(client);
}

export function collector(client: MqttClient): Connected {
  const received: Received[] = [];
  const waiters: (() => void)[] = [];
  client.on('message', (topic, raw) => {
    let json = null;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      /* not JSON */
    }
    received.push({ topic, json, raw });
    for (const w of waiters.splice(0)) w();
  });
  const on = (topic: string) => received.filter((m) => m.topic === topic);
  return {
    client,
    received,
    on,
    waitFor(count, topic, ms = 5000) {
      const pick = () => (topic === undefined ? received : on(topic));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${count} message(s) on ${topic ?? 'any topic'}; got ${pick().length}`)), ms);
        const check = () => {
          if (pick().length >= count) {
            clearTimeout(timer);
            resolve(pick());
          } else waiters.push(check);
        };
        check();
      });
    },
    end: () => new Promise<void>((resolve) => client.end(false, {}, () => resolve())),
  };
}

/** The CONNACK return code the server answers (0 when accepted). */
export async function connackCode(srv: Pick<TestServer, 'port' | 'mqttPort'>, opts: IClientOptions & { transport?: Transport }): Promise<number> {
  const { transport, ...rest } = opts;
  const client = mqtt.connect(brokerUrl(srv, transport), { reconnectPeriod: 0, connectTimeout: 10_000, ...rest });
  try {
    return await new Promise<number>((resolve, reject) => {
      client.once('connect', (packet) => resolve(packet.returnCode ?? 0));
      client.once('error', (err) => {
        const code = (err as { code?: number }).code;
        if (typeof code === 'number') resolve(code);
        else reject(err);
      });
    });
  } finally {
    client.end(true);
  }
}

/** Resolves when the client's connection closes (rejects after `ms`). */
export function closed(client: MqttClient, ms = 5000): Promise<void> {
  if (!client.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('connection still open')), ms);
    client.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Subscribes and returns the granted QoS per topic (128 = refused), without throwing. */
export function subscribeGranted(client: MqttClient, topics: string[], qos: 0 | 1 | 2 = 1): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(topics, { qos }, (err, granted) => {
      const packet = (err as { packet?: { granted: number[] } } | undefined)?.packet;
      if (packet) return resolve(packet.granted);
      if (err) return reject(err);
      resolve((granted ?? []).map((g) => g.qos));
    });
  });
}

/** Resolves with the first message on `topic` matching `pred` (already received or coming;
 * `index` counts the messages on `topic` from 0); rejects after `ms`. */
export async function waitForMessage(conn: Connected, topic: string, pred: (m: Received, index: number) => boolean, ms = 5000): Promise<Received> {
  const deadline = Date.now() + ms;
  for (;;) {
    const seen = conn.on(topic);
    const hit = seen.find(pred);
    if (hit) return hit;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out waiting on ${topic}; got ${JSON.stringify(seen.map((m) => m.json))}`);
    await conn.waitFor(seen.length + 1, topic, left).catch(() => undefined);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
