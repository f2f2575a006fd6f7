/**
 * Client identity: HMAC-SHA256 signed, expiring tokens in JWT form (HS256), as Centrifugo uses.
 *
 * A token names the id a client may log in as (`sub`) and, optionally, further ids it may also
 * log in as on the same connection (`ids`, for `?also=`). `exp` is required: a token that never
 * expires is a password. The gateway checks the signature with a constant-time compare and
 * disconnects a stream whose token expires while it is open (reason 3005, reconnect with a fresh
 * token).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { UnauthorizedError } from '../errors.js';
import { idProblem } from '../ids.js';

/** The claims Switchboard reads. Times are seconds since the Unix epoch. */
export interface TokenClaims {
  /** The id this token logs in as. */
  readonly sub: string;
  /** Extra ids the holder may also log in as on one connection. */
  readonly ids?: readonly string[];
  /** Expiry, seconds since the epoch. */
  readonly exp: number;
  /** Issued at, seconds since the epoch. */
  readonly iat?: number;
}

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

/** Shortest secret accepted (bytes): HS256 secrets shorter than the hash are guessable. */
export const MIN_SECRET_BYTES = 32;

function sign(secret: string, data: string): Buffer {
  return createHmac('sha256', secret).update(data).digest();
}

/** Mints a token for `sub` valid for `ttlSeconds`. */
export function signToken(
  secret: string,
  claims: { sub: string; ids?: readonly string[]; ttlSeconds: number },
  nowSeconds = Math.floor(Date.now() / 1000),
): string {
  const body: TokenClaims = {
    sub: claims.sub,
    ...(claims.ids && claims.ids.length > 0 ? { ids: [...claims.ids] } : {}),
    iat: nowSeconds,
    exp: nowSeconds + claims.ttlSeconds,
  };
  const payload = Buffer.from(JSON.stringify(body)).toString('base64url');
  const data = `${HEADER}.${payload}`;
  return `${data}.${sign(secret, data).toString('base64url')}`;
}

/**
 * Verifies `token` and returns its claims; throws {@link UnauthorizedError} saying what is wrong
 * (malformed, wrong algorithm, bad signature, expired, bad claims).
 */
export function verifyToken(
  secret: string,
  token: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): TokenClaims {
  const parts = token.split('.');
  if (parts.length !== 3)
    throw new UnauthorizedError('token is not a JWT (expected three dot-separated parts)');
  const [h, p, s] = parts as [string, string, string];
  let header: unknown;
  let claims: unknown;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString());
    claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  } catch {
    throw new UnauthorizedError('token header or payload is not base64url JSON');
  }
  if (typeof header !== 'object' || header === null || (header as { alg?: unknown }).alg !== 'HS256') {
    throw new UnauthorizedError('token algorithm must be HS256');
  }
  const expected = sign(secret, `${h}.${p}`);
  const given = Buffer.from(s, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new UnauthorizedError('token signature does not match');
  }
  if (typeof claims !== 'object' || claims === null)
    throw new UnauthorizedError('token payload is not an object');
  const c = claims as Record<string, unknown>;
  if (typeof c.exp !== 'number' || !Number.isFinite(c.exp))
    throw new UnauthorizedError('token has no numeric exp');
  if (c.exp <= nowSeconds) throw new UnauthorizedError('token expired');
  const subProblem = idProblem(c.sub);
  if (subProblem !== undefined) throw new UnauthorizedError(`token sub ${subProblem}`);
  if (c.ids !== undefined) {
    if (!Array.isArray(c.ids) || c.ids.some((id) => idProblem(id) !== undefined)) {
      throw new UnauthorizedError('token ids must be an array of valid ids');
    }
  }
  return {
    sub: c.sub as string,
    exp: c.exp,
    ...(Array.isArray(c.ids) ? { ids: c.ids as string[] } : {}),
    ...(typeof c.iat === 'number' ? { iat: c.iat } : {}),
  };
}

/** True when `claims` allow logging in as `id`. */
export function tokenAllows(claims: TokenClaims, id: string): boolean {
  return claims.sub === id || (claims.ids?.includes(id) ?? false);
}
