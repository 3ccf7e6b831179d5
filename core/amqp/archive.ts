import type { ConfirmChannel } from 'amqplib';
import type { Archive } from '../archive.js';
import { type Envelope, type SentRef, envelopeJson } from '../envelope.js';
import { AmqpConnection } from './connection.js';
import { assertArchiveQueues, queueNames } from './topology.js';

/**
 * Scaled-out archive: an envelope is durable once RabbitMQ confirms it on the durable quorum
 * queue; the `worker` role writes it to the store later (history may lag live delivery).
 * While RabbitMQ is unreachable, `append` rejects at once (the broker then sends no PUBACK and
 * the client retries); the connection is re-established with backoff in the background.
 */
export class AmqpArchive implements Archive {
  private readonly link: AmqpConnection<ConfirmChannel>;
  private readonly queue: string;

  private constructor(url: string, namespace: string, onError: (err: unknown) => void) {
    this.queue = queueNames(namespace).archive;
    this.link = new AmqpConnection(url, {
      open: async (connection) => {
        const channel = await connection.createConfirmChannel();
        await assertArchiveQueues(channel, namespace);
        return channel;
      },
      onError,
    });
  }

  /** Connects once (rejecting if RabbitMQ cannot be reached), then keeps reconnecting. */
  static async connect(url: string, namespace: string, onError: (err: unknown) => void = () => {}): Promise<AmqpArchive> {
    const archive = new AmqpArchive(url, namespace, onError);
    await archive.link.start();
    return archive;
  }

  append(envelope: Envelope): Promise<SentRef | null> {
    const channel = this.link.channel;
    if (!channel) return Promise.reject(new Error('RabbitMQ is unreachable: message not accepted'));
    return new Promise((resolve, reject) => {
      channel.sendToQueue(
        this.queue,
        Buffer.from(envelopeJson(envelope)),
        { persistent: true, contentType: 'application/json', messageId: `${envelope.chatId}:${envelope.seq}` },
        (err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(null)),
      );
    });
  }

  /** Waits for outstanding confirms, then disconnects. */
  close(): Promise<void> {
    return this.link.close(async (channel) => {
      await channel?.waitForConfirms().catch(() => {});
    });
  }
}
