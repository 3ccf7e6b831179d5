import { EventEmitter } from 'node:events';

/**
 * The control bus seam: facts every broker node must learn at once. In one process it is an
 * event emitter; scaled out, the same events travel between nodes.
 *
 * Contract: every subscriber (on every node) receives every event published after it
 * subscribed, at most a moment later; events carry ids only, never secrets.
 */
export type ControlEvent =
  | { type: 'session.revoked'; sessionId: string; userId: string }
  | { type: 'member.added'; chatId: string; userIds: string[] }
  | { type: 'member.removed'; chatId: string; userId: string };

export interface ControlBus {
  publish(event: ControlEvent): Promise<void>;
  subscribe(handler: (event: ControlEvent) => void): () => void;
}

export class LocalBus implements ControlBus {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  async publish(event: ControlEvent): Promise<void> {
    this.emitter.emit('event', event);
  }

  subscribe(handler: (event: ControlEvent) => void): () => void {
    this.emitter.on('event', handler);
    return () => this.emitter.off('event', handler);
  }
}
