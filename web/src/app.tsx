import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { Api, ApiError, type Chat, type Envelope, type Login, type MessageEnvelope, type User } from './api';
import { type ChatState, MAX_TEXT, type Session, Session as SessionClass, codePoints } from './session';

const TOKEN_KEY = 'chat.login';

/** The saved login survives a reload; it is checked with GET /api/users/me before use. */
function savedLogin(): Login | null {
  try {
    const raw = localStorage.getItem(TOKEN_KEY);
    if (!raw) return null;
    const login = JSON.parse(raw) as Login;
    return Date.parse(login.expiresAt) > Date.now() ? login : null;
  } catch {
    return null;
  }
}

const errorText = (err: unknown) => (err instanceof ApiError ? err.message : 'The server cannot be reached. Try again.');

export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [notice, setNotice] = useState('');
  const [checking, setChecking] = useState(true);

  const begin = (login: Login) => {
    localStorage.setItem(TOKEN_KEY, JSON.stringify(login));
    const s = new SessionClass(login, (why) => {
      localStorage.removeItem(TOKEN_KEY);
      setSession(null);
      setNotice(why);
    });
    setSession(s);
    void s.start().catch(() => {
      s.close();
      localStorage.removeItem(TOKEN_KEY);
      setSession(null);
      setNotice('Your session has ended. Log in again.');
    });
  };

  useEffect(() => {
    const login = savedLogin();
    if (!login) {
      setChecking(false);
      return;
    }
    new Api(login.token).me().then(
      ({ user }) => begin({ ...login, user }),
      () => localStorage.removeItem(TOKEN_KEY),
    ).finally(() => setChecking(false));
  }, []);

  if (checking) return <p class="center">Loading…</p>;
  if (!session) return <LoginForm notice={notice} onLogin={begin} />;
  return <Main session={session} />;
}

