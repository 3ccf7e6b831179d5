import { describe, expect, it } from 'vitest';
import { LocalBus } from '../core/bus.js';
import { LocalPresence } from '../core/presence.js';
import { LocalRateLimiter } from '../core/rate-limit.js';
import { LocalSendClaims } from '../core/send-claims.js';
import { LocalSequencer } from '../core/sequencer.js';
import { LocalThrottle } from '../core/throttle.js';
import { busContract, presenceContract, rateLimiterContract, sendClaimsContract, sequencerContract, throttleContract } from './contracts/seams.contract.js';

// One process is one node: both handles are the same object.
const one = <T>(x: T) => ({ nodes: [x, x] as [T, T], cleanup: async () => {} });

sequencerContract('in-process', async (seed) => one(new LocalSequencer(seed)));
rateLimiterContract('in-process', async (burst, perSecond) => one(new LocalRateLimiter(burst, perSecond)));
busContract('in-process', async () => one(new LocalBus()));
presenceContract('in-process', async () => one(new LocalPresence()));
sendClaimsContract('in-process', async () => one(new LocalSendClaims()));
throttleContract('in-process', async () => one(new LocalThrottle()));

describe('LocalSendClaims, seeded at start with the store\'s newest keys', () => {
  it('answers a remembered key as sent; keeps the newest `capacity` keys, seeded or claimed here', async () => {
    const claims = new LocalSendClaims(3);
    claims.remember([1, 2, 3].map((seq) => ({ key: `k${seq}`, sent: { id: `m${seq}`, seq } })));
    expect(await claims.claim('k2')).toEqual({ claimed: false, sent: { id: 'm2', seq: 2 } });
    const fresh = await claims.claim('k4');
    expect(fresh.claimed).toBe(true);
    if (fresh.claimed) await fresh.hold.complete({ id: 'm4', seq: 4 });
    // k1, the oldest, made room for k4.
    expect((await claims.claim('k1')).claimed).toBe(true);
    expect(await claims.claim('k4')).toEqual({ claimed: false, sent: { id: 'm4', seq: 4 } });
  });
});
