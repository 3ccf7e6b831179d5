import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Metrics } from '../../core/metrics.js';

const Status = Type.Object({ status: Type.String() });

/** Liveness (the process answers) and readiness (its store answers), outside /api. */
export const healthRoutes: FastifyPluginAsyncTypebox<{ metrics: Metrics; ready: () => Promise<void> }> = async (app, { metrics, ready }) => {
  app.get('/healthz', { schema: { hide: true, response: { 200: Status } } }, async () => ({ status: 'ok' }));

  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) =>
    reply.type(metrics.contentType).send(await metrics.render()),
  );

  app.get('/readyz', { schema: { hide: true, response: { 200: Status, 503: Status } } }, async (req, reply) => {
    try {
      await ready();
      return { status: 'ready' };
    } catch (err) {
      req.log.warn({ err }, 'store not ready');
      return reply.code(503).send({ status: 'store unavailable' });
    }
  });
};
