/**
 * What subscribers of `chats/{chatId}/messages` receive, and what history returns: the same
 * JSON, so a client treats live and fetched messages alike. Built by the server only.
 */
export interface MessageEnvelope {
  type: 'message';
  id: string;
  chatId: string;
  seq: number;
  senderId: string;
  senderName: string;
  text: string;
  clientMsgId: string | null;
  /** The seq of the message of the same chat this one answers. */
  replyTo?: number;
  createdAt: string;
}

/**
 * A chat message as history shows it: its current state. After an edit, `text` is the latest
 * edit's and `editedAt` its time; after a deletion, `deleted` is true and there is no text.
 * As delivered live it is a plain MessageEnvelope; edits and deletions follow as events.
 */
export type StoredMessage =
  | (MessageEnvelope & { editedAt?: string; deleted?: undefined })
  | (Omit<MessageEnvelope, 'text'> & { deleted: true });

/** An edit of the message at `targetSeq` by its sender: its own entry in the stream. */
export interface EditEnvelope {
  type: 'edit';
  id: string;
  chatId: string;
  seq: number;
  targetSeq: number;
  text: string;
  senderId: string;
  createdAt: string;
}

/** A deletion of the message at `targetSeq`, by its sender or a group's owner. */
export interface DeleteEnvelope {
  type: 'delete';
  id: string;
  chatId: string;
  seq: number;
  targetSeq: number;
  actorId: string;
  createdAt: string;
}

export type SystemEvent = 'chat.created' | 'member.joined' | 'member.left' | 'member.removed';

export interface SystemEnvelope {
  type: 'system';
  id: string;
  chatId: string;
  seq: number;
  event: SystemEvent;
  /** The member the event is about (the creator for chat.created). */
  userId: string;
  /** Who caused it, when not the member itself (the owner for member.removed). */
  actorId?: string;
  createdAt: string;
}

/** What the log holds, in seq order; a message in its current state (StoredMessage) when read
 * back. */
export type Envelope = MessageEnvelope | StoredMessage | SystemEnvelope | EditEnvelope | DeleteEnvelope;

/** A stored message as a later send with the same idempotency key learns of it. */
export interface SentRef {
  id: string;
  seq: number;
}

const serialized = new WeakMap<Envelope, string>();

/**
 * The envelope's JSON, made once per envelope: the same text is stored (SQLite keeps it
 * verbatim), queued to the archive and delivered, so it is serialised on the first call and
 * reused after. Envelopes are never changed once built.
 */
export function envelopeJson(envelope: Envelope): string {
  return serialized.get(envelope) ?? remember(envelope, JSON.stringify(envelope));
}

/** An envelope read back from its JSON (as a store keeps it), which is then reused as is. */
export function parseEnvelope(json: string): Envelope {
  const envelope = JSON.parse(json) as Envelope;
  remember(envelope, json);
  return envelope;
}

function remember(envelope: Envelope, json: string): string {
  serialized.set(envelope, json);
  return json;
}
