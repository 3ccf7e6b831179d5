import { chmodSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { launchServer, serverExit, serverReady } from './helpers/process.js';
import { TEST_SECRET, tempDir } from './helpers/server.js';

/**
 * DATA_DIR at start (core/data-dir.ts): a directory the process cannot use stops it at once with
 * one line naming DATA_DIR and the path, exit code 1, with or without JWT_SECRET (without it the
 * secret is written there first; with it the SQLite store is the first to need it). What the
 * process creates there only its user may read.
 */
const root = tempDir('chat-startup-');
afterAll(() => {
  chmodSync(root, 0o700);
  for (const dir of [join(root, 'read-only')]) {
    try {
      chmodSync(dir, 0o700);
    } catch {
      /* not made */
    }
  }
  rmSync(root, { recursive: true, force: true });
});

/** An existing directory this process cannot create files in. Root ignores mode bits, so as
 * root it is one of sysfs's directories (sysfs refuses new files to everyone). */
function readOnlyDir(): string {
  if (process.getuid?.() === 0) return '/sys/kernel';
  const dir = join(root, 'read-only');
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o500);
  return dir;
}

const aFile = join(root, 'a-file');
writeFileSync(aFile, 'not a directory');

const BAD: [string, () => string][] = [
  ['a read-only directory', readOnlyDir],
  ['a path under /proc (mkdir answers ENOENT there)', () => '/proc/x'],
  ['a missing parent that cannot be created', () => '/proc/x/y/data'],
  ['a file instead of a directory', () => aFile],
  ['a path through a file', () => join(aFile, 'data')],
];

describe('a DATA_DIR the process cannot use', () => {
  for (const [what, dir] of BAD) {
    for (const secret of [undefined, TEST_SECRET]) {
      it(`stops the start: ${what}, JWT_SECRET ${secret ? 'set' : 'unset'}`, async () => {
        const path = dir();
        const proc = launchServer({ DATA_DIR: path, ...(secret ? { JWT_SECRET: secret } : {}) });
        // Well before serverExit's kill: a hang (Node's recursive mkdir under /proc) fails here.
        const { code, output } = await serverExit(proc, 8_000);
        expect(code, output).toBe(1);
        const lines = output.trim().split('\n');
        expect(lines, output).toHaveLength(1);
        expect(lines[0]).toContain('DATA_DIR');
        expect(lines[0]).toContain(path);
        expect(lines[0]).not.toMatch(/^\s+at /m);
      });
    }
  }
});

describe('files the process creates in DATA_DIR', () => {
  it('are its own: directories 0700, the database, its journals and the secret 0600', async () => {
    const previous = process.umask(0o022); // the usual umask, which leaves files readable by all
    const dataDir = join(root, 'new', 'data');
    let proc;
    try {
      proc = await serverReady(launchServer({ DATA_DIR: dataDir }));
    } finally {
      process.umask(previous);
    }
    try {
      // A write, so the journals exist whatever SQLite defers.
      expect((await proc.http.post('/api/users', { username: 'modes', password: 'modes-password' })).status).toBe(201);
      for (const dir of [join(root, 'new'), dataDir]) expect((statSync(dir).mode & 0o777).toString(8), dir).toBe('700');
      // The database, its journals, the message log's lock and segments, the secret: every file.
      const files = readdirSync(dataDir);
      expect(files).toEqual(expect.arrayContaining(['chat.db', 'chat.db-wal', 'chat.db-shm', 'chat.db-log.lock', 'jwt-secret']));
      for (const file of files) expect((statSync(join(dataDir, file)).mode & 0o777).toString(8), file).toBe('600');
      expect(proc.output()).not.toContain('Warning');
    } finally {
      proc.child.kill('SIGTERM');
      await serverExit(proc);
    }
  });

  it('an existing directory keeps its mode; one others may write to is warned about', async () => {
    const dataDir = join(root, 'shared');
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o777);
    const proc = await serverReady(launchServer({ DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET }));
    try {
      expect((statSync(dataDir).mode & 0o777).toString(8)).toBe('777');
      expect(proc.output()).toMatch(/Warning: DATA_DIR .*shared has mode 0777/);
      expect((statSync(join(dataDir, 'chat.db')).mode & 0o777).toString(8)).toBe('600');
    } finally {
      proc.child.kill('SIGTERM');
      await serverExit(proc);
    }
  });
});
