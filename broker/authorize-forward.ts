import type { AedesPublishPacket, Client } from 'aedes';
import type { BrokerContext } from './context.js';

/**
 * Per recipient, synchronous, no I/O: a chat's messages and typing reach only its current
 * members (the membership cache follows REST changes at once), an inbox only its owner.
 */
export function authorizeForward(ctx: BrokerContext) {
  return (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null => {
    const conn = ctx.connections.get(client);
    if (!conn) return null;
    const topic = packet.topic;
    if (topic.startsWith('chats/')) {
      const chatId = topic.slice(6, topic.indexOf('/', 6));
      return ctx.membership.isMember(chatId, conn.user.id) ? packet : null;
    }
    if (topic.endsWith('/inbox')) return topic === `users/${conn.user.id}/inbox` ? packet : null;
    return packet;
  };
}
