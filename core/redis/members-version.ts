import type { Redis } from 'ioredis';

/**
 * The highest `ChatRecord.membersVersion` announced for a chat, under
 * `<namespace>:members-version:<chatId>`. RedisBus raises it with every membership event, before
 * the change's system message is numbered; RedisSequencer numbers a send only if the sender was
 * checked against this version (docs/architecture.md, "Membership changes and sends in flight").
 */
export const membersVersionKey = (namespace: string, chatId: string) => `${namespace}:members-version:${chatId}`;

const RAISE = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 1`;

/** Raises the chat's announced version to `version` (never lowers it). */
export async function raiseMembersVersion(redis: Redis, namespace: string, chatId: string, version: number): Promise<void> {
  await redis.eval(RAISE, 1, membersVersionKey(namespace, chatId), String(version));
}