function LoginForm({ notice, onLogin }: { notice: string; onLogin: (login: Login) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(notice);
  const [busy, setBusy] = useState(false);
  const api = new Api(null);

  const run = async (register: boolean) => {
    setBusy(true);
    setError('');
    try {
      if (register) await api.register(username, password);
      onLogin(await api.login(username, password));
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <h1>Chat</h1>
      <form onSubmit={(e) => (e.preventDefault(), void run(false))}>
        <label>
          Username
          <input name="username" autocomplete="username" value={username} onInput={(e) => setUsername(e.currentTarget.value)} required />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} required />
        </label>
        {error && <p role="alert" class="error">{error}</p>}
        <div class="row">
          <button type="submit" disabled={busy}>Log in</button>
          <button type="button" disabled={busy} onClick={() => void run(true)}>Create account</button>
        </div>
      </form>
    </main>
  );
}

/** Re-renders on every change of the session. */
function useSession(session: Session) {
  const [, setVersion] = useState(0);
  useEffect(() => session.subscribe(() => setVersion((n) => n + 1)), [session]);
}

/** A chat list's line under the name: the last message, who wrote it (in groups, or "You"). */
function preview(session: Session, chat: Chat, m: MessageEnvelope | null): string {
  if (!m) return '';
  const who = m.senderId === session.me.id ? 'You: ' : chat.type === 'group' ? `${m.senderName}: ` : '';
  return who + (m.deleted ? 'Message deleted' : m.text);
}

function Main({ session }: { session: Session }) {
  useSession(session);
  const [open, setOpen] = useState<string | null>(null);
  const [composing, setComposing] = useState(false);
  const [query, setQuery] = useState('');
  /** A message to scroll to in the chat opened (a search result). */
  const [jump, setJump] = useState<{ seq: number } | null>(null);
  const chats = [...session.chats.values()].sort((a, b) => b.activity - a.activity);
  const current = open ? session.chats.get(open) : undefined;
  const openChat = (chatId: string, seq?: number) => {
    setOpen(chatId);
    setComposing(false);
    setJump(seq === undefined ? null : { seq });
  };
  const unread = chats.reduce((n, c) => n + session.unread(c), 0);
  useEffect(() => {
    document.title = unread ? `(${unread}) Chat` : 'Chat';
    return () => void (document.title = 'Chat');
  }, [unread]);

  return (
    <div class={`layout ${current || composing ? 'has-detail' : ''}`}>
      <aside class="sidebar">
        <header>
          <strong>{session.me.displayName}</strong>
          <span class={`status ${session.connection}`}>{session.connection}</span>
          <button type="button" onClick={() => void session.logout()}>Log out</button>
        </header>
        <button type="button" class="new" onClick={() => (setComposing(true), setOpen(null))}>New chat</button>
        <label class="sr-only" for="search-messages">Search messages</label>
        <input
          id="search-messages"
          class="search"
          type="search"
          placeholder="Search messages"
          value={query}
          onInput={(e) => setQuery(e.currentTarget.value)}
          onKeyDown={(e) => e.key === 'Escape' && setQuery('')}
        />
        {query.trim() !== '' && <SearchResults session={session} query={query.trim()} onOpen={(m) => openChat(m.chatId, m.seq)} />}
        <nav aria-label="Chats" hidden={query.trim() !== ''}>
          <ul class="chats">
            {chats.map((state) => {
              const { chat } = state;
              const partner = session.partner(chat);
              const count = session.unread(state);
              return (
                <li key={chat.id}>
                  <button type="button" class={`${chat.id === open ? 'active' : ''} ${count ? 'unread' : ''}`} onClick={() => openChat(chat.id)}>
                    {partner && <span class={`dot ${session.presence.get(partner.id) ?? 'offline'}`} aria-label={session.presence.get(partner.id) ?? 'offline'} />}
                    <span class="name">{session.title(chat)}</span>
                    {count > 0 && <span class="badge">{count}<span class="sr-only"> unread</span></span>}
                    <span class="preview">{preview(session, chat, session.lastMessage(state))}</span>
                  </button>
                </li>
              );
            })}
          </ul>
        </nav>
      </aside>
      <section class="detail">
        {composing && <NewChat session={session} onOpen={(id) => openChat(id)} onClose={() => setComposing(false)} />}
        {current && !composing && <Conversation key={current.chat.id} session={session} chatId={current.chat.id} jump={jump} onClose={() => setOpen(null)} />}
        {!current && !composing && (
          <p class="center muted">{open && session.gone.has(open) ? `You are no longer in ${session.gone.get(open)}.` : 'Pick a chat, or start a new one.'}</p>
        )}
      </section>
    </div>
  );
}

/** The search query's bounds, in code points (after the server's normalisation, near enough). */
const SEARCH_MIN = 2;
const SEARCH_MAX = 64;

/** Messages of the user's chats containing the query, newest first, a page at a time. */
function SearchResults({ session, query, onOpen }: { session: Session; query: string; onOpen: (m: MessageEnvelope) => void }) {
  const [found, setFound] = useState<{ messages: MessageEnvelope[]; hasMore: boolean } | null>(null);
  const [error, setError] = useState('');
  const latest = useRef(query);
  latest.current = query;
  const length = codePoints(query);
  const usable = length >= SEARCH_MIN && length <= SEARCH_MAX;

  const fetchPage = async (before?: string) => {
    setError('');
    try {
      const page = await session.api.searchMessages(query, before);
      if (latest.current !== query) return; // typed on meanwhile
      setFound((prev) => ({ messages: before && prev ? [...prev.messages, ...page.messages] : page.messages, hasMore: page.hasMore }));
    } catch (err) {
      if (latest.current === query) setError(errorText(err));
    }
  };
  useEffect(() => {
    setFound(null);
    if (!usable) return;
    const t = setTimeout(() => void fetchPage(), 250);
    return () => clearTimeout(t);
  }, [query]);

  let status = '';
  if (length < SEARCH_MIN) status = `Type at least ${SEARCH_MIN} characters.`;
  else if (length > SEARCH_MAX) status = `At most ${SEARCH_MAX} characters.`;
  else if (!found && !error) status = 'Searching…';
  else if (found?.messages.length === 0) status = 'No messages found.';

  return (
    <section class="results" aria-label="Search results">
      <p class="muted" aria-live="polite">{status}</p>
      {error && <p role="alert" class="error">{error}</p>}
      <ul class="chats">
        {found?.messages.map((m) => {
          const state = session.chats.get(m.chatId);
          return (
            <li key={m.id}>
              <button type="button" onClick={() => onOpen(m)}>
                <span class="name">{state ? session.title(state.chat) : 'A chat'}</span>
                <span class="preview">{m.senderName}: <Highlighted text={m.text ?? ''} query={query} /></span>
              </button>
            </li>
          );
        })}
      </ul>
      {found?.hasMore && <button type="button" class="more" onClick={() => void fetchPage(found.messages.at(-1)?.id)}>More</button>}
    </section>
  );
}

/** The text from a little before the first match, the match marked. The server matches after
 * Unicode normalisation; where plain lower case does not find it, the text shows unmarked. */
function Highlighted({ text, query }: { text: string; query: string }) {
  const lower = text.toLowerCase();
  const at = lower.length === text.length ? lower.indexOf(query.toLowerCase()) : -1;
  if (at < 0) return <>{text}</>;
  const from = Math.max(0, at - 20);
  const end = at + query.length;
  return <>{from > 0 && '…'}{text.slice(from, at)}<mark>{text.slice(at, end)}</mark>{text.slice(end)}</>;
}

function NewChat({ session, onOpen, onClose }: { session: Session; onOpen: (chatId: string) => void; onClose: () => void }) {
  const [q, setQ] = useState('');
  const [found, setFound] = useState<User[]>([]);
  const [picked, setPicked] = useState<User[]>([]);
  const [name, setName] = useState('');
  const [isPublic, setPublic] = useState(false);
  const [groups, setGroups] = useState<Chat[]>([]);
  const [error, setError] = useState('');

  useEffect(() => {
    void session.api.publicGroups().then(setGroups, () => {});
  }, [session]);
  useEffect(() => {
    if (q.trim() === '') return setFound([]);
    const t = setTimeout(() => void session.api.search(q.trim()).then((users) => setFound(users.filter((u) => u.id !== session.me.id)), () => {}), 200);
    return () => clearTimeout(t);
  }, [q, session]);

  const go = async (make: () => Promise<Chat>) => {
    setError('');
    try {
      const chat = await make();
      await session.opened(chat);
      onOpen(chat.id);
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <div class="panel">
      <header>
        <button type="button" class="back" onClick={onClose} aria-label="Back">←</button>
        <h2>New chat</h2>
      </header>
      <label>
        Search people
        <input type="search" value={q} onInput={(e) => setQ(e.currentTarget.value)} placeholder="username or name" />
      </label>
      <ul class="people">
        {found.map((u) => (
          <li key={u.id}>
            <span>{u.displayName} <span class="muted">@{u.username}</span></span>
            <button type="button" onClick={() => void go(() => session.api.openDirect(u.id))}>Message</button>
            <button type="button" disabled={picked.some((p) => p.id === u.id)} onClick={() => setPicked([...picked, u])}>Add to group</button>
          </li>
        ))}
      </ul>
      <form onSubmit={(e) => (e.preventDefault(), void go(() => session.api.createGroup(name, picked.map((p) => p.id), isPublic ? 'public' : 'private')))}>
        <h3>Group</h3>
        <label>
          Group name
          <input value={name} maxLength={100} onInput={(e) => setName(e.currentTarget.value)} required />
        </label>
        <p class="muted">Members: {picked.length ? picked.map((p) => p.displayName).join(', ') : 'only you, so far'}</p>
        <label class="inline">
          <input type="checkbox" checked={isPublic} onChange={(e) => setPublic(e.currentTarget.checked)} /> Public (anyone can find and join it)
        </label>
        <button type="submit">Create group</button>
      </form>
      {error && <p role="alert" class="error">{error}</p>}
      <h3>Public groups</h3>
      <ul class="people">
        {groups.map((g) => (
          <li key={g.id}>
            <span>{g.name} <span class="muted">{g.memberCount} members</span></span>
            {session.chats.has(g.id)
              ? <button type="button" onClick={() => onOpen(g.id)}>Open</button>
              : <button type="button" onClick={() => void go(() => session.api.addMembers(g.number, [session.me.id]))}>Join</button>}
          </li>
        ))}
      </ul>
    </div>
  );
}

function systemText(session: Session, e: Envelope & { type: 'system' }) {
  const name = (id: string | undefined) => (id ? session.nameOf(id) : 'Someone');
  switch (e.event) {
    case 'chat.created': return `${name(e.userId)} created the chat`;
    case 'member.joined': return e.actorId ? `${name(e.actorId)} added ${name(e.userId)}` : `${name(e.userId)} joined`;
    case 'member.left': return `${name(e.userId)} left`;
    case 'member.removed': return `${name(e.actorId)} removed ${name(e.userId)}`;
  }
}

/** "Seen" in a direct chat; in a group, who has seen it (three names, or two and a count). */
function seenText(chat: Chat, readers: User[]): string {
  if (chat.type === 'direct') return 'Seen';
  const names = readers.map((u) => u.displayName);
  return `Seen by ${names.length > 3 ? `${names.slice(0, 2).join(', ')} and ${names.length - 2} others` : names.join(', ')}`;
}

/** A message as a reply quotes it, or as the composer names what it answers. */
function quoted(m: MessageEnvelope | undefined) {
  if (!m) return 'an earlier message';
  return <><strong>{m.senderName}</strong> {m.deleted ? 'Message deleted' : m.text}</>;
}

const messageAt = (state: ChatState, seq: number): MessageEnvelope | undefined => {
  const e = state.messages.get(seq);
  return e?.type === 'message' ? e : undefined;
};

/** The message a reply answers, in one line; pressing it shows that message. */
function Quote({ state, seq, onJump }: { state: ChatState; seq: number; onJump: (seq: number) => void }) {
  return (
    <button type="button" class="quote" onClick={() => onJump(seq)}>
      <span class="sr-only">In reply to </span>
      {quoted(messageAt(state, seq))}
    </button>
  );
}

function Conversation({ session, chatId, jump, onClose }: { session: Session; chatId: string; jump: { seq: number } | null; onClose: () => void }) {
  useSession(session);
  const [text, setText] = useState('');
  const [adding, setAdding] = useState('');
  const [error, setError] = useState('');
  /** The seq of the message the next send answers. */
  const [replyTo, setReplyTo] = useState<number | null>(null);
  /** The seq of the own message being edited; the composer holds its text meanwhile. */
  const [editing, setEditing] = useState<number | null>(null);
  /** What was in the composer before editing began: back once the edit ends. */
  const draft = useRef('');
  /** An edit on its way to the server: the composer waits for it. */
  const [saving, setSaving] = useState(false);
  /** The message just scrolled to (from a quote or a search result), marked for a moment. */
  const [flash, setFlash] = useState<{ seq: number } | null>(null);
  const list = useRef<HTMLOListElement>(null);
  const composer = useRef<HTMLTextAreaElement>(null);
  const stick = useRef(true);
  const state = session.chats.get(chatId);
  const messages = state ? [...state.messages.values()].sort((a, b) => a.seq - b.seq) : [];
  const count = codePoints(text);

  useLayoutEffect(() => {
    const el = list.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  });
  useEffect(() => {
    if (messages.length === 0) void session.loadOlder(chatId);
    void session.loadReceipts(chatId);
    // Opening a chat is to write in it; not on touch screens, where focus opens the keyboard.
    if (matchMedia('(pointer: fine)').matches) composer.current?.focus();
  }, [chatId]);

  // Seeing the newest message reads the chat: the page shown and focused, the history at its end.
  const readIfSeen = () => {
    if (document.visibilityState === 'visible' && document.hasFocus() && stick.current) session.markRead(chatId);
  };
  useEffect(readIfSeen, [chatId, state?.lastSeq]);
  useEffect(() => {
    window.addEventListener('focus', readIfSeen);
    document.addEventListener('visibilitychange', readIfSeen);
    return () => {
      window.removeEventListener('focus', readIfSeen);
      document.removeEventListener('visibilitychange', readIfSeen);
    };
  }, [chatId]);

  /** Scrolls to a message, loading older history until it is there. */
  const jumpTo = async (seq: number) => {
    if (await session.reveal(chatId, seq)) setFlash({ seq });
  };
  useEffect(() => {
    if (jump) void jumpTo(jump.seq);
  }, [jump]);
  useEffect(() => {
    if (!flash) return;
    const el = list.current?.querySelector<HTMLElement>(`[data-seq="${flash.seq}"]`);
    if (el) {
      stick.current = false;
      el.scrollIntoView({ block: 'center' });
      el.focus({ preventScroll: true });
    }
    const t = setTimeout(() => setFlash(null), 2000);
    return () => clearTimeout(t);
  }, [flash]);

  if (!state) return <p class="center muted">You are no longer in this chat.</p>;
  const { chat } = state;
  const owner = chat.type === 'group' && chat.ownerId === session.me.id;
  const seen = session.seen(state);

  const attempt = async (fn: () => Promise<unknown>) => {
    setError('');
    try {
      await fn();
    } catch (err) {
      setError(errorText(err));
    }
  };
  const act = (fn: () => Promise<unknown>) => attempt(async () => {
    await fn();
    await session.refreshChat(chatId);
  });

  const endEdit = () => {
    if (editing !== null) setText(draft.current);
    setEditing(null);
  };
  const cancel = () => {
    endEdit();
    setReplyTo(null);
    composer.current?.focus();
  };
  const startReply = (m: MessageEnvelope) => {
    endEdit();
    setReplyTo(m.seq);
    composer.current?.focus();
  };
  const startEdit = (m: MessageEnvelope) => {
    if (editing === null) draft.current = text;
    setReplyTo(null);
    setEditing(m.seq);
    setText(m.text ?? '');
    composer.current?.focus();
  };
  const remove = (m: MessageEnvelope) => {
    if (confirm('Delete this message for everyone?')) void attempt(() => session.remove(chatId, m.seq));
  };
  const submit = async () => {
    if (editing === null) {
      if (session.send(chatId, text, replyTo ?? undefined) !== null) {
        setText('');
        setReplyTo(null);
      }
      return;
    }
    if (text === messageAt(state, editing)?.text) return cancel(); // nothing changed
    setError('');
    setSaving(true);
    try {
      await session.edit(chatId, editing, text);
      endEdit();
    } catch (err) {
      setError(errorText(err));
      // Deleted meanwhile: the edit ends, the text stays (it can still be sent as a new message).
      if (err instanceof ApiError && err.code === 'message_deleted') setEditing(null);
    } finally {
      setSaving(false);
    }
  };
  const typing = session.typingIn(chatId);
  const canSend = count > 0 && count <= MAX_TEXT && text.trim() !== '' && !saving;

  return (
    <div class="conversation">
      <header>
        <button type="button" class="back" onClick={onClose} aria-label="Back">←</button>
        <h2>{session.title(chat)}</h2>
        {chat.type === 'group' && <span class="muted">{chat.memberCount} members</span>}
        {chat.type === 'group' && <button type="button" onClick={() => void act(() => session.api.removeMember(chat.number, session.me.id))}>Leave</button>}
      </header>
      {owner && (
        <details class="members">
          <summary>Members</summary>
          <ul>
            {chat.members.map((m) => (
              <li key={m.id}>
                {m.displayName}
                {m.id !== session.me.id && <button type="button" onClick={() => void act(() => session.api.removeMember(chat.number, m.id))}>Remove {m.displayName}</button>}
              </li>
            ))}
          </ul>
          <form onSubmit={(e) => (e.preventDefault(), void act(async () => {
            const [user] = await session.api.search(adding.trim());
            if (!user) throw new ApiError(404, 'not_found', `nobody called ${adding}`);
            await session.api.addMembers(chat.number, [user.id]);
            setAdding('');
          }))}>
            <label>
              Add member
              <input value={adding} onInput={(e) => setAdding(e.currentTarget.value)} placeholder="username" />
            </label>
            <button type="submit">Add</button>
          </form>
        </details>
      )}
      {error && <p role="alert" class="error">{error}</p>}
      <ol
        class="messages"
        ref={list}
        aria-label="History"
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
          if (stick.current) readIfSeen();
          if (el.scrollTop < 40 && state.hasOlder) {
            const before = el.scrollHeight;
            void session.loadOlder(chatId).then(() => (el.scrollTop = el.scrollHeight - before));
          }
        }}
      >
        {messages.map((e) => {
          if (e.type === 'system') return <li key={e.seq} class="system" data-seq={e.seq}>{systemText(session, e)}</li>;
          if (e.type !== 'message') return null; // edits and deletions show in their targets
          const mine = e.senderId === session.me.id;
          return (
            <li key={e.seq} class={`${mine ? 'mine' : ''} ${flash?.seq === e.seq ? 'flash' : ''}`} data-seq={e.seq} tabIndex={-1}>
              <span class="sender">{e.senderName}</span>
              {e.replyTo !== undefined && <Quote state={state} seq={e.replyTo} onJump={(seq) => void jumpTo(seq)} />}
              {e.deleted ? <span class="deleted">Message deleted</span> : <span class="text">{e.text}</span>}
              <span class="meta">
                {!e.deleted && (
                  <span class="actions">
                    <button type="button" onClick={() => startReply(e)}>Reply</button>
                    {mine && <button type="button" onClick={() => startEdit(e)}>Edit</button>}
                    {(mine || owner) && <button type="button" onClick={() => remove(e)}>Delete</button>}
                  </span>
                )}
                {e.editedAt && !e.deleted && <span class="edited">(edited)</span>}
                <time dateTime={e.createdAt}>{new Date(e.createdAt).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}</time>
              </span>
              {seen?.seq === e.seq && <span class="seen">{seenText(chat, seen.readers)}</span>}
            </li>
          );
        })}
        {[...state.pending.values()].map((p) => (
          <li key={p.clientMsgId} class={`mine pending ${p.state.status}`} data-client-msg-id={p.clientMsgId}>
            {p.replyTo !== undefined && <Quote state={state} seq={p.replyTo} onJump={(seq) => void jumpTo(seq)} />}
            <span class="text">{p.text}</span>
            {p.state.status === 'sending'
              ? <span class="muted">sending…</span>
              : (
                <span class="error">
                  Not sent ({p.state.reason.replace(/_/g, ' ')}) <button type="button" onClick={() => session.retry(chatId, p.clientMsgId)}>Retry</button>
                </span>
              )}
          </li>
        ))}
      </ol>
      <p class="typing" aria-live="polite">{typing.length ? `${typing.join(', ')} ${typing.length > 1 ? 'are' : 'is'} typing…` : ''}</p>
      {(replyTo !== null || editing !== null) && (
        <div class="composing">
          <span>{editing !== null ? 'Editing your message' : <>Replying to {quoted(messageAt(state, replyTo!))}</>}</span>
          <button type="button" onClick={cancel} aria-label={editing !== null ? 'Cancel editing' : 'Cancel reply'}>Cancel</button>
        </div>
      )}
      <form
        class="composer"
        onSubmit={(e) => (e.preventDefault(), void submit())}
        onKeyDown={(e) => {
          if (e.key === 'Escape' && (replyTo !== null || editing !== null)) {
            e.preventDefault();
            cancel();
          }
        }}
      >
        <label class="sr-only" for="message">Message</label>
        <textarea
          id="message"
          ref={composer}
          value={text}
          readOnly={saving}
          rows={2}
          placeholder="Message"
          onInput={(e) => {
            setText(e.currentTarget.value);
            if (editing === null) session.typing(chatId, e.currentTarget.value !== '');
          }}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey) {
              e.preventDefault();
              void submit();
            }
          }}
        />
        <span class={`counter ${count > MAX_TEXT ? 'over' : ''}`} aria-live="polite">{count}/{MAX_TEXT}</span>
        <button type="submit" disabled={!canSend}>{editing !== null ? 'Save' : 'Send'}</button>
      </form>
    </div>
  );
}
