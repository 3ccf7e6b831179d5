import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../core/ids.js';
import { hashPassword } from '../core/passwords.js';
import type { SqliteStore } from '../core/store/sqlite.js';
import { type Connected, connectAs, waitForMessage } from './helpers/mqtt.js';
import { Seeder } from './helpers/seed.js';
import { type Json, type TestServer, type UserDto, startTestServer } from './helpers/server.js';

/**
 * Issue 12, message search: GET /api/messages/search (docs/chat-features.md, "Search"), over
 * real HTTP, with the messages sent over real mqtt.js connections to the embedded server.
 */
type Who = { user: Pick<UserDto, 'id' | 'username' | 'displayName'>; token: string };

const messages = (chatId: string) => `chats/${chatId}/messages`;

describe('message search: GET /api/messages/search', () => {
  let srv: TestServer;
  let seeder: Seeder;
  const open: Connected[] = [];
  let counter = 0;
  let alice: Who;
  let bob: Who;
  let carol: Who;
  let ab: Json; // alice and bob
  let bc: Json; // bob and carol: not alice's
  let conn: Record<string, Connected>;

  const people = async (n: number) => (await seeder.users(n, 'srch')) as Who[] & [Who, Who, Who];
  const connect = async (who: Who, subscribe: string[]) => {
    const c = await connectAs(srv, who);
    open.push(c);
    await c.client.subscribeAsync(subscribe, { qos: 1 });
    return c;
  };
  /** Sends over MQTT and resolves with the envelope delivered back (c subscribed). */
  const send = async (c: Connected, chatId: string, text: string) => {
    const clientMsgId = `q${++counter}`;
    await c.client.publishAsync(messages(chatId), JSON.stringify({ text, clientMsgId }), { qos: 1 });
    return (await waitForMessage(c, messages(chatId), (m) => m.json.clientMsgId === clientMsgId)).json as Json;
  };
  const search = (who: Who, params: Record<string, string | number>) =>
    srv.http.get(`/api/messages/search?${new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]))}`, who.token);
  /** The ids found for `q` (one page of up to 100), asserting a 200. */
  const found = async (who: Who, q: string, more: Record<string, string | number> = {}) => {
    const res = await search(who, { q, limit: 100, ...more });
    expect([q, res.status]).toEqual([q, 200]);
    return (res.body.messages as Json[]).map((m) => m.id as string);
  };
  const group = async (owner: Who, members: Who[]) =>
    (await srv.http.post('/api/chats', { type: 'group', name: `g${++counter}`, memberIds: members.map((m) => m.user.id) }, owner.token)).body.chat as Json;

  beforeAll(async () => {
    srv = await startTestServer({ SEND_BURST: '1000' });
    seeder = new Seeder(srv.store as SqliteStore, await hashPassword('seeded-password'));
    [alice, bob, carol] = await people(3);
    ab = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id] }, alice.token)).body.chat;
    bc = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [carol.user.id] }, bob.token)).body.chat;
    conn = {
      alice: await connect(alice, [messages(ab.id)]),
      bob: await connect(bob, [messages(ab.id), messages(bc.id)]),
      carol: await connect(carol, [messages(bc.id)]),
    };
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await srv.stop();
  });

  it('finds "안녕" in "모두들 안녕하세요", "東京" in "東京都に", "ÉCOLE" in "école": substrings in any script, with or without spaces, case-insensitively', async () => {
    const hello = await send(conn.bob!, ab.id, '모두들 안녕하세요');
    const tokyo = await send(conn.alice!, ab.id, '東京都に行きます');
    const ecole = await send(conn.bob!, ab.id, "l'école est fermée");
    const kana = await send(conn.alice!, ab.id, 'ひらがなとカタカナ');
    const han = await send(conn.alice!, ab.id, '我爱北京天安门');
    const wide = await send(conn.alice!, ab.id, 'ＡＢＣ and abc');
    const res = await search(alice, { q: '안녕' });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ messages: [hello], hasMore: false });
    for (const q of ['안녕', '안녕하세요', '녕하', '모두들 안']) expect(await found(alice, q)).toEqual([hello.id]);
    for (const q of ['東京', '京都', '都に', '東京都に行きます']) expect(await found(alice, q)).toEqual([tokyo.id]);
    for (const q of ['ÉCOLE', 'école', 'Écol', "L'ÉCOLE"]) expect(await found(alice, q)).toEqual([ecole.id]);
    for (const q of ['ひらがな', 'カタ', 'とカ']) expect(await found(alice, q)).toEqual([kana.id]);
    expect(await found(alice, '北京')).toEqual([han.id]);
    // Full-width letters are their ASCII letters (NFKC), both ways.
    expect(await found(alice, 'ＡＢＣ')).toEqual([wide.id]);
    expect(await found(alice, 'abc')).toEqual([wide.id]);
    // Not a bag of characters: order matters, and a longer query than the text finds nothing.
    for (const q of ['녕안', '京東', '東に', '안녕하세요요', 'écolee']) expect(await found(alice, q)).toEqual([]);
  });

  it("finds only messages of the caller's chats", async () => {
    const secret = await send(conn.carol!, bc.id, '비밀이야 안녕');
    const mine = (await found(alice, '안녕'));
    expect(mine).not.toContain(secret.id);
    expect(mine.length).toBeGreaterThan(0);
    const bobs = await found(bob, '안녕');
    expect(bobs[0]).toBe(secret.id); // newest first
    expect(bobs.slice(1)).toEqual(mine);
    expect(await found(carol, '안녕')).toEqual([secret.id]);
    expect(await found(alice, '비밀')).toEqual([]);
  });

  it('treats %, _, *, ", (, NEAR, a OR b and other FTS or LIKE syntax as literal text', async () => {
    const [me] = await people(1);
    const ops = await group(me, []);
    const c = await connect(me, [messages(ops.id)]);
    // [query, a text containing it, texts an operator reading would (wrongly) also find]
    const cases: [string, string, string[]][] = [
      ['a%b', 'x a%b y', ['aXXb', 'a b']],
      ['c_d', 'c_d', ['cxd']],
      ['ef*', 'ef*', ['efgh', 'ef']],
      ['"gh"', 'say "gh" now', ['gh alone']],
      ['(ij', 'f(ij)', ['ij']],
      ['NEAR(kl mn)', 'NEAR(kl mn)', ['kl mn', 'kl then mn']],
      ['NEAR', 'go NEAR it', ['nothing here']],
      ['op OR qr', 'op OR qr', ['op', 'qr only', 'op and qr']],
      ['st AND uv', 'st AND uv', ['st uv', 'uv st']],
      ['-wx', 'a-wx', ['wx']],
      ['text:yz', 'text:yz', ['yz']],
      ['^zz', '^zz', ['zz top']],
      ["o'br", "o'brien", ['obrien']],
      ['\\n', 'back\\nslash', ['new\nline']],
    ];
    const texts = [...new Set(cases.flatMap(([, text, decoys]) => [text, ...decoys]))];
    const sent = await Promise.all(texts.map((t) => send(c, ops.id, t)));
    const newestFirst = [...sent].sort((x, y) => y.seq - x.seq);
    for (const [q, text] of cases) {
      // Every text of the chat that contains q literally (case aside), newest first.
      const expected = newestFirst.filter((m) => m.text.toLowerCase().includes(q.toLowerCase())).map((m) => m.id);
      expect(expected).toContain(sent[texts.indexOf(text)]!.id);
      expect([q, await found(me, q, { chatId: ops.id })]).toEqual([q, expected]);
    }
  });

  it('takes q of 2-64 code points: 1 or 65 (also emoji, Hangul) → 400 invalid_input; missing or empty → 400', async () => {
    for (const q of ['안', 'a', '😀', 'a'.repeat(65), '가'.repeat(65), '😀'.repeat(65)]) {
      const res = await search(alice, { q });
      expect([q.slice(0, 4), res.status, res.body.error?.code]).toEqual([q.slice(0, 4), 400, 'invalid_input']);
    }
    for (const q of ['ab', '😀😀', 'a'.repeat(64), '가'.repeat(64), '😀'.repeat(64)]) expect((await search(alice, { q })).status).toBe(200);
    expect((await srv.http.get('/api/messages/search', alice.token)).status).toBe(400);
    expect((await search(alice, { q: '' })).status).toBe(400);
    expect((await search(alice, { q: 'ab', limit: 0 })).status).toBe(400);
    expect((await search(alice, { q: 'ab', limit: 101 })).status).toBe(400);
    expect((await srv.http.get('/api/messages/search?q=ab')).status).toBe(401);
  });

  it('with chatId: only that chat; a chat the caller is not in → 403 not_member, an unknown one → 404', async () => {
    const other = await group(alice, []);
    const o = await connect(alice, [messages(other.id)]);
    const tag = `zq${Date.now().toString(36)}`;
    const inAb = await send(conn.alice!, ab.id, `${tag} in ab`);
    const inOther = await send(o, other.id, `${tag} in other`);
    expect(await found(alice, tag)).toEqual([inOther.id, inAb.id]);
    expect(await found(alice, tag, { chatId: ab.id })).toEqual([inAb.id]);
    expect(await found(alice, tag, { chatId: other.id })).toEqual([inOther.id]);
    const foreign = await search(alice, { q: '안녕', chatId: bc.id });
    expect([foreign.status, foreign.body.error.code]).toEqual([403, 'not_member']);
    expect((await search(alice, { q: '안녕', chatId: newId() })).status).toBe(404);
    expect((await search(alice, { q: '안녕', chatId: 'not-an-id' })).status).toBe(400);
  });

  it('answers newest first across chats, in keyset pages: before=<id of the last result>, hasMore', async () => {
    const other = await group(alice, [bob]);
    const o = await connect(alice, [messages(other.id)]);
    const tag = `pg${Date.now().toString(36)}`;
    const sent: Json[] = [];
    for (let i = 0; i < 25; i++) sent.push(await send(i % 2 ? o : conn.alice!, i % 2 ? other.id : ab.id, `${tag} number ${i}`));
    const newestFirst = sent.map((m) => m.id).reverse();
    const pages: Json[] = [];
    let before: string | undefined;
    for (let page = 0; page < 5; page++) {
      const res = await search(bob, { q: tag, limit: 10, ...(before ? { before } : {}) });
      expect(res.status).toBe(200);
      pages.push(res.body);
      if (!res.body.hasMore) break;
      before = res.body.messages.at(-1).id;
    }
    expect(pages.map((p) => [p.messages.length, p.hasMore])).toEqual([[10, true], [10, true], [5, false]]);
    expect(pages.flatMap((p) => p.messages.map((m: Json) => m.id))).toEqual(newestFirst);
    // Results are the messages as history shows them.
    expect(pages[0].messages[0]).toEqual(sent.at(-1));
    // The default page is 20.
    const first = await search(bob, { q: tag });
    expect([first.body.messages.length, first.body.hasMore]).toEqual([20, true]);
    // Paging within one chat.
    const inOther = sent.filter((m) => m.chatId === other.id).map((m) => m.id).reverse();
    const p1 = await search(bob, { q: tag, chatId: other.id, limit: 7 });
    const p2 = await search(bob, { q: tag, chatId: other.id, limit: 7, before: p1.body.messages.at(-1).id });
    expect([p1.body.hasMore, p2.body.hasMore]).toEqual([true, false]);
    expect([...p1.body.messages, ...p2.body.messages].map((m: Json) => m.id)).toEqual(inOther);
  });

  it('finds an edited message by its new text, not its old, and shows it as edited', async () => {
    const tag = `ed${Date.now().toString(36)}`;
    const m = await send(conn.alice!, ab.id, `${tag} original wording`);
    expect(await found(bob, 'original wording')).toEqual([m.id]);
    const first = await srv.http.request('PATCH', `/api/messages/${ab.id}/${m.seq}`, { body: { text: `${tag} revised phrasing` }, token: alice.token });
    expect(first.status).toBe(200);
    expect(await found(bob, 'original wording')).toEqual([]);
    const res = await search(bob, { q: 'revised phrasing' });
    expect(res.body.messages).toEqual([{ ...m, text: `${tag} revised phrasing`, editedAt: first.body.message.editedAt }]);
    expect((await srv.http.request('PATCH', `/api/messages/${ab.id}/${m.seq}`, { body: { text: `${tag} final 最終版` }, token: alice.token })).status).toBe(200);
    expect(await found(bob, 'revised phrasing')).toEqual([]);
    expect(await found(bob, '最終')).toEqual([m.id]);
    expect(await found(bob, tag)).toEqual([m.id]);
  });

  it('does not find a deleted message', async () => {
    const tag = `dl${Date.now().toString(36)}`;
    const kept = await send(conn.bob!, ab.id, `${tag} stays`);
    const gone = await send(conn.bob!, ab.id, `${tag} goes 삭제될 메시지`);
    expect(await found(alice, tag)).toEqual([gone.id, kept.id]);
    expect((await srv.http.delete(`/api/messages/${ab.id}/${gone.seq}`, bob.token)).status).toBe(204);
    expect(await found(alice, tag)).toEqual([kept.id]);
    expect(await found(alice, '삭제')).toEqual([]);
  });

  it('stops finding the messages of a group the caller has left', async () => {
    const [owner] = await people(1);
    const g = await group(owner, [carol]);
    const o = await connect(owner, [messages(g.id)]);
    const tag = `lv${Date.now().toString(36)}`;
    const m = await send(o, g.id, `${tag} before carol leaves`);
    expect(await found(carol, tag)).toEqual([m.id]);
    expect((await srv.http.delete(`/api/chats/${g.number}/members/${carol.user.id}`, carol.token)).status).toBe(204);
    expect(await found(carol, tag)).toEqual([]);
    expect((await search(carol, { q: tag, chatId: g.id })).status).toBe(403);
  });
});
