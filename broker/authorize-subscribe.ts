import type { Client, Subscription } from 'aedes';
import type { BrokerContext } from './context.js';
import { parseTopic } from './topics.js';

/** Highest QoS a topic is served with: typing and receipts are fire-and-forget (receipts catch
 * up by REST), the rest at least once. */
export const maxQos = (topic: string): 0 | 1 => (topic.endsWith('/typing') || topic.endsWith('/receipts') ? 0 : 1);

/**
 * Aedes writes the SUBACK with the QoS the client asked for, whatever authorizeSubscribe
 * returns, so the cap is applied to the SUBSCRIBE packet itself as it leaves the parser,
 * before Aedes handles it: the SUBACK then reports what is really granted (MQTT 3.1.1
 * §3.9.3) and the subscription is stored with that QoS.
 */
export function capRequestedQos(client: Client) {
  const parser = (client as unknown as { _parser: import('node:events').EventEmitter })._parser;
  parser.prependListener('packet', (packet: { cmd: string; subscriptions?: Subscription[] }) => {
    if (packet.cmd !== 'subscribe' || !packet.subscriptions) return;
    for (const sub of packet.subscriptions) sub.qos = Math.min(sub.qos, maxQos(sub.topic)) as 0 | 1;
  });
}

/**
 * SUBSCRIBE (and the subscriptions of a persistent session being restored): allowed by the
 * topic table, within the subscription budget of the connection and of its user. A refused
 * topic gets the failure return code (0x80) in the SUBACK and the connection stays up, so a
 * client that re-subscribes to a chat it has left after a reconnect is told, not disconnected.
 * QoS is capped by capRequestedQos.
 */
export function authorizeSubscribe(ctx: BrokerContext) {
  return (client: Client, sub: Subscription, done: (err: Error | null, sub?: Subscription | null) => void) => {
    const conn = ctx.connections.get(client);
    const topic = parseTopic(sub.topic, { subscription: true });
    if (!conn || !topic) return done(null, null);
    // Counted from here, so that the filters of one SUBSCRIBE, checked in parallel, all count.
    const taken = ctx.subscriptions.take(client, sub.topic);
    if (taken !== 'held' && taken !== 'taken') return done(null, null);
    const grant = () => done(null, sub);
    const refuse = () => {
      // A filter already held stays held: Aedes keeps the subscription it has.
      if (taken === 'taken') ctx.subscriptions.give(client, sub.topic);
      done(null, null);
    };

    switch (topic.kind) {
      case 'presence':
        return grant(); // anyone's, but only co-members' are delivered (authorizeForward)
      case 'inbox':
        return topic.userId === conn.user.id ? grant() : refuse();
      case 'messages':
      case 'typing':
      case 'receipts':
        ctx.membership.check(topic.chatId, conn.user.id).then(
          (member) => (member ? grant() : refuse()),
          (err: unknown) => {
            ctx.log.error({ err, topic: sub.topic }, 'membership check failed');
            refuse();
          },
        );
    }
  };
}
