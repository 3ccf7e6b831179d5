import amqp, { type Channel, type ChannelModel } from 'amqplib';

/** Backoff between reconnection attempts (ms): the first, doubled after each failure up to the last. */
const FIRST_RETRY_MS = 200;
const MAX_RETRY_MS = 5000;
/** `ChannelModel.close()` never settles on a connection whose socket already died: waits are bounded. */
const CLOSE_WAIT_MS = 2000;

export interface AmqpConnectionOptions<C extends Channel> {
  /** Makes the channel on a new connection and declares what it needs. */
  open: (connection: ChannelModel) => Promise<C>;
  /** Runs once a new channel is the current one (a consumer starts here). */
  ready?: (channel: C) => Promise<unknown>;
  /** The current channel is gone (with its connection, or alone); another follows. */
  lost?: () => void;
  onError: (err: unknown) => void;
}

/**
 * One connection to RabbitMQ with one channel on it, kept up. `start` connects once and
 * rejects if RabbitMQ cannot be reached; after that, a lost connection or channel is opened
 * again in the background with backoff until it succeeds or `close` is called. Nothing is
 * opened, nor left open, once `close` has been called.
 */
export class AmqpConnection<C extends Channel> {
  /** The current channel; null while RabbitMQ is unreachable, and once closed. */
  channel: C | null = null;
  private connection: ChannelModel | null = null;
  private closed = false;
  private retryDelay = FIRST_RETRY_MS;
  private reconnecting: Promise<void> | null = null;
  /** Ends the reconnection loop's wait early. */
  private wake: (() => void) | null = null;

  constructor(
    private readonly url: string,
    private readonly options: AmqpConnectionOptions<C>,
  ) {}

  start(): Promise<void> {
    return this.open();
  }

  private async open(): Promise<void> {
    const connection = await amqp.connect(this.url);
    connection.on('error', (err) => this.options.onError(err));
    if (this.closed) return closeWithin(connection);
    let channel: C;
    try {
      channel = await this.options.open(connection);
    } catch (err) {
      await closeWithin(connection);
      throw err;
    }
    if (this.closed) return closeWithin(connection);
    const lost = () => {
      if (this.connection !== connection) return;
      this.connection = null;
      this.channel = null;
      this.options.lost?.();
      this.reconnect();
    };
    connection.on('close', lost);
    channel.on('error', (err) => this.options.onError(err));
    channel.on('close', lost);
    this.connection = connection;
    this.channel = channel;
    this.retryDelay = FIRST_RETRY_MS;
    try {
      await this.options.ready?.(channel);
    } catch (err) {
      // Not usable (e.g. the consumer could not start): let it go, as if it had been lost.
      this.connection = null;
      this.channel = null;
      await closeWithin(connection);
      throw err;
    }
  }

  private reconnect() {
    if (this.closed || this.reconnecting) return;
    this.reconnecting = (async () => {
      while (!this.closed && !this.channel) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.retryDelay).unref();
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = null;
        if (this.closed) break;
        this.retryDelay = Math.min(this.retryDelay * 2, MAX_RETRY_MS);
        await this.open().catch((err: unknown) => this.options.onError(err));
      }
      this.reconnecting = null;
    })();
  }

  /** Stops reconnecting, runs `drain` with the current channel (null while RabbitMQ is
   * unreachable), then closes the connection. */
  async close(drain: (channel: C | null) => Promise<void> = async () => {}): Promise<void> {
    this.closed = true;
    this.wake?.();
    await Promise.race([this.reconnecting, sleep(CLOSE_WAIT_MS)]);
    await drain(this.channel);
    const connection = this.connection;
    this.connection = null;
    this.channel = null;
    if (connection) await closeWithin(connection);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

function closeWithin(connection: ChannelModel): Promise<void> {
  return Promise.race([connection.close().catch(() => {}), sleep(CLOSE_WAIT_MS)]);
}
