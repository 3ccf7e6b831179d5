import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Chats } from '../../core/chats.js';
import { invalidInput, notMember } from '../../core/errors.js';
import type { Receipts } from '../../core/receipts.js';
import { caller } from '../auth.js';
import type { Presenter } from '../present.js';
import { ChatListQuery, ChatName, ChatNumberParam, Id, NumberPage, errors } from '../schemas.js';

const ChatReply = Type.Object({ chat: Type.Ref('Chat') });
const ChatsReply = Type.Object({ chats: Type.Array(Type.Ref('Chat')), hasMore: Type.Boolean() });
const MemberChatsReply = Type.Object({
  chats: Type.Array(Type.Ref('Chat')),
  hasMore: Type.Boolean(),
  nextCursor: Type.Optional(Type.String({ description: 'order=activity: the cursor of the next page, when hasMore' })),
});
/** Generous upper bound on list sizes; the 100-member rule answers 422 below it. */
const MAX_IDS = 1000;

/** Chats: create (direct or group), look up, list, and manage group members. */
export const chatsRoutes: FastifyPluginAsyncTypebox<{ chats: Chats; receipts: Receipts; presenter: Presenter }> = async (app, { chats, receipts, presenter }) => {
  app.addHook('preHandler', app.authenticate);
  const schema = { tags: ['chats'], security: [{ bearer: [] }] };

  app.get('/chats', {
    schema: { ...schema, summary: 'Public groups, by number', querystring: NumberPage, response: { 200: ChatsReply, ...errors(400, 401) } },
  }, async (req) => {
    const page = await chats.listPublic(req.query);
    return { chats: await presenter.chats(page.items, caller(req).user.id), hasMore: page.hasMore };
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
      return reply.code(created ? 201 : 200).send({ chat: await presenter.chat(chat, me) });
    }
    if (body.name === undefined) throw invalidInput('a group needs a name');
    const chat = await chats.createGroup(me, { name: body.name, memberIds: body.memberIds, visibility: body.visibility });
    return reply.code(201).send({ chat: await presenter.chat(chat, me) });
  });

  const listOf = (type: 'direct' | 'group') => ({
    schema: {
      ...schema,
      summary: `Your own ${type} chats (only your own id is allowed): by number, or newest activity first with order=activity`,
      params: Type.Object({ userId: Id }),
      querystring: ChatListQuery,
      response: { 200: MemberChatsReply, ...errors(400, 401, 403) },
    },
  });
  for (const [path, type] of [['one-to-one', 'direct'], ['group', 'group']] as const) {
    app.get(`/chats/${path}/:userId`, listOf(type), async (req) => {
      const me = caller(req).user.id;
      const { order, after, cursor, limit } = req.query;
      if (order !== 'activity') {
        if (cursor !== undefined) throw invalidInput('cursor goes with order=activity; order=number pages with after');
        const page = await chats.listOf(me, req.params.userId, type, { after, limit });
        return { chats: await presenter.chats(page.items, me), hasMore: page.hasMore };
      }
      if (after !== undefined) throw invalidInput('order=activity pages with cursor (the nextCursor of the previous page), not after');
      const [at, number] = cursor === undefined ? [] : cursor.split('.').map(Number);
      const page = await chats.listByActivity(me, req.params.userId, type, { after: at === undefined ? undefined : { at, number: number! }, limit });
      const last = page.items.at(-1);
      return {
        chats: await presenter.chats(page.items, me),
        hasMore: page.hasMore,
        ...(page.hasMore && last ? { nextCursor: `${last.lastActivityAt}.${last.number}` } : {}),
      };
    });
  }

  app.get('/chats/:number', {
    schema: { ...schema, summary: 'A chat by number (members; anyone for public groups)', params: ChatNumberParam, response: { 200: ChatReply, ...errors(400, 401, 403, 404) } },
  }, async (req) => {
    const me = caller(req).user.id;
    return { chat: await presenter.chat(await chats.getByNumber(me, req.params.number), me) };
  });

  app.post('/chats/:number/read', {
    schema: {
      ...schema,
      summary: 'Move your read pointer forward (never back; lowered to lastSeq)',
      params: ChatNumberParam,
      body: Type.Object({ readSeq: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }) }, { additionalProperties: false }),
      response: { 200: Type.Object({ readSeq: Type.Integer(), unread: Type.Integer() }), ...errors(400, 401, 403, 404) },
    },
  }, async (req) => {
    const me = caller(req).user.id;
    const chat = await chats.ofMember(me, req.params.number);
    const pointer = await receipts.read(me, chat.id, req.body.readSeq);
    if (!pointer) throw notMember(); // removed meanwhile
    const state = (await chats.states(me, [chat])).get(chat.id);
    return { readSeq: pointer.readSeq, unread: state?.unread ?? 0 };
  });

  app.get('/chats/:number/receipts', {
    schema: {
      ...schema,
      summary: "The members' read pointers (members only)",
      params: ChatNumberParam,
      response: {
        200: Type.Object({
          receipts: Type.Array(Type.Object({ userId: Id, readSeq: Type.Integer(), at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]) })),
        }),
        ...errors(400, 401, 403, 404),
      },
    },
  }, async (req) => {
    const pointers = await chats.receipts(caller(req).user.id, req.params.number);
    return { receipts: pointers.map((p) => ({ userId: p.userId, readSeq: p.readSeq, at: p.at === null ? null : new Date(p.at).toISOString() })) };
  });

  app.post('/chats/:number/members', {
    schema: {
      ...schema,
      summary: 'Owner adds members; anyone joins a public group by adding itself',
      params: ChatNumberParam,
      body: Type.Object({ userIds: Type.Array(Id, { minItems: 1, maxItems: MAX_IDS }) }, { additionalProperties: false }),
      response: { 200: ChatReply, ...errors(400, 401, 403, 404, 422) },
    },
  }, async (req) => {
    const me = caller(req).user.id;
    const { chat } = await chats.addMembers(me, req.params.number, req.body.userIds);
    return { chat: await presenter.chat(chat, me) };
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
