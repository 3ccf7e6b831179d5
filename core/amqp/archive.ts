import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { Archive } from '../archive.js';
import { type Envelope, type SentRef, envelopeJson } from '../envelope.js';
import { assertArchiveQueues } from './topology.js';

/**
 * Scaled-out archive: an envelope is durable once RabbitMQ confirms it on the durable quorum
 * queue; the `worker` role writes it to the store later (history may lag live delivery).
 * While RabbitMQ is unreachable, `append` rejects at once (the broker then sends no PUBACK and
 * the client retries); the connection is re-established with backoff in the background.
 */
export class AmqpArchive implements Archive {
  private channel: ConfirmChannel | null = null;
  private connection: ChannelModel | null = null;
  private queue = '';
  private closed = false;
  private retryDelay = 200;
  private connecting: Promise<void> | null = null;

  private constructor(
    private readonly url: string,
    private readonly namespace: string,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Connects once (rejecting if RabbitMQ cannot be reached), then keeps reconnecting. */
  static async connect(url: string, namespace: string, onError: (err: unknown) => void = () => {}): Promise<AmqpArchive> {
    const archive = new AmqpArchive(url, namespace, onError);
    await archive.open();
    return archive;
  }

  private async open(): Promise<void> {
    const connection = await amqp.connect(this.url);
    const channel = await connection.createConfirmChannel();
    this.queue = (await assertArchiveQueues(channel, this.namespace)).archive;
    const lost = (err?: unknown) => {
      if (this.connection !== connection) return;
      this.connection = null;
      this.channel = null;
      if (err) this.onError(err);
      this.reconnect();
    };
    connection.on('error', (err) => this.onError(err));
    connection.on('close', () => lost());
    channel.on('error', (err) => this.onError(err));
    channel.on('close', () => lost());
    this.connection = connection;
    this.channel = channel;
    this.retryDelay = 200;
  }

  private reconnect() {
    if (this.closed || this.connecting) return;
    this.connecting = (async () => {
      while (!this.closed && !this.channel) {
        await new Promise((r) => setTimeout(r, this.retryDelay).unref());
        this.retryDelay = Math.min(this.retryDelay * 2, 5000);
        await this.open().catch((err: unknown) => this.onError(err));
      }
      this.connecting = null;
    })();
  }

  append(envelope: Envelope): Promise<SentRef | null> {
    const channel = this.channel;
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
  async close(): Promise<void> {
    this.closed = true;
    await this.channel?.waitForConfirms().catch(() => {});
    const connection = this.connection;
    this.connection = null;
    this.channel = null;
    // close() never settles on a connection whose socket already died: bound it.
    await Promise.race([connection?.close().catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())]);
  }
}
