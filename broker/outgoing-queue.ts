import type { Client } from 'aedes';
import type { Duplex } from 'node:stream';

export interface QueueBound {
  bytes: number;
  packets: number;
  graceMs: number;
}

/**
 * Bounds what a connection may leave unread, so that a client reading slowly (or not at all)
 * delays nobody else.
 *
 * Aedes calls a delivery back only once the socket accepted the packet, and waits for 'drain'
 * when its buffer is full; the emitter counts a publish as done only when every delivery is
 * called back, and a publisher's next packets are read only after that. One socket that stops
 * reading would hold every publish with a delivery to it, then every publisher. Here a
 * delivery to a full socket is called back at once: its packet waits in that socket's buffer,
 * which is bounded instead:
 * - past `bytes` (unsent bytes beyond what the kernel holds) or `packets` (packets written since
 *   the buffer last emptied), the connection has `graceMs` to empty it, else it is closed;
 * - past twice either bound it is closed at once, so memory per connection stays bounded
 *   whatever the grace.
 * A closed connection loses what was queued for it; its user catches up from history.
 */
export function boundOutgoingQueue(client: Client, bound: QueueBound, onOverflow: (detail: { bytes: number; packets: number; reason: string }) => void) {
  const conn = client.conn as unknown as Duplex;
  let packets = 0;
  let timer: NodeJS.Timeout | undefined;
  const close = (reason: string) => {
    clearTimeout(timer);
    if (conn.destroyed) return;
    onOverflow({ bytes: conn.writableLength, packets, reason });
    conn.destroy(new Error(`outgoing queue ${reason}`));
  };
  conn.on('drain', () => {
    packets = 0;
    clearTimeout(timer);
    timer = undefined;
  });
  const internals = client as unknown as { waitForDrain(callback: (err: Error | null, client: Client) => void): void };
  internals.waitForDrain = (callback) => {
    packets++;
    const load = Math.max(conn.writableLength / bound.bytes, packets / bound.packets);
    if (load >= 2) close('over twice its bound');
    else if (load >= 1 && timer === undefined) timer = setTimeout(() => close(`not emptied within ${bound.graceMs} ms`), bound.graceMs);
    setImmediate(callback, null, client);
  };
}
