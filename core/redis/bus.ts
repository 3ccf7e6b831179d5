import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { ControlBus, ControlEvent } from '../bus.js';

/**
 * The control bus across nodes: Redis pub/sub on `<namespace>:control`. A node receives its own
 * events through Redis too, so every node applies them on the same path. Needs a connection
 * of its own for subscribing (Redis subscriber mode).
 */
export class RedisBus implements ControlBus {
  private readonly emitter = new EventEmitter().setMaxListeners(0);
  private readonly channel: string;

  private constructor(
    private readonly pub: Redis,
    sub: Redis,
    namespace: string,
  ) {
    this.channel = `${namespace}:control`;
    sub.on('message', (channel: string, message: string) => {
      if (channel !== this.channel) return;
      try {
        this.emitter.emit('event', JSON.parse(message) as ControlEvent);
      } catch {
        /* not ours: ignore */
      }
    });
  }

  /** Resolves once subscribed, so no event published after it is missed. */
  static async create(pub: Redis, sub: Redis, namespace: string): Promise<RedisBus> {
    const bus = new RedisBus(pub, sub, namespace);
    await sub.subscribe(bus.channel);
    return bus;
  }

  async publish(event: ControlEvent): Promise<void> {
    await this.pub.publish(this.channel, JSON.stringify(event));
  }

  subscribe(handler: (event: ControlEvent) => void): () => void {
    this.emitter.on('event', handler);
    return () => this.emitter.off('event', handler);
  }
}
