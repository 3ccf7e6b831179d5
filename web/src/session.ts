import mqtt, { type MqttClient } from 'mqtt';
import { Api, type Chat, type Envelope, type Login, type User } from './api';

/** 1,000 Unicode code points: the server's limit on a message's text. */
export const MAX_TEXT = 1000;
export const codePoints = (text: string) => [...text].length;

export type PendingState = { status: 'sending' } | { status: 'failed'; reason: string };

/** One's own message between Send and its envelope, found again by clientMsgId. */
export interface Pending {
  clientMsgId: string;
  text: string;
  state: PendingState;
  at: number;
}

export interface ChatState {
  chat: Chat;
  /** Envelopes by seq, shown in seq order; a seq seen twice is kept once. */
  messages: Map<number, Envelope>;
  /** Highest seq held: catch-up asks for what comes after it. */
  lastSeq: number;
  /** Whether history holds older envelopes than the oldest held. */
  hasOlder: boolean;
  pending: Map<string, Pending>;
  /** Who is typing, until when (ms). */
  typing: Map<string, number>;
  /** Time of the newest envelope held: the chat list's order. */
  activity: number;
}

export type Connection = 'connecting' | 'online' | 'offline';

const TYPING_SHOWN_MS = 5000;

/**
 * Everything a signed-in user sees, kept current over MQTT (docs/mqtt.md): every chat's stream
 * and typing, the presence of direct-chat partners, the inbox. Sends are QoS 1 with a
 * clientMsgId; on every (re)connect each chat catches up with `?after=<lastSeq>`, so nothing is
 * missed or shown twice. Listeners are told of every change.
 */
export class Session {
  readonly api: Api;
  readonly chats = new Map<string, ChatState>();
  readonly presence = new Map<string, 'online' | 'offline'>();
  /** Chats the user left or was removed from while signed in, by title: the open one says so. */
  readonly gone = new Map<string, string>();
  connection: Connection = 'connecting';
  private client: MqttClient | null = null;
  private readonly listeners = new Set<() => void>();
  private lastTyping = 0;
  private closed = false;

  constructor(
    readonly login: Login,
    private readonly onSignedOut: (why: string) => void,
  ) {
    this.api = new Api(login.token);
  }

  get me(): User {
    return this.login.user;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed() {
    for (const l of this.listeners) l();
  }

  async start(): Promise<void> {
    for (const chat of await this.api.myChats(this.me.id)) this.hold(chat);
    this.connect();
  }

  private hold(chat: Chat): ChatState {
    this.learnNames(chat);
    const existing = this.chats.get(chat.id);
    if (existing) {
      existing.chat = chat;
      return existing;
    }
    const state: ChatState = {
      chat, messages: new Map(), lastSeq: 0, hasOlder: chat.lastSeq > 0, pending: new Map(), typing: new Map(), activity: Date.parse(chat.createdAt),
    };
    this.chats.set(chat.id, state);
    return state;
  }

  /** Display names of everyone met in a chat, kept after they leave it: system messages name them. */
  private readonly names = new Map<string, string>();

  private learnNames(chat: Chat) {
    for (const m of chat.members) this.names.set(m.id, m.displayName);
  }

  nameOf(userId: string): string {
    return userId === this.me.id ? 'You' : (this.names.get(userId) ?? 'Someone');
  }

  /** The other member of a direct chat. */
  partner(chat: Chat): User | undefined {
    return chat.type === 'direct' ? chat.members.find((m) => m.id !== this.me.id) : undefined;
  }

  title(chat: Chat): string {
    return chat.type === 'group' ? (chat.name ?? `Group ${chat.number}`) : (this.partner(chat)?.displayName ?? 'Direct chat');
  }

  // ---- MQTT

  private connect() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const device = `web-${Math.random().toString(36).slice(2, 10)}`;
    let backoff = 1000;
    const client = mqtt.connect(`${scheme}://${location.host}/mqtt`, {
      username: this.me.username,
      password: this.login.token,
      clientId: `${this.me.id}/${device}`,
      clean: true,
      keepalive: 30,
      reconnectPeriod: backoff,
      connectTimeout: 10_000,
      protocolVersion: 4,
    });
    this.client = client;
    client.on('connect', () => {
      backoff = 1000;
      client.options.reconnectPeriod = backoff;
      this.connection = 'online';
      this.changed();
      void this.afterConnect();
    });
    client.on('close', () => {
      if (this.closed) return;
      this.connection = 'offline';
      // Back-off: 1 s, 2 s, 4 s … up to 30 s between attempts, back to 1 s once connected.
      backoff = Math.min(backoff * 2, 30_000);
      client.options.reconnectPeriod = backoff;
      this.changed();
    });
    client.on('error', (err: Error & { code?: number }) => {
      // CONNACK 4: the token expired or was revoked (logged out elsewhere). Back to the login form.
      if (err.code === 4 || err.code === 5) this.signOut(err.code === 4 ? 'Your session has ended. Log in again.' : 'Too many connections.');
    });
    client.on('message', (topic, payload) => this.receive(topic, payload));
    // Back on the network (a laptop waking, a phone leaving a tunnel): try at once, not at the
    // end of the back-off.
    this.onOnline = () => {
      if (!client.connected && !client.disconnecting && !this.closed) client.reconnect();
    };
    window.addEventListener('online', this.onOnline);
  }

