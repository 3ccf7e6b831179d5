import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestServer, startTestServer } from './helpers/server.js';

/**
 * Specification: every HTTP response carries the security headers (docs/security.md), whatever
 * answered it: a route, a validation error, an authentication error, a 404, an error raised
 * before routing, health, metrics and the /docs UI. The Content-Security-Policy allows only
 * the server's own origin.
 */
describe('HTTP security headers', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer();
  });
  afterAll(() => srv.stop());

  /** A raw request, for paths fetch() would normalise or refuse. */
  const raw = (method: string, path: string) =>
    new Promise<{ status: number; headers: Record<string, string | string[] | undefined> }>((resolve, reject) => {
      const req = httpRequest(`${srv.url}${path}`, { method }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers }));
      });
      req.on('error', reject);
      req.end();
    });

  const cases: Array<[what: string, method: string, path: string, status: number]> = [
    ['health', 'GET', '/healthz', 200],
    ['metrics', 'GET', '/metrics', 200],
    ['the /docs UI', 'GET', '/docs', 200],
    ['a /docs asset', 'GET', '/docs/static/swagger-ui.css', 200],
    ['the OpenAPI document', 'GET', '/docs/json', 200],
    ['an unknown route', 'GET', '/api/nothing-here', 404],
    ['a request without a token', 'GET', '/api/chats', 401],
    ['a body that fails validation', 'POST', '/api/users/login', 400],
    ['a path with bad %-encoding (refused before routing)', 'GET', '/api/chats/%E0%A4%A', 400],
  ];

  it.each(cases)('%s (%s %s): %i with the security headers', async (_what, method, path, status) => {
    const res = await raw(method, path);
    expect(res.status).toBe(status);
    const h = res.headers;
    const csp = String(h['content-security-policy']);
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("object-src 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain('upgrade-insecure-requests'); // this server is reached over plain HTTP without TLS_CERT
    expect(csp).not.toMatch(/script-src[^;]*unsafe/);
    expect(h['x-content-type-options']).toBe('nosniff');
    expect(h['x-frame-options']).toBe('SAMEORIGIN');
    expect(h['referrer-policy']).toBe('no-referrer');
    expect(h['strict-transport-security']).toMatch(/^max-age=\d+/);
    expect(h['cross-origin-opener-policy']).toBe('same-origin');
    expect(h['cross-origin-resource-policy']).toBe('same-origin');
    expect(h['x-powered-by']).toBeUndefined();
  });

  it('the /docs page loads only scripts and styles of its own origin (it works under that policy)', async () => {
    const res = await fetch(`${srv.url}/docs/static/index.html`);
    const html = await res.text();
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/\bsrc="\.?\/?[^":]*"/); // relative: this origin
      expect(body!.trim()).toBe(''); // no inline script
    }
    for (const [, href] of html.matchAll(/<link\b[^>]*href="([^"]*)"/g)) expect(href).not.toMatch(/^(https?:)?\/\//);
  });
});
