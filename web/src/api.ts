/**
 * The REST side of the public contract (docs/rest.md), as a client author writes it: JSON under
 * /api, a bearer token, errors as {"error": {"code", "message"}}.
 */

export interface User {
  id: string;
  username: string;
  displayName: string;
  online: boolean;
  lastSeenAt: string | null;
}

export interface Chat {
  id: string;
  number: number;
  type: 'direct' | 'group';
  name: string | null;
  visibility: 'public' | 'private';
  ownerId: string | null;
  members: User[];
  memberCount: number;
  lastSeq: number;
  createdAt: string;
  /** The caller's read pointer: the highest seq it has read. */
  readSeq: number;
  /** Messages of other members after readSeq, deletions excluded. */
  unread: number;
  /** The newest chat message, in its current state. */
  lastMessage: MessageEnvelope | null;
  /** Time of the newest envelope of any kind, or the chat's creation. */
  lastActivityAt: string;
}

/** A chat message. Live it arrives as sent; history shows it in its current state: the latest
 * edit's text and `editedAt`, or `deleted` and no text. */
export interface MessageEnvelope {
  type: 'message';
  id: string;
  chatId: string;
  seq: number;
  senderId: string;
  senderName: string;
  text?: string;
  clientMsgId: string | null;
  /** The seq of the message of the same chat this one answers. */
  replyTo?: number;
  editedAt?: string;
  deleted?: true;
  createdAt: string;
}

/** The sender changed the text of the message at targetSeq. */
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

/** The message at targetSeq was deleted (by its sender, or a group's owner). */
export interface DeleteEnvelope {
  type: 'delete';
  id: string;
  chatId: string;
  seq: number;
  targetSeq: number;
  actorId: string;
  createdAt: string;
}

export interface SystemEnvelope {
  type: 'system';
  id: string;
  chatId: string;
  seq: number;
  event: 'chat.created' | 'member.joined' | 'member.left' | 'member.removed';
  userId: string;
  actorId?: string;
  createdAt: string;
}

export type Envelope = MessageEnvelope | SystemEnvelope | EditEnvelope | DeleteEnvelope;

/** What `chats/{chatId}/receipts` delivers: a member has read up to readSeq. */
export interface ReadReceipt {
  type: 'read';
  chatId: string;
  userId: string;
  readSeq: number;
  at: string;
}

export interface Login {
  token: string;
  expiresAt: string;
  user: User;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class Api {
  constructor(private readonly token: string | null) {}

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`/api${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (res.status === 204) return undefined as T;
    const json = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
    if (!res.ok) throw new ApiError(res.status, json?.error?.code ?? 'internal_error', json?.error?.message ?? res.statusText);
    return json as T;
  }

  register(username: string, password: string, displayName?: string) {
    return this.request<{ user: User }>('POST', '/users', { username, password, ...(displayName ? { displayName } : {}) });
  }

  login(username: string, password: string) {
    return this.request<Login>('POST', '/users/login', { username, password });
  }

  logout() {
    return this.request<void>('POST', '/users/logout');
  }

  me() {
    return this.request<{ user: User }>('GET', '/users/me');
  }

  async search(q: string): Promise<User[]> {
    return (await this.request<{ users: User[] }>('GET', `/users/search?q=${encodeURIComponent(q)}&limit=20`)).users;
  }

  /** Every page of one of the caller's chat lists, newest activity first (keyset pages by cursor). */
  private async allPages(path: string): Promise<Chat[]> {
    const chats: Chat[] = [];
    for (let cursor = ''; ; ) {
      const page = await this.request<{ chats: Chat[]; hasMore: boolean; nextCursor?: string }>('GET', `${path}?order=activity&limit=100${cursor}`);
      chats.push(...page.chats);
      if (!page.hasMore || !page.nextCursor) return chats;
      cursor = `&cursor=${page.nextCursor}`;
    }
  }

  myChats(userId: string): Promise<Chat[]> {
    return Promise.all([this.allPages(`/chats/one-to-one/${userId}`), this.allPages(`/chats/group/${userId}`)]).then(([a, b]) => [...a, ...b]);
  }

  async publicGroups(): Promise<Chat[]> {
    return (await this.request<{ chats: Chat[] }>('GET', '/chats?limit=50')).chats;
  }

  async chat(number: number): Promise<Chat> {
    return (await this.request<{ chat: Chat }>('GET', `/chats/${number}`)).chat;
  }

  async openDirect(otherId: string): Promise<Chat> {
    return (await this.request<{ chat: Chat }>('POST', '/chats', { type: 'direct', memberIds: [otherId] })).chat;
  }

  async createGroup(name: string, memberIds: string[], visibility: 'public' | 'private'): Promise<Chat> {
    return (await this.request<{ chat: Chat }>('POST', '/chats', { type: 'group', name, memberIds, visibility })).chat;
  }

  async addMembers(number: number, userIds: string[]): Promise<Chat> {
    return (await this.request<{ chat: Chat }>('POST', `/chats/${number}/members`, { userIds })).chat;
  }

  removeMember(number: number, userId: string) {
    return this.request<void>('DELETE', `/chats/${number}/members/${userId}`);
  }

  history(chatId: string, range: { after?: number; before?: number; limit?: number }) {
    const q = new URLSearchParams({ limit: String(range.limit ?? 50) });
    if (range.after !== undefined) q.set('after', String(range.after));
    if (range.before !== undefined) q.set('before', String(range.before));
    return this.request<{ messages: Envelope[]; hasMore: boolean }>('GET', `/messages/${chatId}?${q}`);
  }

  async receipts(number: number): Promise<{ userId: string; readSeq: number }[]> {
    return (await this.request<{ receipts: { userId: string; readSeq: number }[] }>('GET', `/chats/${number}/receipts`)).receipts;
  }

  async editMessage(chatId: string, seq: number, text: string): Promise<MessageEnvelope> {
    return (await this.request<{ message: MessageEnvelope }>('PATCH', `/messages/${chatId}/${seq}`, { text })).message;
  }

  deleteMessage(chatId: string, seq: number) {
    return this.request<void>('DELETE', `/messages/${chatId}/${seq}`);
  }

  /** Messages of the caller's chats containing q, newest first; before: the id of the last one seen. */
  searchMessages(q: string, before?: string) {
    const query = new URLSearchParams({ q, limit: '20' });
    if (before) query.set('before', before);
    return this.request<{ messages: MessageEnvelope[]; hasMore: boolean }>('GET', `/messages/search?${query}`);
  }
}
