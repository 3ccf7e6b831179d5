import { describe, expect, it } from 'vitest';
import { databaseIn } from '../core/store/mongo.js';

describe('the MongoDB database named by MONGO_URL', () => {
  it.each([
    ['mongodb://127.0.0.1:27017/chat', 'chat'],
    ['mongodb://u:p%2Fw@a:27017,b:27017/prod?replicaSet=rs0', 'prod'],
    ['mongodb+srv://cluster0.example.net/my%20db?retryWrites=true', 'my db'],
    ['mongodb://127.0.0.1:27017/?replicaSet=rs0', undefined],
    ['mongodb://127.0.0.1:27017', undefined],
    ['mongodb://127.0.0.1:27017?replicaSet=rs0', undefined],
    ['mongodb://127.0.0.1:27017?authSource=a/b', undefined],
  ])('%s → %s (unset: NAMESPACE)', (url, name) => {
    expect(databaseIn(url)).toBe(name);
  });
});
