import type { Client } from 'aedes';
import type { BrokerContext } from './context.js';
import { topics } from './topics.js';

/**
 * Presence: a user is online while at least one of its connections is up. Transitions are
 * published retained on `users/{userId}/presence`, so a late subscriber gets the current
 * value, and recorded as lastSeenAt in the store.
 */
export function publishPresence(ctx: BrokerContext, userId: string, status: 'online' | 'offline'): Promise<void> {
  const at = Date.now();
  const payload = Buffer.from(JSON.stringify({ userId, status, lastSeenAt: new Date(at).toISOString() }));
  const stored = ctx.store.setLastSeen(userId, at).catch((err: unknown) => ctx.log.warn({ err, userId }, 'could not record lastSeenAt'));
  const published = new Promise<void>((resolve) =>
    ctx.aedes.publish({ cmd: 'publish', topic: topics.presence(userId), payload, qos: 1, retain: true, dup: false }, () => resolve()),
  );
  return Promise.all([stored, published]).then(() => undefined);
}

/**
 * 'clientReady': the connection counts from now on. When the socket closes during Aedes' last
 * connect steps, 'clientDisconnect' comes first and 'clientReady' after it; such a client is
 * already closed and must not be counted, or it would stay online (and hold a connection slot)
 * for ever.
 */
export function onClientReady(ctx: BrokerContext, client: Client) {
  const conn = ctx.connections.get(client);
  if (!conn || client.closed || !ctx.connections.add(client, conn)) return;
  ctx.presence.connected(conn.user.id).then(
    async (cameOnline) => {
      if (cameOnline) await publishPresence(ctx, conn.user.id, 'online');
    },
    (err: unknown) => ctx.log.error({ err, userId: conn.user.id }, 'presence registry failed'),
  );
}

/** 'clientDisconnect' (or the socket's close, whichever comes first): clean DISCONNECT, dropped
 * socket, takeover, kick or shutdown alike. What the connection held comes back, also when it
 * went before it was ready. Idempotent. */
export function onClientGone(ctx: BrokerContext, client: Client) {
  release(ctx, client);
  const conn = ctx.connections.remove(client);
  if (!conn) return;
  ctx.presence.disconnected(conn.user.id).then(
    async (wentOffline) => {
      if (wentOffline) await publishPresence(ctx, conn.user.id, 'offline');
    },
    (err: unknown) => ctx.log.error({ err, userId: conn.user.id }, 'presence registry failed'),
  );
}

/**
 * Graceful shutdown: every local connection is counted out before the broker closes, and the
 * users left with no connection anywhere are published offline. (Aedes' own close would not
 * deliver their wills.)
 */
export async function disconnectAll(ctx: BrokerContext): Promise<void> {
  const clients = ctx.connections.all();
  await Promise.all(
    clients.map(async (client) => {
      const conn = ctx.connections.remove(client);
      if (conn && (await ctx.presence.disconnected(conn.user.id))) await publishPresence(ctx, conn.user.id, 'offline');
    }),
  );
  // Only now: those offline values went to the co-members found by their chat lists.
  for (const client of clients) release(ctx, client);
}

/** The connection's subscription budget and its share of its user's chat list. */
function release(ctx: BrokerContext, client: Client) {
  ctx.subscriptions.close(client);
  ctx.sharedChats.close(client);
}
