import type { Envelope } from './envelope.js';
import type { RejectReason } from './errors.js';

/** What members subscribed to `chats/{chatId}/receipts` receive (core/receipts.ts). */
export interface ReadReceipt {
  type: 'read';
  chatId: string;
  userId: string;
  readSeq: number;
  at: string;
}

/** Events a user receives on `users/{userId}/inbox` (docs/mqtt.md). */
export type InboxEvent =
  | { type: 'message.rejected'; chatId: string; clientMsgId: string | null; reason: RejectReason }
  | { type: 'chat.added'; chatId: string; number: number }
  | { type: 'chat.removed'; chatId: string; number: number };

/**
 * Where the services hand what MQTT subscribers must receive: envelopes on a chat's stream,
 * events in a user's inbox. The broker provides it (broker/outbox.ts) before any service is
 * built, so nothing is ever handed to an outbox that is not there yet.
 *
 * Contract: fire and forget; a delivery that fails is logged by the outbox, never thrown (the
 * envelope is durable already, and clients catch up from history).
 */
export interface Outbox {
  toChat(envelope: Envelope): void;
  toInbox(userId: string, event: InboxEvent): void;
  /** A read receipt to the chat's members subscribed to its receipts (QoS 0: ephemeral). */
  toReceipts(chatId: string, receipt: ReadReceipt): void;
}
