import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { request as httpRequest } from 'node:http';
import { issueToken, type TokenClaims } from '../core/tokens.js';
import type { UserRecord } from '../core/store/store.js';
import { sameBitsOtherText, startTestServer, TEST_SECRET, type HttpResult, type Json, type TestServer, type UserDto } from './helpers/server.js';

/**
 * Specification: every kind of bad REST input is answered with a 4xx and the one error body
 * `{"error":{"code":"<snake_case>","message":"<non-empty>"}}`; never a 5xx, never a crash, and a
 * refused request leaves no partial state behind.
 *
 * Each table row is one request (built lazily, since ids exist only once the server runs) and
 * the status and code it must get.
 */

// ---------------------------------------------------------------------------------------------
// fixtures

/** Well-formed (lower-case UUIDv7 shape) but nobody has it. */
const UNKNOWN_ID = '01900000-0000-7000-8000-000000000000';
/** Strings that are not ids, as they would appear in a path (already URL-safe) or in a body. */
const MALFORMED_IDS: Array<[label: string, value: string]> = [
  ['plain word', 'abc'],
  ['a number', '12345'],
  ['UUID without dashes', '019000000000700080000000000000000'],
  ['UUID with an extra character', `${UNKNOWN_ID}0`],
  ['UUID one character short', UNKNOWN_ID.slice(0, -1)],
  ['upper-case UUID', UNKNOWN_ID.toUpperCase().replace('-7000-', '-7ABC-')],
  ['UUID with a non-hex digit', UNKNOWN_ID.replace(/^0/, 'g')],
  ['SQL injection', "' OR 1=1 --"],
];

interface Session { user: UserDto; token: string }
interface Ctx {
  me: Session;
  other: Session;
  seeded: UserRecord[];
  /** me owns it; members: me + seeded[0]. */
  myGroup: Json;
  /** me owns it; used as the target of mutating requests sent with bad tokens. */
  authTarget: Json;
  /** me <-> seeded[3]. */
  myDirect: Json;
  /** other owns them; me is not a member. */
  othersPrivate: Json;
  othersPublic: Json;
  othersDirect: Json;
}
const ctx = {} as Ctx;
let srv: TestServer;

/** Users for the search table: display names and usernames full of regex/SQL/LIKE metacharacters,
 * and look-alikes that a wildcard or regex match would wrongly return. */
const SEARCH_FIXTURES = [
  { username: 'dot.tom', displayName: 'Alpha A.B Beta' },
  { username: 'plainaxb', displayName: 'AxB plain' }, // matched by regex `a.b` and LIKE `a_b`
  { username: 'snake_sam', displayName: 'Snake a_b Case' },
  { username: 'percent', displayName: 'Fully 100% Sure' },
  { username: 'thousand', displayName: 'Just 1000 Items' }, // matched by LIKE `%100%%`
  { username: 'brackets', displayName: 'Set [x] (y) {z}' },
  { username: 'backslash', displayName: 'Back\\slash' },
  { username: 'sqlquote', displayName: "it's ' OR 1=1 -- ok" },
  { username: 'anchors', displayName: 'Caret ^ and $ dollar' },
  { username: 'dotstar', displayName: 'Glob .* star+?|' },
];

