import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Accounts, Caller } from '../../core/accounts.js';
import { PASSWORD_MAX } from '../../core/rules.js';
import type { Users } from '../../core/users.js';
import { caller } from '../auth.js';
import type { Presenter } from '../present.js';
import { DisplayName, Password, SearchQuery, UserPage, Username, errors } from '../schemas.js';

/** The client's address, and a signal for its going away before the answer (req.signal
 * would not do: it aborts once the body is read). */
function from(req: FastifyRequest, reply: FastifyReply): Caller {
  const gone = new AbortController();
  if (req.socket.destroyed) gone.abort(); // went away before this handler ran
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) gone.abort();
  });
  return { address: req.ip ?? 'unknown', signal: gone.signal }; // no ip: the socket is already gone
}

const UserReply = Type.Object({ user: Type.Ref('User') });
const UsersReply = Type.Object({ users: Type.Array(Type.Ref('User')), hasMore: Type.Boolean() });

/** Accounts: register, login/logout, who am I, who is online, search. */
export const usersRoutes: FastifyPluginAsyncTypebox<{ accounts: Accounts; users: Users; presenter: Presenter }> = async (app, { accounts, users, presenter }) => {
  const auth = { preHandler: app.authenticate, schema: { security: [{ bearer: [] }] } };
  const tags = ['users'];

  app.post('/users', {
    schema: {
      tags, summary: 'Register an account',
      body: Type.Object({ username: Username, password: Password, displayName: Type.Optional(DisplayName) }, { additionalProperties: false }),
      response: { 201: UserReply, ...errors(400, 409, 429, 503) },
    },
  }, async (req, reply) => {
    const user = await accounts.register(req.body, from(req, reply));
    return reply.code(201).send({ user: await presenter.user(user, user.id) });
  });

  app.post('/users/login', {
    schema: {
      tags, summary: 'Log in: returns a token for REST (Bearer) and MQTT (password)',
      body: Type.Object(
        { username: Type.String({ minLength: 1, maxLength: 64 }), password: Type.String({ minLength: 1, maxLength: PASSWORD_MAX * 4 }) },
        { additionalProperties: false },
      ),
      response: { 200: Type.Object({ token: Type.String(), expiresAt: Type.String({ format: 'date-time' }), user: Type.Ref('User') }), ...errors(400, 401, 429, 503) },
    },
  }, async (req, reply) => {
    const { token, expiresAt, user } = await accounts.login(req.body.username, req.body.password, from(req, reply));
    return { token, expiresAt: new Date(expiresAt).toISOString(), user: await presenter.user(user, user.id) };
  });

  app.post('/users/logout', {
    ...auth,
    schema: { ...auth.schema, tags, summary: 'Revoke this token at once (REST and MQTT)', response: { 204: Type.Null(), ...errors(401) } },
  }, async (req, reply) => {
    await accounts.logout(caller(req).session);
    return reply.code(204).send(null);
  });

  app.get('/users', {
    ...auth,
    schema: {
      ...auth.schema, tags, summary: 'Users online now that you share a chat with (and you), by username',
      querystring: UserPage, response: { 200: UsersReply, ...errors(400, 401) },
    },
  }, async (req) => {
    const me = caller(req).user.id;
    const page = await users.online(me, req.query);
    // Every one of them is the caller or a co-member.
    return { users: await presenter.users(page.items, me, new Set(page.items.map((u) => u.id))), hasMore: page.hasMore };
  });

  app.get('/users/me', {
    ...auth,
    schema: { ...auth.schema, tags, summary: 'The signed-in user', response: { 200: UserReply, ...errors(401) } },
  }, async (req) => ({ user: await presenter.user(caller(req).user, caller(req).user.id) }));

  app.get('/users/search', {
    ...auth,
    schema: {
      ...auth.schema, tags, summary: 'Find users whose username or display name contains q (literal, case-insensitive)',
      querystring: SearchQuery, response: { 200: UsersReply, ...errors(400, 401) },
    },
  }, async (req) => {
    const { q, after, limit } = req.query;
    const page = await users.search(q, { after, limit });
    return { users: await presenter.users(page.items, caller(req).user.id), hasMore: page.hasMore };
  });
};
