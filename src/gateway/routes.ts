/**
 * Client-port routes, after the request head is parsed:
 *
 * | route            | transport                                                              |
 * |------------------|------------------------------------------------------------------------|
 * | `GET /test/<id>` | the article's stream: text/html chunks, welcome, `Recvd msg #N: '…'`    |
 * | `GET /feed/<id>` | WebSocket on `Upgrade: websocket`; SSE on `Accept: text/event-stream`;  |
 * |                  | long-poll on `?transport=poll`; plain chunked otherwise                 |
 * | `GET /healthz`   | 200 while serving, 503 while draining                                  |
 *
 * `/feed/<id>?also=<id2>,<id3>` logs one connection in as several ids. Identity comes from a
 * token (`?token=` or `Authorization: Bearer`), or from the URL alone when anonymous ids are
 * allowed. Resume: `Last-Event-ID` or `?last=` replays what the client missed from history,
 * holding live messages meanwhile so nothing is lost, duplicated or reordered.
 */
import { Disconnect, errorMessage } from '../errors.js';
import { idProblem } from '../ids.js';
import type { Message } from '../router/message.js';
import { type Connection, Kind, State } from './connection.js';
import {
  disconnectBody,
  plainFrame,
  plainWelcome,
  sseControl,
  sseFrame,
  sseWelcome,
  testWelcome,
  wsControl,
  wsFrame,
} from './frames.js';
import type { Gateway } from './gateway.js';
import type { RequestHead } from './http-head.js';
import { preflight, response, streamHead, wsAccept } from './responses.js';
import { type TokenClaims, tokenAllows, verifyToken } from './token.js';
import {
  acceptKey,
  closeFrame,
  decodeWsFrames,
  encodeWsFrame,
  validKey,
  WS_OP_CLOSE,
  WS_OP_PING,
  WS_OP_PONG,
} from './websocket.js';

/**
 * Dispatches a parsed request. `rest` is what the client sent after the head. Returns the bytes
 * still to be read as the next request when the connection is kept alive for one (the caller
 * loops over pipelined requests; this never recurses into the next one).
 */
export function route(
  gw: Gateway,
  conn: Connection,
  head: RequestHead,
  rest: Buffer | undefined,
): Buffer | undefined {
  conn.raw = head.wantsClose;
  const method = head.method;
  if (method === 'OPTIONS') {
    if (!gw.answer(conn, preflight(gw.headers))) return undefined;
    if (conn.raw) {
      gw.release(conn, State.Ending);
      conn.socket.end();
      return undefined;
    }
    gw.awaitNextRequest(conn);
    return rest;
  }
  if (method !== 'GET' && method !== 'HEAD') {
    gw.reject(conn, 405, `${method} is not allowed here`, 'Allow: GET, HEAD, OPTIONS\r\n');
    return;
  }
  if (
    (head.contentLength !== undefined && head.contentLength !== '0') ||
    head.transferEncoding !== undefined
  ) {
    gw.reject(conn, 400, `a ${method} request must not have a body`);
    return;
  }
  const path = head.path;
  if (path === '/healthz') {
    const status = gw.draining ? 503 : 200;
    conn.socket.end(
      response(gw.headers, status, gw.draining ? 'draining\n' : 'ok\n', {
        close: true,
        headOnly: method === 'HEAD',
      }),
    );
    gw.release(conn, State.Ending);
    return;
  }
  const isTest = path.startsWith('/test/');
  if (!isTest && !path.startsWith('/feed/')) {
    gw.reject(conn, 404, `no route for ${path}; streams are at /test/<id> and /feed/<id>`);
    return;
  }
  const ids = readIds(gw, conn, head, path.slice(6));
  if (ids === undefined) return;
  const claims = authorize(gw, conn, head, ids);
  if (claims === null) return;
  if (claims !== undefined) conn.exp = claims.exp;

  if (method === 'HEAD') {
    const type = isTest ? 'text/html; charset=utf-8' : 'text/event-stream; charset=utf-8';
    conn.socket.end(streamHead(gw.headers, type, false, 'Connection: close\r\n'));
    gw.release(conn, State.Ending);
    return;
  }
  if (isTest) {
    startStream(gw, conn, Kind.Test, ids, head, 'text/html; charset=utf-8', testWelcome(ids[0]!));
    return;
  }
  const transport = head.query ? head.params().get('transport') : null;
  if (head.upgrade?.toLowerCase() === 'websocket' || transport === 'ws') {
    startWs(gw, conn, ids, head, rest);
  } else if (transport === 'poll') {
    startPoll(gw, conn, ids, head, rest);
  } else if (transport === 'sse' || (transport === null && head.accept?.includes('text/event-stream'))) {
    const extra = 'X-Accel-Buffering: no\r\n';
    startStream(
      gw,
      conn,
      Kind.Sse,
      ids,
      head,
      'text/event-stream; charset=utf-8',
      sseWelcome(ids, gw.opts.sseRetryMs),
      extra,
    );
  } else if (transport === null || transport === 'stream') {
    startStream(gw, conn, Kind.Plain, ids, head, 'text/plain; charset=utf-8', plainWelcome(ids));
  } else {
    gw.reject(conn, 400, `unknown transport ${JSON.stringify(transport)}; use sse, stream, poll or ws`);
  }
}

