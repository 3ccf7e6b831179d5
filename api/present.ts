import type { ChatRecord } from '../core/chats.js';
import type { UserRecord, Users } from '../core/users.js';
import type { ChatDto, UserDto } from './schemas.js';

/** Turns the core services' records into the public JSON shapes, with online status. */
export class Presenter {
  constructor(private readonly service: Users) {}

  async users(records: UserRecord[]): Promise<UserDto[]> {
    const online = await this.service.onlineAmong(records.map((u) => u.id));
    return records.map((u) => userDto(u, online.has(u.id)));
  }

  async user(record: UserRecord): Promise<UserDto> {
    return (await this.users([record]))[0]!;
  }

  /** One user query and one presence query for any number of chats. */
  async chats(chats: ChatRecord[]): Promise<ChatDto[]> {
    const ids = [...new Set(chats.flatMap((c) => c.memberIds))];
    const byId = new Map((await this.users(await this.service.among(ids))).map((u) => [u.id, u]));
    return chats.map((c) => ({
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
    }));
  }

  async chat(chat: ChatRecord): Promise<ChatDto> {
    return (await this.chats([chat]))[0]!;
  }
}

const userDto = (u: UserRecord, online: boolean): UserDto => ({
  id: u.id,
  username: u.username,
  displayName: u.displayName,
  online,
  lastSeenAt: u.lastSeenAt === null ? null : new Date(u.lastSeenAt).toISOString(),
});
