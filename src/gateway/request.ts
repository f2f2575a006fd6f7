/**
 * Client-port requests, after the head is parsed: which transport, which ids, whose token.
 *
 * | route            | transport                                                              |
 * |------------------|------------------------------------------------------------------------|
 * | `GET /test/<id>` | the article's stream (transports/test.ts)                              |
 * | `GET /feed/<id>` | WebSocket on `Upgrade: websocket`; SSE on `Accept: text/event-stream`;  |
 * |                  | long-poll on `?transport=poll`; plain chunked otherwise                 |
 * | `GET /healthz`   | 200 while serving, 503 while draining                                  |
 * | `GET /switchboard.js` | the browser client module (src/client/switchboard.ts, built)      |
 * | `GET /`          | the demo page (demo.ts), unless `--no-demo`                            |
 * | `OPTIONS *`      | CORS preflight, keep-alive                                             |
 *
 * `/feed/<id>?also=<id2>,<id3>` logs one connection in as several ids. Identity comes from a
 * token (`?token=` or `Authorization: Bearer`), or from the URL alone when anonymous ids are
 * allowed; `?also=` is read only after the token is verified. Resume: `Last-Event-ID` or
 * `?last=` (see the gateway's `open`).
 */
import { readFileSync } from 'node:fs';
import { errorMessage } from '../errors.js';
import { idProblem } from '../ids.js';
import type { Connection, GatewayContext } from './connection.js';
import { demoPage } from './demo.js';
import type { RequestHead } from './http-head.js';
import { preflight, response, streamHead } from './responses.js';
import { type TokenClaims, tokenAllows, verifyToken } from './token.js';
import { startPlain } from './transports/plain.js';
import { startPoll } from './transports/poll.js';
import { startSse } from './transports/sse.js';
import { startTest } from './transports/test.js';
import { startWs } from './transports/ws.js';

/** Where the browser client is served. */
export const CLIENT_PATH = '/switchboard.js';

let clientCode: string | null | undefined;

/** The built browser client (dist/src/client/switchboard.js), read once; undefined if absent. */
function clientModule(): string | undefined {
  if (clientCode === undefined) {
    try {
      clientCode = readFileSync(new URL('../client/switchboard.js', import.meta.url), 'utf8').replace(
        /\n\/\/# sourceMappingURL=.*\n?$/,
        '\n',
      );
    } catch {
      clientCode = null;
    }
  }
  return clientCode ?? undefined;
}

/**
 * Dispatches a parsed request. `rest` is what the client sent after the head. Returns the bytes
 * still to be read as the next request when the connection is kept alive for one (the caller
 * loops over pipelined requests; this never recurses into the next one).
 */
export function route(
  ctx: GatewayContext,
  conn: Connection,
  head: RequestHead,
  rest: Buffer | undefined,
): Buffer | undefined {
  conn.closeAfter = head.wantsClose;
  // A keep-alive connection's next request is judged on its own token, not the last one's.
  conn.exp = 0;
  const method = head.method;
  if (method === 'OPTIONS') {
    if (conn.closeAfter) {
      ctx.finish(conn, preflight(ctx.headers));
      return undefined;
    }
    if (!conn.send(preflight(ctx.headers))) return undefined;
    ctx.awaitNextRequest(conn);
    return rest;
  }
  if (method !== 'GET' && method !== 'HEAD') {
    ctx.reject(conn, 405, `${method} is not allowed here`, 'Allow: GET, HEAD, OPTIONS\r\n');
    return undefined;
  }
  if (
    (head.contentLength !== undefined && head.contentLength !== '0') ||
    head.transferEncoding !== undefined
  ) {
    ctx.reject(conn, 400, `a ${method} request must not have a body`);
    return undefined;
  }
  const path = head.path;
  // The small documents of the client port: answered whole, then the connection ends.
  const answer = (status: number, body: string, contentType?: string): undefined => {
    ctx.finish(
      conn,
      response(ctx.headers, status, body, { contentType, close: true, headOnly: method === 'HEAD' }),
    );
    return undefined;
  };
  if (path === '/healthz') return answer(ctx.draining ? 503 : 200, ctx.draining ? 'draining\n' : 'ok\n');
  if (path === '/' && ctx.opts.demo) {
    return answer(200, demoPage(ctx.publishUrl, !ctx.opts.allowAnonymous), 'text/html; charset=utf-8');
  }
  if (path === CLIENT_PATH) {
    const code = clientModule();
    if (code === undefined) {
      ctx.reject(conn, 404, 'the client module is not built (npm run build)');
      return undefined;
    }
    return answer(200, code, 'text/javascript; charset=utf-8');
  }
  const isTest = path.startsWith('/test/');
  if (!isTest && !path.startsWith('/feed/')) {
    ctx.reject(conn, 404, `no route for ${path}; streams are at /test/<id> and /feed/<id>`);
    return undefined;
  }
  const id = readId(ctx, conn, path.slice(6));
  if (id === undefined) return undefined;
  const params = head.query ? head.params() : undefined;
  const claims = authenticate(ctx, conn, head, params);
  if (claims === null) return undefined;
  const ids = readIds(ctx, conn, id, params?.get('also') ?? null);
  if (ids === undefined || !authorize(ctx, conn, claims, ids)) return undefined;
  if (claims !== undefined) conn.exp = claims.exp;

  if (method === 'HEAD') {
    const type = isTest ? 'text/html; charset=utf-8' : 'text/event-stream; charset=utf-8';
    ctx.finish(conn, streamHead(ctx.headers, type, false, 'Connection: close\r\n'));
    return undefined;
  }
  if (isTest) {
    startTest(conn, ids, head);
    return undefined;
  }
  const transport = params?.get('transport') ?? null;
  const last = head.lastEventId || params?.get('last') || undefined;
  if (head.upgrade?.toLowerCase() === 'websocket' || transport === 'ws') {
    startWs(conn, ids, head, last, rest);
  } else if (transport === 'poll') {
    startPoll(conn, ids, head, last, rest);
  } else if (transport === 'sse' || (transport === null && head.accept?.includes('text/event-stream'))) {
    startSse(conn, ids, head, last);
  } else if (transport === null || transport === 'stream') {
    startPlain(conn, ids, head, last);
  } else {
    ctx.reject(conn, 400, `unknown transport ${JSON.stringify(transport)}; use sse, stream, poll or ws`);
  }
  return undefined;
}

