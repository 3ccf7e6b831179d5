import { type Socket, createConnection, createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { coalesceWrites } from '../broker/coalesce-writes.js';

/**
 * A connection's writes of one turn of the event loop leave together (broker/coalesce-writes.ts),
 * over a real loopback socket: nothing is lost, reordered or kept back, `end` sends what is held,
 * and backpressure still reports a full buffer.
 */
describe('coalesced writes', () => {
  const open: { close(): void }[] = [];
  afterEach(() => open.splice(0).forEach((o) => o.close()));

  /** A server socket with coalesced writes, and the client's received chunks. */
  const pair = async () => {
    const server = createServer();
    open.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    const client = createConnection({ port: (server.address() as { port: number }).port, host: '127.0.0.1' });
    open.push({ close: () => client.destroy() });
    const chunks: Buffer[] = [];
    client.on('data', (d: Buffer) => chunks.push(d));
    const ended = new Promise<void>((resolve) => client.once('end', resolve));
    const socket = await accepted;
    socket.setNoDelay(true);
    coalesceWrites(socket);
    return { socket, chunks, ended, received: () => Buffer.concat(chunks).toString() };
  };

  it('sends the writes of one turn in one piece, in order, and those of the next turn after', async () => {
    const { socket, chunks, received } = await pair();
    for (let i = 0; i < 50; i++) socket.write(`p${i};`);
    expect(socket.writableLength).toBeGreaterThan(0); // held, not written yet
    await new Promise((resolve) => setImmediate(resolve));
    expect(socket.writableLength).toBe(0); // the end of the turn wrote them
    socket.write('next;');
    await expect.poll(received).toBe(`${Array.from({ length: 50 }, (_, i) => `p${i};`).join('')}next;`);
    // The first turn's 50 writes arrived as one chunk (one writev), before the next turn's.
    expect(chunks[0]!.toString()).toBe(Array.from({ length: 50 }, (_, i) => `p${i};`).join(''));
  });

  it('sends what is held when the stream ends in the same turn', async () => {
    const { socket, ended, received } = await pair();
    socket.write('last words');
    socket.end();
    await ended;
    expect(received()).toBe('last words');
  });

  it('reports a full buffer (write returns false) and drains once the turn is over', async () => {
    const { socket, received } = await pair();
    const big = 'x'.repeat(socket.writableHighWaterMark);
    expect(socket.write(big)).toBe(false);
    await new Promise((resolve) => socket.once('drain', resolve));
    await expect.poll(() => received().length).toBe(big.length);
  });

  it('a write after the socket is destroyed fails as on any socket, and nothing throws at the end of the turn', async () => {
    const { socket } = await pair();
    socket.write('held');
    socket.destroy();
    const failed = new Promise<Error | null | undefined>((resolve) => socket.write('late', resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(await failed).toBeInstanceOf(Error);
  });
});
