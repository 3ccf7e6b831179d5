import type { Duplex } from 'node:stream';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import helmet from 'helmet';
import type { Accounts } from '../core/accounts.js';
import type { Chats } from '../core/chats.js';
import type { MessageEdits } from '../core/message-edits.js';
import type { Receipts } from '../core/receipts.js';
import type { Config } from '../core/config.js';
import { type ErrorCode, errorStatus, isAppError, isOutage } from '../core/errors.js';
import { capSocketsPerAddress, closeLingering, proxyList } from '../core/http-sockets.js';
import type { Metrics } from '../core/metrics.js';
import type { Users } from '../core/users.js';
import { authPlugin } from './auth.js';
import { Presenter } from './present.js';
import { Chat, Envelope, ErrorBody, User } from './schemas.js';
import { healthRoutes } from './routes/health.js';
import { usersRoutes } from './routes/users.js';
import { chatsRoutes } from './routes/chats.js';
import { messagesRoutes } from './routes/messages.js';
import { webRoutes } from './web.js';

/** What the HTTP server is built from: the core services made in server.ts. */
export interface ApiDeps {
  accounts: Accounts;
  chats: Chats;
  users: Users;
  edits: MessageEdits;
  receipts: Receipts;
  metrics: Metrics;
  /** Resolves when the store answers, rejects otherwise (/readyz). */
  ready: () => Promise<void>;
}

/**
 * helmet's headers (nosniff, frame denial, no referrer, HSTS, cross-origin isolation of
 * resources, no X-Powered-By) with a Content-Security-Policy that allows only this origin: its
 * scripts, its styles and inline style (the /docs UI sets it), its images and data: URIs, and
 * connections to itself (REST, and MQTT over WebSocket at /mqtt), workers of its own or from blob:
 * URLs (mqtt.js's timer worker). Not upgrade-insecure-requests:
 * a server without TLS_CERT is reached over plain HTTP, and browsers would then ask it for HTTPS.
 */
const SECURITY_HEADERS = helmet({
  contentSecurityPolicy: {
    useDefaults: false,
    directives: {
      defaultSrc: ["'self'"],
      baseUri: ["'self'"],
      connectSrc: ["'self'"],
      // mqtt.js runs its keepalive timer in a worker it starts from a blob: URL.
      workerSrc: ["'self'", 'blob:'],
      fontSrc: ["'self'", 'data:'],
      formAction: ["'self'"],
      frameAncestors: ["'none'"],
      imgSrc: ["'self'", 'data:'],
      objectSrc: ["'none'"],
      scriptSrc: ["'self'"],
      scriptSrcAttr: ["'none'"],
      styleSrc: ["'self'", "'unsafe-inline'"],
    },
  },
});

/** A chat API request is small: the largest is a group creation with 100 member ids. */
export const BODY_LIMIT = 64 * 1024;

/** From the first byte of a request to its last: a 64 KiB body has 30 s to arrive (at least
 * the header timeout, which Node requires). */
export const REQUEST_TIMEOUT_MS = 30_000;

/** How often Node checks for requests past the header and request timeouts (its default, 30 s,
 * would let a slow client hold its socket up to 30 s past them). */
const TIMEOUT_CHECK_MS = 1000;

