import { request } from 'node:http';
import type { HttpResult, Json } from './server.js';

/**
 * A JSON request over real HTTP from a chosen loopback source address (127.x.y.z), for specs
 * of per-address limits: fetch cannot pick its source address. One connection per request;
 * `signal` closes it (a client that gives up).
 */
export function requestFrom(localAddress: string, base: string, method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<HttpResult> {
  const url = new URL(path, base);
  const text = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, localAddress, agent: false, ...(signal ? { signal } : {}), headers: text === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          let parsed: Json = raw;
          try {
            parsed = raw === '' ? null : JSON.parse(raw);
          } catch {
            /* not JSON: keep the text */
          }
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
          resolve({ status: res.statusCode ?? 0, body: parsed, headers });
        });
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

/** `requestFrom` bound to one source address and server, shaped like the Http helper's posts. */
export function httpFrom(localAddress: string, base: string) {
  return {
    post: (path: string, body?: unknown, signal?: AbortSignal) => requestFrom(localAddress, base, 'POST', path, body, signal),
    get: (path: string) => requestFrom(localAddress, base, 'GET', path),
  };
}