/** The id of the path; rejects with 400 naming what is wrong with it. */
function readId(ctx: GatewayContext, conn: Connection, raw: string): string | undefined {
  let id = raw;
  if (id.includes('%')) {
    try {
      id = decodeURIComponent(id);
    } catch {
      ctx.reject(conn, 400, 'id is not valid percent-encoding');
      return undefined;
    }
  }
  const problem = idProblem(id);
  if (problem !== undefined) {
    ctx.reject(conn, 400, `id ${JSON.stringify(id.slice(0, 40))} ${problem}`);
    return undefined;
  }
  return id;
}

/**
 * The ids a request logs in as: the path id plus `?also=`, without repeats; rejects with 400
 * naming a bad one, or as soon as there are more than the per-connection limit.
 */
function readIds(
  ctx: GatewayContext,
  conn: Connection,
  id: string,
  also: string | null,
): string[] | undefined {
  if (!also) return [id];
  const max = ctx.opts.maxIdsPerConnection;
  const ids = new Set([id]);
  let from = 0;
  while (from <= also.length) {
    let to = also.indexOf(',', from);
    if (to === -1) to = also.length;
    const extra = also.slice(from, to);
    from = to + 1;
    const p = idProblem(extra);
    if (p !== undefined) {
      ctx.reject(conn, 400, `also id ${JSON.stringify(extra.slice(0, 40))} ${p}`);
      return undefined;
    }
    ids.add(extra);
    if (ids.size > max) {
      ctx.reject(conn, 400, `more than ${max} ids asked for; at most ${max} per connection`);
      return undefined;
    }
  }
  return [...ids];
}

/**
 * Verifies the token, if any. Returns its claims, `undefined` for an allowed anonymous login, or
 * `null` after rejecting (401: no token where one is required, or a bad one).
 */
function authenticate(
  ctx: GatewayContext,
  conn: Connection,
  head: RequestHead,
  params: URLSearchParams | undefined,
): TokenClaims | undefined | null {
  let token = params?.get('token') ?? null;
  const auth = head.authorization;
  if (token === null && auth !== undefined && /^bearer /i.test(auth)) token = auth.slice(7).trim();
  const opts = ctx.opts;
  if (token === null) {
    if (opts.allowAnonymous) return undefined;
    ctx.stats.authFailures++;
    ctx.reject(
      conn,
      401,
      'a token is required (?token= or Authorization: Bearer)',
      'WWW-Authenticate: Bearer\r\n',
    );
    return null;
  }
  if (!opts.tokenSecret) {
    ctx.stats.authFailures++;
    ctx.reject(conn, 401, 'this server accepts no tokens (no token secret configured)');
    return null;
  }
  try {
    return verifyToken(opts.tokenSecret, token, Math.floor(Date.now() / 1000), {
      audience: opts.tokenAudience,
      issuer: opts.tokenIssuer,
      maxTtlSeconds: Math.floor(opts.tokenMaxTtlMs / 1000),
    });
  } catch (err) {
    ctx.stats.authFailures++;
    ctx.reject(conn, 401, errorMessage(err), 'WWW-Authenticate: Bearer error="invalid_token"\r\n');
    return null;
  }
}

/** True when the claims (or anonymous access) allow every id; rejects with 403 naming one if not. */
function authorize(
  ctx: GatewayContext,
  conn: Connection,
  claims: TokenClaims | undefined,
  ids: readonly string[],
): boolean {
  if (claims === undefined) return true;
  const denied = ids.find((id) => !tokenAllows(claims, id));
  if (denied === undefined) return true;
  ctx.stats.authFailures++;
  ctx.reject(conn, 403, `the token does not allow id ${JSON.stringify(denied)}`);
  return false;
}