/** The HTTP server of a process: health and metrics always; REST and /docs with the api role. */
export async function buildApi(config: Pick<Config, 'tls' | 'limits' | 'trustProxy'>, logger: FastifyBaseLogger, deps: ApiDeps, { rest = true } = {}): Promise<FastifyInstance> {
  const requestTimeout = Math.max(REQUEST_TIMEOUT_MS, config.limits.httpHeadersTimeoutMs);
  // Node's server options: a client that sends its headers too slowly (or none) is answered 408
  // and closed (clientError below); an idle kept-alive connection and an upgraded WebSocket are
  // not concerned.
  const timeouts = { headersTimeout: config.limits.httpHeadersTimeoutMs, requestTimeout, connectionsCheckingInterval: TIMEOUT_CHECK_MS };
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: BODY_LIMIT,
    ...(config.tls ? { https: { ...config.tls, ...timeouts } } : { http: timeouts }),
    requestTimeout, // Fastify sets it on the server after creating it
    // Behind TRUST_PROXY's proxies, req.ip (rate limits, logs) is the client X-Forwarded-For
    // names; elsewhere that header is not believed.
    ...(config.trustProxy.length > 0 ? { trustProxy: config.trustProxy } : {}),
    // Errors Fastify raises before routing (e.g. a path with bad %-encoding) get our shape too.
    frameworkErrors: (err, req, reply) => SECURITY_HEADERS(req.raw, reply.raw, () => sendError(reply, 'invalid_input', err.message)),
    // Requests Node's HTTP parser refuses (malformed framing, headers too large, too slow) never
    // reach Fastify: they are answered here, with the same error body, and the socket closed.
    clientErrorHandler: clientError,
    // Fastify's default `ignoreTrailingSlash: false` and case-sensitive routes are kept.
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies are JSON: their types must be right as sent ("5" is not 5). Path and query strings
  // are text by nature, so they are coerced to the declared types.
  const strict = addFormats.default(new Ajv({ coerceTypes: false, useDefaults: true, allErrors: false, strict: false }));
  const coercing = addFormats.default(new Ajv({ coerceTypes: true, useDefaults: true, allErrors: false, strict: false }));
  for (const schema of [ErrorBody, User, Chat, Envelope]) {
    strict.addSchema(schema);
    coercing.addSchema(schema);
    app.addSchema(schema);
  }
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict.compile(schema) : decimalIntegers(schema, coercing.compile(schema))));

  // A bodiless POST (logout) often still carries Content-Type: application/json; treat the
  // empty body as absent instead of as malformed JSON. Non-empty bodies keep Fastify's parser
  // with its prototype-poisoning protection.
  // The API speaks JSON only: text/plain is not parsed (415), so a JSON text sent with the wrong
  // type is not mistaken for a string body.
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) =>
    body === '' ? done(null, undefined) : json(req, body as string, done),
  );

  // Security headers on every response (SECURITY_HEADERS), also on errors raised before routing.
  app.addHook('onRequest', (req, reply, done) => SECURITY_HEADERS(req.raw, reply.raw, () => done()));

  const refused = deps.metrics.counter('chat_http_sockets_refused_total', 'HTTP sockets closed at once: their address had HTTP_SOCKETS_PER_IP open');
  const sockets = capSocketsPerAddress(app.server, config.limits.httpSocketsPerIp, proxyList(config.trustProxy), () => refused());
  deps.metrics.gauge('chat_http_socket_addresses', 'Client addresses with an HTTP socket open on this node (trusted proxies aside)', () => sockets.addresses());

  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((req, reply) => sendError(reply, 'not_found', `no route ${req.method} ${req.url.split('?')[0]}`));

  const responses = deps.metrics.counter('chat_http_responses_total', 'HTTP responses by status code', ['status']);
  const latency = deps.metrics.histogram('chat_http_request_duration_seconds', 'HTTP requests from arrival to the end of the answer, by method, route and status', ['method', 'route', 'status']);
  app.addHook('onResponse', async (req, reply) => {
    const status = String(reply.statusCode);
    responses({ status });
    // The route's pattern, never the path (unbounded for 404s): one series per route.
    latency(reply.elapsedTime / 1000, { method: req.method, route: req.routeOptions.url ?? 'unmatched', status });
  });
  await app.register(healthRoutes, { metrics: deps.metrics, ready: deps.ready });
  if (!rest) return app;

  await app.register(swagger, {
    openapi: {
      info: { title: 'Chat API', version: '1', description: 'REST side of the chat platform: accounts, chats, members, read pointers, history, edits and search.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => (json.$id as string | undefined) ?? `def-${i}` },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  webRoutes(app);

  const { accounts, chats, users, edits, receipts } = deps;
  const presenter = new Presenter(users, chats);
  await app.register(
    async (api) => {
      await api.register(authPlugin, { accounts });
      await api.register(usersRoutes, { accounts, users, presenter });
      await api.register(chatsRoutes, { chats, receipts, presenter });
      await api.register(messagesRoutes, { chats, edits });
    },
    { prefix: '/api' },
  );
  return app;
}

/**
 * Coercion turns any string JavaScript reads as a number into one ("0x10" is 16, "1e1" is 10,
 * " 7" is 7). Path and query integers must be plain decimal digits, so those are refused
 * before coercion.
 */
function decimalIntegers(schema: unknown, validate: ValidateFunction): ValidateFunction | ((data: unknown) => boolean | { error: Error }) {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> }).properties ?? {};
  const integers = Object.keys(properties).filter((name) => properties[name]!.type === 'integer');
  if (integers.length === 0) return validate;
  const check = (data: unknown) => {
    for (const name of integers) {
      const value = (data as Record<string, unknown> | null)?.[name];
      if (typeof value === 'string' && !/^-?(0|[1-9][0-9]*)$/.test(value)) {
        return { error: new Error(`${name} must be a whole number written in decimal digits`) };
      }
    }
    const ok = validate(data);
    check.errors = validate.errors; // Fastify reads a failed validator's errors off the function
    return ok;
  };
  check.errors = null as ValidateFunction['errors'];
  return check;
}

/** The answer to a request that Node's HTTP parser refused, written on the socket itself. */
function clientError(err: NodeJS.ErrnoException, socket: Duplex) {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, reason, message] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout', 'the request took too long to arrive']
      : err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large', 'the request headers are too large']
        : [400, 'Bad Request', `malformed HTTP request${err.code ? ` (${err.code})` : ''}`];
  // A HEAD request's answer has no body, even when its length is given.
  const head = (err as { rawPacket?: Buffer }).rawPacket?.subarray(0, 5).toString('latin1') === 'HEAD ';
  const body = JSON.stringify({ error: { code: 'invalid_input', message } });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${head ? '' : body}`);
  }
  socket.destroy();
}

function sendError(reply: FastifyReply, code: ErrorCode, message: string, status?: number) {
  // Refused before its body was read (too large, wrong type): the rest of the body would be
  // parsed as the next request on a kept-alive connection, so this answer closes it, in stages,
  // so that a client still writing that body reads the answer.
  if (!reply.request.raw.complete) {
    reply.header('connection', 'close');
    closeLingering(reply.request.raw);
  }
  return reply.code(status ?? errorStatus[code]).send({ error: { code, message } });
}

/** Maps every failure to the one error shape. Only a fault of ours answers 500; an unreachable
 * backing service answers 503 with Retry-After. */
function errorHandler(this: FastifyInstance, err: FastifyError, req: FastifyRequest, reply: FastifyReply) {
  if (isAppError(err)) {
    if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter));
    return sendError(reply, err.code, err.message);
  }
  if (err.validation) return sendError(reply, 'invalid_input', err.message);
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    const code: ErrorCode =
      status === 413 ? 'payload_too_large' : status === 415 ? 'unsupported_media_type' : status === 429 ? 'rate_limited' : 'invalid_input';
    return sendError(reply, code, err.message, code === 'invalid_input' ? 400 : status);
  }
  if (isOutage(err)) {
    req.log.error({ err }, 'request refused: a backing service is unavailable');
    reply.header('retry-after', '5');
    return sendError(reply, 'unavailable', 'a service this server depends on is unavailable; retry shortly');
  }
  req.log.error({ err }, 'request failed');
  return sendError(reply, 'internal_error', 'internal error', 500);
}
