import type { Duplex } from 'node:stream';

/**
 * Holds a connection's writes until the event loop has handled what its current poll found
 * (every socket's reads, the store's answers), so that the packets the connection gets
 * meanwhile (the deliveries of several messages, PUBACKs) leave in one writev, not one each:
 * one system call a connection a turn of the loop, as Mosquitto's loop writes. mqtt-packet
 * corks each packet only until the next tick. A packet waits for nothing but the rest of the
 * turn: no timer. Measured with the fanout scenario (bench/README.md, "Writes coalesced").
 *
 * Backpressure is as before: `write` returns false past the stream's high-water mark, and
 * 'drain' comes once the held writes are out; `end` writes what is held.
 */
export function coalesceWrites(stream: Duplex): void {
  let held = false;
  const release = () => {
    if (!held) return;
    held = false;
    stream.uncork();
  };
  const write = stream.write;
  stream.write = function (this: Duplex, ...args: Parameters<Duplex['write']>) {
    // Never hold more than the stream's high-water mark: past it the held bytes go to the kernel
    // now, so that write() returns false (and the outgoing-queue bound counts) only for what the
    // kernel does not take, as without holding.
    if (held && stream.writableLength >= stream.writableHighWaterMark) release();
    if (!held) {
      held = true;
      stream.cork();
      setImmediate(release);
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as Duplex['write'];
}
