import { memoryPersistence } from '../broker/retained.js';
import { LocalBus } from '../core/bus.js';
import type { Config } from '../core/config.js';
import { LocalPresence } from '../core/presence.js';
import { LocalRateLimiter } from '../core/rate-limit.js';
import { LocalSendClaims, SEND_CLAIMS_KEPT, sendKey } from '../core/send-claims.js';
import { LocalSequencer } from '../core/sequencer.js';
import { LocalThrottle } from '../core/throttle.js';
import type { Store } from '../core/store/store.js';
import { type Seams, rateLimits } from './seams.js';

/** The embedded deployment: every seam in this process, Aedes in memory. */
export async function inProcessSeams(config: Config, store: Store): Promise<Seams> {
  const limits = rateLimits(config);
  const limiter = (name: keyof typeof limits) => new LocalRateLimiter(limits[name].burst, limits[name].perSecond);
  return {
    bus: new LocalBus(),
    sequencer: new LocalSequencer((chatId) => store.maxSeq(chatId)),
    presence: new LocalPresence(),
    sendLimiter: limiter('send'),
    sendClaims: await recentClaims(store),
    typingLimiter: limiter('typing'),
    throttle: new LocalThrottle(),
    loginFailures: limiter('login'),
    registerLimiter: limiter('register-ip'),
    loginLimiter: limiter('login-ip'),
    searchLimiter: limiter('search'),
    aedes: { persistence: memoryPersistence() },
    close: async () => {},
  };
}

/**
 * The in-process claims start with the newest keys in the store, so that a client retrying
 * across a restart (a send stored just before a crash, its PUBACK lost) gets a duplicate, as
 * it would have without the restart.
 */
async function recentClaims(store: Store): Promise<LocalSendClaims> {
  const claims = new LocalSendClaims(SEND_CLAIMS_KEPT);
  const recent = await store.recentSends(SEND_CLAIMS_KEPT);
  claims.remember(recent.reverse().map((r) => ({ key: sendKey(r.chatId, r.senderId, r.clientMsgId), sent: r.sent })));
  return claims;
}
