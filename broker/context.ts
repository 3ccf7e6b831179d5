import type { Aedes } from 'aedes';
import type { FastifyBaseLogger } from 'fastify';
import type { Accounts } from '../core/accounts.js';
import type { Limits } from '../core/config.js';
import type { Membership } from '../core/membership.js';
import type { PresenceRegistry } from '../core/presence.js';
import type { RateLimiter } from '../core/rate-limit.js';
import type { Receipts } from '../core/receipts.js';
import type { Sender } from '../core/sender.js';
import type { Store } from '../core/store/store.js';
import type { Connections } from './connections.js';

/** What the protocol-step handlers share: built once, with the Aedes instance, never changed. */
export interface BrokerContext {
  readonly aedes: Aedes;
  readonly accounts: Accounts;
  readonly store: Store;
  readonly membership: Membership;
  readonly sender: Sender;
  readonly receipts: Receipts;
  readonly presence: PresenceRegistry;
  readonly connections: Connections;
  readonly typingLimiter: RateLimiter;
  readonly limits: Limits;
  readonly log: FastifyBaseLogger;
}
