import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { type Envelope, envelopeJson } from '../../core/envelope.js';
import type { Chats } from '../../core/chats.js';
import { caller } from '../auth.js';
import { Id, MessageQuery, errors } from '../schemas.js';

const pageJson = (page: { messages: Envelope[]; hasMore: boolean }) => `{"messages":[${page.messages.map(envelopeJson).join(',')}],"hasMore":${page.hasMore}}`;

/** Message history: the stored log of a chat, for members, by seq. */
export const messagesRoutes: FastifyPluginAsyncTypebox<{ chats: Chats }> = async (app, { chats }) => {
  app.get('/messages/:chatId', {
    preHandler: app.authenticate,
    schema: {
      tags: ['messages'],
      security: [{ bearer: [] }],
      summary: 'History ascending by seq. No after: the latest page. after=<lastSeq>: catch up from there.',
      params: Type.Object({ chatId: Id }),
      querystring: MessageQuery,
      response: { 200: Type.Object({ messages: Type.Array(Type.Ref('Envelope')), hasMore: Type.Boolean() }), ...errors(400, 401, 403, 404) },
    },
    // A page is the envelopes' JSON as stored (and as delivered live), joined rather than
    // serialised again: that was most of this route's work.
    serializerCompiler: ({ httpStatus }) => (httpStatus === '200' ? pageJson : JSON.stringify),
  }, async (req) => chats.history(caller(req).user.id, req.params.chatId, req.query));
};
