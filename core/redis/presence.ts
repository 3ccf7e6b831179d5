import type { Redis } from 'ioredis';
import type { PresenceRegistry } from '../presence.js';

/**
 * Presence shared by every broker node.
 *
 *   <ns>:presence:conns:<userId>    hash nodeId → connections of the user on that node
 *   <ns>:presence:online            set of users with at least one connection anywhere
 *   <ns>:presence:node-users:<node> set of users with connections on that node
 *   <ns>:presence:alive:<node>      heartbeat, expires unless the node renews it
 *   <ns>:presence:nodes             set of nodes that registered connections
 *
 * Every change is one Lua script, so the call that moves a user between offline and online
 * is the only one told so. A node that stops heartbeating (killed) is swept by the others:
 * its connections are removed and its users that are left with none anywhere are returned,
 * for the sweeping node to publish offline.
 */
const CONNECTED = `
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
return redis.call('SADD', KEYS[2], ARGV[2])`;

const DISCONNECTED = `
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[2])
end
if redis.call('HLEN', KEYS[1]) == 0 then
  return redis.call('SREM', KEYS[2], ARGV[2])
end
return 0`;

/** KEYS: online set, node-users set of the dead node, nodes set. ARGV: dead node, conns key prefix. */
const SWEEP = `
local offline = {}
for _, user in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local conns = ARGV[2] .. user
  redis.call('HDEL', conns, ARGV[1])
  if redis.call('HLEN', conns) == 0 and redis.call('SREM', KEYS[1], user) == 1 then
    table.insert(offline, user)
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return offline`;

type Scripts = {
  presenceConnected(conns: string, online: string, nodeUsers: string, nodes: string, node: string, user: string): Promise<number>;
  presenceDisconnected(conns: string, online: string, nodeUsers: string, node: string, user: string): Promise<number>;
  presenceSweep(online: string, nodeUsers: string, nodes: string, node: string, connsPrefix: string): Promise<string[]>;
};

export class RedisPresence implements PresenceRegistry {
  private readonly k;
  private readonly scripts: Scripts;
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    namespace: string,
    private readonly nodeId: string,
    /** A node whose heartbeat is older than this is dead (ms). */
    private readonly ttlMs = 15_000,
  ) {
    const p = `${namespace}:presence`;
    this.k = {
      conns: (user: string) => `${p}:conns:${user}`,
      connsPrefix: `${p}:conns:`,
      online: `${p}:online`,
      nodeUsers: (node: string) => `${p}:node-users:${node}`,
      alive: (node: string) => `${p}:alive:${node}`,
      nodes: `${p}:nodes`,
    };
    redis.defineCommand('presenceConnected', { numberOfKeys: 4, lua: CONNECTED });
    redis.defineCommand('presenceDisconnected', { numberOfKeys: 3, lua: DISCONNECTED });
    redis.defineCommand('presenceSweep', { numberOfKeys: 3, lua: SWEEP });
    this.scripts = redis as unknown as Scripts;
  }

  /** Starts heartbeating; resolves once this node is marked alive. */
  async start(): Promise<void> {
    const beat = () => this.redis.set(this.k.alive(this.nodeId), '1', 'PX', this.ttlMs);
    await beat();
    this.heartbeat = setInterval(() => void beat().catch(() => {}), Math.floor(this.ttlMs / 3)).unref();
  }

  async connected(userId: string): Promise<boolean> {
    const k = this.k;
    return (await this.scripts.presenceConnected(k.conns(userId), k.online, k.nodeUsers(this.nodeId), k.nodes, this.nodeId, userId)) === 1;
  }

  async disconnected(userId: string): Promise<boolean> {
    const k = this.k;
    return (await this.scripts.presenceDisconnected(k.conns(userId), k.online, k.nodeUsers(this.nodeId), this.nodeId, userId)) === 1;
  }

  /** Removes the connections of dead nodes; returns the users that thereby went offline. */
  async sweep(): Promise<string[]> {
    const offline: string[] = [];
    for (const node of await this.redis.smembers(this.k.nodes)) {
      if (node === this.nodeId || (await this.redis.exists(this.k.alive(node)))) continue;
      offline.push(...(await this.scripts.presenceSweep(this.k.online, this.k.nodeUsers(node), this.k.nodes, node, this.k.connsPrefix)));
    }
    return offline;
  }

  async onlineAmong(userIds: readonly string[]): Promise<Set<string>> {
    if (userIds.length === 0) return new Set();
    const flags = await this.redis.smismember(this.k.online, ...userIds);
    return new Set(userIds.filter((_, i) => flags[i] === 1));
  }

  listOnline(): Promise<string[]> {
    return this.redis.smembers(this.k.online);
  }

  count(): Promise<number> {
    return this.redis.scard(this.k.online);
  }

  /** A node that leaves gracefully has counted its connections out already; it stops
   * heartbeating and says so at once instead of letting the key expire. */
  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    await this.redis.del(this.k.alive(this.nodeId)).catch(() => {});
  }
}
