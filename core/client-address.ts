import { isIPv4, isIPv6 } from 'node:net';

/**
 * The key per-address limits count a client under. IPv4: the address. IPv6: its /64 prefix,
 * since one subscriber usually holds a whole /64 and could otherwise take a fresh address for
 * every attempt. An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, what a dual-stack socket
 * reports for an IPv4 client) is the IPv4 address. Anything else is kept as it is.
 */
export function addressKey(ip: string): string {
  if (isIPv4(ip)) return ip;
  const bare = ip.split('%')[0]!; // a zone (fe80::1%eth0) names the interface, not the host
  if (!isIPv6(bare)) return ip;
  const groups = expand(bare);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join('.');
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (`::` filled in, a dotted IPv4 tail read). */
function expand(ip: string): number[] {
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const parse = (part: string | undefined): number[] =>
    !part
      ? []
      : part.split(':').flatMap((g) => {
          if (!g.includes('.')) return [parseInt(g, 16)];
          const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
          return [(a << 8) | b, (c << 8) | d];
        });
  const left = parse(head);
  const right = parse(tail);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}