/** The ids a request logs in as: the path id plus `?also=`; rejects with 400 naming a bad one. */
function readIds(gw: Gateway, conn: Connection, head: RequestHead, raw: string): string[] | undefined {
  let id = raw;
  if (id.includes('%')) {
    try {
      id = decodeURIComponent(id);
    } catch {
      gw.reject(conn, 400, 'id is not valid percent-encoding');
      return undefined;
    }
  }
  const problem = idProblem(id);
  if (problem !== undefined) {
    gw.reject(conn, 400, `id ${JSON.stringify(id.slice(0, 40))} ${problem}`);
    return undefined;
  }
  const ids = [id];
  const also = head.query ? head.params().get('also') : null;
  if (also) {
    for (const extra of also.split(',')) {
      const p = idProblem(extra);
      if (p !== undefined) {
        gw.reject(conn, 400, `also id ${JSON.stringify(extra.slice(0, 40))} ${p}`);
        return undefined;
      }
      if (!ids.includes(extra)) ids.push(extra);
    }
    if (ids.length > gw.opts.maxIdsPerConnection) {
      gw.reject(
        conn,
        400,
        `${ids.length} ids asked for, at most ${gw.opts.maxIdsPerConnection} per connection`,
      );
      return undefined;
    }
  }
  return ids;
}

/**
 * Checks the token against `ids`. Returns the claims, `undefined` for an allowed anonymous
 * login, or `null` after rejecting (401 no/bad token, 403 token does not cover an id).
 */
function authorize(
  gw: Gateway,
  conn: Connection,
  head: RequestHead,
  ids: string[],
): TokenClaims | undefined | null {
  let token = head.query ? head.params().get('token') : null;
  const auth = head.authorization;
  if (token === null && auth !== undefined && /^bearer /i.test(auth)) token = auth.slice(7).trim();
  if (token === null) {
    if (gw.opts.allowAnonymous) return undefined;
    gw.stats.authFailures++;
    gw.reject(
      conn,
      401,
      'a token is required (?token= or Authorization: Bearer)',
      'WWW-Authenticate: Bearer\r\n',
    );
    return null;
  }
  if (!gw.opts.tokenSecret) {
    gw.stats.authFailures++;
    gw.reject(conn, 401, 'this server accepts no tokens (no token secret configured)');
    return null;
  }
  let claims: TokenClaims;
  try {
    claims = verifyToken(gw.opts.tokenSecret, token);
  } catch (err) {
    gw.stats.authFailures++;
    gw.reject(conn, 401, errorMessage(err), 'WWW-Authenticate: Bearer error="invalid_token"\r\n');
    return null;
  }
  const denied = ids.find((id) => !tokenAllows(claims, id));
  if (denied !== undefined) {
    gw.stats.authFailures++;
    gw.reject(conn, 403, `the token does not allow id ${JSON.stringify(denied)}`);
    return null;
  }
  return claims;
}

function login(gw: Gateway, conn: Connection, ids: readonly string[]): void {
  for (const id of ids) gw.router.login(id, conn);
}

/** The last event id a client says it saw, if any. */
function lastEventId(head: RequestHead): string | undefined {
  if (head.lastEventId) return head.lastEventId;
  const last = head.query ? head.params().get('last') : null;
  return last || undefined;
}

function startStream(
  gw: Gateway,
  conn: Connection,
  kind: Kind,
  ids: string[],
  head: RequestHead,
  contentType: string,
  welcome: Buffer,
  extra = '',
): void {
  conn.raw = head.minor === 0;
  conn.kind = kind;
  const text = streamHead(gw.headers, contentType, conn.raw, extra);
  gw.stats.bytesOut += text.length;
  conn.socket.write(text);
  conn.write(welcome);
  const last = kind === Kind.Test ? undefined : lastEventId(head);
  if (last === undefined) {
    conn.state = State.Stream;
    login(gw, conn, ids);
  } else {
    resume(gw, conn, ids, last, State.Stream);
  }
}

