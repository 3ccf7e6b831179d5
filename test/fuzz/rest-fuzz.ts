import { Agent, request } from 'node:http';
import { issueToken } from '../../core/tokens.js';
import { TEST_SECRET } from '../helpers/server.js';
import { caseRng } from './mqtt-fuzz.js';

/**
 * A seeded REST fuzzer: requests built from the server's own OpenAPI document (every route,
 * its path, query and body schema), then mutated: wrong types, sizes, Unicode, prototype keys,
 * operator objects, odd path parameters and %-encodings, content types, and Authorization
 * headers (missing, malformed, forged JWTs). Request `i` of seed `s` is built from its own
 * generator, so any one replays alone. The oracle: never a 5xx, and every error answered
 * with the one error body.
 */

type Rand = () => number;
type Schema = { type?: string | string[]; properties?: Record<string, Schema>; required?: string[]; items?: Schema; enum?: unknown[];
  anyOf?: Schema[]; pattern?: string; minimum?: number; maximum?: number; minLength?: number; maxLength?: number; format?: string };

export interface Route {
  method: string;
  path: string;
  query: Record<string, Schema>;
  body: Schema | null;
}

/** Real things to put in requests, so that many get past validation. */
export interface Known {
  userIds: string[];
  chatIds: string[];
  chatNumbers: number[];
  usernames: string[];
  /** Valid tokens (one per user; logout revokes them one by one). */
  tokens: string[];
  /** A token's claims, for forging. */
  claims: { sub: string; sid: string };
}

export interface RestResult {
  index: number;
  method: string;
  path: string;
  mutations: string[];
  status: number;
  /** Why the answer breaks the oracle, if it does. */
  problem: string | null;
}

const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, items: readonly T[]): T => items[int(r, items.length)]!;

/** The routes of an OpenAPI document. */
export function routesOf(doc: { paths: Record<string, Record<string, { parameters?: { in: string; name: string; schema: Schema }[]; requestBody?: { content: Record<string, { schema: Schema }> } }>> }): Route[] {
  const routes: Route[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const query: Record<string, Schema> = {};
      for (const p of op.parameters ?? []) if (p.in === 'query') query[p.name] = p.schema;
      routes.push({ method: method.toUpperCase(), path, query, body: op.requestBody?.content['application/json']?.schema ?? null });
    }
  }
  return routes;
}

const WEIRD_STRINGS = [
  '', ' ', 'a'.repeat(70_000), '\u0000', '\ud800', '\udfff\ud800', '\u202eevil', '🙂'.repeat(40), 'e\u0301'.repeat(30), '𝔘𝔫𝔦',
  "' OR 1=1 --", '"; DROP TABLE messages; --', '%', '_', '*', '\\', '../../etc/passwd', '<script>alert(1)</script>', '${7*7}',
  '{{7*7}}', 'null', 'true', '0', '-1', '1e309', 'NaN', '__proto__', 'constructor', '안녕', '東京', 'ÉCOLE',
];
const WEIRD_VALUES: unknown[] = [
  null, true, false, 0, -1, 1.5, 1e309 /* Infinity: stringifies to null */, 2 ** 53 + 1, -(2 ** 31), [], [null], {}, { $gt: '' }, { $ne: null },
  { $where: 'sleep(1000)' }, { __proto__: { admin: true } }, [[[[[]]]]], 'x'.repeat(5000),
];

function valueFor(r: Rand, name: string, s: Schema, known: Known): unknown {
  if (s.anyOf) return valueFor(r, name, pick(r, s.anyOf), known);
  if (s.enum) return pick(r, s.enum);
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  if (type === 'array') return Array.from({ length: int(r, 4) }, () => valueFor(r, name, s.items ?? {}, known));
  if (type === 'object') return bodyFor(r, s, known);
  if (type === 'integer' || type === 'number') {
    if (/number|after|before/i.test(name) && known.chatNumbers.length) return r() < 0.5 ? pick(r, known.chatNumbers) : 1 + int(r, 50);
    return Math.max(s.minimum ?? 0, Math.min(s.maximum ?? 100, int(r, 120)));
  }
  if (type === 'boolean') return r() < 0.5;
  if (s.pattern?.includes('[0-9a-f]{8}')) return /chat/i.test(name) ? pick(r, known.chatIds) : pick(r, known.userIds);
  if (/username/.test(name)) return pick(r, known.usernames);
  if (/password/.test(name)) return pick(r, ['seeded-password', 'wrong-password', 'x']);
  if (name === 'visibility') return pick(r, ['public', 'private']);
  return pick(r, ['fuzz', 'a', 'seed', 'Group name', ...WEIRD_STRINGS.slice(0, 3)]).slice(0, s.maxLength ?? 64);
}

