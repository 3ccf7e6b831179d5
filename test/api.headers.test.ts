import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestServer, startTestServer } from './helpers/server.js';

/**
 * Specification: every HTTP response carries the security headers (docs/security.md), whatever
 * answered it: a route, a validation error, an authentication error, a 404, an error raised
 * before routing, health, metrics and the /docs UI. The Content-Security-Policy allows only
 * the server's own origin (and workers from blob: URLs, which mqtt.js starts).
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
    expect(csp).toContain("worker-src 'self' blob:"); // mqtt.js's timer worker (the browser spec sees no violation)
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

  /** Writes raw bytes on a fresh connection; resolves with everything received until it closes. */
  const rawExchange = (bytes: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(srv.port, '127.0.0.1', () => socket.write(bytes));
      let got = '';
      socket.on('data', (d) => (got += d));
      socket.on('error', reject);
      socket.on('close', () => resolve(got));
      setTimeout(() => socket.destroy(), 3000);
    });

  it("a request Node's HTTP parser refuses gets 400 with the error body, and the connection is closed", async () => {
    const answer = await rawExchange('NOT-HTTP at all\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toMatch(/\r\nConnection: close\r\n/i);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
    expect(body).toEqual({ error: { code: 'invalid_input', message: expect.stringMatching(/^malformed HTTP request/) } });
  });

  it.each([
    ['too large', 'application/json', JSON.stringify({ username: 'x'.repeat(70_000), password: 'y' }), 413, 'payload_too_large'],
    ['of a type the API does not read', 'text/plain', 'x'.repeat(20_000), 415, 'unsupported_media_type'],
  ])('a body refused before it is read (%s) closes a kept-alive connection, so its rest is never taken for a request', async (_what, type, body, status, code) => {
    const answer = await rawExchange(
      `POST /api/users/login HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    expect(answer).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(answer.match(/HTTP\/1\.1 /g)).toHaveLength(1); // one answer, not a second one for leftover bytes
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error.code).toBe(code);
  });
});
