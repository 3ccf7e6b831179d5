import type { Channel, ConsumeMessage } from 'amqplib';
import { AmqpConnection } from '../core/amqp/connection.js';
import { assertArchiveQueues, queueNames } from '../core/amqp/topology.js';
import type { Envelope } from '../core/envelope.js';
import type { Appended, Store } from '../core/store/store.js';

export interface ArchiverOptions {
  /** Unacknowledged messages RabbitMQ may hand this worker at once. */
  prefetch?: number;
  /** Largest batch written in one store call. */
  batchSize?: number;
  /** How long a partial batch waits for company before it is written (ms). */
  lingerMs?: number;
  onError?: (err: unknown) => void;
}

/**
 * The `worker` role: moves envelopes from the archive queue into the store.
 *
 * Batches are written in one idempotent store call ((chatId, seq) unique) and acknowledged only
 * after the commit, so a worker killed at any moment loses nothing (unacknowledged messages
 * are redelivered) and duplicates nothing (a redelivered envelope is skipped by the store).
 * When a batch fails, its envelopes are written one by one: a poison message is rejected alone
 * and, after the queue's delivery limit, dead-lettered instead of retried for ever; a message
 * that is not an envelope at all is dead-lettered at once. Reconnects with backoff.
 *
 * An envelope the store skipped is looked up: a redelivery (the same id at its seq) is fine;
 * another message at its seq means two messages were given one seq (a sequencer reseeded from
 * a store behind the queue), and the envelope is dead-lettered and reported rather than lost
 * without a word.
 */
export class Archiver {
  private readonly link: AmqpConnection<Channel>;
  private batch: ConsumeMessage[] = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  private readonly queue: string;
  /** Envelopes written since start (for metrics and tests). */
  stored = 0;

  private readonly prefetch: number;
  private readonly batchSize: number;
  private readonly lingerMs: number;
  private readonly onError: (err: unknown) => void;

  constructor(
    url: string,
    namespace: string,
    private readonly store: Store,
    options: ArchiverOptions = {},
  ) {
    this.prefetch = options.prefetch ?? 500;
    this.batchSize = options.batchSize ?? 200;
    this.lingerMs = options.lingerMs ?? 10;
    this.onError = options.onError ?? (() => {});
    this.queue = queueNames(namespace).archive;
    this.link = new AmqpConnection(url, {
      open: async (connection) => {
        const channel = await connection.createChannel();
        await assertArchiveQueues(channel, namespace);
        await channel.prefetch(this.prefetch);
        return channel;
      },
      ready: (channel) => channel.consume(this.queue, (msg) => msg && this.receive(msg)),
      // Unacknowledged messages go back to the queue with the channel; forget them here.
      lost: () => {
        this.batch = [];
      },
      onError: (err) => this.onError(err),
    });
  }

  /** Connects and starts consuming; rejects if RabbitMQ cannot be reached the first time. */
  start(): Promise<void> {
    return this.link.start();
  }

  private receive(msg: ConsumeMessage) {
    this.batch.push(msg);
    if (this.batch.length >= this.batchSize) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.lingerMs);
  }

  private flush() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.batch.splice(0);
    const channel = this.link.channel;
    if (batch.length === 0 || !channel) return;
    // Batches are written one after another, in delivery order.
    // A failure (e.g. acking on a channel that just closed) must not stop later batches.
    this.writing = this.writing.then(() => this.write(channel, batch)).catch((err: unknown) => this.onError(err));
  }

  private async write(channel: Channel, batch: ConsumeMessage[]) {
    const parsed: Parsed[] = [];
    for (const msg of batch) {
      const envelope = parseEnvelope(msg.content);
      if (envelope) parsed.push({ msg, envelope });
      else {
        this.onError(new Error(`not an envelope, dead-lettered: ${msg.content.subarray(0, 200).toString()}`));
        channel.nack(msg, false, false);
      }
    }
    // Decide every item before settling any: a lookup failing halfway must not leave some
    // settled and send them through the one-by-one path again (a second ack kills the channel).
    let verdicts: Verdict[];
    try {
      verdicts = this.verdicts(parsed, await this.store.appendMessages(parsed.map((p) => p.envelope)));
    } catch (batchErr) {
      this.onError(batchErr);
      for (const p of parsed) {
        let verdict: Verdict;
        try {
          [verdict] = this.verdicts([p], await this.store.appendMessages([p.envelope])) as [Verdict];
        } catch (err) {
          this.onError(err);
          verdict = 'retry'; // until the delivery limit dead-letters it
        }
        this.settle(channel, p, verdict);
      }
      return;
    }
    parsed.forEach((p, i) => this.settle(channel, p, verdicts[i]!));
  }

  /** For each envelope: stored (or a redelivery of a stored one, or a repeat of a stored
   * idempotency key, which is not stored again), or dead because its seq is another message's. */
  private verdicts(items: Parsed[], outcomes: Appended[]): Verdict[] {
    return items.map(({ envelope: e }, i) => {
      const outcome = outcomes[i]!;
      if (outcome === 'stored') this.stored++;
      if (outcome === 'stored' || outcome === 'present') return 'stored';
      if ('seqHeldBy' in outcome) {
        this.onError(new Error(`seq ${e.seq} of chat ${e.chatId} belongs to message ${outcome.seqHeldBy}; envelope ${e.id} dead-lettered`));
        return 'dead';
      }
      // Delivered live already, so a client saw it; history keeps the first send only.
      this.onError(new Error(`envelope ${e.id} (chat ${e.chatId}, seq ${e.seq}) repeats the clientMsgId of message ${outcome.keyHeldBy.id}; not stored`));
      return 'stored';
    });
  }

  private settle(channel: Channel, p: Parsed, verdict: Verdict) {
    if (verdict === 'stored') channel.ack(p.msg);
    else channel.nack(p.msg, false, verdict === 'retry');
  }

  /** Messages waiting in the archive queue: how far history lags behind live delivery. */
  async lag(): Promise<number> {
    const channel = this.link.channel;
    if (!channel) return Number.NaN;
    return (await channel.checkQueue(this.queue)).messageCount;
  }

  /** Writes what it holds, then disconnects; unacknowledged messages return to the queue. */
  stop(): Promise<void> {
    return this.link.close(async () => {
      this.flush();
      await this.writing;
    });
  }
}

type Verdict = 'stored' | 'dead' | 'retry';

interface Parsed {
  msg: ConsumeMessage;
  envelope: Envelope;
}

/** Every kind of log entry the broker and the API append (core/envelope.ts). */
const ENVELOPE_TYPES = new Set<string>(['message', 'system', 'edit', 'delete'] satisfies Envelope['type'][]);

function parseEnvelope(content: Buffer): Envelope | null {
  try {
    const e = JSON.parse(content.toString('utf8')) as Partial<Envelope>;
    if (ENVELOPE_TYPES.has(e.type as string) && typeof e.chatId === 'string' && Number.isInteger(e.seq) && typeof e.id === 'string' && typeof e.createdAt === 'string') {
      return e as Envelope;
    }
  } catch {
    /* fall through */
  }
  return null;
}
