import type { Archive } from './archive.js';
import type { ControlBus, MembershipEvent } from './bus.js';
import type { SystemEnvelope, SystemEvent } from './envelope.js';
import { newId } from './ids.js';
import type { Outbox } from './outbox.js';
import type { Sequencer } from './sequencer.js';
import type { ChatRecord } from './store/store.js';

/** What happens after a membership change is committed (core/chats.ts): the other nodes'
 * membership caches learn of it, the chat's stream gets its system messages, the users
 * concerned get inbox events. Each resolves with the highest seq of the system messages it
 * stored (0 if none could be): the chat's lastSeq after the change. */
export interface ChatEvents {
  chatCreated(chat: ChatRecord, actorId: string): Promise<number>;
  membersAdded(chat: ChatRecord, userIds: readonly string[], actorId: string): Promise<number>;
  memberRemoved(chat: ChatRecord, userId: string, actorId: string): Promise<number>;
}

type SystemMessage = { event: SystemEvent; userId: string; actorId?: string | undefined };

/**
 * The chat events of the REST membership changes. Only a failed announcement throws (the
 * request then fails with 503); a system message that cannot be stored is logged and skipped.
 */
export class ChatEventPublisher implements ChatEvents {
  constructor(
    private readonly deps: {
      sequencer: Sequencer;
      archive: Archive;
      bus: ControlBus;
      outbox: Outbox;
      onError: (err: unknown, what: string) => void;
    },
  ) {}

  async chatCreated(chat: ChatRecord, actorId: string): Promise<number> {
    await this.announce({ type: 'member.added', chatId: chat.id, userIds: chat.memberIds, memberIds: chat.memberIds, version: chat.membersVersion });
    const lastSeq = await this.system(chat.id, [{ event: 'chat.created', userId: actorId }]);
    for (const userId of chat.memberIds) this.deps.outbox.toInbox(userId, { type: 'chat.added', chatId: chat.id, number: chat.number });
    return lastSeq;
  }

  async membersAdded(chat: ChatRecord, userIds: readonly string[], actorId: string): Promise<number> {
    if (userIds.length === 0) return 0;
    // The joins are numbered before the caches learn of them, so a new member's first message
    // always comes after its member.joined (a removal goes the other way round: see below).
    const lastSeq = await this.system(chat.id, userIds.map((userId) => ({ event: 'member.joined', userId, actorId: userId === actorId ? undefined : actorId })));
    await this.announce({ type: 'member.added', chatId: chat.id, userIds: [...userIds], memberIds: chat.memberIds, version: chat.membersVersion });
    for (const userId of userIds) this.deps.outbox.toInbox(userId, { type: 'chat.added', chatId: chat.id, number: chat.number });
    return lastSeq;
  }

  async memberRemoved(chat: ChatRecord, userId: string, actorId: string): Promise<number> {
    // The caches learn of a removal before it is numbered, so no send of the removed member is
    // numbered after it (Sequencer.nextIf), and no delivery reaches them after it.
    await this.announce({ type: 'member.removed', chatId: chat.id, userId, memberIds: chat.memberIds, version: chat.membersVersion });
    const lastSeq = await this.system(chat.id, [userId === actorId ? { event: 'member.left', userId } : { event: 'member.removed', userId, actorId }]);
    this.deps.outbox.toInbox(userId, { type: 'chat.removed', chatId: chat.id, number: chat.number });
    return lastSeq;
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

  /**
   * One change's system messages, numbered in order and appended together, so that the archive
   * commits them as one batch (a group created with 100 members: one commit, not 100), then
   * delivered in seq order. Resolves with the highest seq stored (0 if none).
   */
  private async system(chatId: string, messages: readonly SystemMessage[]): Promise<number> {
    const envelopes: SystemEnvelope[] = [];
    for (const { event, userId, actorId } of messages) {
      try {
        envelopes.push({
          type: 'system', id: newId(), chatId, seq: await this.deps.sequencer.next(chatId), event, userId,
          ...(actorId === undefined ? {} : { actorId }), createdAt: new Date().toISOString(),
        });
      } catch (err) {
        this.deps.onError(err, `numbering system message ${event} in chat ${chatId}`);
      }
    }
    const appended = await Promise.allSettled(envelopes.map((envelope) => this.deps.archive.append(envelope)));
    let lastSeq = 0;
    appended.forEach((result, i) => {
      const envelope = envelopes[i]!;
      if (result.status === 'rejected') return this.deps.onError(result.reason, `system message ${envelope.event} in chat ${chatId}`);
      this.deps.outbox.toChat(envelope);
      lastSeq = envelope.seq;
    });
    return lastSeq;
  }
}
