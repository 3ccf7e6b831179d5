import type { Archive } from './archive.js';
import type { MessageEnvelope } from './envelope.js';
import type { RejectReason } from './errors.js';
import { Gate } from './gate.js';
import { newId } from './ids.js';
import type { Membership } from './membership.js';
import type { Metrics } from './metrics.js';
import type { Outbox } from './outbox.js';
import type { RateLimiter } from './rate-limit.js';
import { type ClaimHold, type SendClaims, type SentRef, sendKey } from './send-claims.js';
import { parseSend } from './send-rules.js';
import type { Sequencer } from './sequencer.js';
import { numberWhileMember } from './numbering.js';
import type { ReplyTargets } from './replies.js';

export type SendResult =
  | { status: 'accepted'; envelope: MessageEnvelope }
  /** The (chat, sender, clientMsgId) was sent before, as `sent`: not stored or delivered again. */
  | { status: 'duplicate'; sent: SentRef }
  | { status: 'rejected'; reason: RejectReason };

/**
 * The send pipeline: a chat message published over MQTT, from its payload to a durable,
 * numbered envelope (or a refusal told to the sender's inbox). docs/architecture.md, "A chat
 * message", walks it step by step.
 */
export class Sender {
  constructor(
    private readonly deps: {
      sequencer: Sequencer;
      archive: Archive;
      membership: Membership;
      rateLimiter: RateLimiter;
      claims: SendClaims;
      /** Whether a reply's `replyTo` names a message of the chat. */
      replyTargets: ReplyTargets;
      outbox: Outbox;
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

  private async accept(sender: { id: string; displayName: string }, chatId: string, input: { text: string; clientMsgId: string | null; replyTo: number | null }): Promise<SendResult> {
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
      if (input.replyTo !== null && !(await this.deps.replyTargets.has(chatId, input.replyTo))) return this.reject(sender.id, chatId, clientMsgId, 'invalid_payload');
      const seq = await numberWhileMember(this.deps.sequencer, this.deps.membership, chatId, sender.id);
      if (seq === null) return this.reject(sender.id, chatId, clientMsgId, 'not_member');
      const envelope: MessageEnvelope = {
        type: 'message', id: newId(), chatId, seq, senderId: sender.id,
        senderName: sender.displayName, text: input.text, clientMsgId, ...(input.replyTo === null ? {} : { replyTo: input.replyTo }),
        createdAt: new Date().toISOString(),
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

  private duplicate(sent: SentRef): SendResult {
    this.count({ result: 'duplicate' });
    return { status: 'duplicate', sent: { id: sent.id, seq: sent.seq } };
  }

  private reject(senderId: string, chatId: string, clientMsgId: string | null, reason: RejectReason): SendResult {
    this.count({ result: 'rejected', reason });
    this.deps.outbox.toInbox(senderId, { type: 'message.rejected', chatId, clientMsgId, reason });
    return { status: 'rejected', reason };
  }
}
