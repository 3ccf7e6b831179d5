import type { IncomingMessage, Server } from 'node:http';
import { BlockList, type Socket, isIPv4 } from 'node:net';

/**
 * The HTTP server's socket-level defences (docs/security.md, "HTTP"): a cap on the sockets one
 * client address holds open, TRUST_PROXY's addresses as a BlockList, and the lingering close of
 * a connection whose request body was refused unread.
 */

/** proxy-addr's names for address ranges (what Fastify's trustProxy also accepts). */
const NAMED_RANGES: Record<string, [address: string, bits: number][]> = {
  loopback: [['127.0.0.0', 8], ['::1', 128]],
  linklocal: [['169.254.0.0', 16], ['fe80::', 10]],
  uniquelocal: [['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['fc00::', 7]],
};

const family = (address: string) => (isIPv4(address) ? 'ipv4' : 'ipv6');

/** The addresses of TRUST_PROXY (addresses, CIDR ranges and the names above, as validated by
 * core/config.ts). An IPv4-mapped IPv6 address matches its IPv4 entry. */
export function proxyList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    for (const [address, bits] of NAMED_RANGES[entry] ?? [entryRange(entry)]) list.addSubnet(address, bits, family(address));
  }
  return list;
}

/** `10.0.0.0/8` as [address, bits]; a lone address is a range of one (/32, /128). */
function entryRange(entry: string): [string, number] {
  const [address = '', bits] = entry.split('/');
  return [address, bits !== undefined ? Number(bits) : family(address) === 'ipv4' ? 32 : 128];
}

/** One key per client: `::ffff:1.2.3.4` (a dual-stack listener's IPv4 client) is 1.2.3.4. */
const clientKey = (address: string) => (address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address);

/**
 * Caps the sockets open at once from one client address on this server (HTTP, and MQTT over
 * WebSocket, which upgrades sockets of the same server), counted from the TCP connection on, so
 * a socket that has not sent a byte counts too. Past the cap the new socket is destroyed at once:
 * an answer written before the request was read could be lost to the reset anyway, and a client
 * holding that many sockets is not a browser. Sockets from `exempt` (trusted proxies, which carry
 * many clients) are not counted. An address's count is deleted when it falls to zero.
 */
export function capSocketsPerAddress(server: Server, max: number, exempt: BlockList, onRefused: (address: string) => void): { addresses(): number } {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined || exempt.check(address, family(address))) return; // undefined: already gone
    const key = clientKey(address);
    const count = open.get(key) ?? 0;
    if (count >= max) {
      socket.destroy();
      onRefused(key);
      return;
    }
    open.set(key, count + 1);
    socket.once('close', () => {
      const left = open.get(key)! - 1;
      if (left === 0) open.delete(key);
      else open.set(key, left);
    });
  });
  return { addresses: () => open.size };
}

/** How long, and how many bytes, a refused body is read and dropped at most before closing. */
export const LINGER_MS = 2000;
export const LINGER_BYTES = 16 * 1024 * 1024;

/**
 * Closes the connection of a request answered before its body was read (413, 415) in stages,
 * once the answer is written: a client that writes its whole body before reading (no `Expect:
 * 100-continue`) otherwise loses the answer. Node destroys the socket as soon as the answer is
 * flushed; the kernel then answers the bytes still arriving with a reset, and the client sees
 * EPIPE or ECONNRESET instead of the 413 waiting in its receive buffer (RFC 9112, 9.6). So the
 * answer goes out with a FIN, and what still arrives is read and dropped (Node's parser discards
 * the refused body) until the body ends or the client closes, for at most LINGER_MS and
 * LINGER_BYTES; then the socket is destroyed.
 *
 * Node's HTTP server closes a `Connection: close` response's socket with `socket.destroySoon()`
 * (resOnFinish in lib/_http_server.js): this socket's own destroySoon does the above instead.
 */
export function closeLingering(req: IncomingMessage): void {
  const socket = req.socket as Socket & { destroySoon?: () => void };
  socket.destroySoon = () => {
    if (socket.destroyed) return;
    const start = socket.bytesRead;
    const deadline = Date.now() + LINGER_MS;
    let bodyDone = req.readableEnded;
    const closeIfDone = () => {
      if (bodyDone && socket.writableFinished) socket.destroy();
    };
    const bodyEnded = () => {
      bodyDone = true;
      closeIfDone();
    };
    req.once('end', bodyEnded);
    socket.once('end', bodyEnded); // the client closed its side: nothing more will come
    socket.once('finish', closeIfDone);
    const bound = setInterval(() => {
      if (Date.now() >= deadline || socket.bytesRead - start > LINGER_BYTES) socket.destroy();
    }, 100);
    socket.once('close', () => clearInterval(bound));
    socket.end();
    closeIfDone();
  };
}
