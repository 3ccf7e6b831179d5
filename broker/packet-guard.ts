import { Duplex } from 'node:stream';

/**
 * Aedes has no maximum packet size: its parser buffers whatever length a fixed header
 * announces. PacketGuard sits between the socket and Aedes, reads each packet's
 * remaining-length field as bytes arrive, and destroys the connection as soon as a packet
 * (fixed header included) would exceed `maxPacket` bytes, before any of its body is buffered.
 */
export class PacketGuard extends Duplex {
  private state: 'type' | 'length' | 'body' = 'type';
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private bodyLeft = 0;

  constructor(
    private readonly inner: Duplex,
    private readonly maxPacket: number,
    private readonly onOversize: (announced: number) => void = () => {},
  ) {
    super({ allowHalfOpen: false });
    inner.on('data', (chunk: Buffer) => {
      if (!this.check(chunk)) return;
      if (!this.push(chunk)) inner.pause();
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    inner.on('close', () => this.destroy());
  }

  /** Scans packet boundaries; false (and the connection destroyed) on an oversize packet. */
  private check(chunk: Buffer): boolean {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'type') {
        i++;
        this.state = 'length';
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
      } else if (this.state === 'length') {
        const byte = chunk[i++]!;
        this.length += (byte & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        this.lengthBytes++;
        // The whole packet: type byte, length bytes so far, and the body they announce.
        if (1 + this.lengthBytes + this.length > this.maxPacket) {
          this.onOversize(1 + this.lengthBytes + this.length);
          this.destroy();
          return false;
        }
        if ((byte & 0x80) === 0) {
          this.bodyLeft = this.length;
          this.state = this.bodyLeft === 0 ? 'type' : 'body';
        } else if (this.lengthBytes === 4) {
          this.destroy(); // malformed: a fifth length byte
          return false;
        }
      } else {
        const take = Math.min(this.bodyLeft, chunk.length - i);
        i += take;
        this.bodyLeft -= take;
        if (this.bodyLeft === 0) this.state = 'type';
      }
    }
    return true;
  }

  override _read() {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void) {
    if (this.inner.destroyed) return cb();
    this.inner.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void) {
    this.inner.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void) {
    this.inner.destroy();
    cb(err);
  }
}
