import type { Channel } from 'amqplib';

/** How many times a message is delivered before it is dead-lettered instead of retried. */
export const DELIVERY_LIMIT = 5;

export const queueNames = (namespace: string) => ({
  archive: `${namespace}.archive`,
  dead: `${namespace}.archive.dead`,
});

/**
 * Declares the archive queues (idempotent; broker and worker both call it): a durable quorum
 * queue that dead-letters a message after DELIVERY_LIMIT deliveries, and the queue that keeps
 * those poison messages for a person to look at.
 */
export async function assertArchiveQueues(channel: Channel, namespace: string): Promise<ReturnType<typeof queueNames>> {
  const names = queueNames(namespace);
  await channel.assertQueue(names.dead, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.assertQueue(names.archive, {
    durable: true,
    arguments: {
      'x-queue-type': 'quorum',
      'x-delivery-limit': DELIVERY_LIMIT,
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': names.dead,
    },
  });
  return names;
}
