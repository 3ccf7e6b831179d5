import { Aedes, type AedesOptions } from 'aedes';
import { newId } from '../core/ids.js';
import { CONNECT_TIMEOUT_MS } from '../core/rules.js';
import { writePublishesWhole } from './publish-writer.js';

/** What a deployment gives Aedes: its emitter and persistence (in memory, or shared by every
 * node through Redis: broker/cluster.ts) and the heartbeat of a cluster. */
export type AedesBackends = Pick<AedesOptions, 'mq' | 'persistence' | 'heartbeatInterval'>;

/**
 * The Aedes instance of this node, before any client can reach it: the chat's handlers are
 * installed by the ChatBroker (broker/broker.ts), which is built once the services that use
 * this instance's outbox exist.
 */
export function createAedes(backends: AedesBackends): Promise<Aedes> {
  writePublishesWhole();
  return Aedes.createBroker({
    ...backends,
    // No cap on publishes being fanned out at once (the default, 100, queues the rest): with a
    // cap, publishes that no one subscribed to are released from the queue recursively, and
    // a long queue overflowed the stack (RangeError, the process died). What limits the work
    // in progress is upstream: each connection's next packets are read only once its current
    // ones are done, sends in flight are capped per process (MAX_SENDS_IN_FLIGHT), and a
    // delivery never waits for a slow reader (outgoing-queue.ts). The Redis emitter of a
    // cluster has no cap either.
    concurrency: 0,
    id: newId(), // unique per start, so a restarted node never inherits a crashed one's identity
    connectTimeout: CONNECT_TIMEOUT_MS,
    maxClientsIdLength: 128, // MQTT 3.1 clients: '<uuid>/<device>' exceeds the default 23
  });
}
