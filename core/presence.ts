/**
 * The presence seam: who is online, fed by the broker nodes' connections.
 *
 * Contract (every implementation; checked by test/contracts/seams.contract.ts):
 * - A user is online while it has at least one connection on any node.
 * - `connected` / `disconnected` count one connection of the calling node and return true
 *   exactly when that call moved the user between offline and online, so that exactly one
 *   node publishes each transition, however the connections of a user are spread.
 * - `onlineAmong`, `listOnline` and `count` give the same answer on every node.
 */
export interface PresenceView {
  /** The subset of `userIds` that is online. */
  onlineAmong(userIds: readonly string[]): Promise<Set<string>>;
  /** Ids of every user online now. */
  listOnline(): Promise<string[]>;
  /** How many users are online. */
  count(): Promise<number>;
}

export interface PresenceRegistry extends PresenceView {
  /** A connection of `userId` on this node is up; true when the user just came online. */
  connected(userId: string): Promise<boolean>;
  /** A connection of `userId` on this node is gone; true when the user just went offline. */
  disconnected(userId: string): Promise<boolean>;
  /** Shared registries only: removes the connections of nodes that died, and returns the
   * users thereby left offline (each reported to one caller only). */
  sweep?(): Promise<string[]>;
  /** Stops this node's background work (heartbeats). Its connections are not forgotten. */
  close(): Promise<void>;
}

/** In-process registry: connection count per user. */
export class LocalPresence implements PresenceRegistry {
  private readonly connections = new Map<string, number>();

  async connected(userId: string): Promise<boolean> {
    const n = (this.connections.get(userId) ?? 0) + 1;
    this.connections.set(userId, n);
    return n === 1;
  }

  async disconnected(userId: string): Promise<boolean> {
    const n = (this.connections.get(userId) ?? 0) - 1;
    if (n > 0) {
      this.connections.set(userId, n);
      return false;
    }
    return this.connections.delete(userId);
  }

  async onlineAmong(userIds: readonly string[]): Promise<Set<string>> {
    return new Set(userIds.filter((id) => this.connections.has(id)));
  }

  async listOnline(): Promise<string[]> {
    return [...this.connections.keys()];
  }

  async count(): Promise<number> {
    return this.connections.size;
  }

  async close(): Promise<void> {}
}
