import type { ControlBus } from './bus.js';
import { AppError, invalidInput, unauthorized } from './errors.js';
import { newId } from './ids.js';
import { dummyHash, hashPassword, verifyPassword } from './passwords.js';
import type { RateLimiter } from './rate-limit.js';
import { DISPLAY_NAME_MAX, PASSWORD_MAX, PASSWORD_MIN, cleanName } from './rules.js';
import type { SessionRecord, Store, UserRecord } from './store/store.js';
import { issueToken, verifyToken } from './tokens.js';

export interface Authenticated {
  user: UserRecord;
  session: SessionRecord;
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
  private readonly sweep: NodeJS.Timeout;

  constructor(deps: {
    store: Store;
    secret: string;
    tokenTtlSeconds: number;
    bus: ControlBus;
    /** Budget of failed logins per username; successful logins spend nothing. */
    loginFailures: RateLimiter;
    onError: (err: unknown, what: string) => void;
  }) {
    ({ store: this.store, secret: this.secret, tokenTtlSeconds: this.tokenTtlSeconds, bus: this.bus, loginFailures: this.loginFailures } = deps);
    this.sweep = setInterval(() => {
      this.store.deleteExpiredSessions(Date.now()).catch((err: unknown) => deps.onError(err, 'deleting expired sessions'));
    }, SESSION_SWEEP_MS).unref();
  }

  /** Usernames are case-insensitive: stored and compared lower-cased. */
  async register(input: { username: string; password: string; displayName?: string | undefined }): Promise<UserRecord> {
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
    const passwordHash = await hashPassword(input.password.normalize('NFC'));
    return this.store.createUser({ id: newId(), username, displayName, passwordHash, createdAt: Date.now() });
  }

  /** Same answer, and about the same time, for an unknown user and a wrong password. After
   * too many failures for one username, attempts are refused unchecked for a while. */
  async login(username: string, password: string): Promise<{ token: string; expiresAt: number; user: UserRecord }> {
    const key = username.toLowerCase();
    if (!(await this.loginFailures.has(key))) throw new AppError('rate_limited', 'too many failed logins for this username; try again later');
    const user = await this.store.getUserByUsername(key);
    const hash = user?.passwordHash ?? (await dummyHash);
    // A lone surrogate is never a password: hashing would have turned it into U+FFFD, so
    // "\ud800", "\udfff" and "\ufffd" would all match. Accounts registered before passwords
    // were normalised hashed the text as sent: that is tried when it differs from its NFC form.
    const nfc = password.normalize('NFC');
    const ok = !LONE_SURROGATE.test(password) && ((await verifyPassword(nfc, hash)) || (nfc !== password && (await verifyPassword(password, hash))));
    if (!user || !ok) {
      await this.loginFailures.take(key);
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

  close() {
    clearInterval(this.sweep);
  }
}
