import type { Archive } from './archive.js';
import type { ControlBus, MembershipEvent } from './bus.js';
import type { Envelope, MessageEnvelope, SystemEnvelope, SystemEvent } from './envelope.js';
import { Gate } from './gate.js';
import { newId } from './ids.js';
import type { Membership } from './membership.js';
import type { Metrics } from './metrics.js';
import type { RateLimiter } from './rate-limit.js';
import { type ClaimHold, type SendClaims, type SentRef, sendKey } from './send-claims.js';
import { type RejectReason, parseSend } from './send-rules.js';
import type { Sequencer } from './sequencer.js';
import type { ChatRecord } from './store/store.js';

/** Events a user receives on `users/{userId}/inbox`. */
export type InboxEvent =
  | { type: 'message.rejected'; chatId: string; clientMsgId: string | null; reason: RejectReason }
  | { type: 'chat.added'; chatId: string; number: number }
  | { type: 'chat.removed'; chatId: string; number: number };

/** How envelopes and inbox events reach MQTT subscribers; provided by the broker. */
export interface Delivery {
  toChat(envelope: Envelope): void;
  toInbox(userId: string, event: InboxEvent): void;
}

/** How often a send reads its chat's members again before giving up (the client retries). */
const MAX_STALE_RETRIES = 5;

export type SendResult =
  | { status: 'accepted'; envelope: MessageEnvelope }
  /** The (chat, sender, clientMsgId) was sent before, as `sent`: not stored or delivered again. */
  | { status: 'duplicate'; sent: SentRef }
  | { status: 'rejected'; reason: RejectReason };

export class Messenger {
  private delivery: Delivery | null = null;

  constructor(
    private readonly deps: {
      sequencer: Sequencer;
      archive: Archive;
      membership: Membership;
      rateLimiter: RateLimiter;
      claims: SendClaims;
      bus: ControlBus;
      metrics: Metrics;
      /** Sends in the pipeline at once (from the membership check until durable); more wait. */
      maxInFlight: number;
      onError: (err: unknown, what: string) => void;
    },
  ) {
    this.count = deps.metrics.counter('chat_messages_total', 'Chat messages sent over MQTT, by result (accepted, duplicate, rejected) and reason', ['result', 'reason']);
    this.latency = deps.metrics.histogram('chat_send_duration_seconds', "Chat messages from arrival to their PUBACK's being due (durable, or refused), by result", ['result']);
    this.gate = new Gate(deps.maxInFlight);
    deps.metrics.gauge('chat_sends_waiting', 'Chat sends waiting for room in the pipeline (MAX_SENDS_IN_FLIGHT)', () => this.gate.queued);
  }

  private readonly count: (labels?: Record<string, string>) => void;
  private readonly latency: (seconds: number, labels?: Record<string, string>) => void;
  private readonly gate: Gate;

  setDelivery(delivery: Delivery) {
    this.delivery = delivery;
  }

  async send(sender: { id: string; displayName: string }, chatId: string, payload: Uint8Array): Promise<SendResult> {
    const started = performance.now();
    let outcome = 'failed'; // not durable: no PUBACK
    try {
      const result = await this.handle(sender, chatId, payload);
      outcome = result.status;
      return result;
    } finally {
      this.latency((performance.now() - started) / 1000, { result: outcome });
    }
  }

  private async handle(sender: { id: string; displayName: string }, chatId: string, payload: Uint8Array): Promise<SendResult> {
    const input = parseSend(payload);
    if (!input.ok) return this.reject(sender.id, chatId, input.clientMsgId, input.reason);
    // Past the bound, sends wait here, holding nothing but their packet; the connection they
    // came on is not read meanwhile (Aedes reads on once its current packets are done).
    const admitted = this.gate.enter();
    if (admitted) await admitted;
    try {
      return await this.accept(sender, chatId, input);
    } finally {
      this.gate.leave();
    }
  }

  private async accept(sender: { id: string; displayName: string }, chatId: string, input: { text: string; clientMsgId: string | null }): Promise<SendResult> {
    if (!(await this.deps.membership.check(chatId, sender.id))) return this.reject(sender.id, chatId, input.clientMsgId, 'not_member');

    const { clientMsgId } = input;
    // The idempotency key is claimed first, so a retry and its original (on this node or
    // another) never both get a seq.
    let hold: ClaimHold | null = null;
    if (clientMsgId !== null) {
      const claim = await this.deps.claims.claim(sendKey(chatId, sender.id, clientMsgId));
      if (!claim.claimed) return this.duplicate(claim.sent);
      hold = claim.hold;
    }
    /** Completes the claim with what was sent, or (no argument) releases it; once. */
    const settle = async (sent?: SentRef) => {
      const h = hold;
      hold = null;
      await (sent ? h?.complete(sent) : h?.release())?.catch((err) => this.deps.onError(err, `settling send ${clientMsgId} in chat ${chatId}`));
    };
    try {
      if (!(await this.deps.rateLimiter.take(sender.id))) return this.reject(sender.id, chatId, clientMsgId, 'rate_limited');
      const seq = await this.numbered(chatId, sender.id);
      if (seq === null) return this.reject(sender.id, chatId, clientMsgId, 'not_member');
      const envelope: MessageEnvelope = {
        type: 'message', id: newId(), chatId, seq, senderId: sender.id,
        senderName: sender.displayName, text: input.text, clientMsgId, createdAt: new Date().toISOString(),
      };
      // A key older than the claims' memory is caught here, by the store's unique index: the
      // send is a duplicate after all, and its seq stays unused.
      const held = await this.deps.archive.append(envelope);
      if (held) {
        await settle(held);
        return this.duplicate(held);
      }
      // Durable from here on: the PUBACK is due even if the claim cannot be recorded (that is
      // logged; a retry after the claim expires could then be sent again).
      await settle(envelope);
      this.count({ result: 'accepted' });
      return { status: 'accepted', envelope };
    } finally {
      // Refused or failed: free the key, so the client's retry is a fresh attempt.
      await settle();
    }
  }

