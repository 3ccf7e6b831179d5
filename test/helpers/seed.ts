import { join } from 'node:path';
import { newId } from '../../core/ids.js';
import { hashPassword } from '../../core/passwords.js';
import { SqliteStore } from '../../core/store/sqlite.js';
import type { ChatRecord } from '../../core/store/store.js';
import { issueToken } from '../../core/tokens.js';
import { TEST_SECRET } from './server.js';

export interface SeededUser {
  user: { id: string; username: string; displayName: string };
  token: string;
}

/**
 * Users, login tokens and chats written straight into a data directory's SQLite file before a
 * server process starts on it (with JWT_SECRET = TEST_SECRET): set-up for specs that need many
 * users, without a password hash and a login per user.
 */
export async function seed(dataDir: string, build: (s: Seeder) => Promise<void>): Promise<void> {
  const store = new SqliteStore(join(dataDir, 'chat.db'));
  try {
    await build(new Seeder(store, await hashPassword('seeded-password')));
  } finally {
    await store.close();
  }
}

export class Seeder {
  private counter = 0;
  private readonly tag = Math.random().toString(36).slice(2, 8);

  constructor(
    private readonly store: SqliteStore,
    private readonly passwordHash: string,
  ) {}

  async users(n: number, prefix = 'seed'): Promise<SeededUser[]> {
    const out: SeededUser[] = [];
    for (let i = 0; i < n; i++) {
      const now = Date.now();
      const username = `${prefix}${++this.counter}_${this.tag}`;
      const user = await this.store.createUser({ id: newId(), username, displayName: username, passwordHash: this.passwordHash, createdAt: now });
      const session = { id: newId(), userId: user.id, createdAt: now, expiresAt: now + 3600_000, revokedAt: null };
      await this.store.createSession(session);
      const iat = Math.floor(now / 1000);
      const token = issueToken(TEST_SECRET, { sub: user.id, sid: session.id, iat, exp: iat + 3600 });
      out.push({ user: { id: user.id, username, displayName: username }, token });
    }
    return out;
  }

  group(owner: SeededUser, members: SeededUser[]): Promise<ChatRecord> {
    const memberIds = [owner.user.id, ...members.map((m) => m.user.id)];
    return this.store.createGroupChat({ id: newId(), name: `group ${this.counter}`, visibility: 'private', ownerId: owner.user.id, memberIds, createdAt: Date.now() });
  }

  async direct(a: SeededUser, b: SeededUser): Promise<ChatRecord> {
    return (await this.store.createDirectChat({ id: newId(), userIds: [a.user.id, b.user.id], createdAt: Date.now() })).chat;
  }
}
