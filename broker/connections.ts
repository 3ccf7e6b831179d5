import type { Client } from 'aedes';

/** What the broker knows about an authenticated connection. */
export interface Conn {
  user: { id: string; username: string; displayName: string };
  sessionId: string;
  /** When the login token expires (ms); the connection is closed then. */
  expiresAt: number;
  expiryTimer?: NodeJS.Timeout;
}

const MAX_TIMER = 2 ** 31 - 1;

/** This node's authenticated connections, by client, by user and by login session. */
export class Connections {
  private readonly byClient = new WeakMap<Client, Conn>();
  private readonly byUser = new Map<string, Set<Client>>();
  private readonly bySession = new Map<string, Set<Client>>();
  /** Authenticated connections not ready yet, per user (Aedes restores their subscriptions
   * and delivers their offline queue before 'clientReady'). */
  private readonly settingUp = new Map<string, number>();
  private readonly gone = new WeakSet<Client>();

  /** Called once the connection is authenticated. */
  attach(client: Client, conn: Conn) {
    this.byClient.set(client, conn);
    this.settingUp.set(conn.user.id, (this.settingUp.get(conn.user.id) ?? 0) + 1);
  }

  private setUp(userId: string) {
    const n = (this.settingUp.get(userId) ?? 0) - 1;
    if (n > 0) this.settingUp.set(userId, n);
    else this.settingUp.delete(userId);
  }

  get(client: Client): Conn | undefined {
    return this.byClient.get(client);
  }

  /** Called when the connection is ready (CONNACK sent); false if it has gone already. A
   * token's connections end when it expires, as they end when it is revoked. */
  add(client: Client, conn: Conn): boolean {
    if (this.gone.has(client)) return false;
    this.setUp(conn.user.id);
    add(this.byUser, conn.user.id, client);
    add(this.bySession, conn.sessionId, client);
    const closeAtExpiry = () => {
      const left = conn.expiresAt - Date.now();
      if (left > 0) conn.expiryTimer = setTimeout(closeAtExpiry, Math.min(left, MAX_TIMER)).unref();
      else client.close();
    };
    closeAtExpiry();
    return true;
  }

  /** Called when it goes; returns its Conn if it had been added (and not removed since). */
  remove(client: Client): Conn | undefined {
    const conn = this.byClient.get(client);
    if (!conn || this.gone.has(client)) return undefined; // a second call: shutdown, then 'clientDisconnect'
    this.gone.add(client);
    if (!this.byUser.get(conn.user.id)?.has(client)) {
      this.setUp(conn.user.id); // gone before it was ready
      return undefined;
    }
    clearTimeout(conn.expiryTimer);
    remove(this.byUser, conn.user.id, client);
    remove(this.bySession, conn.sessionId, client);
    return conn;
  }

  /** Live connections of a user, not counting the client id about to be taken over. */
  count(userId: string, exceptClientId: string): number {
    let n = 0;
    for (const c of this.byUser.get(userId) ?? []) if (c.id !== exceptClientId) n++;
    return n;
  }

  /** Whether the user has a connection to this node, live or being set up. */
  connected(userId: string): boolean {
    return this.byUser.has(userId) || this.settingUp.has(userId);
  }

  ofUser(userId: string): Client[] {
    return [...(this.byUser.get(userId) ?? [])];
  }

  ofSession(sessionId: string): Client[] {
    return [...(this.bySession.get(sessionId) ?? [])];
  }

  /** Every live connection of this node. */
  all(): Client[] {
    return [...this.byUser.values()].flatMap((set) => [...set]);
  }
}

function add<K, V>(map: Map<K, Set<V>>, key: K, value: V) {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(value);
}

function remove<K, V>(map: Map<K, Set<V>>, key: K, value: V) {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}
