import type { Archive } from './archive.js';
import type { ControlBus } from './bus.js';
import type { Envelope, MessageEnvelope, SystemEnvelope, SystemEvent } from './envelope.js';
import { newId } from './ids.js';
import type { Membership } from './membership.js';
import type { Metrics } from './metrics.js';
import type { RateLimiter } from './rate-limit.js';
import { type RejectReason, parseSend } from './send-rules.js';
import type { Sequencer } from './sequencer.js';
import type { ChatRecord, Store } from './store/store.js';

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

export type SendResult =
  | { status: 'accepted'; envelope: MessageEnvelope }
  /** The (chat, sender, clientMsgId) was sent before: same envelope, not delivered again. */
  | { status: 'duplicate'; envelope: MessageEnvelope }
  | { status: 'rejected'; reason: RejectReason };

const DEDUPE_MEMORY = 100_000;

/** One try at a send: stored now, found stored before, or refused by the rate limit. */
type Attempt = { fresh: boolean; envelope: MessageEnvelope } | { limited: true };

/**
 * The message pipeline: validate → authorise → dedupe → rate-limit → number → make durable.
 * The caller (the broker's authorizePublish) acknowledges and delivers only after `send`
 * resolves with `accepted`, so a PUBACK always means the message is in the archive.
 * Also writes the system messages that REST membership changes put in a chat's stream.
 */
export class Messenger {
  private delivery: Delivery | null = null;
  /** Recent idempotency keys → the send that claimed them (in flight or done). */
  private readonly recent = new Map<string, Promise<Attempt>>();

  constructor(
    private readonly deps: {
      store: Store;
      sequencer: Sequencer;
      archive: Archive;
      membership: Membership;
      rateLimiter: RateLimiter;
      bus: ControlBus;
      metrics: Metrics;
      onError: (err: unknown, what: string) => void;
    },
  ) {
    this.count = deps.metrics.counter('chat_messages_total', 'Chat messages sent over MQTT, by result (accepted, duplicate, rejected) and reason');
  }

  private readonly count: (labels?: Record<string, string>) => void;

  setDelivery(delivery: Delivery) {
    this.delivery = delivery;
  }

  async send(sender: { id: string; displayName: string }, chatId: string, payload: Uint8Array): Promise<SendResult> {
    const input = parseSend(payload);
    if (!input.ok) return this.reject(sender.id, chatId, input.clientMsgId, input.reason);
    if (!(await this.deps.membership.check(chatId, sender.id))) return this.reject(sender.id, chatId, input.clientMsgId, 'not_member');

    const key = input.clientMsgId === null ? null : `${chatId}\n${sender.id}\n${input.clientMsgId}`;
    // A key is claimed synchronously (no await between this lookup and remember()), so
    // concurrent sends with one key share a single attempt.
    while (key !== null) {
      const earlier = this.recent.get(key);
      if (!earlier) break;
      const result = await earlier.catch(() => null);
      if (result && 'envelope' in result) {
        this.count({ result: 'duplicate' });
        return { status: 'duplicate', envelope: result.envelope };
      }
      if (this.recent.get(key) === earlier) this.recent.delete(key); // it failed: try afresh
    }

    const attempt = (async (): Promise<Attempt> => {
      if (!(await this.deps.rateLimiter.take(sender.id))) return { limited: true };
      if (input.clientMsgId !== null) {
        // Older than this process's memory (e.g. sent before a restart)?
        const stored = await this.deps.store.findByClientMsgId(chatId, sender.id, input.clientMsgId);
        if (stored?.type === 'message') return { fresh: false, envelope: stored };
      }
      const envelope: MessageEnvelope = {
        type: 'message', id: newId(), chatId, seq: await this.deps.sequencer.next(chatId), senderId: sender.id,
        senderName: sender.displayName, text: input.text, clientMsgId: input.clientMsgId, createdAt: new Date().toISOString(),
      };
      await this.deps.archive.append(envelope);
      return { fresh: true, envelope };
    })();
    if (key !== null) this.remember(key, attempt);
    const result = await attempt;
    if ('limited' in result) {
      if (key !== null && this.recent.get(key) === attempt) this.recent.delete(key);
      return this.reject(sender.id, chatId, input.clientMsgId, 'rate_limited');
    }
    this.count({ result: result.fresh ? 'accepted' : 'duplicate' });
    return { status: result.fresh ? 'accepted' : 'duplicate', envelope: result.envelope };
  }

  // ---- system messages for membership changes made over REST; never throw

  async chatCreated(chat: ChatRecord, actorId: string): Promise<void> {
    await this.deps.bus.publish({ type: 'member.added', chatId: chat.id, userIds: chat.memberIds });
    await this.system(chat.id, 'chat.created', actorId);
    for (const userId of chat.memberIds) this.delivery?.toInbox(userId, { type: 'chat.added', chatId: chat.id, number: chat.number });
  }

  async membersAdded(chat: ChatRecord, userIds: readonly string[], actorId: string): Promise<void> {
    if (userIds.length === 0) return;
    await this.deps.bus.publish({ type: 'member.added', chatId: chat.id, userIds: [...userIds] });
    for (const userId of userIds) {
      await this.system(chat.id, 'member.joined', userId, userId === actorId ? undefined : actorId);
      this.delivery?.toInbox(userId, { type: 'chat.added', chatId: chat.id, number: chat.number });
    }
  }

  async memberRemoved(chat: ChatRecord, userId: string, actorId: string): Promise<void> {
    await this.deps.bus.publish({ type: 'member.removed', chatId: chat.id, userId });
    if (userId === actorId) await this.system(chat.id, 'member.left', userId);
    else await this.system(chat.id, 'member.removed', userId, actorId);
    this.delivery?.toInbox(userId, { type: 'chat.removed', chatId: chat.id, number: chat.number });
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

  private remember(key: string, pending: Promise<Attempt>) {
    this.recent.set(key, pending);
    // A failed send frees its key, so the client's retry is a fresh attempt.
    pending.catch(() => this.recent.delete(key));
    if (this.recent.size > DEDUPE_MEMORY) this.recent.delete(this.recent.keys().next().value!);
  }
}
