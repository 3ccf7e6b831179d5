import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ApiDeps } from '../app.js';

const Status = Type.Object({ status: Type.String() });

/** Liveness (the process answers) and readiness (its store answers), outside /api. */
export const healthRoutes: FastifyPluginAsyncTypebox<{ deps: ApiDeps }> = async (app, { deps }) => {
  app.get('/healthz', { schema: { hide: true, response: { 200: Status } } }, async () => ({ status: 'ok' }));

  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) =>
    reply.type(deps.metrics.contentType).send(await deps.metrics.render()),
  );

  app.get('/readyz', { schema: { hide: true, response: { 200: Status, 503: Status } } }, async (req, reply) => {
    try {
      await deps.store.ping();
      return { status: 'ready' };
    } catch (err) {
      req.log.warn({ err }, 'store not ready');
      return reply.code(503).send({ status: 'store unavailable' });
    }
  });
};
