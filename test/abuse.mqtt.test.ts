import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../core/ids.js';
import { type Connected, closed, connectAs, subscribeGranted, waitForMessage } from './helpers/mqtt.js';
import { pollUntil } from './helpers/poll.js';
import { type Json, type TestServer, type UserDto, startTestServer } from './helpers/server.js';

/**
 * MQTT abuse (issue 20, item 2), over real sockets with mqtt.js: a bound on subscriptions per
 * connection and per user, given back on UNSUBSCRIBE and when a connection goes; presence only
 * of oneself and of the users one shares a chat with, live and retained alike.
 */

type Who = { user: UserDto; token: string };

const PER_CONNECTION = 5;
const PER_USER = 8;
const REFUSED = 128;
const presenceTopic = (userId: string) => `users/${userId}/presence`;
const messagesTopic = (chatId: string) => `chats/${chatId}/messages`;
/** `n` presence filters of users that do not exist: each one a subscription of its own. */
const madeUp = (n: number) => Array.from({ length: n }, () => presenceTopic(newId()));

describe('MQTT abuse resistance', () => {
  let srv: TestServer;
  const open: Connected[] = [];

  const connect = async (who: Who, opts: Parameters<typeof connectAs>[2] = {}) => {
    const c = await connectAs(srv, who, opts);
    open.push(c);
    return c;
  };
  const direct = async (a: Who, b: Who): Promise<Json> => {
    const res = await srv.http.post('/api/chats', { type: 'direct', memberIds: [b.user.id] }, a.token);
    expect([200, 201]).toContain(res.status);
    return res.body.chat;
  };
  const group = async (owner: Who, members: Who[]): Promise<Json> => {
    const res = await srv.http.post('/api/chats', { type: 'group', name: 'abuse', memberIds: members.map((m) => m.user.id) }, owner.token);
    expect(res.status).toBe(201);
    return res.body.chat;
  };
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec((await srv.http.get('/metrics')).body)?.[1]);

  beforeAll(async () => {
    srv = await startTestServer({ MAX_SUBSCRIPTIONS_PER_CONNECTION: String(PER_CONNECTION), MAX_SUBSCRIPTIONS_PER_USER: String(PER_USER) });
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => (c.client.connected ? c.end() : undefined)));
    await srv?.stop();
  });

  describe('subscriptions per connection and per user', () => {
    it('refuses (0x80) the filters past the bound of a connection; the granted ones keep working', async () => {
      const [alice, bob] = await Promise.all([srv.signUp(), srv.signUp()]);
      const chat = await direct(alice, bob);
      const a = await connect(alice);
      // One SUBSCRIBE of seven: the first five are granted, in order, the rest refused.
      const filters = [messagesTopic(chat.id), `users/${alice.user.id}/inbox`, 'users/+/presence', ...madeUp(4)];
      expect(await subscribeGranted(a.client, filters)).toEqual([1, 1, 1, 1, 1, REFUSED, REFUSED]);
      expect(await subscribeGranted(a.client, madeUp(1))).toEqual([REFUSED]);
      // A filter already held is granted again without counting twice.
      expect(await subscribeGranted(a.client, [messagesTopic(chat.id), 'users/+/presence'])).toEqual([1, 1]);
      expect(a.client.connected).toBe(true);

      const b = await connect(bob);
      await b.client.publishAsync(messagesTopic(chat.id), JSON.stringify({ text: 'still there?', clientMsgId: 'bound-1' }), { qos: 1 });
      const got = await waitForMessage(a, messagesTopic(chat.id), (m) => m.json?.clientMsgId === 'bound-1');
      expect(got.json).toMatchObject({ type: 'message', senderId: bob.user.id, text: 'still there?' });
      await Promise.all([a.end(), b.end()]);
    });

    it("bounds a user's subscriptions over all its connections; closing a connection gives its share back", async () => {
      const carol = await srv.signUp();
      const one = await connect(carol);
      const two = await connect(carol);
      expect(await subscribeGranted(one.client, madeUp(PER_CONNECTION))).toEqual(Array(PER_CONNECTION).fill(1));
      // 5 + 3 = 8: the user's bound, though the second connection has room for 5.
      expect(await subscribeGranted(two.client, madeUp(4))).toEqual([1, 1, 1, REFUSED]);
      expect(await subscribeGranted(one.client, madeUp(1))).toEqual([REFUSED]);

      // The first connection ends: its five come back, and a new connection may take them all.
      await one.end();
      const three = await connect(carol);
      expect(await subscribeGranted(three.client, madeUp(PER_CONNECTION + 1))).toEqual([...Array(PER_CONNECTION).fill(1), REFUSED]);
      expect(await subscribeGranted(two.client, madeUp(1))).toEqual([REFUSED]);
      await Promise.all([two.end(), three.end()]);
    });

    it('UNSUBSCRIBE gives back exactly the filters it ends', async () => {
      const dave = await srv.signUp();
      const c = await connect(dave);
      const mine = madeUp(PER_CONNECTION);
      expect(await subscribeGranted(c.client, mine)).toEqual(Array(PER_CONNECTION).fill(1));
      expect(await subscribeGranted(c.client, madeUp(1))).toEqual([REFUSED]);
      await c.client.unsubscribeAsync(madeUp(3)); // filters it does not hold: nothing back
      expect(await subscribeGranted(c.client, madeUp(1))).toEqual([REFUSED]);
      await c.client.unsubscribeAsync(mine.slice(0, 2));
      expect(await subscribeGranted(c.client, madeUp(3))).toEqual([1, 1, REFUSED]);
      await c.end();
    });

    it('a takeover (same client id) gives the old connection its budget back', async () => {
      const erin = await srv.signUp();
      const clientId = `${erin.user.id}/phone`;
      const first = await connect(erin, { clientId });
      const other = await connect(erin);
      expect(await subscribeGranted(first.client, madeUp(PER_CONNECTION))).toEqual(Array(PER_CONNECTION).fill(1));
      expect(await subscribeGranted(other.client, madeUp(3))).toEqual([1, 1, 1]);
      const firstClosed = closed(first.client);
      const second = await connect(erin, { clientId });
      await firstClosed;
      expect(await subscribeGranted(second.client, madeUp(PER_CONNECTION + 1))).toEqual([...Array(PER_CONNECTION).fill(1), REFUSED]);
      await Promise.all([second.end(), other.end()]);
    });

    it("counts a persistent session's restored subscriptions, and gives them back when it goes", async () => {
      const fay = await srv.signUp();
      const clientId = `${fay.user.id}/desk`;
      const kept = madeUp(PER_CONNECTION - 1);
      const first = await connect(fay, { clientId, clean: false });
      expect(await subscribeGranted(first.client, kept)).toEqual(Array(PER_CONNECTION - 1).fill(1));
      await first.end();

      const again = await connect(fay, { clientId, clean: false });
      // Four restored: one more fits, the sixth does not; a restored one is held already.
      expect(await subscribeGranted(again.client, [kept[0]!, ...madeUp(2)])).toEqual([1, 1, REFUSED]);
      const other = await connect(fay);
      expect(await subscribeGranted(other.client, madeUp(4))).toEqual([1, 1, 1, REFUSED]);
      await again.end();
      expect(await subscribeGranted(other.client, madeUp(PER_CONNECTION))).toEqual([1, 1, REFUSED, REFUSED, REFUSED]);
      await other.end();
    });

    it('holds nothing for connections that have gone', async () => {
      for (const c of open) if (c.client.connected) await c.end();
      const empty = await pollUntil(
        async () => (await metric('chat_mqtt_subscriptions')) === 0 && (await metric('chat_mqtt_subscribed_users')) === 0 && (await metric('chat_mqtt_chat_lists')) === 0,
        { every: 25 },
      );
      expect(empty, 'subscription budgets and chat lists of closed connections are released').toBe(true);
    });
  });

  describe('presence reaches only co-members', () => {
    let target: Who;
    let friend: Who; // shares a chat with target
    let stranger: Who; // shares none with target
    let strangersFriend: Who; // shares a chat with stranger only: the stranger's positive control
    let f: Connected;
    let s: Connected;

    /** The presence statuses of `userId` that `c` received. */
    const statuses = (c: Connected, userId: string) => c.on(presenceTopic(userId)).map((m) => m.json.status as string);

    beforeAll(async () => {
      [target, friend, stranger, strangersFriend] = await Promise.all([srv.signUp(), srv.signUp(), srv.signUp(), srv.signUp()]);
      await direct(friend, target);
      await direct(stranger, strangersFriend);
      f = await connect(friend);
      s = await connect(stranger);
      expect(await subscribeGranted(f.client, ['users/+/presence'])).toEqual([1]);
      expect(await subscribeGranted(s.client, ['users/+/presence'])).toEqual([1]);
    });

    /** The stranger's control: a co-member's transition, published after everything before it. */
    async function strangersMarker() {
      const seen = statuses(s, strangersFriend.user.id).length;
      const m = await connectAs(srv, strangersFriend);
      await waitForMessage(s, presenceTopic(strangersFriend.user.id), (msg, i) => i >= seen && msg.json.status === 'online');
      await m.end();
      await waitForMessage(s, presenceTopic(strangersFriend.user.id), (msg, i) => i > seen && msg.json.status === 'offline');
    }

    it('a co-member watching users/+/presence sees the user come and go; a stranger watching the same sees nothing of it', async () => {
      const t = await connect(target);
      await waitForMessage(f, presenceTopic(target.user.id), (m) => m.json.status === 'online');
      await t.end();
      await waitForMessage(f, presenceTopic(target.user.id), (m) => m.json.status === 'offline');
      await strangersMarker();
      expect(statuses(s, target.user.id)).toEqual([]);
      // Its own presence reaches it (it was retained when it subscribed).
      expect(statuses(s, stranger.user.id)).toContain('online');
    });

    it('no retained presence of a stranger either, by its topic or by users/+/presence', async () => {
      // The target's retained value exists (it connected above); the friend's arrives after it
      // in the same retained stream (topic order of the SUBSCRIBE), so its arrival is the control.
      const late = await connect(stranger);
      expect(await subscribeGranted(late.client, [presenceTopic(target.user.id), presenceTopic(strangersFriend.user.id)])).toEqual([1, 1]);
      await waitForMessage(late, presenceTopic(strangersFriend.user.id), (m) => m.json.status === 'offline');
      expect(statuses(late, target.user.id)).toEqual([]);

      const friendLate = await connect(friend);
      expect(await subscribeGranted(friendLate.client, ['users/+/presence'])).toEqual([1]);
      await waitForMessage(friendLate, presenceTopic(target.user.id), (m) => m.json.status === 'offline');
      const lateAll = await connect(stranger);
      expect(await subscribeGranted(lateAll.client, ['users/+/presence'])).toEqual([1]);
      await waitForMessage(lateAll, presenceTopic(strangersFriend.user.id), (m) => m.json.status === 'offline');
      await waitForMessage(lateAll, presenceTopic(stranger.user.id), (m) => m.json.status === 'online');
      expect(statuses(lateAll, target.user.id)).toEqual([]);
      await Promise.all([late.end(), friendLate.end(), lateAll.end()]);
    });

    it('flows once the two share a chat, and stops when they no longer do', async () => {
      const chat = await group(stranger, [target]);
      // The same subscription, now carrying the target's transitions.
      const t = await connect(target);
      await waitForMessage(s, presenceTopic(target.user.id), (m) => m.json.status === 'online');
      await t.end();
      await waitForMessage(s, presenceTopic(target.user.id), (m) => m.json.status === 'offline');
      // And the retained value for a new subscription.
      const late = await connect(stranger);
      expect(await subscribeGranted(late.client, [presenceTopic(target.user.id)])).toEqual([1]);
      await waitForMessage(late, presenceTopic(target.user.id), (m) => m.json.status === 'offline');
      await late.end();

      // Removed from the group: nothing more of the target.
      expect((await srv.http.delete(`/api/chats/${chat.number}/members/${target.user.id}`, stranger.token)).status).toBe(204);
      const before = statuses(s, target.user.id).length;
      const friendSaw = statuses(f, target.user.id).length;
      const t2 = await connect(target);
      await waitForMessage(f, presenceTopic(target.user.id), (m, i) => i >= friendSaw && m.json.status === 'online');
      await t2.end();
      await strangersMarker();
      expect(statuses(s, target.user.id).slice(before)).toEqual([]);
    });
  });
});
