import { Writable } from 'node:stream';
import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { writePublishesWhole } from '../broker/publish-writer.js';

/** A stream that keeps what is written to it, a chunk per write. */
const sink = () => {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  return { stream, chunks, bytes: () => Buffer.concat(chunks) };
};

/**
 * The deliveries' writer (broker/publish-writer.ts) puts the same bytes on the wire as
 * mqtt-packet's own `generate`, one write a PUBLISH, for every shape Aedes delivers; packets of
 * any other kind, or publishes it does not take, still go through mqtt-packet.
 */
describe('PUBLISH packets written whole', () => {
  writePublishesWhole();
  writePublishesWhole(); // a second call changes nothing

  const payloadOf = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => 32 + (i % 90)));
  const cases = [
    ...[0, 1, 100, 121, 122, 123, 124, 16_370, 16_380, 16_400, 2_097_200].map((n) => ({ what: `payload of ${n} bytes`, topic: 'chats/c1/messages', payload: payloadOf(n) })),
    { what: 'a topic of multibyte characters', topic: 'chats/채팅/메시지😀', payload: Buffer.from('{"text":"안녕"}') },
  ];
  const flags = [
    { qos: 0 as const, retain: false, dup: false },
    { qos: 1 as const, retain: false, dup: false, messageId: 1 },
    { qos: 1 as const, retain: true, dup: true, messageId: 65535 },
    { qos: 2 as const, retain: false, dup: false, messageId: 300 },
    { qos: 0 as const, retain: true, dup: false },
  ];

  for (const c of cases) {
    it(`${c.what}: the bytes of mqtt-packet, in one write, for each QoS and flag`, () => {
      for (const f of flags) {
        const packet = { cmd: 'publish' as const, topic: c.topic, payload: c.payload, ...f };
        const out = sink();
        expect(mqttPacket.writeToStream(packet, out.stream)).toBe(true);
        expect(out.chunks).toHaveLength(1);
        expect(out.bytes().equals(mqttPacket.generate(packet))).toBe(true);
        // The same payload again with another id (the next recipient): only the id differs.
        if (f.qos > 0) {
          const next = sink();
          mqttPacket.writeToStream({ ...packet, messageId: 7 }, next.stream);
          expect(next.bytes().equals(mqttPacket.generate({ ...packet, messageId: 7 }))).toBe(true);
          expect(out.bytes().equals(mqttPacket.generate(packet))).toBe(true); // the first copy unchanged
        }
      }
    });
  }

  it('the same payload under another topic gets that topic', () => {
    const payload = Buffer.from('shared');
    for (const topic of ['a/b', 'discarded', 'a/b']) {
      const out = sink();
      mqttPacket.writeToStream({ cmd: 'publish', topic, payload, qos: 1, dup: false, retain: false, messageId: 9 }, out.stream);
      expect(out.bytes().equals(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, dup: false, retain: false, messageId: 9 }))).toBe(true);
    }
  });

  it('other packets and publishes it does not take are mqtt-packet\'s, as before', async () => {
    const others = [
      { cmd: 'puback' as const, messageId: 12 },
      { cmd: 'connack' as const, returnCode: 0, sessionPresent: false },
      { cmd: 'publish' as const, topic: 'a/b', payload: 'a string payload', qos: 0 as const, dup: false, retain: false },
      { cmd: 'publish' as const, topic: Buffer.from('a/b'), payload: Buffer.from('x'), qos: 0 as const, dup: false, retain: false },
    ];
    for (const packet of others) {
      const out = sink();
      mqttPacket.writeToStream(packet as never, out.stream);
      await new Promise((resolve) => setImmediate(resolve)); // mqtt-packet corks the stream until the next tick
      expect(out.chunks.length).toBeGreaterThan(1); // mqtt-packet writes a packet in parts
      expect(out.bytes().equals(mqttPacket.generate(packet as never))).toBe(true);
    }
    // What mqtt-packet refuses, it still refuses: a QoS 1 publish without a message id.
    const out = sink();
    const failed = new Promise<Error>((resolve) => out.stream.on('error', resolve));
    expect(mqttPacket.writeToStream({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos: 1, dup: false, retain: false } as never, out.stream)).toBe(false);
    expect((await failed).message).toMatch(/Invalid messageId/);
  });
});
