import type { Aedes, Client } from 'aedes';
import type { FastifyBaseLogger } from 'fastify';
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import { type AddressInfo, type Server as NetServer, type Socket, createServer as createNetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { Accounts } from '../core/accounts.js';
import type { ControlBus } from '../core/bus.js';
import { throttledLog } from '../core/log-throttle.js';
import type { Limits } from '../core/config.js';
import type { Membership } from '../core/membership.js';
import type { Metrics } from '../core/metrics.js';
import type { PresenceRegistry } from '../core/presence.js';
import { LocalRateLimiter, type RateLimiter } from '../core/rate-limit.js';
import type { Receipts } from '../core/receipts.js';
import type { Sender } from '../core/sender.js';
import type { Store } from '../core/store/store.js';
import { authenticate, preConnect } from './authenticate.js';
import { authorizeForward } from './authorize-forward.js';
import { authorizePublish } from './authorize-publish.js';
import { authorizeSubscribe, capRequestedQos } from './authorize-subscribe.js';
import type { Connections } from './connections.js';
import type { BrokerContext } from './context.js';
import { coalesceWrites } from './coalesce-writes.js';
import { boundOutgoingQueue } from './outgoing-queue.js';
import { guardPacketSize } from './packet-guard.js';
import { SharedChats } from './shared-chats.js';
import { SubscriptionBudget } from './subscriptions.js';
import { disconnectAll, onClientGone, onClientReady, publishPresence } from './presence.js';
import { topics } from './topics.js';

export interface BrokerDeps {
  /** This node's Aedes (broker/aedes.ts), not yet reachable by any client. */
  aedes: Aedes;
  /** This node's connections (also asked by the membership cache, so built before it). */
  connections: Connections;
  typingLimiter: RateLimiter;
  accounts: Accounts;
  store: Store;
  membership: Membership;
  sender: Sender;
  receipts: Receipts;
  presence: PresenceRegistry;
  bus: ControlBus;
  metrics: Metrics;
  limits: Limits;
  log: FastifyBaseLogger;
  tls?: { cert: Buffer; key: Buffer } | undefined;
}

/**
 * The embedded MQTT broker: Aedes with the chat's authentication, ACL, message pipeline and
 * presence, reachable over TCP (MQTT_PORT, TLS when configured) and WebSocket (/mqtt on the
 * HTTP server).
 */
export class ChatBroker {
  private tcp: NetServer | null = null;
  private readonly wss: WebSocketServer;
  private readonly connectLimiter: LocalRateLimiter;
  private readonly unsubscribeBus: () => void;
  private readonly sweeper: NodeJS.Timeout | undefined;
  private readonly countSlowClosed: () => void;
  /** Lines any client can cause: at most one per 10 s each, the rest counted in it. */
  private readonly logOversize: (fields: { ip: string | undefined; announced: number; max: number }) => void;
  private readonly logSlowClosed: (fields: { ip: string | undefined; clientId: string }) => void;

  readonly ctx: BrokerContext;
  private readonly tlsOptions: { cert: Buffer; key: Buffer } | undefined;
  /** Set once close() begins: no new connections are accepted. */
  private closing = false;

  /** Installs the chat's handlers on `deps.aedes`; clients reach it once a listener is up. */
  constructor(deps: BrokerDeps) {
    const { aedes, limits, bus, metrics } = deps;
    const ctx: BrokerContext = Object.freeze({
      aedes,
      accounts: deps.accounts,
      store: deps.store,
      membership: deps.membership,
      sender: deps.sender,
      receipts: deps.receipts,
      presence: deps.presence,
      connections: deps.connections,
      subscriptions: new SubscriptionBudget(limits.maxSubscriptionsPerConnection, limits.maxSubscriptionsPerUser),
      sharedChats: new SharedChats(deps.store, deps.membership, bus, (err, what) => deps.log.error({ err }, what)),
      typingLimiter: deps.typingLimiter,
      limits,
      log: deps.log,
    });
    this.ctx = ctx;
    this.tlsOptions = deps.tls;
    aedes.preConnect = preConnect;
    aedes.authenticate = authenticate(ctx);
    aedes.authorizeSubscribe = authorizeSubscribe(ctx);
    aedes.authorizePublish = authorizePublish(ctx);
    aedes.authorizeForward = authorizeForward(ctx);
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      // mqtt.js and browsers send one packet per frame; the packet guard checks packets exactly.
      maxPayload: limits.maxPacketBytes,
      handleProtocols: (offered) => (offered.has('mqtt') ? 'mqtt' : offered.has('mqttv3.1') ? 'mqttv3.1' : false),
    });
    this.connectLimiter = new LocalRateLimiter(limits.connectBurstPerIp, limits.connectRatePerIp);
    const slowClosed = metrics.counter('chat_mqtt_slow_closed_total', 'MQTT connections closed because the client did not read what was sent to it');
    this.countSlowClosed = () => slowClosed();
    const oversizeClosed = metrics.counter('chat_mqtt_oversize_closed_total', 'MQTT connections closed for a packet over MAX_PACKET_BYTES');
    const warnOversize = throttledLog((fields, message) => ctx.log.warn(fields, message), 'mqtt packet too large: connection closed');
    this.logOversize = (fields) => {
      oversizeClosed();
      warnOversize(fields);
    };
    metrics.gauge('chat_mqtt_subscriptions', 'Topic filters held by the MQTT connections of this node', () => ctx.subscriptions.held);
    metrics.gauge('chat_mqtt_subscribed_users', 'Users with a subscription budget on this node (one per connected user)', () => ctx.subscriptions.users);
    metrics.gauge('chat_mqtt_chat_lists', 'Users whose chat lists this node holds for presence (one per connected user)', () => ctx.sharedChats.users);
    this.logSlowClosed = throttledLog((fields, message) => ctx.log.warn(fields, message), 'mqtt client does not read what is sent to it: connection closed');
    aedes.on('clientReady', (client) => onClientReady(ctx, client));
    aedes.on('clientDisconnect', (client) => onClientGone(ctx, client));
    // Also after a server-side unsubscribe (a removed member); a closing connection gives its
    // whole budget back in onClientGone.
    aedes.on('unsubscribe', (filters, client) => {
      for (const filter of filters) ctx.subscriptions.give(client, filter);
    });
    aedes.on('clientError', (client, err) => ctx.log.debug({ clientId: client.id, err: err.message }, 'mqtt client error'));
    aedes.on('connectionError', (_client, err) => ctx.log.debug({ err: err.message }, 'mqtt connection error'));
    // Aedes emits 'error' for failures outside any client (e.g. publishing wills); an
    // EventEmitter without a listener would turn them into a process crash.
    (aedes as unknown as NodeJS.EventEmitter).on('error', (err: Error) => ctx.log.error({ err }, 'mqtt broker error'));

    this.unsubscribeBus = bus.subscribe((event) => {
      if (event.type === 'session.revoked') {
        for (const client of ctx.connections.ofSession(event.sessionId)) client.close();
      } else if (event.type === 'member.removed') {
        // End the removed member's live subscriptions to that chat (authorizeForward already
        // stopped delivery the moment the membership cache changed).
        const unsubscriptions = [topics.messages(event.chatId), topics.typing(event.chatId), topics.receipts(event.chatId)];
        for (const client of ctx.connections.ofUser(event.userId)) client.unsubscribe({ unsubscriptions } as never, () => {});
      }
    });

    // A shared registry outlives its nodes: take the connections of dead nodes out and publish
    // offline for the users left with none (every node sweeps; each user is reported once).
    const { presence } = ctx;
    if (presence.sweep) {
      this.sweeper = setInterval(() => {
        presence.sweep!().then(
          (offline) => offline.forEach((userId) => void publishPresence(ctx, userId, 'offline')),
          (err: unknown) => ctx.log.warn({ err }, 'presence sweep failed'),
        );
      }, 5000).unref();
    }
  }

  /** MQTT over TCP (TLS when configured). Resolves with the bound port. */
  listenTcp(host: string, port: number): Promise<number> {
    const onSocket = (socket: Socket) => {
      socket.setNoDelay(true);
      this.accept(socket, socket.remoteAddress);
    };
    const server = this.tlsOptions ? createTlsServer(this.tlsOptions, onSocket) : createNetServer(onSocket);
    this.tcp = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        server.on('error', (err) => this.ctx.log.error({ err }, 'mqtt listener error'));
        resolve((server.address() as AddressInfo).port);
      });
    });
  }

  /** MQTT over WebSocket at /mqtt on the HTTP(S) server; other upgrade paths get 404. */
  attachWebSocket(server: HttpServer) {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/mqtt' || this.closing) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      socket.on('error', () => socket.destroy());
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const stream = createWebSocketStream(ws);
        stream.on('error', () => stream.destroy());
        this.accept(stream, req.socket.remoteAddress, req);
      });
    });
  }

  private accept(stream: Duplex, ip: string | undefined, req?: IncomingMessage) {
    if (this.closing || !this.connectLimiter.takeNow(ip ?? 'unknown')) {
      stream.destroy();
      return;
    }
    const { limits } = this.ctx;
    coalesceWrites(stream);
    const client = this.ctx.aedes.handle(stream, req);
    // Aedes emits 'clientDisconnect' only for a registered client: one whose socket closes while
    // its connect steps run (after authentication) would keep what it was given here.
    stream.once('close', () => onClientGone(this.ctx, client));
    guardPacketSize(client, limits.maxPacketBytes, (announced) => this.logOversize({ ip, announced, max: limits.maxPacketBytes }));
    capRequestedQos(client);
    const bound = { bytes: limits.outgoingQueueBytes, packets: limits.outgoingQueuePackets, graceMs: limits.outgoingQueueGraceMs };
    boundOutgoingQueue(client, bound, (queued) => {
      this.countSlowClosed();
      this.logSlowClosed({ ip, clientId: client.id, ...queued });
    });
  }

  /** Local clients, for tests and metrics. */
  clientCount(): number {
    return this.ctx.aedes.connectedClients;
  }

  /** Graceful shutdown: stop accepting, publish every local user offline, close connections. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.sweeper);
    const tcpClosed = new Promise<void>((resolve) => (this.tcp ? this.tcp.close(() => resolve()) : resolve()));
    await disconnectAll(this.ctx);
    await new Promise<void>((resolve) => this.ctx.aedes.close(() => resolve()));
    this.wss.close();
    this.unsubscribeBus();
    this.ctx.sharedChats.stop();
    await tcpClosed;
  }
}

export type { Client };
