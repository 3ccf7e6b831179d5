/**
 * Baseline: plain Aedes, the version the chat server embeds, with default options (in-memory
 * persistence and emitter, no hooks), behind a TCP server with TCP_NODELAY on each socket as
 * the chat server sets it. Its own process, like the other servers; sends `{ port }` to the
 * bench parent once listening and exits on SIGTERM or when the parent goes.
 */
import { Aedes } from 'aedes';
import { type AddressInfo, createServer } from 'node:net';

const aedes = await Aedes.createBroker();
const server = createServer((socket) => {
  socket.setNoDelay(true);
  aedes.handle(socket);
});
server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port });
});

const stop = () => {
  server.close();
  aedes.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('disconnect', stop);
// Ctrl-C reaches the whole process group; the bench parent decides what happens.
process.on('SIGINT', () => {});
