import type { Client, Subscription } from 'aedes';
import type { BrokerContext } from './context.js';
import { parseTopic } from './topics.js';

/**
 * SUBSCRIBE: allowed by the topic table only. A refused topic gets the failure return code
 * (0x80) in the SUBACK and the connection stays up, so a client that re-subscribes to a chat
 * it has left after a reconnect is told, not disconnected. QoS is capped: 1 for messages,
 * presence and inbox, 0 for typing.
 */
export function authorizeSubscribe(ctx: BrokerContext) {
  return (client: Client, sub: Subscription, done: (err: Error | null, sub?: Subscription | null) => void) => {
    const conn = ctx.connections.get(client);
    const topic = parseTopic(sub.topic, { subscription: true });
    if (!conn || !topic) return done(null, null);
    const grant = (maxQos: 0 | 1) => done(null, { ...sub, qos: Math.min(sub.qos, maxQos) as 0 | 1 });

    switch (topic.kind) {
      case 'presence':
        return grant(1);
      case 'inbox':
        return topic.userId === conn.user.id ? grant(1) : done(null, null);
      case 'messages':
      case 'typing':
        ctx.membership.check(topic.chatId, conn.user.id).then(
          (member) => (member ? grant(topic.kind === 'typing' ? 0 : 1) : done(null, null)),
          (err: unknown) => {
            ctx.log.error({ err, topic: sub.topic }, 'membership check failed');
            done(null, null);
          },
        );
    }
  };
}
