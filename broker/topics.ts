/**
 * The MQTT topic table of the public contract. Any topic not parsed here is refused.
 *
 *   chats/{chatId}/messages   members subscribe and publish (validated, rewritten)
 *   chats/{chatId}/typing     members subscribe and publish (QoS 0, throttled, not stored)
 *   chats/{chatId}/receipts   members subscribe (QoS 0) and publish {"readSeq"} (never forwarded:
 *                             the server announces pointers, coalesced)
 *   users/{userId}/presence   any signed-in user subscribes (also users/+/presence); server publishes;
 *                             delivered only to that user and its co-members (authorize-forward.ts)
 *   users/{userId}/inbox      that user subscribes; server publishes
 */
export type Topic =
  | { kind: 'messages'; chatId: string }
  | { kind: 'typing'; chatId: string }
  | { kind: 'receipts'; chatId: string }
  | { kind: 'presence'; userId: string } // userId may be '+' in a subscription
  | { kind: 'inbox'; userId: string };

/** An id level: no wildcards, no '$', not empty; ids are UUIDs, but unknown ids are answered
 * by the membership check, not by a syntax error. */
const ID = /^[A-Za-z0-9_.-]{1,64}$/;

export function parseTopic(topic: string, { subscription = false } = {}): Topic | null {
  const parts = topic.split('/');
  if (parts.length !== 3) return null;
  const [root, id, leaf] = parts as [string, string, string];
  if (root === 'chats' && ID.test(id)) {
    if (leaf === 'messages') return { kind: 'messages', chatId: id };
    if (leaf === 'typing') return { kind: 'typing', chatId: id };
    if (leaf === 'receipts') return { kind: 'receipts', chatId: id };
  }
  if (root === 'users') {
    if (leaf === 'presence' && (ID.test(id) || (subscription && id === '+'))) return { kind: 'presence', userId: id };
    if (leaf === 'inbox' && ID.test(id)) return { kind: 'inbox', userId: id };
  }
  return null;
}

export const topics = {
  messages: (chatId: string) => `chats/${chatId}/messages`,
  typing: (chatId: string) => `chats/${chatId}/typing`,
  receipts: (chatId: string) => `chats/${chatId}/receipts`,
  presence: (userId: string) => `users/${userId}/presence`,
  inbox: (userId: string) => `users/${userId}/inbox`,
  /** Where refused publishes go after their PUBACK: no client may subscribe to it. */
  discard: '$discard',
};
