import mqttPacket from 'mqtt-packet';

type WriteToStream = typeof mqttPacket.writeToStream;
type Packet = Parameters<WriteToStream>[0];
type Stream = Parameters<WriteToStream>[1];

/** The packet bytes of one (topic, flags) for a payload, its message id left to fill in. */
interface Template {
  topic: string;
  first: number;
  bytes: Buffer;
  /** Where the message id goes (-1: QoS 0, none). */
  idAt: number;
}

/**
 * Every delivery Aedes makes goes through mqtt-packet's `writeToStream`, which writes a PUBLISH
 * as six writes to the socket (fixed header, length, topic length, topic, message id, payload),
 * each through the stream's machinery, after corking the stream for it and encoding the topic
 * again. The deliveries of one message differ only in their message id: here a PUBLISH of
 * MQTT 3.1.1 with a Buffer payload and a string topic (the only kind Aedes delivers: it writes
 * without the protocol version) is encoded once per payload, kept beside it, copied for each
 * delivery with its id set, and written in one call. Anything else goes to mqtt-packet as
 * before. Aedes looks `writeToStream` up on mqtt-packet's exports at each write, so this
 * replaces it there, once. The bytes are the same as mqtt-packet's: test/publish-writer.test.ts.
 */
export function writePublishesWhole(): void {
  if ((mqttPacket.writeToStream as { whole?: true }).whole) return;
  const original = mqttPacket.writeToStream;
  const templates = new WeakMap<Buffer, Template>();

  const template = (topic: string, first: number, payload: Buffer): Template => {
    const known = templates.get(payload);
    if (known && known.topic === topic && known.first === first) return known;
    const qos = (first >> 1) & 3;
    const topicLength = Buffer.byteLength(topic);
    const remaining = 2 + topicLength + (qos > 0 ? 2 : 0) + payload.length;
    let lengthBytes = 1;
    for (let n = remaining; n > 127; n = Math.floor(n / 128)) lengthBytes++;
    const bytes = Buffer.allocUnsafe(1 + lengthBytes + remaining);
    let at = 0;
    bytes[at++] = first;
    for (let n = remaining; ; ) {
      const digit = n % 128;
      n = Math.floor(n / 128);
      bytes[at++] = n > 0 ? digit | 128 : digit;
      if (n === 0) break;
    }
    bytes.writeUInt16BE(topicLength, at);
    at += 2;
    at += bytes.write(topic, at, 'utf8');
    const idAt = qos > 0 ? at : -1;
    if (qos > 0) at += 2;
    payload.copy(bytes, at);
    const made = { topic, first, bytes, idAt };
    templates.set(payload, made);
    return made;
  };

  const whole = function (packet: Packet, stream: Stream, opts?: Parameters<WriteToStream>[2]): boolean {
    const p = packet as { cmd: string; topic?: unknown; payload?: unknown; qos?: number; dup?: boolean; retain?: boolean; messageId?: unknown; properties?: unknown };
    const qos = p.qos ?? 0;
    if (
      p.cmd !== 'publish' || (opts as { protocolVersion?: number } | undefined)?.protocolVersion === 5 || p.properties !== undefined ||
      typeof p.topic !== 'string' || p.topic === '' || !Buffer.isBuffer(p.payload) || (qos !== 0 && qos !== 1 && qos !== 2) ||
      (qos > 0 && !(typeof p.messageId === 'number' && Number.isInteger(p.messageId) && p.messageId >= 0 && p.messageId <= 0xffff)) ||
      p.payload.length > 16_000_000
    ) {
      return original(packet, stream, opts);
    }
    const first = 0x30 | (p.dup ? 8 : 0) | (qos << 1) | (p.retain ? 1 : 0);
    const t = template(p.topic, first, p.payload);
    if (t.idAt < 0) return stream.write(t.bytes);
    const bytes = Buffer.allocUnsafe(t.bytes.length);
    t.bytes.copy(bytes);
    bytes.writeUInt16BE(p.messageId as number, t.idAt);
    return stream.write(bytes);
  };
  mqttPacket.writeToStream = Object.assign(whole, original, { whole: true as const }) as WriteToStream;
}
