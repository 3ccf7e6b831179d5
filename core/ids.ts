import { randomFillSync } from 'node:crypto';

/** Random bytes drawn from the system in blocks: one call per 256 ids instead of one per id. */
const pool = Buffer.alloc(16 * 256);
let used = pool.length;

/**
 * UUID version 7 (RFC 9562): 48-bit millisecond timestamp, then random bits.
 * Time-ordered ids keep B-tree inserts local in SQLite and MongoDB, and contain only
 * [0-9a-f-], so they are safe inside MQTT topic levels and client ids.
 */
export function newId(now = Date.now()): string {
  if (used === pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  const b = pool.subarray(used, (used += 16));
  b.writeUIntBE(now, 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70; // version 7
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export const ID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
