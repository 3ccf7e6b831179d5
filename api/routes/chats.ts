import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Chats } from '../../core/chats.js';
import { invalidInput } from '../../core/errors.js';
import { caller } from '../auth.js';
import type { Presenter } from '../present.js';
import { ChatName, ChatNumberParam, Id, NumberPage, errors } from '../schemas.js';

const ChatReply = Type.Object({ chat: Type.Ref('Chat') });
const ChatsReply = Type.Object({ chats: Type.Array(Type.Ref('Chat')), hasMore: Type.Boolean() });
/** Generous upper bound on list sizes; the 100-member rule answers 422 below it. */
const MAX_IDS = 1000;

/** Chats: create (direct or group), look up, list, and manage group members. */
export const chatsRoutes: FastifyPluginAsyncTypebox<{ chats: Chats; presenter: Presenter }> = async (app, { chats, presenter }) => {
  app.addHook('preHandler', app.authenticate);
  const schema = { tags: ['chats'], security: [{ bearer: [] }] };

  app.get('/chats', {
    schema: { ...schema, summary: 'Public groups, by number', querystring: NumberPage, response: { 200: ChatsReply, ...errors(400, 401) } },
  }, async (req) => {
    const page = await chats.listPublic(req.query);
    return { chats: await presenter.chats(page.items), hasMore: page.hasMore };
  });

  app.post('/chats', {
    schema: {
      ...schema,
      summary: 'Open a direct chat (200 with the existing one if the pair has one) or create a group',
      body: Type.Object(
        {
          type: Type.Union([Type.Literal('direct'), Type.Literal('group')]),
          memberIds: Type.Array(Id, { maxItems: MAX_IDS, description: 'direct: the other user; group: members besides you' }),
          name: Type.Optional(ChatName),
          visibility: Type.Optional(Type.Union([Type.Literal('public'), Type.Literal('private')], { description: 'groups only; default private' })),
        },
        { additionalProperties: false },
      ),
      response: { 200: ChatReply, 201: ChatReply, ...errors(400, 401, 404, 422) },
    },
  }, async (req, reply) => {
    const me = caller(req).user.id;
    const body = req.body;
    if (body.type === 'direct') {
      if (body.memberIds.length !== 1) throw invalidInput('a direct chat takes exactly one memberId: the other user');
      if (body.name !== undefined || body.visibility !== undefined) throw invalidInput('direct chats have no name or visibility');
      const { chat, created } = await chats.openDirect(me, body.memberIds[0]!);
      return reply.code(created ? 201 : 200).send({ chat: await presenter.chat(chat) });
    }
    if (body.name === undefined) throw invalidInput('a group needs a name');
    const chat = await chats.createGroup(me, { name: body.name, memberIds: body.memberIds, visibility: body.visibility });
    return reply.code(201).send({ chat: await presenter.chat(chat) });
  });

  const listOf = (type: 'direct' | 'group') => ({
    schema: {
      ...schema,
      summary: `Your own ${type} chats, by number (only your own id is allowed)`,
      params: Type.Object({ userId: Id }),
      querystring: NumberPage,
      response: { 200: ChatsReply, ...errors(400, 401, 403) },
    },
  });
  for (const [path, type] of [['one-to-one', 'direct'], ['group', 'group']] as const) {
    app.get(`/chats/${path}/:userId`, listOf(type), async (req) => {
      const page = await chats.listOf(caller(req).user.id, req.params.userId, type, req.query);
      return { chats: await presenter.chats(page.items), hasMore: page.hasMore };
    });
  }

  app.get('/chats/:number', {
    schema: { ...schema, summary: 'A chat by number (members; anyone for public groups)', params: ChatNumberParam, response: { 200: ChatReply, ...errors(400, 401, 403, 404) } },
  }, async (req) => ({ chat: await presenter.chat(await chats.getByNumber(caller(req).user.id, req.params.number)) }));

  app.post('/chats/:number/members', {
    schema: {
      ...schema,
      summary: 'Owner adds members; anyone joins a public group by adding itself',
      params: ChatNumberParam,
      body: Type.Object({ userIds: Type.Array(Id, { minItems: 1, maxItems: MAX_IDS }) }, { additionalProperties: false }),
      response: { 200: ChatReply, ...errors(400, 401, 403, 404, 422) },
    },
  }, async (req) => {
    const { chat } = await chats.addMembers(caller(req).user.id, req.params.number, req.body.userIds);
    return { chat: await presenter.chat(chat) };
  });

  app.delete('/chats/:number/members/:userId', {
    schema: {
      ...schema,
      summary: 'Leave (your own id) or, as owner, remove a member',
      params: Type.Object({ number: ChatNumberParam.properties.number, userId: Id }),
      response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
    },
  }, async (req, reply) => {
    await chats.removeMember(caller(req).user.id, req.params.number, req.params.userId);
    return reply.code(204).send(null);
  });
};
