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
  parser.parse = (buf: Buffer) => {
    const verdict = scanner.scan(buf);
    if (verdict === 'ok') return parse(buf);
    if (verdict === 'oversize') onOversize(scanner.announced);
    const conn = client.conn as unknown as { destroy(err?: Error): void };
    conn.destroy(new Error(verdict === 'oversize' ? `packet of ${scanner.announced} bytes exceeds ${maxPacket}` : 'malformed remaining length'));
    return 0;
  };
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
