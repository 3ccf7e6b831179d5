import type { Archive } from './archive.js';
import type { DeleteEnvelope, EditEnvelope, StoredMessage } from './envelope.js';
import { forbidden, invalidInput, messageDeleted, notFound, notMember } from './errors.js';
import { newId } from './ids.js';
import type { Membership } from './membership.js';
import { numberWhileMember } from './numbering.js';
import type { Outbox } from './outbox.js';
import type { ReplyTargets } from './replies.js';
import { type SendClaims, deletionKey } from './send-claims.js';
import { textProblem } from './send-rules.js';
import type { Sequencer } from './sequencer.js';
import type { ChatRecord, Store } from './store/store.js';

const TEXT_PROBLEMS = {
  invalid_payload: 'text must be a string without control characters',
  empty: 'text must not be empty or only whitespace',
  too_long: 'text must be at most 1000 characters (code points)',
} as const;

/**
 * Edits and deletions of chat messages (REST): each one an event with its own seq in the chat's
 * stream, made durable by the archive like a message, then delivered; the store applies it to
 * its target (core/store/store.ts, appendMessages). docs/chat-features.md has the rules.
 */
export class MessageEdits {
  constructor(
    private readonly deps: {
      store: Store;
      sequencer: Sequencer;
      archive: Archive;
      membership: Membership;
      claims: SendClaims;
      targets: ReplyTargets;
      outbox: Outbox;
    },
  ) {}

  /** The sender changes its message's text; resolves with the message as it now is. */
  async edit(callerId: string, chatId: string, seq: number, text: unknown): Promise<StoredMessage> {
    const problem = textProblem(text);
    if (problem) throw invalidInput(TEXT_PROBLEMS[problem]);
    const { target } = await this.target(callerId, chatId, seq);
    if (target.deleted) throw messageDeleted();
    if (target.senderId !== callerId) throw forbidden('only its sender can edit a message');
    const envelope: EditEnvelope = {
      type: 'edit', id: newId(), chatId, seq: await this.number(chatId, callerId), targetSeq: seq, text: text as string, senderId: callerId,
      createdAt: new Date().toISOString(),
    };
    await this.deps.archive.append(envelope);
    this.deps.outbox.toChat(envelope);
    return { ...target, text: envelope.text, editedAt: envelope.createdAt };
  }

  /** The sender, or a group's owner, deletes a message. Deleting a deleted message changes
   * nothing: of any number of deletions of one message, also at once, one is an event. */
  async remove(callerId: string, chatId: string, seq: number): Promise<void> {
    const { chat, target } = await this.target(callerId, chatId, seq);
    if (target.deleted) return;
    const owner = chat.type === 'group' && chat.ownerId === callerId;
    if (target.senderId !== callerId && !owner) throw forbidden("only its sender or the group's owner can delete a message");
    const claim = await this.deps.claims.claim(deletionKey(chatId, seq));
    if (!claim.claimed) return; // deleted by a concurrent request
    try {
      const envelope: DeleteEnvelope = {
        type: 'delete', id: newId(), chatId, seq: await this.number(chatId, callerId), targetSeq: seq, actorId: callerId, createdAt: new Date().toISOString(),
      };
      await this.deps.archive.append(envelope);
      await claim.hold.complete(envelope);
      this.deps.outbox.toChat(envelope);
    } catch (err) {
      await claim.hold.release().catch(() => {});
      throw err;
    }
  }

  /** The chat message at `seq`, for a current member of the chat. */
  private async target(callerId: string, chatId: string, seq: number): Promise<{ chat: ChatRecord; target: StoredMessage }> {
    const chat = await this.deps.store.getChat(chatId);
    if (!chat) throw notFound('chat not found');
    if (!chat.memberIds.includes(callerId)) throw notMember();
    const target = await this.deps.targets.get(chatId, seq);
    if (!target) throw notFound(`seq ${seq} of this chat holds no message`);
    return { chat, target };
  }

  private async number(chatId: string, callerId: string): Promise<number> {
    const seq = await numberWhileMember(this.deps.sequencer, this.deps.membership, chatId, callerId);
    if (seq === null) throw notMember();
    return seq;
  }
}

