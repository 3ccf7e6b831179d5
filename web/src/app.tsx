import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { Api, ApiError, type Chat, type Envelope, type Login, type User } from './api';
import { MAX_TEXT, type Session, Session as SessionClass, codePoints } from './session';

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

function Main({ session }: { session: Session }) {
  useSession(session);
  const [open, setOpen] = useState<string | null>(null);
  const [composing, setComposing] = useState(false);
  const chats = [...session.chats.values()].sort((a, b) => b.activity - a.activity);
  const current = open ? session.chats.get(open) : undefined;

  return (
    <div class={`layout ${current || composing ? 'has-detail' : ''}`}>
      <aside class="sidebar">
        <header>
          <strong>{session.me.displayName}</strong>
          <span class={`status ${session.connection}`}>{session.connection}</span>
          <button type="button" onClick={() => void session.logout()}>Log out</button>
        </header>
        <button type="button" class="new" onClick={() => (setComposing(true), setOpen(null))}>New chat</button>
        <nav aria-label="Chats">
          <ul class="chats">
            {chats.map(({ chat, messages }) => {
              const partner = session.partner(chat);
              const last = [...messages.values()].sort((a, b) => b.seq - a.seq)[0];
              return (
                <li key={chat.id}>
                  <button type="button" class={chat.id === open ? 'active' : ''} onClick={() => (setOpen(chat.id), setComposing(false))}>
                    {partner && <span class={`dot ${session.presence.get(partner.id) ?? 'offline'}`} aria-label={session.presence.get(partner.id) ?? 'offline'} />}
                    <span class="name">{session.title(chat)}</span>
                    {last?.type === 'message' && <span class="preview">{last.text}</span>}
                  </button>
                </li>
              );
            })}
          </ul>
        </nav>
      </aside>
      <section class="detail">
        {composing && <NewChat session={session} onOpen={(id) => (setOpen(id), setComposing(false))} onClose={() => setComposing(false)} />}
        {current && !composing && <Conversation key={current.chat.id} session={session} chatId={current.chat.id} onClose={() => setOpen(null)} />}
        {!current && !composing && (
          <p class="center muted">{open && session.gone.has(open) ? `You are no longer in ${session.gone.get(open)}.` : 'Pick a chat, or start a new one.'}</p>
        )}
      </section>
    </div>
  );
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
        Search
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

function Conversation({ session, chatId, onClose }: { session: Session; chatId: string; onClose: () => void }) {
  useSession(session);
  const [text, setText] = useState('');
  const [adding, setAdding] = useState('');
  const [error, setError] = useState('');
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
    // Opening a chat is to write in it; not on touch screens, where focus opens the keyboard.
    if (matchMedia('(pointer: fine)').matches) composer.current?.focus();
  }, [chatId]);

  if (!state) return <p class="center muted">You are no longer in this chat.</p>;
  const { chat } = state;
  const owner = chat.type === 'group' && chat.ownerId === session.me.id;

  const submit = () => {
    if (session.send(chatId, text) !== null) setText('');
  };
  const act = async (fn: () => Promise<unknown>) => {
    setError('');
    try {
      await fn();
      await session.refreshChat(chatId);
    } catch (err) {
      setError(errorText(err));
    }
  };
  const typing = session.typingIn(chatId);

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
          if (el.scrollTop < 40 && state.hasOlder) {
            const before = el.scrollHeight;
            void session.loadOlder(chatId).then(() => (el.scrollTop = el.scrollHeight - before));
          }
        }}
      >
        {messages.map((e) =>
          e.type === 'system'
            ? <li key={e.seq} class="system" data-seq={e.seq}>{systemText(session, e)}</li>
            : (
              <li key={e.seq} class={e.senderId === session.me.id ? 'mine' : ''} data-seq={e.seq}>
                <span class="sender">{e.senderName}</span>
                <span class="text">{e.text}</span>
                <time dateTime={e.createdAt}>{new Date(e.createdAt).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}</time>
              </li>
            ),
        )}
        {[...state.pending.values()].map((p) => (
          <li key={p.clientMsgId} class={`mine pending ${p.state.status}`} data-client-msg-id={p.clientMsgId}>
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
      <form class="composer" onSubmit={(e) => (e.preventDefault(), submit())}>
        <label class="sr-only" for="message">Message</label>
        <textarea
          id="message"
          ref={composer}
          value={text}
          rows={2}
          placeholder="Message"
          onInput={(e) => {
            setText(e.currentTarget.value);
            session.typing(chatId, e.currentTarget.value !== '');
          }}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey) {
              e.preventDefault();
              submit();
            }
          }}
        />
        <span class={`counter ${count > MAX_TEXT ? 'over' : ''}`} aria-live="polite">{count}/{MAX_TEXT}</span>
        <button type="submit" disabled={count === 0 || count > MAX_TEXT || text.trim() === ''}>Send</button>
      </form>
    </div>
  );
}
