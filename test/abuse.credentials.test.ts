import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressKey } from '../core/client-address.js';
import { HASHES_QUEUED_PER_SLOT } from '../core/passwords.js';
import { httpFrom } from './helpers/http-from.js';
import { pollUntil } from './helpers/poll.js';
import { type HttpResult, type TestServer, startTestServer } from './helpers/server.js';

/**
 * Credentials under abuse (issue 20, item 1): registrations and logins are budgeted per client
 * address (429 + Retry-After), failed logins per username and address (a guesser locks out
 * only themselves), and password hashing is bounded per process (503 + Retry-After past the
 * slots and a short queue; registrations never hold every slot). Each server here sets its own
 * small limits over the roomy ones specs run with. Clients are told apart by their loopback
 * source address (127.0.0.x).
 */

const PASSWORD = 'seeded-password'; // what srv.seedUsers gives every account
const login = (username: string, password = PASSWORD) => ({ username, password });

function expectRetryAfter(res: HttpResult, code: string, max: number) {
  expect([res.status, res.body.error.code]).toEqual([code === 'unavailable' ? 503 : 429, code]);
  const seconds = Number(res.headers.get('retry-after'));
  expect(seconds).toBeGreaterThanOrEqual(1);
  expect(seconds).toBeLessThanOrEqual(max);
}

describe('per-address budgets of registrations, logins and failed logins', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({
      REGISTER_BURST_PER_IP: '3', REGISTER_RATE_PER_IP: '0.01', // then one every 100 s
      LOGIN_BURST_PER_IP: '5', LOGIN_RATE_PER_IP: '0.01', // the guesser below makes 5 attempts
      LOGIN_FAILURE_BURST: '3', LOGIN_FAILURE_RATE: '0.02', // then one every 50 s
    });
  });
  afterAll(() => srv.stop());

  it('refuses the registration past the burst from one address with 429 and Retry-After; another address still registers', async () => {
    const flood = httpFrom('127.0.0.41', srv.url);
    for (let i = 0; i < 3; i++) expect((await flood.post('/api/users', { username: `flood_${i}`, password: PASSWORD })).status).toBe(201);
    const refused = await flood.post('/api/users', { username: 'flood_3', password: PASSWORD });
    expectRetryAfter(refused, 'rate_limited', 100);
    expect((await httpFrom('127.0.0.42', srv.url).post('/api/users', { username: 'flood_3', password: PASSWORD })).status).toBe(201);
    // The refused one was not created: its name was free for the other address.
  });

  it('refuses the login attempt past the burst from one address with 429 and Retry-After, even with the right password; another address logs in', async () => {
    const [user] = await srv.seedUsers(1, 'bucket');
    const many = httpFrom('127.0.0.43', srv.url);
    for (let i = 0; i < 5; i++) expect((await many.post('/api/users/login', login(user!.username))).status).toBe(200);
    expectRetryAfter(await many.post('/api/users/login', login(user!.username)), 'rate_limited', 100);
    expect((await httpFrom('127.0.0.44', srv.url).post('/api/users/login', login(user!.username))).status).toBe(200);
  });

  it('locks out failed logins per username and address: the guesser gets 429 and Retry-After, the real user logs in from elsewhere', async () => {
    const [victim, other] = await srv.seedUsers(2, 'victim');
    const guesser = httpFrom('127.0.0.45', srv.url);
    for (let i = 0; i < 3; i++) expect((await guesser.post('/api/users/login', login(victim!.username, `guess-${i}`))).status).toBe(401);
    expectRetryAfter(await guesser.post('/api/users/login', login(victim!.username)), 'rate_limited', 50);
    expect((await httpFrom('127.0.0.46', srv.url).post('/api/users/login', login(victim!.username))).status).toBe(200);
    // The guesser's own logins to other accounts are not locked.
    expect((await guesser.post('/api/users/login', login(other!.username))).status).toBe(200);
  });
});

