import type { FastifyBaseLogger } from 'fastify';
import { AmqpArchive } from '../core/amqp/archive.js';
import { type Archive, StoreArchive } from '../core/archive.js';
import { type Config, StartupError } from '../core/config.js';
import type { Store } from '../core/store/store.js';

/** Where envelopes become durable: a RabbitMQ queue that the workers drain into the store
 * (AMQP_URL), or the store itself by group commit (the embedded default). */
export async function openArchive(config: Config, store: Store, log: FastifyBaseLogger): Promise<Archive> {
  if (!config.amqpUrl) return new StoreArchive(store);
  return AmqpArchive.connect(config.amqpUrl, config.namespace, (err) => log.error({ err }, 'rabbitmq (archive)')).catch((err: Error) => {
    throw new StartupError(`cannot reach RabbitMQ at AMQP_URL: ${err.message}`);
  });
}
