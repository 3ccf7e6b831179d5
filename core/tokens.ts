import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Login tokens are compact JWTs (HS256 only) carrying the user id (`sub`) and a session id
 * (`sid`). The signature and expiry are checked here; whether the session was revoked
 * (logout) is the caller's check against the session store.
 */
export interface TokenClaims {
  sub: string;
  sid: string;
  iat: number;
  exp: number;
}

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

const sign = (secret: string, data: string) => createHmac('sha256', secret).update(data).digest();

export function issueToken(secret: string, claims: TokenClaims): string {
  const body = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `${body}.${sign(secret, body).toString('base64url')}`;
}

export type TokenCheck = { ok: true; claims: TokenClaims } | { ok: false; reason: 'malformed' | 'bad_signature' | 'expired' };

/** Node's base64url decoder skips what is not in the alphabet (`=`, `!`, spaces) and ignores
 * unused low bits of the last character, so several texts decode to one signature. A token is
 * accepted only in the one text this server writes: each segment must re-encode to itself. */
const canonical = (segment: string) => /^[A-Za-z0-9_-]+$/.test(segment) && Buffer.from(segment, 'base64url').toString('base64url') === segment;

/** The one check of a token, for REST and MQTT alike. */
export function verifyToken(secret: string, token: string, nowSeconds = Math.floor(Date.now() / 1000)): TokenCheck {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== HEADER || token.length > 2048) return { ok: false, reason: 'malformed' };
  const [, payload, signature] = parts as [string, string, string];
  if (!canonical(payload) || !canonical(signature)) return { ok: false, reason: 'malformed' };
  const expected = sign(secret, `${HEADER}.${payload}`);
  const given = Buffer.from(signature, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'bad_signature' };
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (!isClaims(claims)) return { ok: false, reason: 'malformed' };
  if (claims.exp <= nowSeconds) return { ok: false, reason: 'expired' };
  return { ok: true, claims };
}

function isClaims(v: unknown): v is TokenClaims {
  const c = v as Partial<TokenClaims> | null;
  return (
    typeof c === 'object' && c !== null &&
    typeof c.sub === 'string' && typeof c.sid === 'string' &&
    Number.isInteger(c.iat) && Number.isInteger(c.exp)
  );
}
