import type { Aedes } from 'aedes';
import type { FastifyBaseLogger } from 'fastify';
import type { Accounts } from '../core/accounts.js';
import type { Limits } from '../core/config.js';
import type { Membership } from '../core/membership.js';
import type { Messenger } from '../core/messenger.js';
import type { PresenceRegistry } from '../core/presence.js';
import type { RateLimiter } from '../core/rate-limit.js';
import type { Store } from '../core/store/store.js';
import type { Connections } from './connections.js';

/** What the protocol-step handlers share. */
export interface BrokerContext {
  aedes: Aedes;
  accounts: Accounts;
  store: Store;
  membership: Membership;
  messenger: Messenger;
  presence: PresenceRegistry;
  connections: Connections;
  typingLimiter: RateLimiter;
  limits: Limits;
  log: FastifyBaseLogger;
  /** Set while the broker shuts down: no new connections are accepted. */
  closing: boolean;
}
