import { LocalBus } from '../core/bus.js';
import { LocalPresence } from '../core/presence.js';
import { LocalRateLimiter } from '../core/rate-limit.js';
import { LocalSendClaims } from '../core/send-claims.js';
import { LocalSequencer } from '../core/sequencer.js';
import { busContract, presenceContract, rateLimiterContract, sendClaimsContract, sequencerContract } from './contracts/seams.contract.js';

// One process is one node: both handles are the same object.
const one = <T>(x: T) => ({ nodes: [x, x] as [T, T], cleanup: async () => {} });

sequencerContract('in-process', async (seed) => one(new LocalSequencer(seed)));
rateLimiterContract('in-process', async (burst, perSecond) => one(new LocalRateLimiter(burst, perSecond)));
busContract('in-process', async () => one(new LocalBus()));
presenceContract('in-process', async () => one(new LocalPresence()));
sendClaimsContract('in-process', async () => one(new LocalSendClaims()));
