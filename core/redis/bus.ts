import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { MQEmitterRedisPrefix, Message } from 'mqemitter-redis';
import type { ControlBus, ControlEvent } from '../bus.js';
import { ServiceUnavailableError } from '../errors.js';
import { raiseMembersVersion } from './members-version.js';

/** The events' topic on the MQTT cluster's emitter; no MQTT client may publish or subscribe to
 * a `$` topic (broker/topics.ts). */
const TOPIC = '$chat/control';
/** How long `publish` waits for Redis (the emitter's own connection would queue for longer). */
const PUBLISH_TIMEOUT_MS = 3000;

/**
 * The control bus across nodes. Its events travel on the emitter that carries the MQTT cluster's
 * publishes between nodes (mqemitter-redis: Redis pub/sub, one subscriber connection per node),
 * so on every node an event and the deliveries arrive in the one order Redis handled their
 * publishes: a removal announced before a message was numbered reaches every node before that
 * message does, and authorizeForward there already refuses it to the removed member. A node
 * receives its own events through Redis too, on the same path.
 *
 * A membership event also raises the chat's announced members version in Redis (sends are
 * checked against it: core/redis/sequencer.ts). If the subscriber connection drops, events
 * published meanwhile are lost: once it is back, the bus emits `bus.resumed` on this node,
 * before anything that comes over the restored connection.
 */
export class RedisBus implements ControlBus {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  private constructor(
    private readonly redis: Redis,
    private readonly mq: MQEmitterRedisPrefix,
    private readonly namespace: string,
  ) {}

  /** Resolves once subscribed, so no event published after it is missed. */
  static async create(redis: Redis, mq: MQEmitterRedisPrefix, namespace: string): Promise<RedisBus> {
    const bus = new RedisBus(redis, mq, namespace);
    await new Promise<void>((resolve) => mq.on(TOPIC, bus.receive, resolve));
    let lost = false;
    mq.subConn.on('close', () => {
      lost = true;
    });
    // ioredis emits 'ready' before it subscribes again, so before any message can arrive.
    mq.subConn.on('ready', () => {
      if (!lost) return;
      lost = false;
      bus.emitter.emit('event', { type: 'bus.resumed' } satisfies ControlEvent);
    });
    return bus;
  }

  private readonly receive = (message: Message, done: () => void) => {
    let event: ControlEvent | undefined;
    try {
      event = JSON.parse(String(message.payload)) as ControlEvent;
    } catch {
      /* not ours: ignore */
    }
    if (event) this.emitter.emit('event', event);
    done();
  };

  /** Resolves once Redis has the event (and, for a membership event, the raised version); fails
   * after PUBLISH_TIMEOUT_MS rather than wait for a Redis that does not answer. */
  async publish(event: Exclude<ControlEvent, { type: 'bus.resumed' }>): Promise<void> {
    const sent = new Promise<void>((resolve, reject) => {
      this.mq.emit({ topic: TOPIC, payload: JSON.stringify(event) }, (err) => (err ? reject(err) : resolve()));
    });
    const done = event.type === 'member.added' || event.type === 'member.removed'
      ? Promise.all([sent, raiseMembersVersion(this.redis, this.namespace, event.chatId, event.version)])
      : sent;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new ServiceUnavailableError(`the control bus (Redis) did not take a ${event.type} event within ${PUBLISH_TIMEOUT_MS} ms`)), PUBLISH_TIMEOUT_MS);
    });
    try {
      await Promise.race([done, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  subscribe(handler: (event: ControlEvent) => void): () => void {
    this.emitter.on('event', handler);
    return () => this.emitter.off('event', handler);
  }

  close(): void {
    this.mq.removeListener(TOPIC, this.receive);
  }
}
