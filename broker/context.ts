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
import type { SharedChats } from './shared-chats.js';
import type { SubscriptionBudget } from './subscriptions.js';

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
  /** Subscriptions per connection and per user (broker/subscriptions.ts). */
  readonly subscriptions: SubscriptionBudget;
  /** Who shares a chat with the users connected here: presence goes to co-members only. */
  readonly sharedChats: SharedChats;
  readonly typingLimiter: RateLimiter;
  readonly limits: Limits;
  readonly log: FastifyBaseLogger;
}
