import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Accounts, Authenticated } from '../core/accounts.js';
import { unauthorized } from '../core/errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The signed-in caller (user and session): set by `authenticate`, null before it. */
    auth: Authenticated | null;
  }
  interface FastifyInstance {
    /** preHandler of the routes that need a signed-in user: reads `Authorization: Bearer
     * <token>`, checks it with `Accounts.authenticate` and sets `req.auth`; otherwise throws
     * `unauthorized`, saying why. */
    authenticate(req: FastifyRequest): Promise<void>;
  }
}

const BEARER = /^Bearer +([A-Za-z0-9._~+/=-]+)$/i;

/**
 * Authentication: decorates the instance with `authenticate` and the request with `auth`.
 * Wrapped by fastify-plugin, so the decorations belong to the scope that registers it and
 * reach the route plugins registered there after it.
 */
export const authPlugin = fp<{ accounts: Accounts }>(
  async (app, { accounts }) => {
    app.decorateRequest('auth', null);
    app.decorate('authenticate', async (req: FastifyRequest) => {
      const header = req.headers.authorization;
      const match = header === undefined ? null : BEARER.exec(header);
      if (!match) throw unauthorized(header === undefined ? 'missing Authorization: Bearer <token>' : 'malformed Authorization header');
      req.auth = await accounts.authenticate(match[1]!);
    });
  },
  { name: 'auth', fastify: '5.x' },
);

/** The signed-in caller, for handlers behind `authenticate`. */
export function caller(req: FastifyRequest): Authenticated {
  if (!req.auth) throw unauthorized();
  return req.auth;
}
