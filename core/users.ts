import type { PresenceView } from './presence.js';
import type { Page, PageOf, Store, UserRecord } from './store/store.js';

export type { UserRecord };

/** What the users service reads from the store. */
export type UserDirectory = Pick<Store, 'getUsers' | 'searchUsers' | 'listUsersAmong' | 'coMemberIds'>;

/**
 * Users as any signed-in user may see them: search, and the users a chat shows as members.
 * Their presence (online, last seen) only as the caller may see it: its own and its
 * co-members' (those it shares a chat with), as over MQTT (docs/security.md). Pages are keyset
 * pages by username, cut by the store: no method loads more users than it returns.
 */
export class Users {
  constructor(
    private readonly store: UserDirectory,
    private readonly presence: PresenceView,
  ) {}

  /** The caller and its co-members who are online now, by username; `after` is a username. The
   * store gives the co-members (bounded by the caller's chats), presence says which are online,
   * and the store orders those by username and cuts the page. */
  async online(callerId: string, page: Page<string>): Promise<PageOf<UserRecord>> {
    const visible = [callerId, ...(await this.store.coMemberIds(callerId))];
    return this.store.listUsersAmong([...(await this.presence.onlineAmong(visible))], page);
  }

  /** Users whose username or display name contains `query` as literal text, case-insensitively,
   * by username; `after` is a username. */
  search(query: string, page: Page<string>): Promise<PageOf<UserRecord>> {
    return this.store.searchUsers(query, page);
  }

  /** The users among `ids` that exist, in any order; unknown ids are skipped. */
  among(ids: readonly string[]): Promise<UserRecord[]> {
    return this.store.getUsers(ids);
  }

  /** The subset of `ids` whose presence `callerId` may see: itself and its co-members. */
  async presenceVisibleTo(callerId: string, ids: readonly string[]): Promise<Set<string>> {
    const others = ids.filter((id) => id !== callerId);
    const visible = new Set(others.length === 0 ? [] : await this.store.coMemberIds(callerId, others));
    if (ids.includes(callerId)) visible.add(callerId);
    return visible;
  }

  /** The subset of `ids` online now. */
  onlineAmong(ids: readonly string[]): Promise<Set<string>> {
    return this.presence.onlineAmong(ids);
  }
}
