import { copyFileSync, existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Envelope, MessageEnvelope } from '../../core/envelope.js';
import { newId } from '../../core/ids.js';
import { hashPassword } from '../../core/passwords.js';
import { SCHEMA_VERSION, SqliteStore } from '../../core/store/sqlite.js';
import { SEARCH_CANDIDATES } from '../../core/store/store.js';
import { issueToken } from '../../core/tokens.js';
import { JWT_SECRET } from './servers.js';
import { type Language, Prng, QUERY_COMMON, QUERY_ELSEWHERE, chatLanguage, chatText } from './corpus.js';
import { DATA_DIR, PASSWORD, type Seed } from './seed.js';

/**
 * The store of the chatlist and search scenarios (issue 12): the template plus 1,000,000 chat
 * messages in about 4,000 chats, in time order across chats, as a server would have received
 * them. Ten requesters (users of their own, `benchreq0`…`benchreq9`) are each a member of
 * exactly 100 chats, 60 direct and 40 groups, which hold a quarter of the messages (about
 * 25,000 each); the other three quarters are in chats of the template's users among
 * themselves. Everything goes through the store's own methods (`createDirectChat`,
 * `createGroupChat`, `appendMessages`, `setReadPointer`), so read pointers, unread counts and
 * the search index are built as in production. The text is the corpus of ./corpus.ts, drawn
 * with a fixed seed; ids carry random bits (UUIDv7), the rest is the same on every build.
 *
 * Built once beside the template and reused; rebuilt when missing, when LAYOUT changes, when
 * the template was rebuilt or when the store's schema changed (a run must not migrate, and so
 * re-index, 1,000,000 messages at start). What the scenarios check the answers against (pointers,
 * unread counts, the newest matches of each query) is recorded in features.json.
 */
const LAYOUT = 3;

export const FEATURE_MESSAGES = 1_000_000;
const REQUESTERS = 10;
const DIRECT_PER_REQUESTER = 60;
const GROUPS_PER_REQUESTER = 40;
/** Share of the messages in the requesters' chats. */
const REQUESTER_SHARE = 0.25;
const BACKGROUND_DIRECT = 2500;
const BACKGROUND_GROUPS = 500;
/** The messages span the 60 days up to the build. */
const SPAN_MS = 60 * 24 * 3600_000;
const BATCH = 5000;
/** After a message: an edit, a deletion of one of the chat's recent messages by its sender. */
const EDIT_P = 0.004;
const DELETE_P = 0.002;
const REPLY_P = 0.03;

export interface FeatureChat {
  id: string;
  number: number;
  type: 'direct' | 'group';
  members: number;
  /** Chat messages (type message) stored, deleted ones included. */
  messages: number;
  lastSeq: number;
  /** The requester's pointer and unread count as the store should report them. */
  readSeq: number;
  unread: number;
  /** ms: the newest envelope's time. */
  lastActivityAt: number;
}

export interface FeatureRequester {
  id: string;
  username: string;
  token: string;
  chats: FeatureChat[];
  /** Messages of its chats (current text, not deleted) holding each query. */
  matches: { common: number; elsewhere: number };
  /** The first page the common query should give it: the ids of its newest 20 matches among
   * the SEARCH_CANDIDATES newest matches of every chat (a search looks at no more: store.ts),
   * newest first, and whether there is more (more than 20 of its own among them, or some and the
   * budget spent). */
  newestCommon: string[];
  commonHasMore: boolean;
}

export interface FeaturesSeed {
  layout: number;
  template: string;
  /** The store's schema version (migrations) it was built with. */
  schema: number;
  db: string;
  chats: number;
  messages: number;
  edits: number;
  deletes: number;
  system: number;
  requesters: FeatureRequester[];
  queries: { common: { q: string; messages: number }; elsewhere: { q: string; messages: number } };
  /** How long the build took, and its parts (s). */
  build: { seconds: number; chatsSeconds: number; appendSeconds: number; at: string; bytes: number };
}