describe('the bound on password hashes in flight', () => {
  let srv: TestServer;
  let user: string;
  const roomy = { LOGIN_FAILURE_BURST: '1000000' };
  beforeAll(async () => {
    srv = await startTestServer({ PASSWORD_HASHES_IN_FLIGHT: '1', ...roomy });
    user = (await srv.seedUsers(1, 'busy'))[0]!.username;
  });
  afterAll(() => srv.stop());

  const loginsWork = () => srv.http.post('/api/users/login', login(user)).then((r) => r.status);

  it('answers logins past one slot and its queue with 503 and Retry-After: 1, every other with 200 or 401, and works again afterwards', async () => {
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => httpFrom(`127.0.1.${i + 1}`, srv.url).post('/api/users/login', login(user, i % 2 ? PASSWORD : 'wrong-password'))),
    );
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => ![200, 401, 503].includes(s))).toEqual([]);
    const busy = answers.filter((a) => a.status === 503);
    expect(busy.length).toBeGreaterThan(0);
    for (const b of busy) {
      expect(b.body.error.code).toBe('unavailable');
      expect(b.headers.get('retry-after')).toBe('1');
    }
    expect(statuses.filter((s) => s !== 503).length).toBeGreaterThanOrEqual(1 + HASHES_QUEUED_PER_SLOT);
    for (let i = 0; i < 3; i++) expect(await loginsWork()).toBe(200);
  });

  it('frees the slots and queue places of clients that give up while waiting', async () => {
    const clients = Array.from({ length: 20 }, () => new AbortController());
    const waiting = clients.map((client, i) =>
      httpFrom(`127.0.2.${i + 1}`, srv.url).post('/api/users/login', login(user), client.signal).catch(() => 'abandoned' as const),
    );
    // Once one is refused the slot and the queue are full: the clients waiting there leave.
    const refused = waiting.map(async (w) => {
      const res = await w;
      if (res === 'abandoned' || res.status !== 503) await new Promise(() => {});
    });
    await Promise.race([...refused, Promise.all(waiting)]);
    for (const client of clients) client.abort();
    expect((await Promise.all(waiting)).map((w) => (w === 'abandoned' ? 'abandoned' : w.status)).filter((s) => ![200, 503, 'abandoned'].includes(s))).toEqual([]);
    // As many logins at once as a free slot and queue take are all answered: nothing is held.
    const together = () => Promise.all(Array.from({ length: 1 + HASHES_QUEUED_PER_SLOT }, (_, i) => httpFrom(`127.0.3.${i + 1}`, srv.url).post('/api/users/login', login(user))));
    const last = await pollUntil(async () => (await together()).map((r) => r.status), { done: (s) => s.every((x) => x === 200), within: 10_000, every: 100 });
    expect(last).toEqual(Array(1 + HASHES_QUEUED_PER_SLOT).fill(200));
  });
});

describe('registrations hold at most half the hash slots', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({ PASSWORD_HASHES_IN_FLIGHT: '2' });
  });
  afterAll(() => srv.stop());

  it('lets a full slot and queue of logins through while a registration flood is refused 503', async () => {
    const users = await srv.seedUsers(1 + 2 * HASHES_QUEUED_PER_SLOT, 'bystander');
    let stop = false;
    const seen: number[] = [];
    let n = 0;
    // More registrations outstanding at all times than their one slot and queue take.
    const flood = Array.from({ length: 16 }, async () => {
      while (!stop) seen.push((await srv.http.post('/api/users', { username: `reg_${n++}`, password: PASSWORD })).status);
    });
    await pollUntil(() => seen.includes(503), { within: 10_000, every: 10 });
    // Registrations hold one slot: the other is the logins', with the logins' queue. As many
    // logins at once as that takes are all answered, while registrations are still refused.
    const before = seen.length;
    const logins = await Promise.all(users.slice(0, 1 + 2 * HASHES_QUEUED_PER_SLOT).map((u) => srv.http.post('/api/users/login', login(u.username))));
    const during = seen.slice(before);
    stop = true;
    await Promise.all(flood);
    expect(logins.map((r) => r.status)).toEqual(Array(logins.length).fill(200));
    expect(during).toContain(503);
    expect(seen.filter((s) => ![201, 503].includes(s))).toEqual([]);
  });
});

describe('addressKey: what per-address limits count a client under', () => {
  it('keeps IPv4, reads IPv4-mapped IPv6 as IPv4, and takes the /64 of other IPv6 addresses', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::FFFF:cb00:7107')).toBe('203.0.113.7');
    expect(addressKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:DB8:1:2::9')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:3::9')).toBe('2001:db8:1:3::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });
});
