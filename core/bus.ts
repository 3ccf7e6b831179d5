import { EventEmitter } from 'node:events';

/**
 * The control bus seam: facts every broker node must learn at once. In one process it is an
 * event emitter; scaled out, the same events travel between nodes.
 *
 * Contract:
 * - every subscriber (on every node) receives every event published after it subscribed, at
 *   most a moment later, in the order published;
 * - an event reaches a node before any MQTT delivery published after `publish` resolved, so a
 *   membership change announced before a message was numbered is applied on every node before
 *   that message is forwarded there (scaled out, events and deliveries share one ordered stream);
 * - where events may have been lost (a shared bus lost its connection and is back), the bus
 *   emits `bus.resumed` on that node alone, before anything published after the loss;
 * - events carry ids only, never secrets.
 */
export type ControlEvent =
  | { type: 'session.revoked'; sessionId: string; userId: string }
  /** `userIds` joined; `memberIds` are all the members after the change, at `version` (ChatRecord.membersVersion). */
  | { type: 'member.added'; chatId: string; userIds: string[]; memberIds: string[]; version: number }
  | { type: 'member.removed'; chatId: string; userId: string; memberIds: string[]; version: number }
  | { type: 'bus.resumed' };

export type MembershipEvent = Extract<ControlEvent, { type: 'member.added' | 'member.removed' }>;

export interface ControlBus {
  publish(event: Exclude<ControlEvent, { type: 'bus.resumed' }>): Promise<void>;
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
