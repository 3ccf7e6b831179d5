import mqtt, { type MqttClient } from 'mqtt';
import { Api, type Chat, type DeleteEnvelope, type EditEnvelope, type Envelope, type Login, type MessageEnvelope, type ReadReceipt, type User } from './api';

/** 1,000 Unicode code points: the server's limit on a message's text. */
export const MAX_TEXT = 1000;
export const codePoints = (text: string) => [...text].length;

export type PendingState = { status: 'sending' } | { status: 'failed'; reason: string };

/** One's own message between Send and its envelope, found again by clientMsgId. */
export interface Pending {
  clientMsgId: string;
  text: string;
  replyTo?: number;
  state: PendingState;
  at: number;
}

export interface ChatState {
  chat: Chat;
  /** Envelopes by seq, shown in seq order; a seq seen twice is kept once. Edits and deletions
   * are held too (they are applied to their target, and count for lastSeq). */
  messages: Map<number, Envelope>;
  /** Highest seq held: catch-up asks for what comes after it. */
  lastSeq: number;
  /** Whether history holds older envelopes than the oldest held. */
  hasOlder: boolean;
  /** Whether the newest page of history was read (or all of it, from the start). Until then
   * what is held may be only live envelopes that came before it. */
  newestLoaded: boolean;
  /** The read of the newest page under way, which a second catch-up waits for. */
  loadingNewest: Promise<void> | null;
  pending: Map<string, Pending>;
  /** Who is typing, until when (ms). */
  typing: Map<string, number>;
  /** Time of the newest envelope held: the chat list's order. */
  activity: number;
  /** The user's read pointer: the highest seq read on any of its devices. */
  readSeq: number;
  /** Other members' read pointers, from receipts, GET …/receipts and their own sends. */
  receipts: Map<string, number>;
  /** Whether GET …/receipts was read (the open chat): read again after a reconnect. */
  receiptsLoaded: boolean;
}

/** An edit or a deletion as it changes its target. */
type Change = Pick<EditEnvelope, 'type' | 'text' | 'createdAt'> | Pick<DeleteEnvelope, 'type'>;

/** The message after a change, or null when it does not change: nothing changes a deleted
 * message, and an edit older than the text shown (history brings the current state) is past. */
