import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalBus, type MembershipEvent } from '../core/bus.js';
import { newId } from '../core/ids.js';
import { Membership, type MembershipOptions } from '../core/membership.js';
import { SqliteStore } from '../core/store/sqlite.js';
import type { ChatRecord } from '../core/store/store.js';
import { pollUntil } from './helpers/poll.js';
import { tempDir } from './helpers/server.js';

/**
 * Specification of the membership cache every node keeps (core/membership.ts), on a real SQLite
 * store: it follows the store's members version, so events that arrive out of order (two
 * nodes announcing two changes of one chat) never bring back an older membership, and a bus
 * that may have lost events makes it read every cached chat again.
 */
describe('the membership cache', () => {
  const dir = tempDir('chat-membership-');
  const store = new SqliteStore(join(dir, 'chat.db'));
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const cache = (bus: LocalBus, options: Partial<MembershipOptions> = {}) =>
    new Membership(store, bus, {
      onError: (err) => {
        throw err;
      },
      connectedHere: () => false,
      ...options,
    });
  const users = async (n: number) => {
    const made = Array.from({ length: n }, () => ({ id: newId(), username: `u${newId().slice(-12)}`, displayName: 'U', passwordHash: 'x', createdAt: Date.now() }));
    for (const u of made) await store.createUser(u);
    return made.map((u) => u.id);
  };
  const group = (owner: string, members: string[]) =>
    store.createGroupChat({ id: newId(), name: 'g', visibility: 'private', ownerId: owner, memberIds: [owner, ...members], createdAt: Date.now() });
  const added = (chat: ChatRecord, userIds: string[]): MembershipEvent => ({ type: 'member.added', chatId: chat.id, userIds, memberIds: chat.memberIds, version: chat.membersVersion });
  const removed = (chat: ChatRecord, userId: string): MembershipEvent => ({ type: 'member.removed', chatId: chat.id, userId, memberIds: chat.memberIds, version: chat.membersVersion });

  // The order that once let a removed member keep receiving on another node: the owner adds u
  // on one node and removes u on another; the removal's event (sent before its system message)
  // arrives before the addition's (sent after the join's system message).
  it('keeps the newer membership when an older change arrives after a newer one', async () => {
    const [owner, u] = await users(2);
    const chat = await group(owner!, []);
    const bus = new LocalBus();
    const membership = cache(bus);
    expect(await membership.check(chat.id, u!)).toBe(false);
    const afterAdd = (await store.addMembers(chat.id, [u!], 100, Date.now())).chat;
    const afterRemove = (await store.removeMember(chat.id, u!))!.chat;
    await bus.publish(removed(afterRemove, u!));
    await bus.publish(added(afterAdd, [u!]));
    expect(membership.isMember(chat.id, u!)).toBe(false);
    expect(membership.admit(chat.id, owner!)).toEqual({ version: afterRemove.membersVersion, member: true });
    membership.close();
  });

  it('admits a member at the version it has cached, and refreshes to the stored one', async () => {
    const [owner, u] = await users(2);
    const chat = await group(owner!, [u!]);
    const membership = cache(new LocalBus());
    expect(await membership.check(chat.id, u!)).toBe(true);
    expect(membership.admit(chat.id, u!)).toEqual({ version: chat.membersVersion, member: true });
    // Changed elsewhere, its event not here yet: a send's sequencer says 'stale', the cache reads again.
    const now = (await store.removeMember(chat.id, u!))!.chat;
    expect(membership.admit(chat.id, u!)).toEqual({ version: chat.membersVersion, member: true });
    await membership.refresh(chat.id);
    expect(membership.admit(chat.id, u!)).toEqual({ version: now.membersVersion, member: false });
    expect(membership.admit(chat.id, owner!)).toEqual({ version: now.membersVersion, member: true });
    expect(membership.admit(newId(), owner!)).toBeNull();
    membership.close();
  });

  it('after bus.resumed refuses every cached chat until it has read it again', async () => {
    const [owner, u] = await users(2);
    const chat = await group(owner!, [u!]);
    const bus = new LocalBus();
    const membership = cache(bus);
    expect(await membership.check(chat.id, u!)).toBe(true);
    // Removed while the bus was down: its event is lost.
    await store.removeMember(chat.id, u!);
    let whenResumed: boolean | undefined;
    bus.subscribe((e) => {
      if (e.type === 'bus.resumed') whenResumed = membership.isMember(chat.id, owner!); // right after the cache's own handler
    });
    await bus.publish({ type: 'bus.resumed' });
    expect(whenResumed).toBe(false);
    expect(await pollUntil(() => membership.isMember(chat.id, owner!), { within: 500, every: 5 })).toBe(true);
    expect(membership.isMember(chat.id, u!)).toBe(false);
    membership.close();
  });

  it('is bounded: past its capacity it drops the chats read longest ago, never one with a member connected here', async () => {
    const [here, away] = await users(2);
    const membership = cache(new LocalBus(), { capacity: 10, keepLoadedMs: 0, connectedHere: (userId) => userId === here });
    const withHere: ChatRecord[] = [];
    const others: ChatRecord[] = [];
    for (let i = 0; i < 30; i++) {
      const chat = await group(away!, i % 6 === 0 ? [here!] : []);
      (i % 6 === 0 ? withHere : others).push(chat);
      expect(await membership.check(chat.id, away!)).toBe(true);
    }
    expect(membership.size).toBeLessThanOrEqual(10 + withHere.length);
    // The chats of the member connected here answer from memory, synchronously, as deliveries ask.
    for (const chat of withHere) expect(membership.isMember(chat.id, here!)).toBe(true);
    const dropped = others.filter((chat) => !membership.isMember(chat.id, away!));
    expect(dropped.length).toBeGreaterThanOrEqual(others.length - 10);
    // A dropped chat is read again on its next use, with the same answers.
    expect(await membership.check(dropped[0]!.id, away!)).toBe(true);
    expect(await membership.check(dropped[0]!.id, here!)).toBe(false);
    membership.close();
  });

  it('keeps a chat read within keepLoadedMs even past its capacity', async () => {
    const [owner] = await users(1);
    const membership = cache(new LocalBus(), { capacity: 5, keepLoadedMs: 60_000 });
    const chats: ChatRecord[] = [];
    for (let i = 0; i < 12; i++) chats.push(await group(owner!, []));
    for (const chat of chats) await membership.check(chat.id, owner!);
    expect(membership.size).toBe(12);
    for (const chat of chats) expect(membership.isMember(chat.id, owner!)).toBe(true);
    membership.close();
  });
});
