import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Connected, connectAs } from './helpers/mqtt.js';
import { pollUntil } from './helpers/poll.js';
import { type Json, type TestServer, type UserDto, startTestServer } from './helpers/server.js';

/**
 * Presence over REST (issue 20, item 2), as over MQTT: a user's status (online, lastSeenAt) is
 * shown only to itself and to the users it shares a chat with. Anyone else gets the same user
 * object with `online: false` and `lastSeenAt: null`, in search results and public groups'
 * member lists alike, and does not find it in the online list (GET /api/users). Users are made
 * online by real mqtt.js connections.
 */

type Who = { user: UserDto; token: string };
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

describe('presence over REST: co-members only', () => {
  let srv: TestServer;
  const open: Connected[] = [];
  let target: Who;
  let friend: Who;
  let stranger: Who;
  let privateGroup: Json;
  let publicGroup: Json;

  /** `who` as `as` finds it in user search. */
  const searched = async (who: Who, as: Who): Promise<UserDto> => {
    const res = await srv.http.get(`/api/users/search?q=${encodeURIComponent(who.user.username)}`, as.token);
    expect(res.status).toBe(200);
    const found = (res.body.users as UserDto[]).find((u) => u.id === who.user.id);
    expect(found, `${who.user.username} in the search results`).toBeDefined();
    return found!;
  };
  /** The ids of the online list as `as` reads it (one page holds them all here). */
  const onlineList = async (as: Who): Promise<string[]> => {
    const res = await srv.http.get('/api/users?limit=100', as.token);
    expect(res.status).toBe(200);
    expect(res.body.hasMore).toBe(false);
    return (res.body.users as UserDto[]).map((u) => u.id);
  };
  const memberIn = (chat: Json, who: Who): UserDto => (chat.members as UserDto[]).find((u) => u.id === who.user.id)!;
  const hidden = { online: false, lastSeenAt: null };

  beforeAll(async () => {
    srv = await startTestServer();
    [target, friend, stranger] = await Promise.all([srv.signUp(), srv.signUp(), srv.signUp()]);
    const made = await srv.http.post('/api/chats', { type: 'group', name: 'friends', memberIds: [target.user.id] }, friend.token);
    expect(made.status).toBe(201);
    privateGroup = made.body.chat;
    const pub = await srv.http.post('/api/chats', { type: 'group', name: 'open to all', visibility: 'public', memberIds: [] }, target.token);
    expect(pub.status).toBe(201);
    publicGroup = pub.body.chat;
    open.push(await connectAs(srv, target), await connectAs(srv, stranger));
    // Positive control first: a co-member sees the target online, with the lastSeenAt its
    // connection recorded. Only then do the stranger's answers below say anything.
    const seen = await pollUntil(() => searched(target, friend), { done: (u) => u.online && u.lastSeenAt !== null });
    expect(seen).toMatchObject({ id: target.user.id, online: true, lastSeenAt: expect.stringMatching(ISO) });
    expect(await pollUntil(() => onlineList(friend), { done: (ids) => ids.includes(target.user.id) })).toContain(target.user.id);
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await srv?.stop();
  });

  it('a stranger finds an online user in search offline and never seen, and not in the online list', async () => {
    expect(await searched(target, stranger)).toEqual({ ...target.user, ...hidden });
    // The stranger's own online list: itself (online, its own status is its own), nobody else.
    expect(await pollUntil(() => onlineList(stranger), { done: (ids) => ids.includes(stranger.user.id) })).toEqual([stranger.user.id]);
    const me = await srv.http.get('/api/users/me', stranger.token);
    expect(me.body.user).toMatchObject({ id: stranger.user.id, online: true, lastSeenAt: expect.stringMatching(ISO) });
  });

  it('a co-member sees the real status in search, in the online list and in the chat members', async () => {
    expect(await searched(target, friend)).toMatchObject({ online: true, lastSeenAt: expect.stringMatching(ISO) });
    // The friend is offline: it sees target, not the stranger (a stranger to it as well).
    expect(await onlineList(friend)).toEqual([target.user.id]);
    const chat = await srv.http.get(`/api/chats/${privateGroup.number}`, friend.token);
    expect(memberIn(chat.body.chat, target)).toMatchObject({ online: true, lastSeenAt: expect.stringMatching(ISO) });
    // The target, in turn, sees the stranger offline and never seen.
    expect(await searched(stranger, target)).toMatchObject(hidden);
  });

  it("a public group's members are shown to a non-member without their status", async () => {
    const one = await srv.http.get(`/api/chats/${publicGroup.number}`, stranger.token);
    expect(one.status).toBe(200);
    expect(memberIn(one.body.chat, target)).toEqual({ ...target.user, ...hidden });
    const listed = await srv.http.get('/api/chats?limit=100', stranger.token);
    const inList = (listed.body.chats as Json[]).find((c) => c.id === publicGroup.id);
    expect(memberIn(inList, target)).toEqual({ ...target.user, ...hidden });
    // The friend is no member of it either, but shares another chat with the target.
    const asFriend = await srv.http.get(`/api/chats/${publicGroup.number}`, friend.token);
    expect(memberIn(asFriend.body.chat, target)).toMatchObject({ online: true, lastSeenAt: expect.stringMatching(ISO) });
  });

  it('a direct chat makes them co-members: the stranger then sees the real status; leaving the last shared chat hides it again', async () => {
    const direct = await srv.http.post('/api/chats', { type: 'direct', memberIds: [target.user.id] }, stranger.token);
    expect(direct.status).toBe(201);
    expect(memberIn(direct.body.chat, target)).toMatchObject({ online: true, lastSeenAt: expect.stringMatching(ISO) });
    expect(await searched(target, stranger)).toMatchObject({ online: true, lastSeenAt: expect.stringMatching(ISO) });
    expect((await onlineList(stranger)).sort()).toEqual([stranger.user.id, target.user.id].sort());
    expect(await searched(stranger, target)).toMatchObject({ online: true, lastSeenAt: expect.stringMatching(ISO) });

    // The friend leaves the only chat it shares with the target: the status is no longer its to see.
    const left = await srv.http.delete(`/api/chats/${privateGroup.number}/members/${friend.user.id}`, friend.token);
    expect(left.status).toBeLessThan(300);
    expect(await searched(target, friend)).toEqual({ ...target.user, ...hidden });
    expect(await onlineList(friend)).toEqual([]);
  });
});
