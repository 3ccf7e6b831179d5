import type { Membership } from './membership.js';
import type { Sequencer } from './sequencer.js';

/** How often a send reads its chat's members again before giving up (the client retries). */
const MAX_STALE_RETRIES = 5;

/**
 * A seq for what `senderId` adds to the chat (a message, an edit, a deletion), taken only
 * while it is a member (null otherwise), in one step with that check: a removal numbered
 * before it is always seen, on any node, so history never shows a message after its sender's
 * removal (docs/architecture.md, "Membership changes
 * and sends in flight").
 */
export async function numberWhileMember(sequencer: Sequencer, membership: Membership, chatId: string, senderId: string): Promise<number | null> {
  for (let attempt = 1; ; attempt++) {
    const got = await sequencer.nextIf(chatId, () => membership.admit(chatId, senderId));
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
    await membership.refresh(chatId);
    if (membership.admit(chatId, senderId) === null) return null; // no such chat
  }
}
