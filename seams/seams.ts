import type { AedesBackends } from '../broker/aedes.js';
import type { ControlBus } from '../core/bus.js';
import type { Config } from '../core/config.js';
import type { PresenceRegistry } from '../core/presence.js';
import type { RateLimiter } from '../core/rate-limit.js';
import { TYPING_BURST, TYPING_PER_SECOND } from '../core/rules.js';
import type { SendClaims } from '../core/send-claims.js';
import type { Sequencer } from '../core/sequencer.js';
import type { Throttle } from '../core/throttle.js';

/**
 * What a deployment shares between its nodes, or keeps in its one process: each seam's
 * contract is in its own file under core/. One factory per deployment builds all of them:
 * `inProcessSeams` (seams/in-process.ts, the embedded default) and `redisSeams`
 * (seams/redis.ts, REDIS_URL). The archive is chosen on its own (seams/archive.ts, AMQP_URL).
 */
export interface Seams {
  bus: ControlBus;
  sequencer: Sequencer;
  presence: PresenceRegistry;
  sendLimiter: RateLimiter;
  sendClaims: SendClaims;
  typingLimiter: RateLimiter;
  /** Coalesces read receipts to one per user, chat and second. */
  throttle: Throttle;
  /** Failed logins, keyed on username and client IP address. */
  loginFailures: RateLimiter;
  /** Registrations and login attempts, keyed on client IP address. */
  registerLimiter: RateLimiter;
  loginLimiter: RateLimiter;
  /** Message searches, keyed on user id. */
  searchLimiter: RateLimiter;
  /** Aedes' emitter and persistence for this deployment. */
  aedes: AedesBackends;
  close(): Promise<void>;
}

/** The rate limits every deployment applies, as (burst, per second) per limiter. */
export function rateLimits(config: Config): Record<'send' | 'typing' | 'login' | 'register-ip' | 'login-ip' | 'search', { burst: number; perSecond: number }> {
  const l = config.limits;
  return {
    send: { burst: l.sendBurst, perSecond: l.sendRate },
    typing: { burst: TYPING_BURST, perSecond: TYPING_PER_SECOND },
    login: { burst: l.loginFailureBurst, perSecond: l.loginFailureRate },
    'register-ip': { burst: l.registerBurstPerIp, perSecond: l.registerRatePerIp },
    'login-ip': { burst: l.loginBurstPerIp, perSecond: l.loginRatePerIp },
    search: { burst: l.searchBurst, perSecond: l.searchRate },
  };
}
