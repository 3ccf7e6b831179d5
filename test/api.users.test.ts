import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpFrom } from './helpers/http-from.js';
import { connectAs } from './helpers/mqtt.js';
import { pollUntil } from './helpers/poll.js';
import { newId } from '../core/ids.js';
import { hashPassword } from '../core/passwords.js';
import { type TestServer, startTestServer } from './helpers/server.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

describe('REST accounts: /api/users', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer();
  });
  afterAll(() => srv.stop());

  it('registers a user: 201 with the public user object, no secret fields', async () => {
    const res = await srv.http.post('/api/users', { username: 'Zoe.Smith', password: 'longenough', displayName: 'Zoë Smith' });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      user: { id: expect.stringMatching(/^[0-9a-f-]{36}$/), username: 'zoe.smith', displayName: 'Zoë Smith', online: false, lastSeenAt: null },
    });
  });

  it('uses the username as display name when none is given', async () => {
    const res = await srv.http.post('/api/users', { username: 'plainname', password: 'longenough' });
    expect(res.body.user.displayName).toBe('plainname');
  });

  it('treats usernames case-insensitively: a taken name in other case is 409 username_taken', async () => {
    await srv.http.post('/api/users', { username: 'casey', password: 'longenough' });
    const res = await srv.http.post('/api/users', { username: 'CASEY', password: 'longenough' });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('username_taken');
  });

  it('normalises passwords to NFC: registered composed, logged in decomposed, and the other way round', async () => {
    const composed = 'caf\u00e9-cr\u00e8me';
    const decomposed = 'cafe\u0301-cre\u0300me';
    expect(composed).not.toBe(decomposed);
    for (const [username, registered, typed] of [['nfc_one', composed, decomposed], ['nfc_two', decomposed, composed]] as const) {
      expect((await srv.http.post('/api/users', { username, password: registered })).status).toBe(201);
      expect((await srv.http.post('/api/users/login', { username, password: typed })).status).toBe(200);
      expect((await srv.http.post('/api/users/login', { username, password: `${typed}x` })).status).toBe(401);
    }
  });

  it('keeps accounts whose password was hashed as sent, before normalisation, working', async () => {
    const decomposed = 'old-cafe\u0301-password';
    const [user] = await srv.seedUsers(1, 'legacy');
    // The hash such an account has: of the text as typed, not of its NFC form.
    await srv.store.createUser({ ...user!, id: newId(), username: 'legacy_nfd', passwordHash: await hashPassword(decomposed) });
    expect((await srv.http.post('/api/users/login', { username: 'legacy_nfd', password: decomposed })).status).toBe(200);
    expect((await srv.http.post('/api/users/login', { username: 'legacy_nfd', password: 'old-cafe-password' })).status).toBe(401);
  });

  it('refuses a password with a lone surrogate at registration (400), and never matches one at login', async () => {
    const res = await srv.http.post('/api/users', { username: 'surrogate', password: 'abcdefgh\ud800' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_input');
    expect((await srv.http.post('/api/users/login', { username: 'surrogate', password: 'abcdefgh\ud800' })).status).toBe(401);
    // The account that U+FFFD makes exists, and the lone surrogates that hashing would turn into it do not log in.
    expect((await srv.http.post('/api/users', { username: 'replacement', password: 'abcdefgh\ufffd' })).status).toBe(201);
    expect((await srv.http.post('/api/users/login', { username: 'replacement', password: 'abcdefgh\ufffd' })).status).toBe(200);
    for (const lone of ['\ud800', '\udfff']) {
      expect((await srv.http.post('/api/users/login', { username: 'replacement', password: `abcdefgh${lone}` })).status).toBe(401);
    }
  });

  it('logs in with any case of the username: token, expiry and user', async () => {
    await srv.http.post('/api/users', { username: 'loginer', password: 'pass-word-1' });
    const res = await srv.http.post('/api/users/login', { username: 'LOGINER', password: 'pass-word-1' });
    expect(res.status).toBe(200);
    expect(res.body.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(res.body.expiresAt).toMatch(ISO);
    expect(Date.parse(res.body.expiresAt)).toBeGreaterThan(Date.now() + 6 * 24 * 3600_000);
    expect(res.body.user.username).toBe('loginer');
  });

  it('answers a wrong password and an unknown user alike: 401 unauthorized', async () => {
    await srv.http.post('/api/users', { username: 'guarded', password: 'right-password' });
    const wrong = await srv.http.post('/api/users/login', { username: 'guarded', password: 'wrong-password' });
    const unknown = await srv.http.post('/api/users/login', { username: 'nobody-here', password: 'right-password' });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.body).toEqual(unknown.body);
    expect(wrong.body.error.code).toBe('unauthorized');
  });

  it('after 10 failures for a username from one address refuses that address with 429 rate_limited, even with the right password; the user logs in from another', async () => {
    await srv.http.post('/api/users', { username: 'guessme', password: 'the-real-one' });
    const attacker = httpFrom('127.0.0.21', srv.url);
    for (let i = 0; i < 10; i++) {
      expect((await attacker.post('/api/users/login', { username: 'guessme', password: `guess-${i}` })).status).toBe(401);
    }
    const locked = await attacker.post('/api/users/login', { username: 'GuessMe', password: 'the-real-one' });
    expect([locked.status, locked.body.error.code]).toEqual([429, 'rate_limited']);
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // The real user, from their own address, is not locked out.
    expect((await httpFrom('127.0.0.22', srv.url).post('/api/users/login', { username: 'guessme', password: 'the-real-one' })).status).toBe(200);
    // Other accounts are not affected, from the attacker's address either.
    await srv.http.post('/api/users', { username: 'bystander', password: 'the-real-one' });
    expect((await attacker.post('/api/users/login', { username: 'bystander', password: 'the-real-one' })).status).toBe(200);
  });

  it('GET /api/users/me returns the caller', async () => {
    const { user, token } = await srv.signUp('meself', 'Me Self');
    const res = await srv.http.get('/api/users/me', token);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ user });
  });

  it('logout revokes the token at once; other sessions of the user keep working', async () => {
    const { token } = await srv.signUp('leaver');
    const second = await srv.http.post('/api/users/login', { username: 'leaver', password: 'correct horse battery' });
    expect((await srv.http.post('/api/users/logout', undefined, token)).status).toBe(204);
    const after = await srv.http.get('/api/users/me', token);
    expect(after.status).toBe(401);
    expect(after.body.error).toEqual({ code: 'unauthorized', message: 'token revoked (logged out)' });
    expect((await srv.http.post('/api/users/logout', undefined, token)).status).toBe(401);
    expect((await srv.http.get('/api/users/me', second.body.token)).status).toBe(200);
  });

  it('accepts a bodiless logout that still says Content-Type: application/json', async () => {
    const { token } = await srv.signUp();
    const res = await srv.http.request('POST', '/api/users/logout', { token, headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(204);
    expect((await srv.http.get('/api/users/me', token)).status).toBe(401);
  });

  it('GET /api/users lists users online now: nobody without MQTT connections', async () => {
    const { token } = await srv.signUp();
    const res = await srv.http.get('/api/users', token);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ users: [], hasMore: false });
  });

  it('GET /api/users pages the users online now by username, with after and hasMore; offline users are not listed', async () => {
    const tag = Math.random().toString().slice(2, 8); // digits: never a search term of the specs below
    const [c, a, offline, b] = await Promise.all(['c', 'a', 'b0', 'b'].map((l) => srv.signUp(`online_${l}_${tag}`)));
    // The list shows the users the caller shares a chat with (test/abuse.presence-rest.test.ts).
    const together = await srv.http.post('/api/chats', { type: 'group', name: 'online', memberIds: [a!.user.id, b!.user.id, c!.user.id] }, offline!.token);
    expect(together.status).toBe(201);
    const conns = await Promise.all([b!, c!, a!].map((who) => connectAs(srv, who)));
    try {
      const names = (res: { body: { users: { username: string }[] } }) => res.body.users.map((u) => u.username);
      // Presence counts a connection just after its CONNACK: read until all three are listed.
      const all = await pollUntil(async () => names(await srv.http.get('/api/users?limit=100', offline!.token)), { done: (n) => n.length >= 3 });
      expect(all).toEqual([a!.user.username, b!.user.username, c!.user.username]);

      const p1 = await srv.http.get('/api/users?limit=2', offline!.token);
      expect(p1.status).toBe(200);
      expect(names(p1)).toEqual([a!.user.username, b!.user.username]);
      expect(p1.body.hasMore).toBe(true);
      expect(p1.body.users[0]).toMatchObject({ id: a!.user.id, displayName: a!.user.displayName, online: true });
      const p2 = await srv.http.get(`/api/users?limit=2&after=${b!.user.username}`, offline!.token);
      expect(p2.body).toEqual({ users: [expect.objectContaining({ id: c!.user.id, online: true })], hasMore: false });
      // `after` need not be a listed username; the offline user sorts between a and b, and is skipped.
      expect(names(await srv.http.get(`/api/users?after=${offline!.user.username}`, offline!.token))).toEqual([b!.user.username, c!.user.username]);
    } finally {
      await Promise.all(conns.map((conn) => conn.end()));
    }
  });

  describe('search', () => {
    let token: string;
    beforeAll(async () => {
      ({ token } = await srv.signUp('searcher'));
      for (const [username, displayName] of [['kim_lee', 'Kim Lee'], ['kimberly', 'Kimberly Ann'], ['leekim', 'Lee Ärzte'], ['other1', 'Nobody']]) {
        await srv.http.post('/api/users', { username, password: 'longenough', displayName });
      }
    });
    const search = (q: string, extra = '') => srv.http.get(`/api/users/search?q=${encodeURIComponent(q)}${extra}`, token);

    it('matches username or display name, case-insensitively, ordered by username', async () => {
      const res = await search('KIM');
      expect(res.status).toBe(200);
      expect(res.body.users.map((u: { username: string }) => u.username)).toEqual(['kim_lee', 'kimberly', 'leekim']);
      expect(res.body.hasMore).toBe(false);
      expect((await search('ärz')).body.users.map((u: { username: string }) => u.username)).toEqual(['leekim']);
    });

    it('pages with limit and after', async () => {
      const p1 = await search('kim', '&limit=2');
      expect(p1.body.users.map((u: { username: string }) => u.username)).toEqual(['kim_lee', 'kimberly']);
      expect(p1.body.hasMore).toBe(true);
      const p2 = await search('kim', '&limit=2&after=kimberly');
      expect(p2.body.users.map((u: { username: string }) => u.username)).toEqual(['leekim']);
      expect(p2.body.hasMore).toBe(false);
    });

    it('treats the query as literal text', async () => {
      // As a LIKE pattern, 'im_' would also match 'kimberly'.
      expect((await search('im_')).body.users.map((u: { username: string }) => u.username)).toEqual(['kim_lee']);
      expect((await search('k.m')).body.users).toEqual([]);
      expect((await search('%')).body.users).toEqual([]);
    });
  });
});
