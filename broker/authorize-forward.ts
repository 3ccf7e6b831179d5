import type { AedesPublishPacket, Client } from 'aedes';
import type { BrokerContext } from './context.js';

/**
 * Per recipient, synchronous, no I/O: a chat's messages and typing reach only its current
 * members (the membership cache follows REST changes at once), an inbox only its owner.
 *
 * Called once per recipient with the same packet, so the chat id of the last topic seen is
 * kept rather than cut out of the topic again for each of a group's members.
 */
export function authorizeForward(ctx: BrokerContext) {
  let lastTopic = '';
  let lastChatId = '';
  return (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null => {
    const conn = ctx.connections.get(client);
    if (!conn) return null;
    const topic = packet.topic;
    if (topic.startsWith('chats/')) {
      if (topic !== lastTopic) {
        lastTopic = topic;
        lastChatId = topic.slice(6, topic.indexOf('/', 6));
      }
      return ctx.membership.isMember(lastChatId, conn.user.id) ? packet : null;
    }
    if (topic.endsWith('/inbox')) return topic === `users/${conn.user.id}/inbox` ? packet : null;
    return packet;
  };
}
