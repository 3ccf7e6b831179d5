import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { type Envelope, envelopeJson } from '../../core/envelope.js';
import type { Chats } from '../../core/chats.js';
import { caller } from '../auth.js';
import { Id, MessageQuery, MessageSearchQuery, errors } from '../schemas.js';
import type { MessageEdits } from '../../core/message-edits.js';

const pageJson = (page: { messages: Envelope[]; hasMore: boolean }) => `{"messages":[${page.messages.map(envelopeJson).join(',')}],"hasMore":${page.hasMore}}`;

const SeqParams = Type.Object({ chatId: Id, seq: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }) });

/** Message history (the stored log of a chat, for members, by seq), edits, deletions and search. */
export const messagesRoutes: FastifyPluginAsyncTypebox<{ chats: Chats; edits: MessageEdits }> = async (app, { chats, edits }) => {
  const schema = { tags: ['messages'], security: [{ bearer: [] }] };

  app.get('/messages/search', {
    preHandler: app.authenticate,
    schema: {
      ...schema,
      summary: "Messages of your chats (or of chatId) containing q as literal text, case-insensitively, in any script; newest first. before: the id of the last result seen",
      querystring: MessageSearchQuery,
      response: { 200: Type.Object({ messages: Type.Array(Type.Ref('Envelope')), hasMore: Type.Boolean() }), ...errors(400, 401, 403, 404, 429, 503) },
    },
  }, async (req) => chats.search(caller(req).user.id, req.query));

  app.patch('/messages/:chatId/:seq', {
    preHandler: app.authenticate,
    schema: {
      ...schema,
      summary: 'Edit your message: a new entry in the stream; the message shows the new text and editedAt',
      params: SeqParams,
      body: Type.Object({ text: Type.String() }, { additionalProperties: false }),
      response: { 200: Type.Object({ message: Type.Ref('Envelope') }), ...errors(400, 401, 403, 404, 409) },
    },
  }, async (req) => ({ message: await edits.edit(caller(req).user.id, req.params.chatId, req.params.seq, req.body.text) }));

  app.delete('/messages/:chatId/:seq', {
    preHandler: app.authenticate,
    schema: {
      ...schema,
      summary: "Delete your message (a group's owner: any message): a new entry in the stream; deleting twice is one deletion",
      params: SeqParams,
      response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
    },
  }, async (req, reply) => {
    await edits.remove(caller(req).user.id, req.params.chatId, req.params.seq);
    return reply.code(204).send(null);
  });

  app.get('/messages/:chatId', {
    preHandler: app.authenticate,
    schema: {
      ...schema,
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