function bodyFor(r: Rand, s: Schema, known: Known): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, prop] of Object.entries(s.properties ?? {})) {
    if (s.required?.includes(name) || r() < 0.6) out[name] = valueFor(r, name, prop, known);
  }
  return out;
}

function pathFor(r: Rand, template: string, known: Known, mutations: string[]): string {
  return template.replace(/\{(\w+)\}/g, (_m, name: string) => {
    if (r() < 0.25) {
      const odd = pick(r, ['-1', '0', '1.5', '0x10', '1e3', '99999999999999999999999', '%2e%2e%2f', '..%2f..%2fetc%2fpasswd', '%00', '%zz', '%E0%A4%A',
        '%F0%9F%99%82', 'a%20b', "'%20OR%201=1", '__proto__', 'constructor', '01900000-0000-7000-8000-000000000000', '%20', '%', '+1', '007']);
      mutations.push(`path ${name}=${odd}`);
      return odd;
    }
    if (name === 'number') return String(pick(r, known.chatNumbers));
    if (name === 'chatId') return pick(r, known.chatIds);
    return pick(r, known.userIds);
  });
}

function queryFor(r: Rand, route: Route, known: Known, mutations: string[]): string {
  const parts: string[] = [];
  for (const [name, schema] of Object.entries(route.query)) {
    if (r() < 0.5) continue;
    let value = String(valueFor(r, name, schema, known));
    if (r() < 0.3) {
      value = pick(r, ['-5', '1.5', '0x1f', '1e2', '', 'abc', '99999999999999999999', '%00', 'null', '[]', '%F0%9F%99%82', ' 7', '7 ', '+7']);
      mutations.push(`query ${name}=${value}`);
    }
    parts.push(`${name}=${encodeURIComponent(value).replace(/%25([0-9A-F]{2})/g, '%$1')}`);
    if (r() < 0.05) {
      parts.push(`${name}=1`);
      mutations.push(`query ${name} twice`);
    }
  }
  if (r() < 0.1) {
    parts.push(pick(r, ['unknown=1', '__proto__[x]=1', 'constructor[prototype]=1', 'limit[]=5', '%zz=1']));
    mutations.push(`query ${parts.at(-1)}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

function mutateBody(r: Rand, body: Record<string, unknown>, mutations: string[]): string {
  const keys = Object.keys(body);
  switch (int(r, 12)) {
    case 0:
      if (keys.length) {
        const k = pick(r, keys);
        body[k] = pick(r, WEIRD_VALUES);
        mutations.push(`body ${k}: weird value`);
      }
      break;
    case 1:
      if (keys.length) {
        const k = pick(r, keys);
        body[k] = pick(r, WEIRD_STRINGS);
        mutations.push(`body ${k}: weird string`);
      }
      break;
    case 2:
      if (keys.length) {
        const k = pick(r, keys);
        delete body[k];
        mutations.push(`body without ${k}`);
      }
      break;
    case 3:
      mutations.push('body with __proto__');
      return JSON.stringify(body).replace(/^\{/, '{"__proto__":{"isAdmin":true},');
    case 4:
      mutations.push('body with constructor.prototype');
      return JSON.stringify(body).replace(/^\{/, '{"constructor":{"prototype":{"isAdmin":true}},');
    case 5:
      mutations.push('body: extra property');
      body.extra = 1;
      break;
    case 6:
      mutations.push('body: not an object');
      return pick(r, ['[]', '"text"', '42', 'null', 'true', '[{}]']);
    case 7:
      mutations.push('body: truncated JSON');
      return JSON.stringify(body).slice(0, Math.max(1, int(r, JSON.stringify(body).length)));
    case 8:
      mutations.push('body: 1,000-deep nesting');
      return `${'['.repeat(1000)}${']'.repeat(1000)}`;
    case 9:
      mutations.push('body: duplicate keys');
      return JSON.stringify(body).replace(/^\{/, '{"type":"group","type":"direct",');
    default:
      break;
  }
  return JSON.stringify(body);
}

function base64url(o: unknown) {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

function authorizationFor(r: Rand, known: Known, mutations: string[]): string | undefined {
  const token = pick(r, known.tokens);
  const now = Math.floor(Date.now() / 1000);
  const roll = r();
  if (roll < 0.7) return `Bearer ${token}`;
  const [header, payload] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  // Another user's id: the token's own would leave the payload as it was (a valid token).
  const others = known.userIds.filter((id) => id !== claims.sub);
  const otherSub = others.length ? pick(r, others) : `${claims.sub}x`;
  const forged: Array<[string, string | undefined]> = [
    ['no Authorization', undefined],
    ['Bearer without a token', 'Bearer '],
    ['Basic', `Basic ${Buffer.from('user:pass').toString('base64')}`],
    ['garbage token', `Bearer ${'x'.repeat(int(r, 300))}`],
    ['8 KB header', `Bearer ${'a'.repeat(8000)}`],
    ['alg none', `Bearer ${base64url({ alg: 'none', typ: 'JWT' })}.${payload}.`],
    ['signed with an empty secret', `Bearer ${issueToken('', claims)}`],
    ['signed with another secret', `Bearer ${issueToken('another-secret-that-is-long-enough-0123456789', claims)}`],
    ['edited payload, old signature', `Bearer ${header}.${base64url({ ...claims, sub: otherSub })}.${token.split('.')[2]}`],
    ['expired', `Bearer ${issueToken(TEST_SECRET, { ...claims, iat: now - 7200, exp: now - 3600 })}`],
    ['unknown session', `Bearer ${issueToken(TEST_SECRET, { ...claims, sid: '01900000-0000-7000-8000-000000000000' })}`],
    ['claims of the wrong types', `Bearer ${issueToken(TEST_SECRET, { ...claims, sub: 42, exp: 'never' } as never)}`],
    ['header alg HS512', `Bearer ${base64url({ alg: 'HS512', typ: 'JWT' })}.${payload}.${token.split('.')[2]}`],
  ];
  const [what, value] = pick(r, forged);
  mutations.push(`auth: ${what}`);
  return value;
}

export interface BuiltRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string | undefined;
  mutations: string[];
}

export function buildRequest(seed: number, index: number, routes: Route[], known: Known): BuiltRequest {
  const r = caseRng(seed ^ 0x5eed, index);
  const route = pick(r, routes);
  const mutations: string[] = [];
  const method = r() < 0.03 ? pick(r, ['PUT', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE']) : route.method;
  if (method !== route.method) mutations.push(`method ${method}`);
  const path = pathFor(r, route.path, known, mutations) + queryFor(r, route, known, mutations);
  const headers: Record<string, string> = {};
  const auth = authorizationFor(r, known, mutations);
  if (auth !== undefined) headers.authorization = auth;
  let body: string | undefined;
  if (route.body || r() < 0.1) {
    const b = route.body ? bodyFor(r, route.body, known) : {};
    body = r() < 0.7 ? mutateBody(r, b, mutations) : JSON.stringify(b);
    const type = r() < 0.85 ? 'application/json' : pick(r, ['text/plain', '', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
      'application/json; charset=latin1', 'application/JSON', 'application/xml']);
    if (type !== 'application/json') mutations.push(`content-type "${type}"`);
    if (type) headers['content-type'] = type;
    // Node's client frames a GET's body with nothing (no length, not chunked): say its length.
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  return { method, path, headers, body, mutations };
}

/** Sends request `index`; checks the oracle. */
export function sendRequest(base: { host: string; port: number; agent: Agent }, seed: number, index: number, routes: Route[], known: Known): Promise<RestResult> {
  const req = buildRequest(seed, index, routes, known);
  return new Promise((resolve) => {
    const done = (status: number, problem: string | null) => resolve({ index, method: req.method, path: req.path, mutations: req.mutations, status, problem });
    let sent: ReturnType<typeof request>;
    try {
      sent = request({ host: base.host, port: base.port, method: req.method, path: req.path, headers: req.headers, agent: base.agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const text = Buffer.concat(chunks).toString('utf8');
        if (status >= 500) return done(status, `answered ${status}: ${text.slice(0, 300)}`);
        const forged = req.mutations.find((m) => m.startsWith('auth: '));
        const open = !req.path.startsWith('/api/') || /^\/api\/users(\/login)?(\?|$)/.test(req.path);
        if (forged && !open && status < 300) return done(status, `accepted with ${forged.slice(6)}: ${status}`);
        if (status >= 400 && req.method !== 'HEAD') {
          try {
            const error = JSON.parse(text).error;
            if (typeof error?.code !== 'string' || typeof error?.message !== 'string' || error.message === '') return done(status, `error body without code and message: ${text.slice(0, 300)}`);
          } catch {
            return done(status, `error body is not JSON: ${text.slice(0, 300)}`);
          }
        }
        done(status, null);
      });
      res.on('error', (err) => done(0, `response failed: ${err.message}`));
      });
    } catch {
      return done(-1, null); // Node's client refuses to send it (a header or path no server would get)
    }
    sent.on('error', (err) => done(0, `request failed: ${err.message}`));
    sent.end(req.body);
  });
}