beforeAll(async () => {
  srv = await startTestServer();
  const [me, other, seeded] = await Promise.all([
    srv.signUp('me_user', 'Me Myself'),
    srv.signUp('other_user', 'Somebody Else'),
    srv.seedUsers(130, 'seed'),
    ...SEARCH_FIXTURES.map(async (f) => {
      const res = await srv.http.post('/api/users', { ...f, password: 'correct horse battery' });
      if (res.status !== 201) throw new Error(`fixture ${f.username}: ${res.status} ${JSON.stringify(res.body)}`);
    }),
  ]);
  ctx.me = me;
  ctx.other = other;
  ctx.seeded = seeded;
  const create = async (s: Session, body: unknown) => {
    const res = await srv.http.post('/api/chats', body, s.token);
    if (res.status !== 201) throw new Error(`create chat: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.chat as Json;
  };
  ctx.myGroup = await create(me, { type: 'group', name: 'My group', memberIds: [seeded[0]!.id] });
  ctx.authTarget = await create(me, { type: 'group', name: 'Auth target', memberIds: [seeded[1]!.id] });
  ctx.myDirect = await create(me, { type: 'direct', memberIds: [seeded[3]!.id] });
  ctx.othersPrivate = await create(other, { type: 'group', name: 'Secret', memberIds: [seeded[2]!.id] });
  ctx.othersPublic = await create(other, { type: 'group', name: 'Open', memberIds: [seeded[2]!.id], visibility: 'public' });
  ctx.othersDirect = await create(other, { type: 'direct', memberIds: [seeded[2]!.id] });
});

afterAll(async () => {
  await srv?.stop();
});

// ---------------------------------------------------------------------------------------------
// helpers

type Method = 'GET' | 'POST' | 'DELETE';
interface Req {
  method: Method;
  path: string;
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
  /** Default: the caller `me`'s token. null: no Authorization header. */
  token?: string | null;
}
interface Row {
  name: string;
  req: () => Req;
  status: number;
  code: string;
}

function send(r: Req): Promise<HttpResult> {
  const token = r.token === undefined ? ctx.me.token : r.token ?? undefined;
  return srv.http.request(r.method, r.path, { body: r.body, raw: r.raw, token, headers: r.headers });
}

/** The one error shape, with the status that belongs to the code. */
function expectError(res: { status: number; body: Json; headers?: Headers }, status: number, code: string) {
  const seen = `${res.status} ${typeof res.body === 'string' ? res.body : JSON.stringify(res.body)}`;
  expect(res.status, seen).toBeLessThan(500);
  expect(res.status, seen).toBe(status);
  expect(res.body, seen).toEqual({ error: { code, message: expect.any(String) } });
  expect(res.body.error.code).toMatch(/^[a-z]+(_[a-z]+)*$/);
  expect(res.body.error.message.trim()).not.toBe('');
  if (res.headers) expect(res.headers.get('content-type') ?? '').toMatch(/^application\/json/);
}

function table(rows: Row[]) {
  for (const row of rows) {
    it(`${row.name} → ${row.status} ${row.code}`, async () => {
      expectError(await send(row.req()), row.status, row.code);
    });
  }
}

const post = (path: string, body: unknown, token?: string | null): Req => ({ method: 'POST', path, body, token });
const get = (path: string, token?: string | null): Req => ({ method: 'GET', path, token });
const del = (path: string, token?: string | null): Req => ({ method: 'DELETE', path, token });
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as TokenClaims;
const ids = (users: readonly { id: string }[]) => users.map((u) => u.id);

/** POST a body over node:http (fetch cannot send a body without a content length or with a
 * chosen framing); the server may close the connection while we still write, so a write error
 * is ignored once the response has arrived. */
function rawPost(path: string, body: Buffer, chunked: boolean): Promise<{ status: number; body: Json }> {
  return new Promise((resolve, reject) => {
    const url = new URL(srv.url + path);
    const headers: Record<string, string | number> = { 'content-type': 'application/json' };
    if (chunked) headers['transfer-encoding'] = 'chunked';
    else headers['content-length'] = body.length;
    const req = httpRequest({ host: url.hostname, port: url.port, method: 'POST', path: url.pathname, headers });
    let responded = false;
    req.on('response', (res) => {
      responded = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: Json = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          /* keep the text: the assertion shows it */
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on('error', reject);
    });
    req.on('error', (err) => {
      if (!responded) reject(new Error(`connection failed before any response: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    });
    if (chunked) {
      for (let i = 0; i < body.length; i += 64 * 1024) req.write(body.subarray(i, i + 64 * 1024));
      req.end();
    } else {
      req.end(body);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// accounts

describe('POST /api/users (register) refuses bad input', () => {
  const pw = 'correct horse battery';
  const reg = (body: unknown) => () => post('/api/users', body, null);
  table([
    // wrong types
    { name: 'username is a number', req: reg({ username: 123, password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username is a boolean', req: reg({ username: true, password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username is an array', req: reg({ username: ['abc'], password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username is null', req: reg({ username: null, password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username is an operator object {"$gt":""}', req: reg({ username: { $gt: '' }, password: pw }), status: 400, code: 'invalid_input' },
    { name: 'password is a number', req: reg({ username: 'newbie1', password: 12345678 }), status: 400, code: 'invalid_input' },
    { name: 'password is an operator object {"$ne":null}', req: reg({ username: 'newbie1', password: { $ne: null } }), status: 400, code: 'invalid_input' },
    { name: 'password is an array of strings', req: reg({ username: 'newbie1', password: [pw] }), status: 400, code: 'invalid_input' },
    { name: 'displayName is a number', req: reg({ username: 'newbie1', password: pw, displayName: 5 }), status: 400, code: 'invalid_input' },
    { name: 'displayName is null', req: reg({ username: 'newbie1', password: pw, displayName: null }), status: 400, code: 'invalid_input' },
    { name: 'displayName is an object', req: reg({ username: 'newbie1', password: pw, displayName: { first: 'a' } }), status: 400, code: 'invalid_input' },
    // missing / extra fields
    { name: 'empty object', req: reg({}), status: 400, code: 'invalid_input' },
    { name: 'username missing', req: reg({ password: pw }), status: 400, code: 'invalid_input' },
    { name: 'password missing', req: reg({ username: 'newbie1' }), status: 400, code: 'invalid_input' },
    { name: 'extra unknown field "admin"', req: reg({ username: 'newbie1', password: pw, admin: true }), status: 400, code: 'invalid_input' },
    { name: 'extra field "id" (client-chosen id)', req: reg({ username: 'newbie1', password: pw, id: UNKNOWN_ID }), status: 400, code: 'invalid_input' },
    // username rules: 3-32 of [a-z0-9_.-]
    { name: 'username empty', req: reg({ username: '', password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username 2 characters', req: reg({ username: 'ab', password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username 33 characters', req: reg({ username: 'a'.repeat(33), password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username with a space', req: reg({ username: 'bad name', password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username with a slash', req: reg({ username: 'bad/name', password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username with a non-ASCII letter', req: reg({ username: 'émile', password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username with a NUL character', req: reg({ username: 'nul\u0000name', password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username with an emoji', req: reg({ username: 'smile😀', password: pw }), status: 400, code: 'invalid_input' },
    // password rules: 8-128 characters
    { name: 'password 7 characters', req: reg({ username: 'newbie1', password: '1234567' }), status: 400, code: 'invalid_input' },
    { name: 'password 7 emoji (14 UTF-16 units)', req: reg({ username: 'newbie1', password: '😀'.repeat(7) }), status: 400, code: 'invalid_input' },
    { name: 'password 129 characters', req: reg({ username: 'newbie1', password: 'p'.repeat(129) }), status: 400, code: 'invalid_input' },
    { name: 'password empty', req: reg({ username: 'newbie1', password: '' }), status: 400, code: 'invalid_input' },
    // displayName rules: 1-64, not only spaces, no control characters
    { name: 'displayName empty', req: reg({ username: 'newbie1', password: pw, displayName: '' }), status: 400, code: 'invalid_input' },
    { name: 'displayName only spaces', req: reg({ username: 'newbie1', password: pw, displayName: '    ' }), status: 400, code: 'invalid_input' },
    { name: 'displayName only tabs and newlines', req: reg({ username: 'newbie1', password: pw, displayName: '\t\n\r' }), status: 400, code: 'invalid_input' },
    { name: 'displayName with a BEL control character \\u0007', req: reg({ username: 'newbie1', password: pw, displayName: 'ring\u0007bell' }), status: 400, code: 'invalid_input' },
    { name: 'displayName with an ESC control character \\u001b', req: reg({ username: 'newbie1', password: pw, displayName: 'red\u001b[31m' }), status: 400, code: 'invalid_input' },
    { name: 'displayName with a DEL character \\u007f', req: reg({ username: 'newbie1', password: pw, displayName: 'del\u007f' }), status: 400, code: 'invalid_input' },
    { name: 'displayName 65 characters', req: reg({ username: 'newbie1', password: pw, displayName: 'd'.repeat(65) }), status: 400, code: 'invalid_input' },
    // uniqueness is case-insensitive
    { name: 'duplicate username differing only in case (ME_USER vs me_user)', req: reg({ username: 'ME_USER', password: pw }), status: 409, code: 'username_taken' },
    { name: 'duplicate username, same case', req: reg({ username: 'other_user', password: pw }), status: 409, code: 'username_taken' },
  ]);

  it('a refused registration does not reserve the username, and a taken one keeps its owner', async () => {
    const refused = await send(post('/api/users', { username: 'Fresh.Name', password: pw, displayName: '   ' }, null));
    expectError(refused, 400, 'invalid_input');
    const ok = await send(post('/api/users', { username: 'fresh.name', password: pw }, null));
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    expect(ok.body.user).toMatchObject({ username: 'fresh.name', displayName: 'fresh.name' });

    // The 409 above did not touch me_user: its password still works and its id is unchanged.
    const login = await send(post('/api/users/login', { username: 'me_user', password: 'correct horse battery' }, null));
    expect(login.status).toBe(200);
    expect(login.body.user.id).toBe(ctx.me.user.id);
    await send({ method: 'POST', path: '/api/users/logout', token: login.body.token as string });
  });
});

describe('POST /api/users/login refuses bad input', () => {
  const login = (body: unknown) => () => post('/api/users/login', body, null);
  const pw = 'correct horse battery';
  table([
    { name: 'username is an operator object {"$gt":""}', req: login({ username: { $gt: '' }, password: pw }), status: 400, code: 'invalid_input' },
    { name: 'password is an operator object {"$gt":""}', req: login({ username: 'me_user', password: { $gt: '' } }), status: 400, code: 'invalid_input' },
    { name: 'both are operator objects', req: login({ username: { $ne: null }, password: { $ne: null } }), status: 400, code: 'invalid_input' },
    { name: 'username is a number', req: login({ username: 123, password: pw }), status: 400, code: 'invalid_input' },
    { name: 'username is an array', req: login({ username: ['me_user'], password: pw }), status: 400, code: 'invalid_input' },
    { name: 'password is a boolean', req: login({ username: 'me_user', password: true }), status: 400, code: 'invalid_input' },
    { name: 'password is null', req: login({ username: 'me_user', password: null }), status: 400, code: 'invalid_input' },
    { name: 'username missing', req: login({ password: pw }), status: 400, code: 'invalid_input' },
    { name: 'password missing', req: login({ username: 'me_user' }), status: 400, code: 'invalid_input' },
    { name: 'username empty', req: login({ username: '', password: pw }), status: 400, code: 'invalid_input' },
    { name: 'password empty', req: login({ username: 'me_user', password: '' }), status: 400, code: 'invalid_input' },
    { name: 'extra unknown field', req: login({ username: 'me_user', password: pw, remember: true }), status: 400, code: 'invalid_input' },
    { name: 'username 65 characters', req: login({ username: 'u'.repeat(65), password: pw }), status: 400, code: 'invalid_input' },
    { name: 'wrong password', req: login({ username: 'me_user', password: 'wrong horse battery' }), status: 401, code: 'unauthorized' },
    { name: 'unknown user', req: login({ username: 'nobody_here', password: pw }), status: 401, code: 'unauthorized' },
  ]);
});

// ---------------------------------------------------------------------------------------------
// body framing: JSON syntax, media types, size

describe('malformed bodies and media types', () => {
  const routes: Array<[label: string, path: () => string, token: () => string | null]> = [
    ['POST /api/users', () => '/api/users', () => null],
    ['POST /api/users/login', () => '/api/users/login', () => null],
    ['POST /api/chats', () => '/api/chats', () => ctx.me.token],
    ['POST /api/chats/:number/members', () => `/api/chats/${ctx.myGroup.number}/members`, () => ctx.me.token],
  ];
  const bodies: Array<[label: string, raw: string, headers: Record<string, string>, status: number, code: string]> = [
    ['unquoted key "{bad"', '{bad', {}, 400, 'invalid_input'],
    ['a lone "["', '[', {}, 400, 'invalid_input'],
    ['truncated JSON', '{"username":"abc","password":', {}, 400, 'invalid_input'],
    ['a trailing comma', '{"username":"abc",}', {}, 400, 'invalid_input'],
    ['two JSON documents', '{"a":1}{"b":2}', {}, 400, 'invalid_input'],
    ['JSON followed by garbage', '{"username":"abcd","password":"12345678"} x', {}, 400, 'invalid_input'],
    ['single quotes', "{'username':'abc'}", {}, 400, 'invalid_input'],
    ['a JSON null', 'null', {}, 400, 'invalid_input'],
    ['a JSON string', '"hello"', {}, 400, 'invalid_input'],
    ['a JSON number', '42', {}, 400, 'invalid_input'],
    ['a JSON array', '[]', {}, 400, 'invalid_input'],
    ['a __proto__ key (prototype pollution)', '{"__proto__":{"admin":true},"username":"abcd","password":"12345678"}', {}, 400, 'invalid_input'],
    ['a constructor.prototype key', '{"constructor":{"prototype":{"admin":true}}}', {}, 400, 'invalid_input'],
    ['an empty body with content-type application/json', '', {}, 400, 'invalid_input'],
    ['a JSON body sent as text/plain', '{"username":"abcd","password":"12345678"}', { 'content-type': 'text/plain' }, 415, 'unsupported_media_type'],
    ['a form-encoded body', 'username=abcd&password=12345678', { 'content-type': 'application/x-www-form-urlencoded' }, 415, 'unsupported_media_type'],
    ['a body as application/xml', '<user/>', { 'content-type': 'application/xml' }, 415, 'unsupported_media_type'],
    ['a garbage content-type', '{}', { 'content-type': ';;;' }, 415, 'unsupported_media_type'],
  ];
  for (const [route, path, token] of routes) {
    describe(route, () => {
      table(bodies.map(([label, raw, headers, status, code]) => ({
        name: label, status, code,
        req: () => ({ method: 'POST' as const, path: path(), raw, headers, token: token() }),
      })));
    });
  }
});

describe('body size limit (64 KiB)', () => {
  const big = Buffer.from(JSON.stringify({ username: 'biggie', password: 'x'.repeat(2 * 1024 * 1024) }));

  it('a 2 MiB body with a content-length → 413 payload_too_large', async () => {
    expectError(await rawPost('/api/users', big, false), 413, 'payload_too_large');
  });

  it('a 2 MiB chunked body (no content-length) → 413 payload_too_large', async () => {
    expectError(await rawPost('/api/users', big, true), 413, 'payload_too_large');
  });

  it('a body just over 64 KiB on an authenticated route → 413 payload_too_large', async () => {
    const res = await send({ method: 'POST', path: '/api/chats', raw: JSON.stringify({ type: 'group', name: 'n'.repeat(65 * 1024), memberIds: [] }) });
    expectError(res, 413, 'payload_too_large');
  });

  it('the server still answers afterwards, and nothing was registered', async () => {
    expect((await srv.http.get('/healthz')).status).toBe(200);
    const search = await send(get('/api/users/search?q=biggie'));
    expect(search.status).toBe(200);
    expect(search.body.users).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// chats

describe('POST /api/chats refuses bad input', () => {
  const create = (body: () => unknown) => () => post('/api/chats', body());
  const s = (i: number) => ctx.seeded[i]!.id;
  table([
    // wrong types, missing and extra fields
    { name: 'empty object', req: create(() => ({})), status: 400, code: 'invalid_input' },
    { name: 'type missing', req: create(() => ({ memberIds: [s(5)], name: 'x' })), status: 400, code: 'invalid_input' },
    { name: 'type unknown ("channel")', req: create(() => ({ type: 'channel', memberIds: [s(5)], name: 'x' })), status: 400, code: 'invalid_input' },
    { name: 'type is a number', req: create(() => ({ type: 1, memberIds: [s(5)] })), status: 400, code: 'invalid_input' },
    { name: 'type in upper case ("GROUP")', req: create(() => ({ type: 'GROUP', memberIds: [s(5)], name: 'x' })), status: 400, code: 'invalid_input' },
    { name: 'memberIds missing', req: create(() => ({ type: 'group', name: 'x' })), status: 400, code: 'invalid_input' },
    { name: 'memberIds is a string ("x")', req: create(() => ({ type: 'group', name: 'x', memberIds: 'x' })), status: 400, code: 'invalid_input' },
    { name: 'memberIds is one id as a string, not an array', req: create(() => ({ type: 'direct', memberIds: s(5) })), status: 400, code: 'invalid_input' },
    { name: 'memberIds is null', req: create(() => ({ type: 'group', name: 'x', memberIds: null })), status: 400, code: 'invalid_input' },
    { name: 'memberIds is an object', req: create(() => ({ type: 'group', name: 'x', memberIds: { 0: s(5) } })), status: 400, code: 'invalid_input' },
    { name: 'memberIds holds a number', req: create(() => ({ type: 'group', name: 'x', memberIds: [123] })), status: 400, code: 'invalid_input' },
    { name: 'memberIds holds null', req: create(() => ({ type: 'group', name: 'x', memberIds: [null] })), status: 400, code: 'invalid_input' },
    { name: 'memberIds holds an operator object', req: create(() => ({ type: 'group', name: 'x', memberIds: [{ $ne: null }] })), status: 400, code: 'invalid_input' },
    ...MALFORMED_IDS.map(([label, id]): Row => ({
      name: `memberIds holds a malformed id (${label}) among valid ones`,
      req: create(() => ({ type: 'group', name: 'x', memberIds: [s(5), id, s(6)] })),
      status: 400, code: 'invalid_input',
    })),
    { name: 'memberIds has 1001 entries (over the list bound)', req: create(() => ({ type: 'group', name: 'x', memberIds: Array.from({ length: 1001 }, () => UNKNOWN_ID) })), status: 400, code: 'invalid_input' },
    { name: 'name is a number', req: create(() => ({ type: 'group', name: 5, memberIds: [s(5)] })), status: 400, code: 'invalid_input' },
    { name: 'name is an array', req: create(() => ({ type: 'group', name: ['x'], memberIds: [s(5)] })), status: 400, code: 'invalid_input' },
    { name: 'name is an operator object', req: create(() => ({ type: 'group', name: { $gt: '' }, memberIds: [s(5)] })), status: 400, code: 'invalid_input' },
    { name: 'name is empty', req: create(() => ({ type: 'group', name: '', memberIds: [s(5)] })), status: 400, code: 'invalid_input' },
    { name: 'name only spaces', req: create(() => ({ type: 'group', name: '   ', memberIds: [s(5)] })), status: 400, code: 'invalid_input' },
    { name: 'name with a control character \\u0007', req: create(() => ({ type: 'group', name: 'a\u0007b', memberIds: [s(5)] })), status: 400, code: 'invalid_input' },
    { name: 'name of 101 characters', req: create(() => ({ type: 'group', name: 'n'.repeat(101), memberIds: [s(5)] })), status: 400, code: 'invalid_input' },
    { name: 'visibility unknown ("secret")', req: create(() => ({ type: 'group', name: 'x', memberIds: [s(5)], visibility: 'secret' })), status: 400, code: 'invalid_input' },
    { name: 'visibility is a boolean', req: create(() => ({ type: 'group', name: 'x', memberIds: [s(5)], visibility: true })), status: 400, code: 'invalid_input' },
    { name: 'extra field "ownerId"', req: create(() => ({ type: 'group', name: 'x', memberIds: [s(5)], ownerId: s(5) })), status: 400, code: 'invalid_input' },
    { name: 'extra field "number"', req: create(() => ({ type: 'group', name: 'x', memberIds: [s(5)], number: 1 })), status: 400, code: 'invalid_input' },
    // direct chat rules
    { name: 'direct with no member', req: create(() => ({ type: 'direct', memberIds: [] })), status: 400, code: 'invalid_input' },
    { name: 'direct with two members', req: create(() => ({ type: 'direct', memberIds: [s(5), s(6)] })), status: 400, code: 'invalid_input' },
    { name: 'direct with myself', req: create(() => ({ type: 'direct', memberIds: [ctx.me.user.id] })), status: 400, code: 'invalid_input' },
    { name: 'direct with a name', req: create(() => ({ type: 'direct', memberIds: [s(5)], name: 'x' })), status: 400, code: 'invalid_input' },
    { name: 'direct with a visibility', req: create(() => ({ type: 'direct', memberIds: [s(5)], visibility: 'public' })), status: 400, code: 'invalid_input' },
    { name: 'direct with an unknown user id', req: create(() => ({ type: 'direct', memberIds: [UNKNOWN_ID] })), status: 404, code: 'not_found' },
    // group rules
    { name: 'group without a name', req: create(() => ({ type: 'group', memberIds: [s(5)] })), status: 400, code: 'invalid_input' },
    { name: 'group with an unknown user id among valid ones', req: create(() => ({ type: 'group', name: 'x', memberIds: [s(5), UNKNOWN_ID, s(6)] })), status: 404, code: 'not_found' },
    { name: 'group of 101 members including me', req: create(() => ({ type: 'group', name: 'x', memberIds: ids(ctx.seeded.slice(10, 110)) })), status: 422, code: 'group_full' },
  ]);
});

describe('GET /api/chats/:number refuses bad numbers and non-members', () => {
  const byNumber = (n: () => string | number) => () => get(`/api/chats/${n()}`);
  table([
    { name: 'number 0', req: byNumber(() => 0), status: 400, code: 'invalid_input' },
    { name: 'number -1', req: byNumber(() => -1), status: 400, code: 'invalid_input' },
    { name: 'number "abc"', req: byNumber(() => 'abc'), status: 400, code: 'invalid_input' },
    { name: 'number 1.5', req: byNumber(() => '1.5'), status: 400, code: 'invalid_input' },
    { name: 'number 2^53 (beyond safe integers)', req: byNumber(() => '9007199254740992'), status: 400, code: 'invalid_input' },
    { name: 'number 1e400 (infinite)', req: byNumber(() => '1e400'), status: 400, code: 'invalid_input' },
    // Only plain decimal digits: JavaScript would read these as numbers of existing chats.
    { name: 'number 0x1 (hexadecimal)', req: byNumber(() => '0x1'), status: 400, code: 'invalid_input' },
    { name: 'number 1e0 (exponent)', req: byNumber(() => '1e0'), status: 400, code: 'invalid_input' },
    { name: 'number 01 (leading zero)', req: byNumber(() => '01'), status: 400, code: 'invalid_input' },
    { name: 'number +1 (sign)', req: byNumber(() => encodeURIComponent('+1')), status: 400, code: 'invalid_input' },
    { name: 'number " 1" (space)', req: byNumber(() => '%201'), status: 400, code: 'invalid_input' },
    { name: 'number with SQL injection', req: byNumber(() => encodeURIComponent('1 OR 1=1')), status: 400, code: 'invalid_input' },
    { name: 'a chat id (UUID) instead of a number', req: byNumber(() => ctx.myGroup.id), status: 400, code: 'invalid_input' },
    { name: 'malformed percent-encoding in the number (%zz)', req: byNumber(() => '%zz'), status: 400, code: 'invalid_input' },
    { name: 'number 99999999 (no such chat)', req: byNumber(() => 99999999), status: 404, code: 'not_found' },
    { name: "another user's private group", req: byNumber(() => ctx.othersPrivate.number), status: 403, code: 'not_member' },
    { name: "another user's direct chat", req: byNumber(() => ctx.othersDirect.number), status: 403, code: 'not_member' },
  ]);
});

describe('GET /api/chats/one-to-one/:userId and /group/:userId refuse bad ids and other users', () => {
  for (const kind of ['one-to-one', 'group'] as const) {
    describe(kind, () => {
      const list = (path: () => string) => () => get(`/api/chats/${kind}/${path()}`);
      const mine = (query: string) => list(() => `${ctx.me.user.id}?${query}`);
      table([
        ...MALFORMED_IDS.map(([label, id]): Row => ({
          name: `malformed user id (${label})`, req: list(() => encodeURIComponent(id)), status: 400, code: 'invalid_input',
        })),
        { name: 'malformed percent-encoding in the user id (%zz)', req: list(() => '%zz'), status: 400, code: 'invalid_input' },
        // The contract: "only for the caller's own id (else 403)"; an unknown id is not the
        // caller's, and answering 404 would tell which ids exist.
        { name: 'well-formed unknown user id', req: list(() => UNKNOWN_ID), status: 403, code: 'forbidden' },
        { name: "another user's id", req: list(() => ctx.other.user.id), status: 403, code: 'forbidden' },
        { name: 'limit=0', req: mine('limit=0'), status: 400, code: 'invalid_input' },
        { name: 'limit=101', req: mine('limit=101'), status: 400, code: 'invalid_input' },
        { name: 'limit=abc', req: mine('limit=abc'), status: 400, code: 'invalid_input' },
        { name: 'limit=1.5', req: mine('limit=1.5'), status: 400, code: 'invalid_input' },
        { name: 'limit empty', req: mine('limit='), status: 400, code: 'invalid_input' },
        { name: 'limit given twice', req: mine('limit=1&limit=2'), status: 400, code: 'invalid_input' },
        { name: 'after=-1', req: mine('after=-1'), status: 400, code: 'invalid_input' },
        { name: 'after=abc', req: mine('after=abc'), status: 400, code: 'invalid_input' },
        { name: 'unknown query parameter', req: mine('sort=desc'), status: 400, code: 'invalid_input' },
      ]);
    });
  }
});

describe('GET /api/chats (public groups) refuses bad query parameters', () => {
  const q = (query: string) => () => get(`/api/chats?${query}`);
  table([
    { name: 'limit=0', req: q('limit=0'), status: 400, code: 'invalid_input' },
    { name: 'limit=101', req: q('limit=101'), status: 400, code: 'invalid_input' },
    { name: 'limit=abc', req: q('limit=abc'), status: 400, code: 'invalid_input' },
    { name: 'limit=-5', req: q('limit=-5'), status: 400, code: 'invalid_input' },
    { name: 'after=-1', req: q('after=-1'), status: 400, code: 'invalid_input' },
    { name: 'after=abc', req: q('after=abc'), status: 400, code: 'invalid_input' },
    { name: 'after=1.5', req: q('after=1.5'), status: 400, code: 'invalid_input' },
    { name: 'limit=0x10', req: q('limit=0x10'), status: 400, code: 'invalid_input' },
    { name: 'after=1e1', req: q('after=1e1'), status: 400, code: 'invalid_input' },
    { name: 'unknown query parameter', req: q('visibility=private'), status: 400, code: 'invalid_input' },
    { name: 'operator-style query parameter after[$gt]=0', req: q('after[$gt]=0'), status: 400, code: 'invalid_input' },
  ]);
});

describe('POST /api/chats/:number/members refuses bad input', () => {
  const add = (n: () => string | number, body: () => unknown) => () => post(`/api/chats/${n()}/members`, body());
  const my = () => ctx.myGroup.number as number;
  const s = (i: number) => ctx.seeded[i]!.id;
  table([
    { name: 'empty object', req: add(my, () => ({})), status: 400, code: 'invalid_input' },
    { name: 'userIds is a string ("x")', req: add(my, () => ({ userIds: 'x' })), status: 400, code: 'invalid_input' },
    { name: 'userIds is one id as a string', req: add(my, () => ({ userIds: s(7) })), status: 400, code: 'invalid_input' },
    { name: 'userIds is null', req: add(my, () => ({ userIds: null })), status: 400, code: 'invalid_input' },
    { name: 'userIds is empty', req: add(my, () => ({ userIds: [] })), status: 400, code: 'invalid_input' },
    { name: 'userIds holds a number', req: add(my, () => ({ userIds: [7] })), status: 400, code: 'invalid_input' },
    { name: 'userIds has 1001 entries', req: add(my, () => ({ userIds: Array.from({ length: 1001 }, () => UNKNOWN_ID) })), status: 400, code: 'invalid_input' },
    { name: 'extra unknown field', req: add(my, () => ({ userIds: [s(7)], role: 'admin' })), status: 400, code: 'invalid_input' },
    { name: 'memberIds instead of userIds', req: add(my, () => ({ memberIds: [s(7)] })), status: 400, code: 'invalid_input' },
    ...MALFORMED_IDS.map(([label, id]): Row => ({
      name: `a malformed id (${label}) among valid ones`, req: add(my, () => ({ userIds: [s(7), id] })), status: 400, code: 'invalid_input',
    })),
    { name: 'an unknown user id among valid ones', req: add(my, () => ({ userIds: [s(7), UNKNOWN_ID] })), status: 404, code: 'not_found' },
    { name: 'number 0', req: add(() => 0, () => ({ userIds: [s(7)] })), status: 400, code: 'invalid_input' },
    { name: 'number -1', req: add(() => -1, () => ({ userIds: [s(7)] })), status: 400, code: 'invalid_input' },
    { name: 'number "abc"', req: add(() => 'abc', () => ({ userIds: [s(7)] })), status: 400, code: 'invalid_input' },
    { name: 'number 1.5', req: add(() => '1.5', () => ({ userIds: [s(7)] })), status: 400, code: 'invalid_input' },
    { name: 'number 99999999 (no such chat)', req: add(() => 99999999, () => ({ userIds: [s(7)] })), status: 404, code: 'not_found' },
    { name: 'my own direct chat (fixed members)', req: add(() => ctx.myDirect.number, () => ({ userIds: [s(7)] })), status: 403, code: 'forbidden' },
    { name: "another user's private group (joining myself)", req: add(() => ctx.othersPrivate.number, () => ({ userIds: [ctx.me.user.id] })), status: 403, code: 'not_member' },
    { name: "another user's direct chat", req: add(() => ctx.othersDirect.number, () => ({ userIds: [ctx.me.user.id] })), status: 403, code: 'not_member' },
    { name: "adding someone else to another user's public group", req: add(() => ctx.othersPublic.number, () => ({ userIds: [s(7)] })), status: 403, code: 'forbidden' },
  ]);
});

describe('DELETE /api/chats/:number/members/:userId refuses bad input', () => {
  const remove = (n: () => string | number, userId: () => string) => () => del(`/api/chats/${n()}/members/${userId()}`);
  const my = () => ctx.myGroup.number as number;
  const member = () => ctx.seeded[0]!.id;
  table([
    { name: 'number 0', req: remove(() => 0, member), status: 400, code: 'invalid_input' },
    { name: 'number -1', req: remove(() => -1, member), status: 400, code: 'invalid_input' },
    { name: 'number "abc"', req: remove(() => 'abc', member), status: 400, code: 'invalid_input' },
    { name: 'number 1.5', req: remove(() => '1.5', member), status: 400, code: 'invalid_input' },
    { name: 'number 99999999 (no such chat)', req: remove(() => 99999999, member), status: 404, code: 'not_found' },
    ...MALFORMED_IDS.map(([label, id]): Row => ({
      name: `malformed user id (${label})`, req: remove(my, () => encodeURIComponent(id)), status: 400, code: 'invalid_input',
    })),
    { name: 'malformed percent-encoding in the user id (%zz)', req: remove(my, () => '%zz'), status: 400, code: 'invalid_input' },
    { name: 'unknown user id', req: remove(my, () => UNKNOWN_ID), status: 404, code: 'not_found' },
    { name: 'a user who exists but is not a member', req: remove(my, () => ctx.other.user.id), status: 404, code: 'not_found' },
    { name: 'my own direct chat (fixed members)', req: remove(() => ctx.myDirect.number, () => ctx.me.user.id), status: 403, code: 'forbidden' },
    { name: "a member of another user's private group", req: remove(() => ctx.othersPrivate.number, () => ctx.seeded[2]!.id), status: 403, code: 'not_member' },
    { name: "a member of another user's public group (not the owner)", req: remove(() => ctx.othersPublic.number, () => ctx.seeded[2]!.id), status: 403, code: 'forbidden' },
  ]);

  it('the refused removals left my group as it was', async () => {
    const res = await send(get(`/api/chats/${ctx.myGroup.number}`));
    expect(res.status).toBe(200);
    expect(ids(res.body.chat.members)).toEqual(ids(ctx.myGroup.members));
  });
});

// ---------------------------------------------------------------------------------------------
// messages

describe('GET /api/messages/:chatId refuses bad ids, non-members and bad ranges', () => {
  const history = (chatId: () => string, query = '') => () => get(`/api/messages/${chatId()}${query ? `?${query}` : ''}`);
  const my = () => ctx.myGroup.id as string;
  table([
    ...MALFORMED_IDS.map(([label, id]): Row => ({
      name: `malformed chat id (${label})`, req: history(() => encodeURIComponent(id)), status: 400, code: 'invalid_input',
    })),
    { name: 'a chat number instead of an id', req: history(() => String(ctx.myGroup.number)), status: 400, code: 'invalid_input' },
    { name: 'malformed percent-encoding in the chat id (%zz)', req: history(() => '%zz'), status: 400, code: 'invalid_input' },
    { name: 'unknown chat id', req: history(() => UNKNOWN_ID), status: 404, code: 'not_found' },
    { name: "another user's private group", req: history(() => ctx.othersPrivate.id), status: 403, code: 'not_member' },
    { name: "another user's direct chat", req: history(() => ctx.othersDirect.id), status: 403, code: 'not_member' },
    { name: 'a public group I have not joined', req: history(() => ctx.othersPublic.id), status: 403, code: 'not_member' },
    { name: 'limit=0', req: history(my, 'limit=0'), status: 400, code: 'invalid_input' },
    { name: 'limit=101', req: history(my, 'limit=101'), status: 400, code: 'invalid_input' },
    { name: 'limit=abc', req: history(my, 'limit=abc'), status: 400, code: 'invalid_input' },
    { name: 'limit=1.5', req: history(my, 'limit=1.5'), status: 400, code: 'invalid_input' },
    { name: 'after=-1', req: history(my, 'after=-1'), status: 400, code: 'invalid_input' },
    { name: 'after=abc', req: history(my, 'after=abc'), status: 400, code: 'invalid_input' },
    { name: 'before=0', req: history(my, 'before=0'), status: 400, code: 'invalid_input' },
    { name: 'before=abc', req: history(my, 'before=abc'), status: 400, code: 'invalid_input' },
    { name: 'after equal to before', req: history(my, 'after=5&before=5'), status: 400, code: 'invalid_input' },
    { name: 'after greater than before', req: history(my, 'after=9&before=3'), status: 400, code: 'invalid_input' },
    { name: 'unknown query parameter', req: history(my, 'since=0'), status: 400, code: 'invalid_input' },
    { name: 'after given twice', req: history(my, 'after=1&after=2'), status: 400, code: 'invalid_input' },
  ]);
});

// ---------------------------------------------------------------------------------------------
// users: online list and search

describe('GET /api/users and /api/users/search refuse bad query parameters', () => {
  table([
    { name: 'users: limit=0', req: () => get('/api/users?limit=0'), status: 400, code: 'invalid_input' },
    { name: 'users: limit=101', req: () => get('/api/users?limit=101'), status: 400, code: 'invalid_input' },
    { name: 'users: after longer than 32 characters', req: () => get(`/api/users?after=${'a'.repeat(33)}`), status: 400, code: 'invalid_input' },
    { name: 'users: unknown query parameter', req: () => get('/api/users?online=false'), status: 400, code: 'invalid_input' },
    { name: 'search: q missing', req: () => get('/api/users/search'), status: 400, code: 'invalid_input' },
    { name: 'search: q empty', req: () => get('/api/users/search?q='), status: 400, code: 'invalid_input' },
    { name: 'search: q of 65 characters', req: () => get(`/api/users/search?q=${'q'.repeat(65)}`), status: 400, code: 'invalid_input' },
    { name: 'search: q of 65 emoji', req: () => get(`/api/users/search?q=${encodeURIComponent('😀'.repeat(65))}`), status: 400, code: 'invalid_input' },
    { name: 'search: q given twice', req: () => get('/api/users/search?q=a&q=b'), status: 400, code: 'invalid_input' },
    { name: 'search: q as an array q[]=a', req: () => get('/api/users/search?q[]=a'), status: 400, code: 'invalid_input' },
    { name: 'search: q as an operator q[$ne]=x', req: () => get('/api/users/search?q[$ne]=x'), status: 400, code: 'invalid_input' },
    { name: 'search: limit=0', req: () => get('/api/users/search?q=me&limit=0'), status: 400, code: 'invalid_input' },
    { name: 'search: limit=101', req: () => get('/api/users/search?q=me&limit=101'), status: 400, code: 'invalid_input' },
    { name: 'search: limit=abc', req: () => get('/api/users/search?q=me&limit=abc'), status: 400, code: 'invalid_input' },
    { name: 'search: after longer than 32 characters', req: () => get(`/api/users/search?q=me&after=${'a'.repeat(33)}`), status: 400, code: 'invalid_input' },
    { name: 'search: unknown query parameter', req: () => get('/api/users/search?q=me&regex=true'), status: 400, code: 'invalid_input' },
  ]);
});

describe('GET /api/users/search matches q literally (no regex, SQL or LIKE meaning), case-insensitively', () => {
  const contains = (u: { username: string; displayName: string }, q: string) =>
    u.username.toLowerCase().includes(q.toLowerCase()) || u.displayName.toLowerCase().includes(q.toLowerCase());

  /** Every page of results for q. */
  async function searchAll(q: string): Promise<UserDto[]> {
    const all: UserDto[] = [];
    let after: string | undefined;
    for (let page = 0; page < 50; page++) {
      const res = await send(get(`/api/users/search?q=${encodeURIComponent(q)}&limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}`));
      expect(res.status, `q=${JSON.stringify(q)}: ${res.status} ${JSON.stringify(res.body)}`).toBe(200);
      const users = res.body.users as UserDto[];
      all.push(...users);
      if (!res.body.hasMore) return all;
      expect(users.length).toBeGreaterThan(0);
      after = users[users.length - 1]!.username;
    }
    throw new Error(`q=${JSON.stringify(q)}: pagination did not end`);
  }

  const queries: Array<[q: string, expected: string[]]> = [
    ['.', ['dot.tom', 'dotstar']],
    ['%', ['percent']],
    ['_', ['snake_sam']],
    ['.*', ['dotstar']],
    ['[', ['brackets']],
    ['[x]', ['brackets']],
    ['(', ['brackets']],
    ['{z}', ['brackets']],
    ['\\', ['backslash']],
    ["' OR 1=1 --", ['sqlquote']],
    ["'", ['sqlquote']],
    ['--', ['sqlquote']],
    ['^', ['anchors']],
    ['$', ['anchors']],
    ['+?|', ['dotstar']],
    ['a.b', ['dot.tom']],
    ['A.B', ['dot.tom']],
    ['a_b', ['snake_sam']],
    ['SNAKE A_B', ['snake_sam']],
    ['100%', ['percent']],
    ['%100%', []],
    ['_%', []],
    ['a%b', []],
    ['\u0000', []],
    ['x\u0000', []],
    ['"', []],
  ];
  for (const [q, expected] of queries) {
    it(`q=${JSON.stringify(q)} returns only users containing it literally; fixtures: ${expected.length ? expected.join(', ') : 'none'}`, async () => {
      const found = await searchAll(q);
      for (const u of found) expect(contains(u, q), `${u.username} / ${u.displayName} does not contain ${JSON.stringify(q)}`).toBe(true);
      const foundNames = new Set(found.map((u) => u.username));
      const fixturesFound = SEARCH_FIXTURES.filter((f) => foundNames.has(f.username)).map((f) => f.username).sort();
      expect(fixturesFound).toEqual([...expected].sort());
      // the expectation above is itself the literal rule applied to the fixtures
      expect(SEARCH_FIXTURES.filter((f) => contains(f, q)).map((f) => f.username).sort()).toEqual([...expected].sort());
    });
  }

  it('a q of exactly 64 characters (emoji count as one) is accepted', async () => {
    expect((await send(get(`/api/users/search?q=${'q'.repeat(64)}`))).status).toBe(200);
    const res = await send(get(`/api/users/search?q=${encodeURIComponent('😀'.repeat(64))}`));
    expect(res.status).toBe(200);
    expect(res.body.users).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// tokens

describe('bad credentials are 401 unauthorized on every protected route', () => {
  /** label → the Authorization header value (undefined: none at all). */
  const credentials: Array<[label: string, header: () => string | undefined]> = [];
  const bearer = (t: () => string) => () => `Bearer ${t()}`;
  const tokens = {} as Record<'expired' | 'forged' | 'alteredSub' | 'alteredExp' | 'algNone' | 'unknownSession' | 'sessionOfOther' | 'revoked', string>;

  beforeAll(async () => {
    const claims = claimsOf(ctx.me.token);
    expect(claims.sub).toBe(ctx.me.user.id);
    const now = Math.floor(Date.now() / 1000);
    const [header, payload, signature] = ctx.me.token.split('.') as [string, string, string];
    tokens.expired = issueToken(TEST_SECRET, { sub: claims.sub, sid: claims.sid, iat: now - 7200, exp: now - 3600 });
    tokens.forged = issueToken('another-secret-that-is-also-long-enough-42', claims);
    tokens.alteredSub = `${header}.${b64({ ...claims, sub: ctx.other.user.id })}.${signature}`;
    tokens.alteredExp = `${header}.${b64({ ...claims, exp: claims.exp + 365 * 86400 })}.${signature}`;
    tokens.algNone = `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`;
    tokens.unknownSession = issueToken(TEST_SECRET, { ...claims, sid: UNKNOWN_ID });
    tokens.sessionOfOther = issueToken(TEST_SECRET, { ...claims, sub: ctx.other.user.id });
    // A second session of `me`, logged out: it dies, the first one lives on.
    const login = await srv.http.post('/api/users/login', { username: 'me_user', password: 'correct horse battery' });
    expect(login.status).toBe(200);
    tokens.revoked = login.body.token as string;
    expect((await srv.http.request('POST', '/api/users/logout', { token: tokens.revoked })).status).toBe(204);
    expect((await srv.http.get('/api/users/me', ctx.me.token)).status).toBe(200);
    expect(payload).not.toBe('');
  });

  credentials.push(
    ['no Authorization header', () => undefined],
    ['"Bearer" with nothing', () => 'Bearer'],
    ['"Bearer " with an empty token', () => 'Bearer '],
    ['"Basic" credentials', () => 'Basic bWVfdXNlcjpjb3JyZWN0IGhvcnNlIGJhdHRlcnk='],
    ['the real token without the "Bearer" scheme', () => ctx.me.token],
    ['"Token <real token>" (wrong scheme)', () => `Token ${ctx.me.token}`],
    ['the real token followed by extra text', () => `Bearer ${ctx.me.token} extra`],
    ['a garbage token', bearer(() => 'garbage')],
    ['a garbage three-part token', bearer(() => 'a.b.c')],
    ['an oversized token (4 KB)', bearer(() => `${ctx.me.token}${'A'.repeat(4096)}`)],
    ['a token signed with another secret (forged)', bearer(() => tokens.forged)],
    ['the real token with "==" appended to its signature', bearer(() => `${ctx.me.token}==`)],
    ['the real token with its last character changed in bits the signature does not use', bearer(() => sameBitsOtherText(ctx.me.token))],
    ['an expired token of a live session', bearer(() => tokens.expired)],
    ['a token whose sub was altered without re-signing', bearer(() => tokens.alteredSub)],
    ['a token whose exp was extended without re-signing', bearer(() => tokens.alteredExp)],
    ['an unsigned token (alg "none")', bearer(() => tokens.algNone)],
    ['a validly signed token of an unknown session', bearer(() => tokens.unknownSession)],
    ["a validly signed token naming another user on my session", bearer(() => tokens.sessionOfOther)],
    ['a revoked token (after logout)', bearer(() => tokens.revoked)],
  );

  const routes: Array<[label: string, req: () => Req]> = [
    ['GET /api/users/me', () => get('/api/users/me')],
    ['GET /api/users', () => get('/api/users')],
    ['GET /api/users/search', () => get('/api/users/search?q=me')],
    ['GET /api/chats', () => get('/api/chats')],
    ['GET /api/chats/:number', () => get(`/api/chats/${ctx.authTarget.number}`)],
    ['GET /api/chats/group/:userId', () => get(`/api/chats/group/${ctx.me.user.id}`)],
    ['GET /api/chats/one-to-one/:userId', () => get(`/api/chats/one-to-one/${ctx.me.user.id}`)],
    ['POST /api/chats', () => post('/api/chats', { type: 'group', name: 'should not exist', memberIds: [] })],
    ['POST /api/chats/:number/members', () => post(`/api/chats/${ctx.authTarget.number}/members`, { userIds: [ctx.seeded[8]!.id] })],
    ['DELETE /api/chats/:number/members/:userId', () => del(`/api/chats/${ctx.authTarget.number}/members/${ctx.seeded[1]!.id}`)],
    ['GET /api/messages/:chatId', () => get(`/api/messages/${ctx.authTarget.id}`)],
    ['POST /api/users/logout', () => ({ method: 'POST', path: '/api/users/logout' })],
  ];

  for (const [route, req] of routes) {
    describe(route, () => {
      for (const [label, header] of credentials) {
        it(`${label} → 401 unauthorized`, async () => {
          const r = req();
          const value = header();
          const res = await send({ ...r, token: null, headers: value === undefined ? {} : { authorization: value } });
          expectError(res, 401, 'unauthorized');
        });
      }
    });
  }

  it('control: the real token is accepted on the same read routes', async () => {
    for (const [route, req] of routes) {
      const r = req();
      if (r.method !== 'GET') continue;
      const res = await send(r);
      expect(res.status, `${route}: ${JSON.stringify(res.body)}`).toBe(200);
    }
  });

  it('none of the refused requests changed anything, and my real token still works', async () => {
    const me = await send(get('/api/users/me'));
    expect(me.status).toBe(200);
    expect(me.body.user.id).toBe(ctx.me.user.id);
    const chat = await send(get(`/api/chats/${ctx.authTarget.number}`));
    expect(ids(chat.body.chat.members)).toEqual(ids(ctx.authTarget.members));
    const groups = await send(get(`/api/chats/group/${ctx.me.user.id}?limit=100`));
    expect(groups.body.chats.map((c: Json) => c.name)).not.toContain('should not exist');
  });
});

// ---------------------------------------------------------------------------------------------
// no partial state

describe('a refused request leaves no partial state', () => {
  const myGroups = async () => {
    const res = await send(get(`/api/chats/group/${ctx.me.user.id}?limit=100`));
    expect(res.status).toBe(200);
    expect(res.body.hasMore).toBe(false);
    return (res.body.chats as Json[]).map((c) => ({ id: c.id as string, number: c.number as number, members: ids(c.members) }));
  };
  const myDirects = async () => {
    const res = await send(get(`/api/chats/one-to-one/${ctx.me.user.id}?limit=100`));
    expect(res.status).toBe(200);
    return (res.body.chats as Json[]).map((c) => c.id as string);
  };
  const s = (i: number) => ctx.seeded[i]!.id;

  it('refused group creations create nothing and leave no hole in the chat numbers', async () => {
    const first = await send(post('/api/chats', { type: 'group', name: 'Before refusals', memberIds: [s(20)] }));
    expect(first.status).toBe(201);
    const n = first.body.chat.number as number;
    const before = await myGroups();

    const refusals: Array<[body: unknown, status: number, code: string]> = [
      [{ type: 'group', name: 'Unknown member', memberIds: [s(20), UNKNOWN_ID, s(21)] }, 404, 'not_found'],
      [{ type: 'group', name: 'Malformed member', memberIds: [s(20), 'not-an-id', s(21)] }, 400, 'invalid_input'],
      [{ type: 'group', name: 'Too big', memberIds: ids(ctx.seeded.slice(10, 110)) }, 422, 'group_full'],
      [{ type: 'group', name: '   ', memberIds: [s(20)] }, 400, 'invalid_input'],
      [{ type: 'group', name: 'Extra field', memberIds: [s(20)], ownerId: s(20) }, 400, 'invalid_input'],
    ];
    for (const [body, status, code] of refusals) {
      expectError(await send(post('/api/chats', body)), status, code);
      expect(await myGroups()).toEqual(before);
    }
    // and not in the other would-be members' lists either: nothing exists past n
    expectError(await send(get(`/api/chats/${n + 1}`)), 404, 'not_found');

    const next = await send(post('/api/chats', { type: 'group', name: 'After refusals', memberIds: [s(20)] }));
    expect(next.status).toBe(201);
    expect(next.body.chat.number).toBe(n + 1);
    expect(await myGroups()).toEqual([...before, { id: next.body.chat.id, number: n + 1, members: [ctx.me.user.id, s(20)] }]);
  });

  it('refused direct chats create nothing', async () => {
    const before = await myDirects();
    expectError(await send(post('/api/chats', { type: 'direct', memberIds: [UNKNOWN_ID] })), 404, 'not_found');
    expectError(await send(post('/api/chats', { type: 'direct', memberIds: [ctx.me.user.id] })), 400, 'invalid_input');
    expectError(await send(post('/api/chats', { type: 'direct', memberIds: [s(22), s(23)] })), 400, 'invalid_input');
    expectError(await send(post('/api/chats', { type: 'direct', memberIds: [s(22)], name: 'x' })), 400, 'invalid_input');
    expect(await myDirects()).toEqual(before);
  });

  it('a refused member add leaves the members unchanged', async () => {
    const created = await send(post('/api/chats', { type: 'group', name: 'Stable members', memberIds: [s(24)] }));
    expect(created.status).toBe(201);
    const number = created.body.chat.number as number;
    const chatNow = async () => {
      const res = await send(get(`/api/chats/${number}`));
      expect(res.status).toBe(200);
      const c = res.body.chat;
      return { members: ids(c.members), memberCount: c.memberCount as number, ownerId: c.ownerId as string, lastSeq: c.lastSeq as number };
    };
    const before = await chatNow();
    expect(before.members).toEqual([ctx.me.user.id, s(24)]);

    const refusals: Array<[userIds: unknown, status: number, code: string]> = [
      [[s(25), UNKNOWN_ID, s(26)], 404, 'not_found'],
      [[s(25), 'not-an-id'], 400, 'invalid_input'],
      [[s(25), 42], 400, 'invalid_input'],
      ['x', 400, 'invalid_input'],
    ];
    for (const [userIds, status, code] of refusals) {
      expectError(await send(post(`/api/chats/${number}/members`, { userIds })), status, code);
      expect(await chatNow()).toEqual(before);
    }
    // someone else (not the owner) cannot add either
    expectError(await send(post(`/api/chats/${number}/members`, { userIds: [s(25)] }, ctx.other.token)), 403, 'not_member');
    expect(await chatNow()).toEqual(before);

    // the same add without the bad id goes through
    const ok = await send(post(`/api/chats/${number}/members`, { userIds: [s(25), s(26)] }));
    expect(ok.status).toBe(200);
    expect(ids(ok.body.chat.members)).toEqual([ctx.me.user.id, s(24), s(25), s(26)]);
  });

  it('a member add over 100 is refused with group_full and adds nobody', async () => {
    const created = await send(post('/api/chats', { type: 'group', name: 'Nearly full', memberIds: ids(ctx.seeded.slice(30, 129)) }));
    expect(created.status).toBe(201);
    expect(created.body.chat.memberCount).toBe(100);
    const number = created.body.chat.number as number;
    const before = ids(created.body.chat.members);

    expectError(await send(post(`/api/chats/${number}/members`, { userIds: [s(129)] })), 422, 'group_full');
    expectError(await send(post(`/api/chats/${number}/members`, { userIds: [s(129), s(5), s(6)] })), 422, 'group_full');
    const after = await send(get(`/api/chats/${number}`));
    expect(ids(after.body.chat.members)).toEqual(before);
    expect(after.body.chat.memberCount).toBe(100);

    // re-adding existing members is not growth
    const same = await send(post(`/api/chats/${number}/members`, { userIds: [s(30), s(31)] }));
    expect(same.status).toBe(200);
    expect(same.body.chat.memberCount).toBe(100);
  });
});

// ---------------------------------------------------------------------------------------------

describe('after all of the above', () => {
  it('the server is up and serving', async () => {
    expect((await srv.http.get('/healthz')).status).toBe(200);
    expect((await srv.http.get('/readyz')).status).toBe(200);
    const me = await send(get('/api/users/me'));
    expect(me.status).toBe(200);
    expect(me.body.user.username).toBe('me_user');
  });

  it('an unknown route or method is a 404 in the same error shape', async () => {
    expectError(await send(get('/api/nope')), 404, 'not_found');
    expectError(await send({ method: 'DELETE', path: '/api/chats' }), 404, 'not_found');
    expectError(await send(get('/api/users/me/')), 404, 'not_found');
  });
});
