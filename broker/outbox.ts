import type { Aedes } from 'aedes';
import type { FastifyBaseLogger } from 'fastify';
import { envelopeJson } from '../core/envelope.js';
import type { Outbox } from '../core/outbox.js';
import { topics } from './topics.js';

/** The services' outbox (core/outbox.ts) on this node's Aedes: QoS 1 publishes (receipts: QoS
 * 0), which a cluster's emitter carries to every node. */
export function brokerOutbox(aedes: Aedes, log: FastifyBaseLogger): Outbox {
  const publish = (topic: string, json: string, qos: 0 | 1 = 1) => {
    aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(json), qos, retain: false, dup: false }, (err) => {
      if (err) log.error({ err, topic }, 'publish failed');
    });
  };
  return {
    toChat: (envelope) => publish(topics.messages(envelope.chatId), envelopeJson(envelope)),
    toInbox: (userId, event) => publish(topics.inbox(userId), JSON.stringify(event)),
    toReceipts: (chatId, receipt) => publish(topics.receipts(chatId), JSON.stringify(receipt), 0),
  };
}