const templateTag = (seed: Seed) => `${seed.users[0]!.id}:${seed.expiresAt}`;

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

// Per seq of a chat: what it holds.
const IS_MESSAGE = 1;
const DELETED = 2;
const HAS_COMMON = 4;
const HAS_ELSEWHERE = 8;

interface GenChat {
  id: string;
  number: number;
  type: 'direct' | 'group';
  /** Indexes into the user table (template users, then the requesters). */
  members: number[];
  senderWeights: Float64Array;
  language: Language;
  elsewhere: boolean;
  /** Index into the requesters, or -1. */
  requester: number;
  count: number;
  /** The requesters' chats: how many of the last messages the requester has not read (it
   * sends none of them). */
  behind: number;
  /** Chat messages so far. */
  sent: number;
  from: number;
  to: number;
  createdAt: number;
  seq: number;
  lastAt: number;
  flags: Uint8Array;
  /** Per seq: the sender of a message (user index), -1 for anything else. */
  senders: Int32Array;
  /** Per seq, a message's insertion order (its rowid's place); the requesters' chats only, its id. */
  ids?: string[];
  order: Int32Array;
  /** Seqs of the chat's newest messages (for edits, deletions and replies). */
  recent: number[];
}

let loading: Promise<FeaturesSeed> | null = null;

/** The features store; built when missing or stale. Loaded once per bench process: both
 * scenarios share it (and a failed build is not tried again by the next scenario). */
export function loadFeaturesSeed(seed: Seed, log: (line: string) => void): Promise<FeaturesSeed> {
  return (loading ??= load(seed, log).catch((err: unknown) => {
    // better-sqlite3's errors from the writer thread may arrive as plain objects.
    throw err instanceof Error ? err : new Error(`features seed: ${JSON.stringify(err)}`);
  }));
}

async function load(seed: Seed, log: (line: string) => void): Promise<FeaturesSeed> {
  const file = join(DATA_DIR, 'features.json');
  const db = join(DATA_DIR, 'features.db');
  const existing = readJson<FeaturesSeed>(file);
  if (existing && existing.layout === LAYOUT && existing.template === templateTag(seed) && existing.schema === SCHEMA_VERSION && existsSync(db)) return { ...existing, db };
  log(`seeding ${FEATURE_MESSAGES.toLocaleString('en-US')} messages of mixed Korean, Japanese and English chat text into ${db} (once; reused by later runs)`);
  for (const f of [file, db, `${db}-wal`, `${db}-shm`]) rmSync(f, { force: true });
  const building = `${db}.building`;
  for (const f of [building, `${building}-wal`, `${building}-shm`]) rmSync(f, { force: true });
  copyFileSync(seed.templateDb, building);
  const built = await build(seed, building, log);
  renameSync(building, db);
  built.build.bytes = statSync(db).size;
  writeFileSync(`${file}.tmp`, JSON.stringify(built));
  renameSync(`${file}.tmp`, file);
  log(`seeded in ${built.build.seconds.toFixed(1)} s (chats ${built.build.chatsSeconds.toFixed(1)} s, messages ${built.build.appendSeconds.toFixed(1)} s), ${(built.build.bytes / 2 ** 20).toFixed(0)} MB`);
  return { ...built, db };
}

