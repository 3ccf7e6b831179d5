import type { ControlBus } from './bus.js';
import { addressKey } from './client-address.js';
import { AppError, invalidInput, unauthorized } from './errors.js';
import { newId } from './ids.js';
import { HashSlots, dummyHash, hashPassword, verifyPassword } from './passwords.js';
import type { RateLimiter } from './rate-limit.js';
import { DISPLAY_NAME_MAX, PASSWORD_MAX, PASSWORD_MIN, cleanName } from './rules.js';
import type { SessionRecord, Store, UserRecord } from './store/store.js';
import { issueToken, verifyToken } from './tokens.js';

export interface Authenticated {
  user: UserRecord;
  session: SessionRecord;
}

/** Where a registration or login comes from: the client's address (per-address limits) and
 * a signal that aborts when the client goes away (it gives up its wait for a hash slot). */
export interface Caller {
  address: string;
  signal?: AbortSignal;
}

const LONE_SURROGATE = /\p{Cs}/u;

/** How often expired sessions are deleted (revoked ones are kept until they expire). */
const SESSION_SWEEP_MS = 3600_000;

/** Accounts and login sessions: the one place tokens are issued, checked and revoked. */
export class Accounts {
  private readonly store: Store;
  private readonly secret: string;
  private readonly tokenTtlSeconds: number;
  private readonly bus: ControlBus;
  private readonly loginFailures: RateLimiter;
  private readonly registerLimiter: RateLimiter;
  private readonly loginLimiter: RateLimiter;
  private readonly hashing: HashSlots;
  private readonly sweep: NodeJS.Timeout;

  constructor(deps: {
    store: Store;
    secret: string;
    tokenTtlSeconds: number;
    bus: ControlBus;
    /** Budget of failed logins per username and client address; successful logins spend nothing. */
    loginFailures: RateLimiter;
    /** Budgets of registrations and of login attempts per client address. */
    registerLimiter: RateLimiter;
    loginLimiter: RateLimiter;
    /** Password hashes (scrypt) this process runs at once. */
    passwordHashesInFlight: number;
    onError: (err: unknown, what: string) => void;
  }) {
    ({ store: this.store, secret: this.secret, tokenTtlSeconds: this.tokenTtlSeconds, bus: this.bus, loginFailures: this.loginFailures } = deps);
    ({ registerLimiter: this.registerLimiter, loginLimiter: this.loginLimiter } = deps);
    this.hashing = new HashSlots(deps.passwordHashesInFlight);
    this.sweep = setInterval(() => {
      this.store.deleteExpiredSessions(Date.now()).catch((err: unknown) => deps.onError(err, 'deleting expired sessions'));
    }, SESSION_SWEEP_MS).unref();
  }

  /** Usernames are case-insensitive: stored and compared lower-cased. */
  async register(input: { username: string; password: string; displayName?: string | undefined }, from: Caller): Promise<UserRecord> {
    await this.spend(this.registerLimiter, addressKey(from.address), 'too many registrations from this address; try again later');
    const username = input.username.toLowerCase();
    const displayName = cleanName(input.displayName ?? username, DISPLAY_NAME_MAX);
    if (displayName === null) {
      throw invalidInput(`displayName must be 1-${DISPLAY_NAME_MAX} characters, not only spaces, without control characters`);
    }
    const pwLength = [...input.password].length;
    if (pwLength < PASSWORD_MIN || pwLength > PASSWORD_MAX) {
      throw invalidInput(`password must be ${PASSWORD_MIN}-${PASSWORD_MAX} characters`);
    }
    if (LONE_SURROGATE.test(input.password)) throw invalidInput('password must be valid Unicode text (it holds a lone surrogate)');
    // NFC: the same password typed on keyboards that compose "é" and ones that send "e" + U+0301.
    const password = input.password.normalize('NFC');
    const passwordHash = await this.hashing.run('register', () => hashPassword(password), from.signal);
    return this.store.createUser({ id: newId(), username, displayName, passwordHash, createdAt: Date.now() });
  }

  /** Same answer, and about the same time, for an unknown user and a wrong password. After
   * too many failures for one username from one address, attempts from that address are
   * refused unchecked for a while; from elsewhere, the right password still logs in. */
  async login(username: string, password: string, from: Caller): Promise<{ token: string; expiresAt: number; user: UserRecord }> {
    const key = username.toLowerCase();
    const address = addressKey(from.address);
    await this.spend(this.loginLimiter, address, 'too many login attempts from this address; try again later');
    const failures = `${address} ${key}`;
    const locked = await this.loginFailures.wait(failures);
    if (locked > 0) throw new AppError('rate_limited', 'too many failed logins for this username from this address; try again later', { retryAfter: locked });
    const user = await this.store.getUserByUsername(key);
    const hash = user?.passwordHash ?? (await dummyHash);
    // A lone surrogate is never a password: hashing would have turned it into U+FFFD, so
    // "\ud800", "\udfff" and "\ufffd" would all match. Accounts registered before passwords
    // were normalised hashed the text as sent: that is tried when it differs from its NFC form.
    const nfc = password.normalize('NFC');
    const ok =
      !LONE_SURROGATE.test(password) &&
      (await this.hashing.run('login', async () => (await verifyPassword(nfc, hash)) || (nfc !== password && (await verifyPassword(password, hash))), from.signal));
    if (!user || !ok) {
      await this.loginFailures.take(failures);
      throw unauthorized('wrong username or password');
    }
    const now = Date.now();
    const iat = Math.floor(now / 1000);
    const exp = iat + this.tokenTtlSeconds;
    const session: SessionRecord = { id: newId(now), userId: user.id, createdAt: now, expiresAt: exp * 1000, revokedAt: null };
    await this.store.createSession(session);
    return { token: issueToken(this.secret, { sub: user.id, sid: session.id, iat, exp }), expiresAt: session.expiresAt, user };
  }

  /** Checks signature, expiry and revocation; the answer names which one failed. */
  async authenticate(token: string): Promise<Authenticated> {
    const check = verifyToken(this.secret, token);
    if (!check.ok) throw unauthorized(check.reason === 'expired' ? 'token expired' : 'invalid token');
    const session = await this.store.getSession(check.claims.sid);
    if (!session || session.userId !== check.claims.sub) throw unauthorized('invalid token');
    if (session.revokedAt !== null) throw unauthorized('token revoked (logged out)');
    const user = await this.store.getUser(session.userId);
    if (!user) throw unauthorized('invalid token');
    return { user, session };
  }

  /** Revokes the session; the broker closes the MQTT connections that used it. */
  async logout(session: SessionRecord): Promise<void> {
    await this.store.revokeSession(session.id, Date.now());
    await this.bus.publish({ type: 'session.revoked', sessionId: session.id, userId: session.userId });
  }

  /** Spends one unit of `key`'s budget, or refuses with 429 and when to try again. */
  private async spend(limiter: RateLimiter, key: string, message: string) {
    if (!(await limiter.take(key))) throw new AppError('rate_limited', message, { retryAfter: await limiter.wait(key) });
  }

  close() {
    clearInterval(this.sweep);
  }
}
