import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MessageEnvelope, SystemEnvelope } from '../../core/envelope.js';
import { newId } from '../../core/ids.js';
import { hashPassword } from '../../core/passwords.js';
import { SqliteStore } from '../../core/store/sqlite.js';
import { issueToken } from '../../core/tokens.js';
import { JWT_SECRET } from './servers.js';

/**
 * Users, tokens and chats for every scenario, written once straight into a template SQLite
 * store (through the store's own methods: registering over REST costs one scrypt per user by
 * design) and reused by later runs. Each chat-server run starts from a fresh copy of the
 * template file, so messages of earlier runs never accumulate.
 *
 * Bump LAYOUT when what is seeded changes: an older data folder is then rebuilt.
 */
const LAYOUT = 2;

/** Outside the repository (the Dockerfile copies bench/ into the image, and the history store
 * is 740 MB): <tmpdir>/mqtt-chat-bench-data, or BENCH_DATA_DIR. */
export const DATA_DIR = process.env.BENCH_DATA_DIR ?? join(tmpdir(), 'mqtt-chat-bench-data');

export const USERS = 2000;
export const PASSWORD = 'bench-password';
/** Users 0..1199 in direct pairs (60 %), 1200..1999 in groups of 10 (40 %). */
const PAIRED = 1200;
const GROUP_SIZE = 10;
const HISTORY_CHATS = 100;
const HISTORY_PER_CHAT = 10_000;

export interface SeedUser {
  id: string;
  username: string;
  token: string;
}

/** A chat and its members, as indexes into `users`. */
export interface SeedChat {
  id: string;
  members: number[];
}

export interface Seed {
  layout: number;
  /** Which JWT secret the tokens are signed with (a hash of it). */
  secret: string;
  /** ms; tokens and sessions are valid until then. */
  expiresAt: number;
  users: SeedUser[];
  /** Group of users 0..99. */
  fanout: SeedChat;
  /** 600 direct pairs and 80 groups of 10: each of the 2,000 users is in exactly one. */
  mix: SeedChat[];
  /** The slow scenario: `reader`'s direct chats with users 0..99, and a probe pair. */
  slow: { reader: number; chats: SeedChat[]; probe: SeedChat };
  templateDb: string;
}

export interface HistorySeed {
  layout: number;
  secret: string;
  /** Every chat has `requester` and one other member, and `lastSeq` envelopes. */
  requester: number;
  chats: { id: string; lastSeq: number }[];
  messages: number;
  db: string;
}

const secretTag = createHash('sha256').update(JWT_SECRET).digest('hex').slice(0, 16);

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

function writeJson(file: string, value: unknown) {
  // Written whole then renamed: an interrupted build never leaves a valid-looking file.
  writeFileSync(`${file}.tmp`, JSON.stringify(value));
  renameSync(`${file}.tmp`, file);
}

