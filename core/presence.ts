/**
 * The presence seam as the REST side reads it: who is online now. The broker feeds it from
 * its connection registry (a user is online while at least one of its connections is up).
 */
export interface PresenceView {
  /** The subset of `userIds` that is online. */
  onlineAmong(userIds: readonly string[]): Promise<Set<string>>;
  /** Ids of every user online now. */
  listOnline(): Promise<string[]>;
}

/** In-process registry: connection count per user. */
export class LocalPresence implements PresenceView {
  private readonly connections = new Map<string, number>();

  /** Returns true when this was the user's first connection (it just came online). */
  connected(userId: string): boolean {
    const n = (this.connections.get(userId) ?? 0) + 1;
    this.connections.set(userId, n);
    return n === 1;
  }

  /** Returns true when this was the user's last connection (it just went offline). */
  disconnected(userId: string): boolean {
    const n = (this.connections.get(userId) ?? 0) - 1;
    if (n > 0) {
      this.connections.set(userId, n);
      return false;
    }
    return this.connections.delete(userId);
  }

  count(): number {
    return this.connections.size;
  }

  async onlineAmong(userIds: readonly string[]): Promise<Set<string>> {
    return new Set(userIds.filter((id) => this.connections.has(id)));
  }

  async listOnline(): Promise<string[]> {
    return [...this.connections.keys()];
  }
}