function changed(m: MessageEnvelope, change: Change): MessageEnvelope | null {
  if (m.deleted) return null;
  if (change.type === 'delete') {
    const { text, editedAt, ...rest } = m;
    return { ...rest, deleted: true };
  }
  if (m.editedAt && m.editedAt > change.createdAt) return null;
  return { ...m, text: change.text, editedAt: change.createdAt };
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
      existing.readSeq = Math.max(existing.readSeq, chat.readSeq);
      existing.activity = Math.max(existing.activity, Date.parse(chat.lastActivityAt));
      return existing;
    }
    const state: ChatState = {
      chat, messages: new Map(), lastSeq: 0, hasOlder: chat.lastSeq > 0, newestLoaded: false, loadingNewest: null, pending: new Map(), typing: new Map(), activity: Date.parse(chat.lastActivityAt),
      readSeq: chat.readSeq, receipts: new Map(), receiptsLoaded: false,
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
    // What each chat held before the subscriptions: envelopes that arrive live from here on
    // raise lastSeq, and catching up after them would skip what was sent while offline.
    const held = new Map([...this.chats.values()].map((c) => [c, c.lastSeq]));
    const topics = [`users/${this.me.id}/inbox`];
    for (const { chat } of this.chats.values()) topics.push(...chatTopics(chat.id));
    await client.subscribeAsync(topics, { qos: 1 }).catch(() => {});
    await this.watchPresence([...this.chats.values()].map((c) => c.chat));
    await this.reloadChats();
    await Promise.all([...this.chats.values()].map((c) => this.catchUp(c, held.get(c))));
    // Receipts are QoS 0, lost while offline: the open chat's are read again.
    for (const state of this.chats.values()) if (state.receiptsLoaded) void this.loadReceipts(state.chat.id);
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

  /** A chat's stream, typing and receipts, and its partner's presence. */
  private async follow(chat: Chat) {
    await this.client?.subscribeAsync(chatTopics(chat.id), { qos: 1 }).catch(() => {});
    await this.watchPresence([chat]);
  }

  private async watchPresence(chats: Chat[]) {
    const partners = chats.map((c) => this.partner(c)).filter((u): u is User => u !== undefined);
    for (const u of partners) if (!this.presence.has(u.id)) this.presence.set(u.id, u.online ? 'online' : 'offline');
    if (partners.length) await this.client?.subscribeAsync(partners.map((u) => `users/${u.id}/presence`), { qos: 1 }).catch(() => {});
  }

  /** Everything after `after` (by default lastSeq, the highest seq held); for a chat seen for
   * the first time, its newest page first (also when live envelopes came before it: they may be
   * all it holds). A caller that knows live envelopes may have raised lastSeq past a gap (they
   * came while it subscribed, or beyond what was held) passes the seq held before them. */
  async catchUp(state: ChatState, after = state.lastSeq): Promise<void> {
    try {
      // The newest page reaches what was stored when it was read; what follows comes live.
      if (!state.newestLoaded) return await (state.loadingNewest ??= this.loadNewest(state).finally(() => (state.loadingNewest = null)));
      for (;;) {
        const page = await this.api.history(state.chat.id, { after, limit: 100 });
        for (const e of page.messages) this.add(state, e);
        this.changed();
        if (!page.hasMore || page.messages.length === 0) return;
        after = page.messages.at(-1)!.seq;
      }
    } catch {
      /* not a member any more, or offline: the next connect catches up */
    }
  }

  private async loadNewest(state: ChatState): Promise<void> {
    const page = await this.api.history(state.chat.id, { limit: 50 });
    for (const e of page.messages) this.add(state, e);
    state.hasOlder = page.hasMore;
    state.newestLoaded = true;
    this.changed();
  }

  /** Older history, for scrolling back. Resolves with whether a page came. */
  async loadOlder(chatId: string): Promise<boolean> {
    const state = this.chats.get(chatId);
    if (!state || !state.hasOlder) return false;
    const oldest = Math.min(...state.messages.keys());
    const page = await this.api.history(chatId, { before: Number.isFinite(oldest) ? oldest : undefined, limit: 50 }).catch(() => null);
    if (!page) return false;
    for (const e of page.messages) this.add(state, e);
    state.hasOlder = page.hasMore;
    this.changed();
    return true;
  }

  /** Loads older pages until the envelope at seq is held (20 pages at most); whether it is. */
  async reveal(chatId: string, seq: number): Promise<boolean> {
    for (let i = 0; i < 20; i++) {
      const state = this.chats.get(chatId);
      if (!state || seq > state.lastSeq) return false;
      if (state.messages.has(seq)) return true;
      if (!(await this.loadOlder(chatId))) return false;
    }
    return false;
  }

  private add(state: ChatState, e: Envelope) {
    if (state.messages.has(e.seq)) return;
    state.messages.set(e.seq, e);
    if (e.seq > state.lastSeq) state.lastSeq = e.seq;
    state.activity = Math.max(state.activity, Date.parse(e.createdAt));
    if (e.type === 'message') {
      if (e.senderId === this.me.id && e.clientMsgId) state.pending.delete(e.clientMsgId);
      state.typing.delete(e.senderId);
      this.sawRead(state, e.senderId, e.seq); // a send moves its sender's pointer
      // Edits and deletions held before their target (an older page loading meanwhile).
      const changes = [...state.messages.values()].filter((c): c is EditEnvelope | DeleteEnvelope => (c.type === 'edit' || c.type === 'delete') && c.targetSeq === e.seq);
      for (const c of changes.sort((a, b) => a.seq - b.seq)) this.change(state, e.seq, c);
    } else if (e.type === 'edit' || e.type === 'delete') {
      this.change(state, e.targetSeq, e);
      // A deletion among unread messages that are not held: the server counts them again.
      if (e.type === 'delete' && !this.heldSince(state, state.readSeq)) void this.refreshChat(state.chat.id);
    }
  }

  /** Whether the envelopes held reach back to just after seq (held ones are contiguous up to lastSeq). */
  private heldSince(state: ChatState, seq: number): boolean {
    return !state.hasOlder || Math.min(...state.messages.keys()) <= seq + 1;
  }

  /** Applies an edit or deletion to its target, where held (and to the chat's lastMessage). */
  private change(state: ChatState, targetSeq: number, change: Change) {
    const target = state.messages.get(targetSeq);
    const next = target?.type === 'message' ? changed(target, change) : null;
    if (next) state.messages.set(targetSeq, next);
    const last = state.chat.lastMessage;
    if (last?.seq === targetSeq) state.chat.lastMessage = changed(last, change) ?? last;
  }

  /** A member has read up to seq: the user itself (another device) or someone else. */
  private sawRead(state: ChatState, userId: string, seq: number) {
    if (userId !== this.me.id) {
      state.receipts.set(userId, Math.max(state.receipts.get(userId) ?? 0, seq));
    } else if (seq > state.readSeq) {
      state.readSeq = seq;
      // Read on another device up to a message not held: the server counts what is left.
      if (!this.heldSince(state, seq)) void this.refreshChat(state.chat.id);
    }
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
        // A gap, or a chat whose newest page was not read yet: fetch what lies before.
        const before = state.lastSeq;
        const gap = e.seq > before + 1 && state.newestLoaded;
        this.add(state, e);
        this.changed();
        if (gap || !state.newestLoaded) void this.catchUp(state, before);
      } else if (leaf === 'receipts' && json.type === 'read') {
        const receipt = json as unknown as ReadReceipt;
        this.sawRead(state, receipt.userId, receipt.readSeq);
        this.changed();
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
    state.newestLoaded = page !== null;
    this.changed();
    if (page?.hasMore) await this.catchUp(state);
  }

  private forget(chatId: string) {
    if (!this.chats.delete(chatId)) return;
    this.client?.unsubscribe(chatTopics(chatId));
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
    if (chat && this.chats.has(chatId)) this.hold(chat);
    this.changed();
  }

  // ---- reading

  /** Messages of other members after the user's pointer, deletions excluded. */
  unread(state: ChatState): number {
    const othersAfter = (seq: number) => {
      let n = 0;
      for (const e of state.messages.values()) if (e.type === 'message' && !e.deleted && e.senderId !== this.me.id && e.seq > seq) n++;
      return n;
    };
    // What is held reaches back to the pointer: counted here.
    if (this.heldSince(state, state.readSeq)) return othersAfter(state.readSeq);
    // Else the server's count (as of its chat object) and what came after that object's lastSeq.
    return state.chat.unread + othersAfter(state.chat.lastSeq);
  }

  /** The newest chat message held, in its current state; the server's before any is held. */
  lastMessage(state: ChatState): MessageEnvelope | null {
    let last: MessageEnvelope | null = null;
    for (const e of state.messages.values()) if (e.type === 'message' && (!last || e.seq > last.seq)) last = e;
    return last ?? state.chat.lastMessage;
  }

  /** The user has seen the chat's newest envelope: a receipt, QoS 1 (kept and sent again after
   * a reconnect). The server moves the pointer forward only, to lastSeq at most. */
  markRead(chatId: string) {
    const state = this.chats.get(chatId);
    if (!state || state.lastSeq <= state.readSeq) return;
    state.readSeq = state.lastSeq;
    this.client?.publish(`chats/${chatId}/receipts`, JSON.stringify({ readSeq: state.lastSeq }), { qos: 1 });
    this.changed();
  }

  /** The members' pointers (for "Seen"): live receipts keep them current after this. */
  async loadReceipts(chatId: string): Promise<void> {
    const state = this.chats.get(chatId);
    if (!state) return;
    const receipts = await this.api.receipts(state.chat.number).catch(() => null);
    if (!receipts) return;
    state.receiptsLoaded = true;
    for (const r of receipts) this.sawRead(state, r.userId, r.readSeq);
    this.changed();
  }

  /** The newest of the user's own messages that other members have read, and who has. */
  seen(state: ChatState): { seq: number; readers: User[] } | null {
    const others = state.chat.members.filter((m) => m.id !== this.me.id);
    const own = [...state.messages.values()].filter((e) => e.type === 'message' && e.senderId === this.me.id && !e.deleted);
    for (const m of own.sort((a, b) => b.seq - a.seq)) {
      const readers = others.filter((u) => (state.receipts.get(u.id) ?? 0) >= m.seq);
      if (readers.length) return { seq: m.seq, readers };
    }
    return null;
  }

  // ---- sending

  /** Shown at once as pending; the envelope with the same clientMsgId replaces it. */
  send(chatId: string, text: string, replyTo?: number): string | null {
    const n = codePoints(text);
    if (n === 0 || n > MAX_TEXT || text.trim() === '') return null;
    const state = this.chats.get(chatId);
    if (!state) return null;
    const clientMsgId = crypto.randomUUID();
    const pending: Pending = { clientMsgId, text, replyTo, state: { status: 'sending' }, at: Date.now() };
    state.pending.set(clientMsgId, pending);
    this.publish(chatId, pending);
    this.typing(chatId, false);
    this.changed();
    return clientMsgId;
  }

  /** A failed send again, with the same clientMsgId: the server stores it at most once. */
  retry(chatId: string, clientMsgId: string) {
    const pending = this.chats.get(chatId)?.pending.get(clientMsgId);
    if (!pending) return;
    pending.state = { status: 'sending' };
    this.publish(chatId, pending);
    this.changed();
  }

  private publish(chatId: string, { clientMsgId, text, replyTo }: Pending) {
    const payload = replyTo === undefined ? { text, clientMsgId } : { text, clientMsgId, replyTo };
    // QoS 1: mqtt.js keeps it and sends it again after a reconnect until it is acknowledged.
    this.client?.publish(`chats/${chatId}/messages`, JSON.stringify(payload), { qos: 1 }, (err) => {
      const pending = this.chats.get(chatId)?.pending.get(clientMsgId);
      if (err && pending) {
        pending.state = { status: 'failed', reason: 'not sent' };
        this.changed();
      }
    });
  }

  /** The sender changes its message's text (PATCH), shown once the server has it; the edit
   * event that follows changes nothing more. */
  async edit(chatId: string, seq: number, text: string): Promise<void> {
    const message = await this.api.editMessage(chatId, seq, text);
    const state = this.chats.get(chatId);
    if (state && message.text !== undefined && message.editedAt) this.change(state, seq, { type: 'edit', text: message.text, createdAt: message.editedAt });
    this.changed();
  }

  /** Deletes a message (DELETE), shown as deleted once the server answers; the delete event
   * that follows changes nothing more. */
  async remove(chatId: string, seq: number): Promise<void> {
    await this.api.deleteMessage(chatId, seq);
    const state = this.chats.get(chatId);
    if (state) this.change(state, seq, { type: 'delete' });
    this.changed();
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

/** What the client subscribes to in each of its chats. */
const chatTopics = (chatId: string) => [`chats/${chatId}/messages`, `chats/${chatId}/typing`, `chats/${chatId}/receipts`];