  private onOnline: (() => void) | null = null;

  /** Subscribe first, then fetch history, so nothing falls between the two. */
  private async afterConnect() {
    const client = this.client!;
    const topics = [`users/${this.me.id}/inbox`];
    for (const { chat } of this.chats.values()) topics.push(`chats/${chat.id}/messages`, `chats/${chat.id}/typing`);
    await client.subscribeAsync(topics, { qos: 1 }).catch(() => {});
    await this.watchPresence([...this.chats.values()].map((c) => c.chat));
    await this.reloadChats();
    await Promise.all([...this.chats.values()].map((c) => this.catchUp(c)));
  }

  /** The chat lists again (inbox events sent while offline are lost). */
  private async reloadChats() {
    const now = await this.api.myChats(this.me.id).catch(() => null);
    if (!now) return;
    const ids = new Set(now.map((c) => c.id));
    for (const id of [...this.chats.keys()]) if (!ids.has(id)) this.forget(id);
    for (const chat of now) {
      const known = this.chats.has(chat.id);
      const state = this.hold(chat);
      if (!known) {
        await this.follow(chat);
        void this.catchUp(state);
      }
    }
    this.changed();
  }

  /** A chat's stream and typing, and its partner's presence. */
  private async follow(chat: Chat) {
    await this.client?.subscribeAsync([`chats/${chat.id}/messages`, `chats/${chat.id}/typing`], { qos: 1 }).catch(() => {});
    await this.watchPresence([chat]);
  }

  private async watchPresence(chats: Chat[]) {
    const partners = chats.map((c) => this.partner(c)).filter((u): u is User => u !== undefined);
    for (const u of partners) if (!this.presence.has(u.id)) this.presence.set(u.id, u.online ? 'online' : 'offline');
    if (partners.length) await this.client?.subscribeAsync(partners.map((u) => `users/${u.id}/presence`), { qos: 1 }).catch(() => {});
  }

  /** Everything after lastSeq (a chat seen for the first time: its newest page). */
  async catchUp(state: ChatState): Promise<void> {
    try {
      if (state.lastSeq === 0 && state.messages.size === 0) {
        const page = await this.api.history(state.chat.id, { limit: 50 });
        for (const e of page.messages) this.add(state, e);
        state.hasOlder = page.hasMore;
        this.changed();
        return;
      }
      for (;;) {
        const page = await this.api.history(state.chat.id, { after: state.lastSeq, limit: 100 });
        for (const e of page.messages) this.add(state, e);
        this.changed();
        if (!page.hasMore || page.messages.length === 0) return;
      }
    } catch {
      /* not a member any more, or offline: the next connect catches up */
    }
  }

  /** Older history, for scrolling back. */
  async loadOlder(chatId: string): Promise<void> {
    const state = this.chats.get(chatId);
    if (!state || !state.hasOlder) return;
    const oldest = Math.min(...state.messages.keys());
    const page = await this.api.history(chatId, { before: Number.isFinite(oldest) ? oldest : undefined, limit: 50 }).catch(() => null);
    if (!page) return;
    for (const e of page.messages) this.add(state, e);
    state.hasOlder = page.hasMore;
    this.changed();
  }

  private add(state: ChatState, e: Envelope) {
    if (state.messages.has(e.seq)) return;
    state.messages.set(e.seq, e);
    if (e.seq > state.lastSeq) state.lastSeq = e.seq;
    state.activity = Math.max(state.activity, Date.parse(e.createdAt));
    if (e.type === 'message' && e.senderId === this.me.id && e.clientMsgId) state.pending.delete(e.clientMsgId);
    if (e.type === 'message') state.typing.delete(e.senderId);
  }

