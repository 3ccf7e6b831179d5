import type { Client } from 'aedes';

/**
 * Aedes has no maximum packet size: its parser buffers whatever length a fixed header
 * announces. The guard sits in front of that parser, on the bytes Aedes has just read from the
 * socket: it follows packet boundaries through each packet's remaining-length field and
 * destroys the connection as soon as a packet (fixed header included) would exceed
 * `maxPacket` bytes, before any of its body reaches the parser's buffer. Nothing is added to the
 * write path: outgoing packets go from Aedes to the socket directly.
 */
export function guardPacketSize(client: Client, maxPacket: number, onOversize: (announced: number) => void) {
  const parser = (client as unknown as { _parser: { parse(buf: Buffer): number } })._parser;
  const parse = parser.parse.bind(parser);
  const scanner = new PacketScanner(maxPacket);
  const level = new ProtocolLevelCheck();
  const conn = client.conn as unknown as { destroy(err?: Error): void; end(chunk: Buffer): void };
  let refused = false;
  parser.parse = (buf: Buffer) => {
    if (refused) return 0; // nothing more is read from a connection being refused
    if (level.pending && level.see(buf) === 'unsupported') {
      // MQTT-3.1.2-2: CONNACK 0x01 (unacceptable protocol level), then disconnect. The
      // parser would only close the connection.
      refused = true;
      conn.end(CONNACK_UNACCEPTABLE_PROTOCOL);
      return 0;
    }
    const verdict = scanner.scan(buf);
    if (verdict === 'ok') return parse(buf);
    if (verdict === 'oversize') onOversize(scanner.announced);
    conn.destroy(new Error(verdict === 'oversize' ? `packet of ${scanner.announced} bytes exceeds ${maxPacket}` : 'malformed remaining length'));
    return 0;
  };
}

const CONNACK_UNACCEPTABLE_PROTOCOL = Buffer.from([0x20, 0x02, 0x00, 0x01]);

/** Protocol levels the parser reads: 3.1, 3.1.1, 5 (Aedes answers 5 with CONNACK 0x01 itself),
 * and 3.1 and 3.1.1 with the bridge flag (the high bit) that Mosquitto bridges set. */
const READ_LEVELS = new Set([3, 4, 5, 0x83, 0x84]);

/**
 * Reads the protocol level of a connection's first packet, if it is a CONNECT naming MQTT
 * ('MQTT' or 3.1's 'MQIsdp'): READ_LEVELS go on to Aedes; any other is 'unsupported'. Keeps the
 * first bytes across chunks until it can tell; anything that is not such a CONNECT is left to
 * the parser.
 */
export class ProtocolLevelCheck {
  pending = true;
  private head: Buffer = Buffer.alloc(0);

  see(chunk: Buffer): 'supported' | 'unsupported' | 'unknown' | 'other' {
    this.head = this.head.length === 0 ? chunk : Buffer.concat([this.head, chunk]);
    const verdict = levelOf(this.head);
    if (verdict !== 'unknown' || this.head.length >= 32) {
      this.pending = false;
      this.head = Buffer.alloc(0);
    }
    return verdict;
  }
}

function levelOf(b: Buffer): 'supported' | 'unsupported' | 'unknown' | 'other' {
  if (b.length === 0) return 'unknown';
  if (b[0] !== 0x10) return 'other';
  let i = 1;
  let remaining = 0;
  for (let multiplier = 1; ; i++, multiplier *= 128) {
    if (i >= b.length) return 'unknown';
    remaining += (b[i]! & 0x7f) * multiplier;
    if ((b[i]! & 0x80) === 0) break;
    if (i === 4) return 'other'; // a fifth length byte: the scanner's to refuse
  }
  const nameAt = i + 1;
  const end = nameAt + remaining; // the CONNECT's own bytes end here: never judge by the next packet's
  if (b.length < nameAt + 2) return 'unknown';
  const nameLength = b.readUInt16BE(nameAt);
  if (nameLength !== 4 && nameLength !== 6) return 'other';
  const levelAt = nameAt + 2 + nameLength;
  if (levelAt >= end) return 'other';
  if (b.length <= levelAt) return 'unknown';
  const name = b.toString('latin1', nameAt + 2, levelAt);
  if (name !== 'MQTT' && name !== 'MQIsdp') return 'other';
  return READ_LEVELS.has(b[levelAt]!) ? 'supported' : 'unsupported';
}

/** Follows MQTT packet boundaries across chunks: type byte, 1-4 length bytes, body. */
export class PacketScanner {
  private state: 'type' | 'length' | 'body' = 'type';
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private bodyLeft = 0;
  /** Size of the packet found too large (fixed header included). */
  announced = 0;

  constructor(private readonly maxPacket: number) {}

  scan(chunk: Buffer): 'ok' | 'oversize' | 'malformed' {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'body') {
        const take = Math.min(this.bodyLeft, chunk.length - i);
        i += take;
        this.bodyLeft -= take;
        if (this.bodyLeft === 0) this.state = 'type';
      } else if (this.state === 'type') {
        i++;
        this.state = 'length';
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
      } else {
        const byte = chunk[i++]!;
        this.length += (byte & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        this.lengthBytes++;
        // The whole packet: type byte, length bytes so far, and the body they announce.
        if (1 + this.lengthBytes + this.length > this.maxPacket) {
          this.announced = 1 + this.lengthBytes + this.length;
          return 'oversize';
        }
        if ((byte & 0x80) === 0) {
          this.bodyLeft = this.length;
          this.state = this.bodyLeft === 0 ? 'type' : 'body';
        } else if (this.lengthBytes === 4) {
          return 'malformed'; // a fifth length byte
        }
      }
    }
    return 'ok';
  }
}
