import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { AppError } from './errors.js';

const scrypt = (password: string, salt: Buffer, keylen: number, opts: ScryptOptions) =>
  new Promise<Buffer>((resolve, reject) =>
    scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );

// N=2^15, r=8, p=1: about 32 MiB and tens of milliseconds per hash; runs on libuv's thread pool.
const PARAMS = { N: 1 << 15, r: 8, p: 1 };
const KEYLEN = 32;
const maxmem = 128 * PARAMS.N * PARAMS.r * 2;

/** Hash as `scrypt$N$r$p$salt$key` (base64url), so parameters can be raised later. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, KEYLEN, { ...PARAMS, maxmem });
  return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, key] = stored.split('$');
  if (scheme !== 'scrypt' || !n || !r || !p || !salt || !key) return false;
  const expected = Buffer.from(key, 'base64url');
  const opts = { N: Number(n), r: Number(r), p: Number(p) };
  const actual = await scrypt(password, Buffer.from(salt, 'base64url'), expected.length, {
    ...opts,
    maxmem: 128 * opts.N * opts.r * 2,
  });
  return timingSafeEqual(actual, expected);
}

/** A hash of a random password: verifying against it costs what a real check costs, so
 * logins for unknown usernames take as long as wrong passwords (no account enumeration). */
export const dummyHash = hashPassword(randomBytes(16).toString('hex'));

export type HashPurpose = 'login' | 'register';

/** Waiters allowed per slot before the next one is refused: enough to ride out a short burst,
 * few enough that a waiter is answered within a few hash times. */
export const HASHES_QUEUED_PER_SLOT = 4;

/**
 * The process-wide bound on concurrent password hashing. scrypt is deliberately costly (memory
 * and a libuv thread each), so a flood of logins or registrations must not run any number of
 * them at once: past `slots` running and a short queue waiting, a hash is refused with 503
 * and Retry-After. Registrations hold at most half the slots (rounded up) and have their own
 * share of the queue, so a registration flood cannot keep a login from running.
 */
export class HashSlots {
  private running = 0;
  private runningRegistrations = 0;
  private readonly registrationSlots: number;
  private readonly queue: { purpose: HashPurpose; start: () => void }[] = [];
  private readonly queued: Record<HashPurpose, number> = { login: 0, register: 0 };
  private readonly maxQueued: Record<HashPurpose, number>;

  constructor(private readonly slots: number) {
    this.registrationSlots = Math.max(1, Math.ceil(slots / 2));
    this.maxQueued = { login: HASHES_QUEUED_PER_SLOT * slots, register: HASHES_QUEUED_PER_SLOT * this.registrationSlots };
  }

  /** Runs `work` in a slot, waiting in the queue if need be. A caller that gives up (its
   * `signal` aborts: the client went away) leaves the queue, or frees the slot it was given. */
  async run<T>(purpose: HashPurpose, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (!this.canStart(purpose)) await this.wait(purpose, signal);
    else this.start(purpose);
    try {
      if (signal?.aborted) throw busy('the request was abandoned while waiting to check its password');
      return await work();
    } finally {
      this.finish(purpose);
    }
  }

  private canStart(purpose: HashPurpose) {
    return this.running < this.slots && (purpose === 'login' || this.runningRegistrations < this.registrationSlots);
  }

  private start(purpose: HashPurpose) {
    this.running++;
    if (purpose === 'register') this.runningRegistrations++;
  }

  private finish(purpose: HashPurpose) {
    this.running--;
    if (purpose === 'register') this.runningRegistrations--;
    // First come, first served among the waiters that may start (a registration waits while
    // registrations hold their share, and logins behind it go first).
    for (let i = 0; i < this.queue.length && this.running < this.slots; ) {
      const waiter = this.queue[i]!;
      if (!this.canStart(waiter.purpose)) {
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      this.queued[waiter.purpose]--;
      this.start(waiter.purpose);
      waiter.start();
    }
  }

  /** Resolves holding a slot (given by `finish`), or rejects having left the queue. */
  private wait(purpose: HashPurpose, signal: AbortSignal | undefined): Promise<void> {
    if (this.queued[purpose] >= this.maxQueued[purpose]) return Promise.reject(busy('too many password checks in progress; retry shortly'));
    return new Promise<void>((resolve, reject) => {
      const leave = () => {
        const i = this.queue.indexOf(waiter);
        if (i < 0) return; // already given a slot: `run` sees the abort and frees it
        this.queue.splice(i, 1);
        this.queued[purpose]--;
        reject(busy('the request was abandoned while waiting to check its password'));
      };
      const waiter = {
        purpose,
        start: () => {
          signal?.removeEventListener('abort', leave);
          resolve();
        },
      };
      this.queue.push(waiter);
      this.queued[purpose]++;
      signal?.addEventListener('abort', leave, { once: true });
    });
  }
}

const busy = (message: string) => new AppError('unavailable', message, { retryAfter: 1 });
