import { randomBytes } from 'node:crypto';
import { closeSync, constants, mkdirSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { StartupError } from './errors.js';

/** Directories this process creates for DATA_DIR: only its user may list or enter them. */
export const DATA_DIR_MODE = 0o700;
/** Files it creates there (the SQLite database and, through it, its -wal and -shm journals; the
 * JWT secret): only its user may read them. */
export const DATA_FILE_MODE = 0o600;

/** DATA_DIRs checked by this process already (the secret and the store both ask). */
const checked = new Set<string>();

/**
 * Makes sure `dir` (absolute: DATA_DIR resolved) is a directory this process can write to,
 * creating it and its missing parents with mode 0700. Anything else stops the start with a
 * StartupError of one line that names DATA_DIR and the path.
 *
 * An existing directory's mode is the operator's: it is not changed. If others may write to it
 * (they could delete or replace the files), a warning says so once. Files are created 0600
 * whatever the directory allows, so a directory others may read exposes only file names.
 *
 * Not `mkdirSync(dir, { recursive: true })`: in a directory where mkdir answers ENOENT although
 * the parent exists (under /proc), Node's recursive mkdir tries again for ever, and the process
 * hangs without a word (Node 20).
 */
export function ensureDataDir(dir: string): void {
  if (checked.has(dir)) return;
  const fail = (what: string, err?: unknown) => {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    return new StartupError(`DATA_DIR ${dir} ${what}${code ? ` (${code})` : ''}; set DATA_DIR to a directory this user can write to`);
  };

  // The missing part of the path, from the deepest existing ancestor down.
  const missing: string[] = [];
  for (let at = dir; ; at = dirname(at)) {
    const found = kindOf(at);
    if (found === 'directory') break;
    if (found === 'other') throw at === dir ? fail('is not a directory') : fail(`cannot be created: ${at} is not a directory`);
    if (found instanceof Error) throw fail(`cannot be examined: ${at}`, found);
    if (dirname(at) === at) throw fail('cannot be created: no part of the path exists');
    missing.unshift(at);
  }
  for (const at of missing) {
    try {
      mkdirSync(at, { mode: DATA_DIR_MODE });
    } catch (err) {
      // Another process starting on the same new DATA_DIR made it first.
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && kindOf(at) === 'directory') continue;
      throw fail(at === dir ? 'cannot be created' : `cannot be created: its parent ${at} cannot be created`, err);
    }
  }

  // Writable: a probe file is created, written and removed (a directory's mode bits do not
  // tell it: root ignores them, and a read-only mount or /proc refuses anyway).
  const probe = `${dir}/.write-probe-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fd = openSync(probe, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, DATA_FILE_MODE);
    try {
      writeSync(fd, 'probe');
    } finally {
      closeSync(fd);
    }
    unlinkSync(probe);
  } catch (err) {
    throw fail('is not writable', err);
  }

  if (missing.length === 0) {
    const mode = statSync(dir).mode & 0o777;
    if ((mode & 0o022) !== 0) {
      process.emitWarning(`DATA_DIR ${dir} has mode ${mode.toString(8).padStart(4, '0')}: other users may delete or replace its files (the server creates it 0700; it leaves an existing directory's mode as it is)`);
    }
  }
  checked.add(dir);
}

/**
 * Creates `file` empty with mode 0600 if it does not exist. An existing file's mode is left as
 * it is; a warning says so when others may read it.
 * For the SQLite database: SQLite gives the -wal and -shm files it creates beside it the
 * database file's mode, and would create the file itself 0644 (less the umask).
 */
export function createPrivateFile(file: string): void {
  try {
    closeSync(openSync(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, DATA_FILE_MODE));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      // A database from before 0600, or one an operator opened up: left as it is, but said.
      const mode = statSync(file).mode & 0o777;
      if ((mode & 0o077) !== 0) process.emitWarning(`${file} has mode ${mode.toString(8).padStart(4, '0')}: other users may read it (the server creates it 0600)`);
      return;
    }
    throw new StartupError(`cannot create ${file} in DATA_DIR${code ? ` (${code})` : ''}; set DATA_DIR to a directory this user can write to`);
  }
}

function kindOf(path: string): 'directory' | 'other' | 'missing' | Error {
  try {
    return statSync(path).isDirectory() ? 'directory' : 'other';
  } catch (err) {
    // ENOTDIR: a file on the way; the walk up finds it and names it.
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : (err as Error);
  }
}
