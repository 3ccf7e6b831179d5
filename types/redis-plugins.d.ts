// The Aedes Redis plugins are CommonJS and ship no type declarations; what we use of them.
declare module 'mqemitter-redis' {
  import type { EventEmitter } from 'node:events';
  import type { Redis } from 'ioredis';
  export interface Message { topic: string; [field: string]: unknown }
  export class MQEmitterRedisPrefix {
    constructor(prefix: string, options: { connectionString: string });
    subConn: Redis;
    pubConn: Redis;
    state: EventEmitter;
    on(topic: string, listener: (message: Message, done: () => void) => void, subscribed?: () => void): this;
    removeListener(topic: string, listener: (message: Message, done: () => void) => void, done?: () => void): void;
    emit(message: Message, done?: (err?: Error) => void): void;
    close(cb: () => void): void;
  }
}

declare module 'aedes-persistence-redis/asyncPersistence.js' {
  import type { Redis } from 'ioredis';
  export default class AsyncRedisPersistence {
    constructor(opts: { conn: Redis });
    addSubscriptions(client: { id: string }, subs: unknown[]): Promise<void>;
    destroy(): Promise<void>;
  }
}
