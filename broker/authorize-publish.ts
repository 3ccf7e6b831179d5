import type { Client, PublishPacket } from 'aedes';
import { envelopeJson } from '../core/envelope.js';
import { parseReceipt, parseTyping } from '../core/send-rules.js';
import type { BrokerContext } from './context.js';
import { parseTopic, topics } from './topics.js';

/**
 * PUBLISH, before the PUBACK. Chat messages go through the pipeline and are acknowledged only
 * once durable; the payload is rewritten into the envelope that subscribers receive. A
 * refused message is still acknowledged (the client must not retry it forever) but diverted
 * to a topic nobody can subscribe to, and the sender's inbox says why. Publishing outside the
 * topic table, or to a server-only topic, is protocol abuse and closes the connection.
 */
export function authorizePublish(ctx: BrokerContext) {
  return (client: Client | null, packet: PublishPacket, done: (err?: Error | null) => void) => {
    if (!client) return done(null);
    // Wills are discarded at CONNECT; should one still come from a closing client, drop it.
    if (client.closed) return done(new Error('wills are not used'));
    const conn = ctx.connections.get(client);
    const topic = parseTopic(packet.topic);
    if (!conn || !topic || topic.kind === 'presence' || topic.kind === 'inbox') {
      return done(new Error(`publishing to "${packet.topic}" is not allowed`));
    }
    packet.retain = false;
    const discard = () => {
      packet.topic = topics.discard;
      done(null);
    };
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;

    if (topic.kind === 'typing') {
      const typing = parseTyping(payload);
      if (typing === null) return discard();
      Promise.all([ctx.typingLimiter.take(`${conn.user.id}/${topic.chatId}`), ctx.membership.check(topic.chatId, conn.user.id)]).then(
        ([allowed, member]) => {
          if (!allowed || !member) return discard();
          packet.payload = Buffer.from(JSON.stringify({ userId: conn.user.id, typing }));
          done(null);
        },
        () => discard(),
      );
      return;
    }

    if (topic.kind === 'receipts') {
      // Never forwarded as published: the pointer moves, and Receipts announces it (coalesced).
      // The PUBACK waits until the pointer is durable. A bad receipt or a non-member's is dropped.
      const readSeq = parseReceipt(payload);
      if (readSeq === null) return discard();
      ctx.receipts.read(conn.user.id, topic.chatId, readSeq).then(
        () => discard(),
        (err: unknown) => {
          ctx.log.error({ err, chatId: topic.chatId }, 'read receipt could not be stored');
          discard();
        },
      );
      return;
    }

    ctx.sender.send(conn.user, topic.chatId, payload).then(
      (result) => {
        if (result.status !== 'accepted') return discard();
        packet.payload = Buffer.from(envelopeJson(result.envelope));
        done(null);
      },
      (err: unknown) => {
        // Not durable: no PUBACK. Closing lets the client resend (same clientMsgId) after reconnecting.
        ctx.log.error({ err, chatId: topic.chatId }, 'message could not be stored');
        done(err instanceof Error ? err : new Error(String(err)));
      },
    );
  };
}
