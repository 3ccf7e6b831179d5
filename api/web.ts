import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';

const notFound = (reply: FastifyReply, message: string) => reply.code(404).send({ error: { code: 'not_found', message } });

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

/** Where the build put the web client (dist/web, next to dist/api): the one with assets/. */
function builtClient(): string | null {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const dir of [join(here, '../web'), join(here, '../dist/web')]) {
    if (existsSync(join(dir, 'index.html')) && existsSync(join(dir, 'assets'))) return dir;
  }
  return null;
}

/**
 * The browser client at `/` (web/, built by `npm run build` into dist/web). The files are few and
 * small, so they are read once and served from memory. Assets carry a content hash in their
 * names: cached for a year, immutable; index.html is revalidated on every load, so a new build
 * reaches browsers at once.
 */
export function webRoutes(app: FastifyInstance): void {
  const dir = builtClient();
  if (!dir) {
    app.get('/', { schema: { hide: true } }, async (_req, reply) => notFound(reply, 'the web client is not built: run `npm run build`'));
    return;
  }
  const files = new Map<string, { body: Buffer; type: string }>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else files.set(`/${relative(dir, path).split(sep).join('/')}`, { body: readFileSync(path), type: TYPES[extname(name)] ?? 'application/octet-stream' });
    }
  };
  walk(dir);
  const index = files.get('/index.html')!;
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.header('cache-control', 'no-cache').type(index.type).send(index.body));
  // Browsers ask for /favicon.ico on their own, and log a 404 there in the page's console as an
  // error: without an icon in the build, the answer is 204, no icon.
  const icon = files.get('/favicon.ico');
  app.get('/favicon.ico', { schema: { hide: true } }, async (_req, reply) =>
    (icon ? reply.type(icon.type).send(icon.body) : reply.code(204).send()),
  );
  app.get('/assets/*', { schema: { hide: true } }, async (req, reply) => {
    const file = files.get(req.url.split('?')[0]!);
    if (!file) return notFound(reply, `no file ${req.url.split('?')[0]}`);
    return reply.header('cache-control', 'public, max-age=31536000, immutable').type(file.type).send(file.body);
  });
}