  private receive(topic: string, payload: Uint8Array) {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    } catch {
      return;
    }
    const [root, id, leaf] = topic.split('/');
    if (root === 'chats' && id) {
      const state = this.chats.get(id);
      if (!state) return;
      if (leaf === 'messages') {
        const e = json as unknown as Envelope;
        const gap = e.seq > state.lastSeq + 1 && state.lastSeq > 0;
        this.add(state, e);
        this.changed();
        if (gap) void this.catchUp(state);
      } else if (leaf === 'typing' && json.userId !== this.me.id && typeof json.userId === 'string') {
        if (json.typing === true) state.typing.set(json.userId, Date.now() + TYPING_SHOWN_MS);
        else state.typing.delete(json.userId);
        this.changed();
        setTimeout(() => this.changed(), TYPING_SHOWN_MS + 50);
      }
    } else if (root === 'users' && leaf === 'presence' && id) {
      if (json.status === 'online' || json.status === 'offline') this.presence.set(id, json.status);
      this.changed();
    } else if (root === 'users' && leaf === 'inbox') {
      void this.inbox(json);
    }
  }

  private async inbox(event: Record<string, unknown>) {
    const chatId = String(event.chatId);
    if (event.type === 'message.rejected') {
      const pending = this.chats.get(chatId)?.pending.get(String(event.clientMsgId));
      if (pending) pending.state = { status: 'failed', reason: String(event.reason) };
      this.changed();
    } else if (event.type === 'chat.added') {
      const chat = await this.api.chat(Number(event.number)).catch(() => null);
      if (!chat) return;
      const state = this.hold(chat);
      await this.follow(chat);
      if (state.lastSeq === 0) state.messages.clear();
      await this.catchUpFromStart(state);
    } else if (event.type === 'chat.removed') {
      const state = this.chats.get(chatId);
      if (state) this.gone.set(chatId, this.title(state.chat));
      this.forget(chatId);
    }
  }

  /** A chat just added: its history from the start, system envelopes published before the subscription included. */
  private async catchUpFromStart(state: ChatState) {
    const page = await this.api.history(state.chat.id, { after: 0, limit: 100 }).catch(() => null);
    if (page) for (const e of page.messages) this.add(state, e);
    state.hasOlder = false;
    this.changed();
    if (page?.hasMore) await this.catchUp(state);
  }

  private forget(chatId: string) {
    if (!this.chats.delete(chatId)) return;
    this.client?.unsubscribe([`chats/${chatId}/messages`, `chats/${chatId}/typing`]);
    this.changed();
  }

  /** Adds a chat the user just opened or created (its chat.added may come later, or not at all). */
  async opened(chat: Chat): Promise<void> {
    const known = this.chats.has(chat.id);
    const state = this.hold(chat);
    if (!known) {
      await this.follow(chat);
      await this.catchUpFromStart(state);
    }
    this.changed();
  }

  async refreshChat(chatId: string): Promise<void> {
    const state = this.chats.get(chatId);
    if (!state) return;
    const chat = await this.api.chat(state.chat.number).catch(() => null);
    if (chat) {
      this.learnNames(chat);
      state.chat = chat;
    }
    this.changed();
  }

  // ---- sending

  /** Shown at once as pending; the envelope with the same clientMsgId replaces it. */
  send(chatId: string, text: string): string | null {
    const n = codePoints(text);
    if (n === 0 || n > MAX_TEXT || text.trim() === '') return null;
    const state = this.chats.get(chatId);
    if (!state) return null;
    const clientMsgId = crypto.randomUUID();
    state.pending.set(clientMsgId, { clientMsgId, text, state: { status: 'sending' }, at: Date.now() });
    this.publish(chatId, clientMsgId, text);
    this.typing(chatId, false);
    this.changed();
    return clientMsgId;
  }

  /** A failed send again, with the same clientMsgId: the server stores it at most once. */
  retry(chatId: string, clientMsgId: string) {
    const pending = this.chats.get(chatId)?.pending.get(clientMsgId);
    if (!pending) return;
    pending.state = { status: 'sending' };
    this.publish(chatId, clientMsgId, pending.text);
    this.changed();
  }

  private publish(chatId: string, clientMsgId: string, text: string) {
    // QoS 1: mqtt.js keeps it and sends it again after a reconnect until it is acknowledged.
    this.client?.publish(`chats/${chatId}/messages`, JSON.stringify({ text, clientMsgId }), { qos: 1 }, (err) => {
      const pending = this.chats.get(chatId)?.pending.get(clientMsgId);
      if (err && pending) {
        pending.state = { status: 'failed', reason: 'not sent' };
        this.changed();
      }
    });
  }

  typing(chatId: string, typing: boolean) {
    const now = Date.now();
    if (typing && now - this.lastTyping < 3000) return; // refreshed every 3 s while it goes on
    this.lastTyping = typing ? now : 0;
    this.client?.publish(`chats/${chatId}/typing`, JSON.stringify({ typing }), { qos: 0 });
  }

  typingIn(chatId: string): string[] {
    const state = this.chats.get(chatId);
    if (!state) return [];
    const now = Date.now();
    const names: string[] = [];
    for (const [userId, until] of state.typing) {
      if (until < now) continue;
      names.push(this.nameOf(userId));
    }
    return names;
  }

  // ---- ending

  private signOut(why: string) {
    if (this.closed) return;
    this.close();
    this.onSignedOut(why);
  }

  async logout(): Promise<void> {
    await this.api.logout().catch(() => {});
    this.signOut('');
  }

  close() {
    this.closed = true;
    if (this.onOnline) window.removeEventListener('online', this.onOnline);
    this.client?.end(true);
    this.client = null;
  }
}