  /**
   * The send's seq, taken only while its sender is a member (null otherwise), in one step with
   * that check: a removal numbered before this send is always seen, on any node, so history
   * never shows a message after its sender's removal (docs/architecture.md, "Membership changes
   * and sends in flight").
   */
  private async numbered(chatId: string, senderId: string): Promise<number | null> {
    for (let attempt = 1; ; attempt++) {
      const got = await this.deps.sequencer.nextIf(chatId, () => this.deps.membership.admit(chatId, senderId));
      if (got === 'refused') return null;
      if (got !== 'stale') return got;
      // Another node announced a change this node has not heard of yet (or the chat is not
      // cached here any more): read the chat again.
      if (attempt === MAX_STALE_RETRIES) {
        throw new Error(
          `the members of chat ${chatId} kept changing while a send was numbered, or the announced members version is ahead of the store ` +
            '(a store restored from a backup under a Redis that kept its keys: delete the <NAMESPACE>:members-version:* keys)',
        );
      }
      await this.deps.membership.refresh(chatId);
      if (this.deps.membership.admit(chatId, senderId) === null) return null; // no such chat
    }
  }

  private duplicate(sent: SentRef): SendResult {
    this.count({ result: 'duplicate' });
    return { status: 'duplicate', sent: { id: sent.id, seq: sent.seq } };
  }

  // ---- system messages for membership changes made over REST; only a failed announcement throws

  async chatCreated(chat: ChatRecord, actorId: string): Promise<void> {
    await this.announce({ type: 'member.added', chatId: chat.id, userIds: chat.memberIds, memberIds: chat.memberIds, version: chat.membersVersion });
    await this.system(chat.id, 'chat.created', actorId);
    for (const userId of chat.memberIds) this.delivery?.toInbox(userId, { type: 'chat.added', chatId: chat.id, number: chat.number });
  }

  async membersAdded(chat: ChatRecord, userIds: readonly string[], actorId: string): Promise<void> {
    if (userIds.length === 0) return;
    // The joins are numbered before the caches learn of them, so a new member's first message
    // always comes after its member.joined (a removal goes the other way round: see below).
    for (const userId of userIds) await this.system(chat.id, 'member.joined', userId, userId === actorId ? undefined : actorId);
    await this.announce({ type: 'member.added', chatId: chat.id, userIds: [...userIds], memberIds: chat.memberIds, version: chat.membersVersion });
    for (const userId of userIds) this.delivery?.toInbox(userId, { type: 'chat.added', chatId: chat.id, number: chat.number });
  }

  async memberRemoved(chat: ChatRecord, userId: string, actorId: string): Promise<void> {
    // The caches learn of a removal before it is numbered, so no send of the removed member is
    // numbered after it (Sequencer.nextIf), and no delivery reaches them after it.
    await this.announce({ type: 'member.removed', chatId: chat.id, userId, memberIds: chat.memberIds, version: chat.membersVersion });
    if (userId === actorId) await this.system(chat.id, 'member.left', userId);
    else await this.system(chat.id, 'member.removed', userId, actorId);
    this.delivery?.toInbox(userId, { type: 'chat.removed', chatId: chat.id, number: chat.number });
  }

  /**
   * Announces a committed membership change to every node. If the bus fails (Redis unreachable),
   * the change stays in the store unannounced: the REST request fails (503) and, for a removal,
   * no system message is written. Nodes apply it when they next read the chat (after the bus
   * comes back, on a stale send, or with the next change): docs/architecture.md, "Membership
   * changes and sends in flight".
   */
  private async announce(event: MembershipEvent): Promise<void> {
    try {
      await this.deps.bus.publish(event);
    } catch (err) {
      this.deps.onError(err, `announcing ${event.type} in chat ${event.chatId} (stored, not announced)`);
      throw err;
    }
  }

  private async system(chatId: string, event: SystemEvent, userId: string, actorId?: string): Promise<void> {
    try {
      const envelope: SystemEnvelope = {
        type: 'system', id: newId(), chatId, seq: await this.deps.sequencer.next(chatId), event, userId,
        ...(actorId === undefined ? {} : { actorId }), createdAt: new Date().toISOString(),
      };
      await this.deps.archive.append(envelope);
      this.delivery?.toChat(envelope);
    } catch (err) {
      this.deps.onError(err, `system message ${event} in chat ${chatId}`);
    }
  }

  private reject(senderId: string, chatId: string, clientMsgId: string | null, reason: RejectReason): SendResult {
    this.count({ result: 'rejected', reason });
    this.delivery?.toInbox(senderId, { type: 'message.rejected', chatId, clientMsgId, reason });
    return { status: 'rejected', reason };
  }
}
