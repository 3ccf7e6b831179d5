import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { SqliteStore } from '../core/store/sqlite.js';
import { storeContract } from './contracts/store.contract.js';
import { tempDir } from './helpers/server.js';

storeContract('sqlite', async () => {
  const dir = tempDir('chat-store-');
  const store = new SqliteStore(join(dir, 'chat.db'));
  return {
    store,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
