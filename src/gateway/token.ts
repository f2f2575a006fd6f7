/**
 * Client identity: HMAC-SHA256 signed, expiring tokens in JWT form (HS256), as Centrifugo uses.
 *
 * A token names the id a client may log in as (`sub`) and, optionally, further ids it may also
 * log in as on the same connection (`ids`, for `?also=`). `exp` is required (a token that never
 * expires is a password) and a server may cap how far ahead it lies; `nbf` and `iat` are
 * honoured with a small clock skew; `aud` and `iss` are checked when the server names them.
 * Only the canonical base64url spelling of each part is accepted. The gateway checks the signature with a constant-time compare and
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
  /** Not valid before, seconds since the epoch. */
  readonly nbf?: number;
  /** Audience(s) the token is meant for. */
  readonly aud?: string | readonly string[];
  /** Who issued it. */
  readonly iss?: string;
}

/** What a server requires of a token besides its signature and `exp`. */
export interface TokenPolicy {
  /** Required `aud` (one of the token's audiences); empty: not checked. */
  readonly audience?: string;
  /** Required `iss`; empty: not checked. */
  readonly issuer?: string;
  /** Longest a token may still be valid from now, seconds; 0 or absent: no limit. */
  readonly maxTtlSeconds?: number;
}

/** Clock skew tolerated for `nbf` and `iat` between the issuer and this server, seconds. */
export const CLOCK_SKEW_SECONDS = 30;

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

function sign(secret: string, data: string): Buffer {
  return createHmac('sha256', secret).update(data).digest();
}

/** Mints a token for `sub` valid for `ttlSeconds`. */
export function signToken(
  secret: string,
  claims: {
    sub: string;
    ids?: readonly string[];
    ttlSeconds: number;
    aud?: string;
    iss?: string;
    nbf?: number;
  },
  nowSeconds = Math.floor(Date.now() / 1000),
): string {
  const body: TokenClaims = {
    sub: claims.sub,
    ...(claims.ids && claims.ids.length > 0 ? { ids: [...claims.ids] } : {}),
    ...(claims.aud ? { aud: claims.aud } : {}),
    ...(claims.iss ? { iss: claims.iss } : {}),
    ...(claims.nbf !== undefined ? { nbf: claims.nbf } : {}),
    iat: nowSeconds,
    exp: nowSeconds + claims.ttlSeconds,
  };
  const payload = Buffer.from(JSON.stringify(body)).toString('base64url');
  const data = `${HEADER}.${payload}`;
  return `${data}.${sign(secret, data).toString('base64url')}`;
}

/**
 * Decodes one base64url part, refusing every non-canonical spelling: padding, characters outside
 * the alphabet, unused trailing bits. `Buffer.from(s, 'base64url')` ignores all of these, which
 * would let many strings stand for one signature.
 */
function canonical(part: string): Buffer | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) return undefined;
  const bytes = Buffer.from(part, 'base64url');
  return bytes.toString('base64url') === part ? bytes : undefined;
}

const time = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * Verifies `token` and returns its claims; throws {@link UnauthorizedError} saying what is wrong
 * (malformed, wrong algorithm, bad signature, expired, not yet valid, too long-lived, wrong
 * audience or issuer, bad claims).
 */
export function verifyToken(
  secret: string,
  token: string,
  nowSeconds = Math.floor(Date.now() / 1000),
  policy: TokenPolicy = {},
): TokenClaims {
  const parts = token.split('.');
  if (parts.length !== 3)
    throw new UnauthorizedError('token is not a JWT (expected three dot-separated parts)');
  const [h, p, s] = parts as [string, string, string];
  const hb = canonical(h);
  const pb = canonical(p);
  const given = canonical(s);
  if (hb === undefined || pb === undefined || given === undefined)
    throw new UnauthorizedError('token is not canonical base64url');
  let header: unknown;
  let claims: unknown;
  try {
    header = JSON.parse(hb.toString());
    claims = JSON.parse(pb.toString());
  } catch {
    throw new UnauthorizedError('token header or payload is not base64url JSON');
  }
  if (typeof header !== 'object' || header === null || (header as { alg?: unknown }).alg !== 'HS256') {
    throw new UnauthorizedError('token algorithm must be HS256');
  }
  const expected = sign(secret, `${h}.${p}`);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new UnauthorizedError('token signature does not match');
  }
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims))
    throw new UnauthorizedError('token payload is not an object');
  const c = claims as Record<string, unknown>;
  if (!time(c.exp)) throw new UnauthorizedError('token has no numeric exp');
  if (c.exp <= nowSeconds) throw new UnauthorizedError('token expired');
  const maxTtl = policy.maxTtlSeconds ?? 0;
  if (maxTtl > 0 && c.exp - nowSeconds > maxTtl) {
    throw new UnauthorizedError(
      `token is valid for ${Math.round(c.exp - nowSeconds)} s more, over the limit of ${maxTtl} s`,
    );
  }
  if (c.nbf !== undefined) {
    if (!time(c.nbf)) throw new UnauthorizedError('token nbf is not a number');
    if (c.nbf > nowSeconds + CLOCK_SKEW_SECONDS) throw new UnauthorizedError('token is not valid yet (nbf)');
  }
  if (c.iat !== undefined) {
    if (!time(c.iat)) throw new UnauthorizedError('token iat is not a number');
    if (c.iat > nowSeconds + CLOCK_SKEW_SECONDS)
      throw new UnauthorizedError('token was issued in the future (iat)');
  }
  if (policy.audience) {
    const aud = c.aud;
    const ok = aud === policy.audience || (Array.isArray(aud) && aud.includes(policy.audience));
    if (!ok) throw new UnauthorizedError(`token audience must include ${JSON.stringify(policy.audience)}`);
  }
  if (policy.issuer && c.iss !== policy.issuer) {
    throw new UnauthorizedError(`token issuer must be ${JSON.stringify(policy.issuer)}`);
  }
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
    ...(time(c.iat) ? { iat: c.iat } : {}),
    ...(time(c.nbf) ? { nbf: c.nbf } : {}),
    ...(typeof c.iss === 'string' ? { iss: c.iss } : {}),
    ...(typeof c.aud === 'string' || Array.isArray(c.aud) ? { aud: c.aud as string | string[] } : {}),
  };
}

/** True when `claims` allow logging in as `id`. */
export function tokenAllows(claims: TokenClaims, id: string): boolean {
  return claims.sub === id || (claims.ids?.includes(id) ?? false);
}
