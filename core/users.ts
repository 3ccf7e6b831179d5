import type { PresenceView } from './presence.js';
import type { Page, PageOf, Store, UserRecord } from './store/store.js';

export type { UserRecord };

/** What the users service reads from the store. */
export type UserDirectory = Pick<Store, 'getUsers' | 'searchUsers' | 'listUsersAmong'>;

/**
 * Users as any signed-in user may see them: who is online, search, and the users a chat
 * shows as members. Nothing to check beyond authentication. Pages are keyset pages by
 * username, cut by the store: no method loads more users than it returns.
 */
export class Users {
  constructor(
    private readonly store: UserDirectory,
    private readonly presence: PresenceView,
  ) {}

  /** Users online now, by username; `after` is a username. Presence says who is online (ids
   * only), the store orders those by username and cuts the page. */
  async online(page: Page<string>): Promise<PageOf<UserRecord>> {
    return this.store.listUsersAmong(await this.presence.listOnline(), page);
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

  /** The subset of `ids` online now. */
  onlineAmong(ids: readonly string[]): Promise<Set<string>> {
    return this.presence.onlineAmong(ids);
  }
}
