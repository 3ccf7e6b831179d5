import type { AedesPublishPacket, Client } from 'aedes';
import type { BrokerContext } from './context.js';

const PRESENCE_SUFFIX = '/presence';

/**
 * Per recipient, synchronous, no I/O: a chat's messages and typing reach only its current
 * members (the membership cache follows REST changes at once), an inbox only its owner, a
 * user's presence only itself and the users it shares a chat with (broker/shared-chats.ts).
 * Aedes asks it for live deliveries, for the retained messages sent at SUBSCRIBE and for a
 * persistent session's queue alike, so no stranger's presence is sent by any of them.
 *
 * Called once per recipient with the same packet, so the id of the last topic seen is kept
 * rather than cut out of the topic again for each recipient.
 */
export function authorizeForward(ctx: BrokerContext) {
  let lastTopic = '';
  let lastId = '';
  const idOf = (topic: string, from: number, to: number) => {
    if (topic !== lastTopic) {
      lastTopic = topic;
      lastId = topic.slice(from, to);
    }
    return lastId;
  };
  return (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null => {
    const conn = ctx.connections.get(client);
    if (!conn) return null;
    const topic = packet.topic;
    if (topic.startsWith('chats/')) {
      return ctx.membership.isMember(idOf(topic, 6, topic.indexOf('/', 6)), conn.user.id) ? packet : null;
    }
    if (topic.endsWith('/inbox')) return topic === `users/${conn.user.id}/inbox` ? packet : null;
    if (topic.endsWith(PRESENCE_SUFFIX) && topic.startsWith('users/')) {
      return ctx.sharedChats.share(conn.user.id, idOf(topic, 6, topic.length - PRESENCE_SUFFIX.length)) ? packet : null;
    }
    return packet;
  };
}
