import type { ChatRecord, Chats } from '../core/chats.js';
import type { UserRecord, Users } from '../core/users.js';
import type { ChatDto, UserDto } from './schemas.js';

/** Turns the core services' records into the public JSON shapes, with online status. */
export class Presenter {
  constructor(
    private readonly service: Users,
    private readonly chatService: Chats,
  ) {}

  async users(records: UserRecord[]): Promise<UserDto[]> {
    const online = await this.service.onlineAmong(records.map((u) => u.id));
    return records.map((u) => userDto(u, online.has(u.id)));
  }

  async user(record: UserRecord): Promise<UserDto> {
    return (await this.users([record]))[0]!;
  }

  /** One user query, one presence query and one read of the caller's figures (pointer, unread,
   * last message, activity) for any number of chats, as `callerId` sees them. */
  async chats(chats: ChatRecord[], callerId: string): Promise<ChatDto[]> {
    const ids = [...new Set(chats.flatMap((c) => c.memberIds))];
    const [members, states] = await Promise.all([this.service.among(ids).then((records) => this.users(records)), this.chatService.states(callerId, chats)]);
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