function startWs(
  gw: Gateway,
  conn: Connection,
  ids: string[],
  head: RequestHead,
  rest: Buffer | undefined,
): void {
  if (head.upgrade?.toLowerCase() !== 'websocket' || !head.connection?.toLowerCase().includes('upgrade')) {
    gw.reject(
      conn,
      426,
      'WebSocket needs Upgrade: websocket and Connection: Upgrade',
      'Upgrade: websocket\r\n',
    );
    return;
  }
  if (head.wsVersion !== '13') {
    gw.reject(conn, 426, 'only WebSocket version 13 is supported', 'Sec-WebSocket-Version: 13\r\n');
    return;
  }
  if (!validKey(head.wsKey)) {
    gw.reject(conn, 400, 'Sec-WebSocket-Key must be 16 bytes of base64');
    return;
  }
  conn.kind = Kind.Ws;
  conn.raw = false;
  conn.since = gw.now;
  const text = wsAccept(gw.headers, acceptKey(head.wsKey));
  gw.stats.bytesOut += text.length;
  conn.socket.write(text);
  conn.write(wsControl('welcome', { ids }));
  const last = lastEventId(head);
  if (last === undefined) {
    conn.state = State.Ws;
    login(gw, conn, ids);
  } else {
    resume(gw, conn, ids, last, State.Ws);
  }
  if (rest !== undefined) wsData(gw, conn, rest);
}

function startPoll(
  gw: Gateway,
  conn: Connection,
  ids: string[],
  head: RequestHead,
  rest: Buffer | undefined,
): void {
  conn.kind = Kind.Poll;
  // A request pipelined behind this one is read once the poll is answered.
  if (rest !== undefined) gw.holdNext(conn, rest);
  const last = lastEventId(head);
  if (last === undefined) {
    conn.state = State.Poll;
    login(gw, conn, ids);
    gw.awaitPoll(conn);
    return;
  }
  resume(gw, conn, ids, last, State.Poll);
}

/**
 * Logs in at once (so nothing sent from now on is missed), holds live messages while the
 * history is read, writes the replay, then the held messages not already in it.
 */
function resume(gw: Gateway, conn: Connection, ids: string[], last: string, then: State): void {
  conn.state = State.Resuming;
  conn.held = [];
  login(gw, conn, ids);
  gw.router.replay(ids, last).then(
    (replay) => {
      if (conn.state !== State.Resuming) return;
      const held = conn.held ?? [];
      conn.held = null;
      let missed: Message[];
      if (replay.ok) {
        gw.stats.resumed++;
        const seen = new Set(replay.messages.map((m) => m.eid));
        missed = replay.messages.concat(held.filter((m) => !seen.has(m.eid)));
      } else {
        gw.stats.gaps++;
        const gap = { last, reason: replay.reason };
        if (conn.kind === Kind.Sse) conn.write(sseControl('gap', gap));
        else if (conn.kind === Kind.Ws) conn.write(wsControl('gap', gap));
        missed = held;
      }
      conn.state = then;
      if (then === State.Poll) {
        if (missed.length > 0)
          gw.answerPoll(conn, missed, replay.ok ? '' : `,"gap":${JSON.stringify(replay.reason)}`);
        else if (!replay.ok) gw.answerPoll(conn, [], `,"gap":${JSON.stringify(replay.reason)}`);
        else gw.awaitPoll(conn);
        return;
      }
      for (const m of missed) {
        conn.n++;
        conn.write(conn.kind === Kind.Sse ? sseFrame(m) : conn.kind === Kind.Ws ? wsFrame(m) : plainFrame(m));
        gw.stats.deliveries++;
        if (conn.state !== then) return;
      }
    },
    (err: unknown) => {
      gw.log.warn('resume failed', { err, ids });
      if (conn.state === State.Resuming) {
        conn.state = then;
        conn.disconnect(Disconnect.InternalError);
      }
    },
  );
}

/** Frames from a WebSocket client: answer pings, note pongs, honour close; data is read and dropped. */
export function wsData(gw: Gateway, conn: Connection, bytes: Buffer): void {
  const buf = conn.pending === undefined ? bytes : Buffer.concat([conn.pending, bytes]);
  conn.pending = undefined;
  const got = decodeWsFrames(buf, gw.opts.maxClientFrameBytes);
  if ('closeCode' in got) {
    const reason = got.closeCode === 1009 ? Disconnect.MessageTooBig : Disconnect.BadRequest;
    conn.write(wsControl('disconnect', disconnectBody(reason)));
    gw.release(conn, State.Ending);
    conn.socket.end(closeFrame(got.closeCode, got.reason));
    return;
  }
  conn.pending = got.rest;
  conn.since = gw.now;
  for (const frame of got.frames) {
    if (frame.opcode === WS_OP_PING) {
      conn.write(encodeWsFrame(WS_OP_PONG, frame.payload));
    } else if (frame.opcode === WS_OP_CLOSE) {
      const code = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1000;
      const reply = code >= 1000 && code < 5000 && code !== 1005 && code !== 1006 ? code : 1000;
      gw.release(conn, State.Ending);
      conn.socket.end(closeFrame(reply, ''));
      return;
    }
  }
}
