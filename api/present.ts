import type { ChatRecord, Chats } from '../core/chats.js';
import type { UserRecord, Users } from '../core/users.js';
import type { ChatDto, UserDto } from './schemas.js';

/**
 * Turns the core services' records into the public JSON shapes, with online status. A user's
 * status (online, lastSeenAt) is shown only to itself and to its co-members (users sharing a
 * chat with it); anyone else sees it offline and never seen (docs/security.md).
 */
export class Presenter {
  constructor(
    private readonly service: Users,
    private readonly chatService: Chats,
  ) {}

  /** `records` as `callerId` sees them; `known` holds ids already known to be the caller's
   * co-members (or itself), which need no asking. */
  async users(records: UserRecord[], callerId: string, known: ReadonlySet<string> = new Set()): Promise<UserDto[]> {
    const unknown = records.map((u) => u.id).filter((id) => !known.has(id));
    const visible = new Set([...known, ...(unknown.length === 0 ? [] : await this.service.presenceVisibleTo(callerId, unknown))]);
    const online = await this.service.onlineAmong(records.flatMap((u) => (visible.has(u.id) ? [u.id] : [])));
    return records.map((u) => (visible.has(u.id) ? userDto(u, online.has(u.id)) : userDto({ ...u, lastSeenAt: null }, false)));
  }

  /** A user as `callerId` sees it (itself, when it is the caller). */
  async user(record: UserRecord, callerId: string): Promise<UserDto> {
    return (await this.users([record], callerId))[0]!;
  }

  /** One user query, one presence query and one read of the caller's figures (pointer, unread,
   * last message, activity) for any number of chats, as `callerId` sees them. */
  async chats(chats: ChatRecord[], callerId: string): Promise<ChatDto[]> {
    const ids = [...new Set(chats.flatMap((c) => c.memberIds))];
    // The members of the caller's own chats are its co-members; those of public groups it is
    // not in are asked about.
    const known = new Set(chats.flatMap((c) => (c.memberIds.includes(callerId) ? c.memberIds : [])));
    const [members, states] = await Promise.all([
      this.service.among(ids).then((records) => this.users(records, callerId, known)),
      this.chatService.states(callerId, chats),
    ]);
    const byId = new Map(members.map((u) => [u.id, u]));
    return chats.map((c) => {
      // A non-member (of a public group) sees no pointer, nothing unread and no message.
      const state = states.get(c.id);
      return {
      id: c.id,
      number: c.number,
      type: c.type,
      name: c.name,
      visibility: c.visibility,
      ownerId: c.ownerId,
      members: c.memberIds.flatMap((id) => byId.get(id) ?? []),
      memberCount: c.memberIds.length,
      lastSeq: c.lastSeq,
      createdAt: new Date(c.createdAt).toISOString(),
      readSeq: state?.readSeq ?? 0,
      unread: state?.unread ?? 0,
      lastMessage: state?.lastMessage ?? null,
      lastActivityAt: new Date(state?.lastActivityAt ?? c.createdAt).toISOString(),
      };
    });
  }

  async chat(chat: ChatRecord, callerId: string): Promise<ChatDto> {
    return (await this.chats([chat], callerId))[0]!;
  }
}

const userDto = (u: UserRecord, online: boolean): UserDto => ({
  id: u.id,
  username: u.username,
  displayName: u.displayName,
  online,
  lastSeenAt: u.lastSeenAt === null ? null : new Date(u.lastSeenAt).toISOString(),
});