/** The template store and its description; built when missing, stale or of another layout. */
export async function loadSeed(log: (line: string) => void): Promise<Seed> {
  const file = join(DATA_DIR, 'seed.json');
  const db = join(DATA_DIR, 'template.db');
  const seed = readJson<Seed>(file);
  const monthAhead = Date.now() + 30 * 24 * 3600_000;
  if (seed && seed.layout === LAYOUT && seed.secret === secretTag && seed.expiresAt > monthAhead && existsSync(db)) {
    return { ...seed, templateDb: db };
  }
  log(`seeding ${USERS} users and their chats into ${db} (once; reused by later runs)`);
  const t0 = performance.now();
  mkdirSync(DATA_DIR, { recursive: true });
  for (const f of [file, db, `${db}-wal`, `${db}-shm`, join(DATA_DIR, 'history.json')]) rmSync(f, { force: true });
  const built = await buildTemplate(db);
  writeJson(file, built);
  log(`seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return built;
}

async function buildTemplate(db: string): Promise<Seed> {
  const store = new SqliteStore(db);
  try {
    const now = Date.now();
    const iat = Math.floor(now / 1000);
    const exp = iat + 365 * 24 * 3600;
    // One scrypt for everyone: the server checks tokens, not passwords, except at login.
    const passwordHash = await hashPassword(PASSWORD);
    const users: SeedUser[] = [];
    for (let i = 0; i < USERS; i++) {
      const id = newId(now);
      const username = `bench${String(i).padStart(4, '0')}`;
      await store.createUser({ id, username, displayName: username, passwordHash, createdAt: now });
      const sid = newId(now);
      await store.createSession({ id: sid, userId: id, createdAt: now, expiresAt: exp * 1000, revokedAt: null });
      users.push({ id, username, token: issueToken(JWT_SECRET, { sub: id, sid, iat, exp }) });
    }
    const group = async (name: string, members: number[]): Promise<SeedChat> => {
      const chat = await store.createGroupChat({
        id: newId(now), name, visibility: 'private', ownerId: users[members[0]!]!.id,
        memberIds: members.map((m) => users[m]!.id), createdAt: now,
      });
      return { id: chat.id, members };
    };
    const direct = async (a: number, b: number): Promise<SeedChat> => {
      const { chat, created } = await store.createDirectChat({ id: newId(now), userIds: [users[a]!.id, users[b]!.id], createdAt: now });
      // Every pair here is new: a shared chat would mix two scenarios' traffic.
      if (!created) throw new Error(`seed: direct chat ${a}-${b} already exists`);
      return { id: chat.id, members: [a, b] };
    };
    const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

    const fanout = await group('bench fanout', range(0, 100));
    const mix: SeedChat[] = [];
    for (let u = 0; u < PAIRED; u += 2) mix.push(await direct(u, u + 1));
    for (let u = PAIRED; u < USERS; u += GROUP_SIZE) mix.push(await group(`bench mix ${u}`, range(u, GROUP_SIZE)));
    // The slow reader and the probe pair are in the last mix group; their direct chats are new.
    const reader = USERS - 1;
    const slowChats: SeedChat[] = [];
    for (let s = 0; s < 100; s++) slowChats.push(await direct(reader, s));
    const probe = await direct(USERS - 3, USERS - 2);
    return { layout: LAYOUT, secret: secretTag, expiresAt: exp * 1000, users, fanout, mix, slow: { reader, chats: slowChats, probe }, templateDb: db };
  } finally {
    await store.close();
  }
}

const WORDS = (
  'hello team meeting lunch tomorrow deploy release bug fix review merge coffee weekend plan ' +
  'thanks sure maybe later sounds good see you soon what about the new design doc shipped ' +
  'tests passing build broken again call me back at five order pizza ok great question'
).split(' ');

/** A chat-like text of 1 to about 300 characters, different each time. */
function chatText(): string {
  const words = 1 + Math.floor(Math.random() ** 2 * 50);
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(WORDS[Math.floor(Math.random() * WORDS.length)]!);
  return out.join(' ');
}

/**
 * The history store: the template plus 100 chats of 10,000 messages each (1,000,000), appended
 * through the store in batches. Kept beside the template and reused.
 */
export async function loadHistorySeed(seed: Seed, log: (line: string) => void): Promise<HistorySeed> {
  const file = join(DATA_DIR, 'history.json');
  const db = join(DATA_DIR, 'history.db');
  const existing = readJson<HistorySeed>(file);
  if (existing && existing.layout === LAYOUT && existing.secret === secretTag && existsSync(db)) return { ...existing, db };
  const total = HISTORY_CHATS * HISTORY_PER_CHAT;
  log(`seeding ${total.toLocaleString('en-US')} messages into ${db} (once; reused by later runs)`);
  const t0 = performance.now();
  for (const f of [file, db, `${db}-wal`, `${db}-shm`]) rmSync(f, { force: true });
  copyFileSync(seed.templateDb, `${db}.building`);
  const store = new SqliteStore(`${db}.building`);
  const requester = 0;
  const chats: HistorySeed['chats'] = [];
  try {
    const start = Date.now() - total * 1000;
    for (let c = 0; c < HISTORY_CHATS; c++) {
      const other = 1 + c;
      const a = seed.users[requester]!;
      const b = seed.users[other]!;
      const created = start + c * HISTORY_PER_CHAT * 1000;
      const chat = await store.createGroupChat({
        id: newId(created), name: `bench history ${c}`, visibility: 'private', ownerId: a.id, memberIds: [a.id, b.id], createdAt: created,
      });
      // seq 1 is chat.created, as the server writes it; then the messages, alternating senders.
      const first: SystemEnvelope = { type: 'system', id: newId(created), chatId: chat.id, seq: 1, event: 'chat.created', userId: a.id, createdAt: new Date(created).toISOString() };
      let batch: (MessageEnvelope | SystemEnvelope)[] = [first];
      for (let seq = 2; seq <= HISTORY_PER_CHAT + 1; seq++) {
        const at = created + seq * 1000;
        const sender = seq % 2 === 0 ? a : b;
        batch.push({
          type: 'message', id: newId(at), chatId: chat.id, seq, senderId: sender.id, senderName: sender.username,
          text: chatText(), clientMsgId: `h-${seq}`, createdAt: new Date(at).toISOString(),
        });
        if (batch.length === 5000) {
          await store.appendMessages(batch);
          batch = [];
        }
      }
      await store.appendMessages(batch);
      chats.push({ id: chat.id, lastSeq: HISTORY_PER_CHAT + 1 });
      if ((c + 1) % 20 === 0) log(`  ${((c + 1) * HISTORY_PER_CHAT).toLocaleString('en-US')} messages`);
    }
  } finally {
    await store.close();
  }
  renameSync(`${db}.building`, db);
  const built: HistorySeed = { layout: LAYOUT, secret: secretTag, requester, chats, messages: total, db };
  writeJson(file, built);
  log(`seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return built;
}