async function build(seed: Seed, file: string, log: (line: string) => void): Promise<FeaturesSeed> {
  const t0 = performance.now();
  const r = new Prng(0x12c0ffee);
  const store = new SqliteStore(file);
  const end = Date.now() - 3600_000;
  const begin = end - SPAN_MS;
  try {
    // ---- users: the template's, then the requesters (new accounts of this store only).
    const users = seed.users.map((u) => ({ id: u.id, username: u.username }));
    const template = users.length;
    const passwordHash = await hashPassword(PASSWORD);
    const exp = Math.floor(seed.expiresAt / 1000);
    const requesters: FeatureRequester[] = [];
    for (let i = 0; i < REQUESTERS; i++) {
      const id = newId(begin - 30 * 24 * 3600_000);
      const username = `benchreq${i}`;
      await store.createUser({ id, username, displayName: `요청자 ${i}`, passwordHash, createdAt: begin - 30 * 24 * 3600_000 });
      const sid = newId();
      await store.createSession({ id: sid, userId: id, createdAt: Date.now(), expiresAt: seed.expiresAt, revokedAt: null });
      requesters.push({ id, username, token: issueToken(JWT_SECRET, { sub: id, sid, iat: Math.floor(Date.now() / 1000), exp }), chats: [], matches: { common: 0, elsewhere: 0 }, newestCommon: [], commonHasMore: false });
      users.push({ id, username });
    }

    // ---- the chats, planned, then created in the store.
    const others = (n: number, not: Set<number>) => {
      const picked = new Set<number>();
      while (picked.size < n) {
        const u = r.int(0, template - 1);
        if (!not.has(u)) picked.add(u);
      }
      return [...picked];
    };
    /** Group sizes as chat apps see them: mostly small, a few large (at most 100). */
    const groupSize = () => {
      const x = r.next();
      return x < 0.6 ? r.int(3, 8) : x < 0.9 ? r.int(9, 30) : r.int(31, 100);
    };
    interface Plan { type: 'direct' | 'group'; members: number[]; requester: number; weight: number }
    const plans: Plan[] = [];
    const lognormal = () => Math.exp(1.3 * r.normal());
    for (let q = 0; q < REQUESTERS; q++) {
      const self = template + q;
      for (const p of others(DIRECT_PER_REQUESTER, new Set())) plans.push({ type: 'direct', members: [self, p], requester: q, weight: lognormal() });
      for (let g = 0; g < GROUPS_PER_REQUESTER; g++) {
        const rest = others(groupSize() - 1, new Set());
        // The requester owns half of its groups.
        plans.push({ type: 'group', members: r.chance(0.5) ? [self, ...rest] : [rest[0]!, self, ...rest.slice(1)], requester: q, weight: lognormal() * 1.5 });
      }
    }
    // The template's direct chats are not made again (one direct chat per pair).
    const pairKey = (a: number, b: number) => (a < b ? `${a}-${b}` : `${b}-${a}`);
    const pairs = new Set<string>();
    for (const c of [...seed.mix, ...seed.slow.chats, seed.slow.probe]) if (c.members.length === 2) pairs.add(pairKey(c.members[0]!, c.members[1]!));
    for (let made = 0; made < BACKGROUND_DIRECT;) {
      const [a, b] = others(2, new Set());
      const key = pairKey(a!, b!);
      if (pairs.has(key)) continue;
      pairs.add(key);
      made++;
      plans.push({ type: 'direct', members: [a!, b!], requester: -1, weight: lognormal() });
    }
    for (let g = 0; g < BACKGROUND_GROUPS; g++) plans.push({ type: 'group', members: others(groupSize(), new Set()), requester: -1, weight: lognormal() * 1.5 });

    // Messages per chat from the weights: a quarter for the requesters' chats.
    const counts = new Int32Array(plans.length);
    for (const mine of [true, false]) {
      const idx = plans.map((p, i) => ((p.requester >= 0) === mine ? i : -1)).filter((i) => i >= 0);
      const total = Math.round(FEATURE_MESSAGES * (mine ? REQUESTER_SHARE : 1 - REQUESTER_SHARE));
      const sum = idx.reduce((s, i) => s + plans[i]!.weight, 0);
      let given = 0;
      for (const i of idx) given += counts[i] = Math.floor((total * plans[i]!.weight) / sum);
      // What the rounding left: to the busiest chats, one each.
      const byWeight = [...idx].sort((a, b) => plans[b]!.weight - plans[a]!.weight);
      for (let k = 0; given < total; k++, given++) counts[byWeight[k % byWeight.length]!]!++;
    }

    const chats: GenChat[] = [];
    const t1 = performance.now();
    const system: Envelope[] = [];
    for (let i = 0; i < plans.length; i++) {
      const p = plans[i]!;
      // Active from a point in the 60 days; six chats in ten until the end, the others fall silent.
      const from = begin + r.next() * 0.6 * SPAN_MS;
      const to = r.chance(0.6) ? end : from + (0.1 + r.next() * 0.9) * (end - from);
      const createdAt = Math.floor(from - r.int(60_000, 5 * 24 * 3600_000));
      const ids = p.members.map((m) => users[m]!.id);
      let record;
      if (p.type === 'direct') {
        const made = await store.createDirectChat({ id: newId(createdAt), userIds: [ids[0]!, ids[1]!], createdAt });
        if (!made.created) throw new Error(`features seed: direct chat ${p.members.join('-')} exists already`);
        record = made.chat;
      } else {
        record = await store.createGroupChat({ id: newId(createdAt), name: `그룹 ${i}`, visibility: 'private', ownerId: ids[0]!, memberIds: ids, createdAt });
      }
      // In a group some members talk much more than others (which ones: at random).
      const ranks = r.shuffle(p.members.map((_, k) => k));
      const senderWeights = new Float64Array(p.members.length);
      let acc = 0;
      p.members.forEach((_, k) => (senderWeights[k] = acc += p.type === 'direct' ? 1 : 1 / (ranks[k]! + 1) ** 0.8));
      const count = counts[i]!;
      // In most chats the requester has read everything, in some it has not: a chat it has not
      // opened for a while, a busy group it never reads.
      const x = r.next();
      const behind = p.requester < 0 ? 0 : Math.min(count, x < 0.45 ? 0 : x < 0.75 ? r.int(1, 9) : x < 0.92 ? r.int(10, 99) : r.int(100, 1500));
      // seqs: chat.created, the messages, and the edits and deletions (far fewer than count).
      const events = 2 * count + 16;
      const chat: GenChat = {
        id: record.id, number: record.number, type: p.type, members: p.members, senderWeights,
        language: chatLanguage(r), elsewhere: p.requester < 0, requester: p.requester, count, behind, sent: 0, from, to, createdAt,
        seq: 1, lastAt: createdAt, flags: new Uint8Array(events + 1), senders: new Int32Array(events + 1).fill(-1), recent: [],
        order: new Int32Array(events + 1).fill(-1),
        ...(p.requester >= 0 ? { ids: [] } : {}),
      };
      chats.push(chat);
      system.push({ type: 'system', id: newId(createdAt), chatId: chat.id, seq: 1, event: 'chat.created', userId: ids[0]!, createdAt: new Date(createdAt).toISOString() });
    }
    // seq 1 of every chat is its chat.created, as the server writes it.
    for (let k = 0; k < system.length; k += BATCH) await store.appendMessages(system.slice(k, k + BATCH));
    const chatsSeconds = (performance.now() - t1) / 1000;
    log(`  ${chats.length.toLocaleString('en-US')} chats created in ${chatsSeconds.toFixed(1)} s`);

    // ---- the timeline: every message's time, in order across all chats.
    const times = new Float64Array(FEATURE_MESSAGES);
    const owner = new Int32Array(FEATURE_MESSAGES);
    let n = 0;
    chats.forEach((c, ci) => {
      for (let k = 0; k < c.count; k++, n++) {
        times[n] = c.from + r.next() * (c.to - c.from);
        owner[n] = ci;
      }
    });
    const order = new Uint32Array(FEATURE_MESSAGES).map((_, i) => i).sort((a, b) => times[a]! - times[b]!);

    // ---- the messages, appended in batches (two in flight: the next is built meanwhile).
    const t2 = performance.now();
    let batch: Envelope[] = [];
    const inFlight: Promise<void>[] = [];
    let appended = 0;
    let notStored = 0;
    let failed: unknown = null;
    const flush = async () => {
      const rows = batch;
      batch = [];
      inFlight.push(store.appendMessages(rows).then(
        (outcomes) => {
          for (const o of outcomes) if (o !== 'stored') notStored++;
          appended += rows.length;
        },
        (err: unknown) => void (failed ??= err),
      ));
      if (inFlight.length >= 2) await inFlight.shift();
      if (failed) throw failed;
    };
    let edits = 0;
    let deletes = 0;
    let inserted = 0;
    const pickSender = (c: GenChat) => {
      const x = r.next() * c.senderWeights[c.senderWeights.length - 1]!;
      let k = 0;
      while (c.senderWeights[k]! < x) k++;
      return c.members[k]!;
    };
    const textFlags = (text: string) => (text.includes(QUERY_COMMON) ? HAS_COMMON : 0) | (text.includes(QUERY_ELSEWHERE) ? HAS_ELSEWHERE : 0);
    let lastLog = performance.now();
    for (let k = 0; k < FEATURE_MESSAGES; k++) {
      const c = chats[owner[order[k]!]!]!;
      const at = Math.max(Math.floor(times[order[k]!]!), c.lastAt + 1);
      const seq = ++c.seq;
      let sender = pickSender(c);
      // The requester sends none of the messages it has not read.
      if (c.requester >= 0 && c.sent >= c.count - c.behind) while (sender === template + c.requester) sender = pickSender(c);
      c.sent++;
      const text = chatText(r, c.language, c.elsewhere);
      const message: MessageEnvelope = {
        type: 'message', id: newId(at), chatId: c.id, seq, senderId: users[sender]!.id, senderName: users[sender]!.username,
        text, clientMsgId: `f-${k}`, createdAt: new Date(at).toISOString(),
      };
      if (c.recent.length > 0 && r.chance(REPLY_P)) message.replyTo = r.pick(c.recent);
      batch.push(message);
      c.lastAt = at;
      c.flags[seq] = IS_MESSAGE | textFlags(text);
      c.senders[seq] = sender;
      if (c.ids) c.ids[seq] = message.id;
      c.order[seq] = inserted;
      inserted++;
      c.recent.push(seq);
      if (c.recent.length > 6) c.recent.shift();
      // Now and then the sender of a recent message edits or deletes it.
      const x = r.next();
      if (x < EDIT_P + DELETE_P) {
        const target = r.pick(c.recent);
        if (!(c.flags[target]! & DELETED)) {
          const actorId = users[c.senders[target]!]!.id;
          const eAt = c.lastAt + r.int(1000, 60_000);
          const eSeq = ++c.seq;
          const base = { id: newId(eAt), chatId: c.id, seq: eSeq, targetSeq: target, createdAt: new Date(eAt).toISOString() };
          if (x < EDIT_P) {
            const edited = chatText(r, c.language, c.elsewhere);
            batch.push({ type: 'edit', ...base, text: edited, senderId: actorId });
            c.flags[target] = IS_MESSAGE | textFlags(edited);
            edits++;
          } else {
            batch.push({ type: 'delete', ...base, actorId });
            c.flags[target] = c.flags[target]! | DELETED;
            c.recent = c.recent.filter((s) => s !== target);
            deletes++;
          }
          c.lastAt = eAt;
        }
      }
      if (batch.length >= BATCH) await flush();
      if (performance.now() - lastLog > 15_000) {
        lastLog = performance.now();
        log(`  ${inserted.toLocaleString('en-US')} messages (${((performance.now() - t2) / 1000).toFixed(0)} s)`);
      }
    }
    if (batch.length > 0) await flush();
    await Promise.all(inFlight);
    if (failed) throw failed;
    if (notStored > 0) throw new Error(`features seed: ${notStored} envelopes not stored`);
    const appendSeconds = (performance.now() - t2) / 1000;
    log(`  ${appended.toLocaleString('en-US')} envelopes appended in ${appendSeconds.toFixed(1)} s`);

    // ---- read pointers: just before the last `behind` messages.
    for (const c of chats) {
      if (c.requester < 0) continue;
      const self = template + c.requester;
      let pointer = c.seq;
      for (let left = c.behind; left > 0 && pointer > 1; pointer--) if (c.flags[pointer]! & IS_MESSAGE) left--;
      await store.setReadPointer(c.id, users[self]!.id, pointer, c.lastAt);
      // The store keeps the higher of that and the requester's own last message.
      let own = 0;
      for (let s = c.seq; s > 0 && own === 0; s--) if (c.senders[s] === self) own = s;
      const readSeq = Math.max(pointer, own);
      let unread = 0;
      let messages = 0;
      for (let s = 1; s <= c.seq; s++) {
        const f = c.flags[s]!;
        if (!(f & IS_MESSAGE)) continue;
        messages++;
        if (s > readSeq && !(f & DELETED) && c.senders[s] !== self) unread++;
      }
      requesters[c.requester]!.chats.push({ id: c.id, number: c.number, type: c.type, members: c.members.length, messages, lastSeq: c.seq, readSeq, unread, lastActivityAt: c.lastAt });
    }

    // ---- what the searches should find.
    const counted = { common: 0, elsewhere: 0 };
    let messages = 0;
    for (const c of chats) {
      for (let s = 1; s <= c.seq; s++) {
        const f = c.flags[s]!;
        if (!(f & IS_MESSAGE)) continue;
        messages++;
        if (f & DELETED) continue;
        if (f & HAS_COMMON) counted.common++;
        if (f & HAS_ELSEWHERE) counted.elsewhere++;
      }
    }
    // The search looks at the index's matches newest first, whatever their chat, and stops at
    // 21 of the user's or after SEARCH_CANDIDATES of them (core/store/sqlite-search.ts).
    const candidates: { order: number; chat: GenChat; seq: number }[] = [];
    for (const c of chats) {
      for (let s = 1; s <= c.seq; s++) {
        const f = c.flags[s]!;
        if (f & IS_MESSAGE && !(f & DELETED) && f & HAS_COMMON) candidates.push({ order: c.order[s]!, chat: c, seq: s });
      }
    }
    candidates.sort((a, b) => b.order - a.order);
    requesters.forEach((q, qi) => {
      for (const c of chats) {
        if (c.requester !== qi) continue;
        for (let s = 1; s <= c.seq; s++) {
          const f = c.flags[s]!;
          if (!(f & IS_MESSAGE) || f & DELETED) continue;
          if (f & HAS_COMMON) q.matches.common++;
          if (f & HAS_ELSEWHERE) q.matches.elsewhere++;
        }
      }
      const page: string[] = [];
      let examined = 0;
      for (const m of candidates) {
        if (++examined > SEARCH_CANDIDATES || page.length > 20) break;
        if (m.chat.requester === qi) page.push(m.chat.ids![m.seq]!);
      }
      q.newestCommon = page.slice(0, 20);
      q.commonHasMore = page.length > 20 || (examined > SEARCH_CANDIDATES && page.length > 0);
    });
    return {
      layout: LAYOUT, template: templateTag(seed), schema: SCHEMA_VERSION, db: '', chats: chats.length, messages, edits, deletes, system: system.length, requesters,
      queries: { common: { q: QUERY_COMMON, messages: counted.common }, elsewhere: { q: QUERY_ELSEWHERE, messages: counted.elsewhere } },
      build: { seconds: (performance.now() - t0) / 1000, chatsSeconds, appendSeconds, at: new Date().toISOString(), bytes: 0 },
    };
  } finally {
    await store.close();
  }
}
