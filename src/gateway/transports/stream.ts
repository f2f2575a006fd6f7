/**
 * What the three chunked streams (`/test`, plain, SSE) share: the response head and welcome,
 * writing missed messages after a resume, and the final chunk. HTTP/1.0 clients get the same
 * frames without chunk framing (see frames.ts) and the stream ends when the socket closes.
 */
import type { Message } from '../../message.js';
import { type Connection, State, type Transport } from '../connection.js';
import { LAST_CHUNK } from '../frames.js';
import type { RequestHead } from '../http-head.js';
import { streamHead } from '../responses.js';

/** Answers with the stream's head and `welcome`, then logs the connection in (or resumes). */
export function openStream(
  conn: Connection,
  transport: Transport,
  ids: readonly string[],
  head: RequestHead,
  contentType: string,
  welcome: Buffer,
  last: string | undefined,
  extraHeaders = '',
): void {
  const ctx = conn.host;
  conn.unframed = head.minor === 0;
  if (!conn.send(streamHead(ctx.headers, contentType, conn.unframed, extraHeaders))) return;
  conn.write(welcome);
  if (conn.state === State.Closed) return;
  ctx.attach(conn, transport, ids, last);
}

/** Writes each missed message with `frame`, counting it, until the connection is cut. */
export function writeMissed(
  conn: Connection,
  missed: readonly Message[],
  frame: (m: Message, conn: Connection) => Buffer,
): void {
  const stats = conn.host.stats;
  for (const m of missed) {
    conn.n++;
    conn.write(frame(m, conn));
    stats.deliveries++;
    if (conn.state !== State.Open) return;
  }
}

/** Delivers one live message with `frame`. */
export function writeOne(
  conn: Connection,
  msg: Message,
  frame: (m: Message, conn: Connection) => Buffer,
): void {
  conn.n++;
  conn.write(frame(msg, conn));
  conn.host.stats.deliveries++;
}

/** The end of a chunked body (nothing for HTTP/1.0, whose stream ends by closing). */
export function endStream(conn: Connection): void {
  if (!conn.unframed) conn.write(LAST_CHUNK);
}

/** Streams take no input: anything sent is read and dropped so the socket never backs up. */
export function dropInput(): void {}
