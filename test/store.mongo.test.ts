import { randomUUID } from 'node:crypto';
import { MongoClient } from 'mongodb';
import { MongoStore } from '../core/store/mongo.js';
import { storeContract } from './contracts/store.contract.js';

// Runs only with MONGO_URL set (see test/support/conditional.ts): a replica set, since the store
// uses transactions, e.g. mongodb://127.0.0.1:27017/?replicaSet=rs0. Each test gets a database
// of its own, dropped afterwards.
const url = process.env.MONGO_URL;
if (!url) throw new Error('MONGO_URL is not set: vitest.config.ts should have left this file out');

storeContract('mongodb', async () => {
  const database = `chat_test_${randomUUID().slice(0, 8)}`;
  const store = await MongoStore.open(url, database);
  return {
    store,
    cleanup: async () => {
      await store.close();
      const client = await MongoClient.connect(url);
      try {
        await client.db(database).dropDatabase();
      } finally {
        await client.close();
      }
    },
  };
});
