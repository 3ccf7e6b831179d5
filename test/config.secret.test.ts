import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tempDir } from './helpers/server.js';

const run = promisify(execFile);
const config = resolve('dist/core/config.js');

/** A process that waits for the agreed instant, reads its config and prints its JWT secret. */
const SCRIPT = `
const { loadConfig } = await import(process.argv[1]);
const at = Number(process.argv[3]);
while (Date.now() < at) {}
process.stdout.write(loadConfig({ DATA_DIR: process.argv[2] }).jwtSecret);
`;

describe('the secret generated into DATA_DIR', () => {
  it('is the same, whole secret for processes starting together on a new DATA_DIR', async () => {
    for (let round = 0; round < 10; round++) {
      const dataDir = tempDir('chat-secret-');
      try {
        const at = String(Date.now() + 300);
        const secrets = await Promise.all(
          Array.from({ length: 8 }, () => run(process.execPath, ['--input-type=module', '-e', SCRIPT, config, dataDir, at]).then((r) => r.stdout)),
        );
        expect(new Set(secrets).size).toBe(1);
        expect(secrets[0]!.length).toBeGreaterThanOrEqual(32);
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
  });
});
