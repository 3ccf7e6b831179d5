import type { Client } from 'aedes';

/** The topic filters one connection holds (granted, or being authorized). */
interface Held {
  userId: string;
  clientId: string;
  filters: Set<string>;
}

export type Take = 'held' | 'taken' | 'connection full' | 'user full' | 'closed';

/**
 * Subscriptions per connection and per user (over its connections to this node), so that no
 * client can make the broker hold an unbounded number of them (each costs a matcher entry and
 * its closure). A filter is counted from its authorization on, so the filters of one SUBSCRIBE
 * (authorized in parallel) are all counted; a filter the connection holds already is not
 * counted again. The budget comes back on UNSUBSCRIBE and when the connection goes.
 *
 * A connection taking over the client id of another (same user) is set up, its session's
 * subscriptions restored, before Aedes closes the old one: the old one's filters are left out
 * of the user's count meanwhile, as the connection limit leaves out the old connection.
 */
export class SubscriptionBudget {
  private readonly ofClient = new WeakMap<Client, Held>();
  /** Per user, the connections that hold a budget; a user with none has no entry. */
  private readonly ofUser = new Map<string, Set<Held>>();

  constructor(
    private readonly perConnection: number,
    private readonly perUser: number,
  ) {}

  /** Once the connection is authenticated, before any subscription (restored ones included). */
  open(client: Client, userId: string) {
    if (this.ofClient.has(client)) return;
    const held: Held = { userId, clientId: client.id, filters: new Set() };
    this.ofClient.set(client, held);
    let users = this.ofUser.get(userId);
    if (!users) this.ofUser.set(userId, (users = new Set()));
    users.add(held);
  }

  /** Takes one subscription of the budget for `filter` ('taken'), unless the connection holds
   * it already ('held') or a bound is reached. */
  take(client: Client, filter: string): Take {
    const held = this.ofClient.get(client);
    if (!held || !this.ofUser.get(held.userId)?.has(held)) return 'closed';
    if (held.filters.has(filter)) return 'held';
    if (held.filters.size >= this.perConnection) return 'connection full';
    if (this.userCount(held) >= this.perUser) return 'user full';
    held.filters.add(filter);
    return 'taken';
  }

  /** Gives `filter` back (UNSUBSCRIBE, or an authorization that failed after `take`). */
  give(client: Client, filter: string) {
    this.ofClient.get(client)?.filters.delete(filter);
  }

  /** The connection is gone: its whole budget comes back. Idempotent. */
  close(client: Client) {
    const held = this.ofClient.get(client);
    if (!held) return;
    held.filters.clear();
    const users = this.ofUser.get(held.userId);
    if (!users?.delete(held)) return;
    if (users.size === 0) this.ofUser.delete(held.userId);
  }

  /** Filters held by a user's connections, leaving out another connection with the same
   * client id (the one being taken over). At most MAX_CONNECTIONS_PER_USER entries. */
  private userCount(held: Held): number {
    let n = 0;
    for (const other of this.ofUser.get(held.userId) ?? []) if (other === held || other.clientId !== held.clientId) n += other.filters.size;
    return n;
  }

  /** Filters held on this node (a metric: 0 once every connection has gone). */
  get held(): number {
    let n = 0;
    for (const users of this.ofUser.values()) for (const held of users) n += held.filters.size;
    return n;
  }

  /** Users holding a budget on this node (a metric: 0 once every connection has gone). */
  get users(): number {
    return this.ofUser.size;
  }
}
