/**
 * Server-Sent Events on `/feed/<id>` (`Accept: text/event-stream` or `?transport=sse`): `id:` and
 * `data:` lines per message, a comment heartbeat, named `gap` and `disconnect` events, and
 * `Last-Event-ID` resume. `EventSource` works against it.
 */
import type { Message } from '../../message.js';
import type { Connection, Transport } from '../connection.js';
import { chunk, disconnectBody } from '../frames.js';
import type { RequestHead } from '../http-head.js';
import { dropInput, endStream, openStream, writeMissed, writeOne } from './stream.js';

/** One SSE event for `msg`: `id:` then one `data:` line per body line (cached on the message). */
export function sseFrame(msg: Message): Buffer {
  let frame = msg.frames.sse;
  if (frame === undefined) {
    frame = chunk(`id: ${msg.eid}\ndata: ${msg.body.split(/\r\n|\r|\n/).join('\ndata: ')}\n\n`);
    msg.frames.sse = frame;
  }
  return frame;
}

/** SSE stream opening: reconnect delay and a welcome comment naming the ids. */
export function sseWelcome(ids: readonly string[], retryMs: number): Buffer {
  return chunk(`retry: ${retryMs}\n: Switchboard welcomes you! Your Id: ${ids.join(', ')}\n\n`);
}

/** SSE heartbeat: a comment line, ignored by EventSource but keeping proxies and NATs awake. */
export const SSE_HEARTBEAT = chunk(':\n\n');

/** A named SSE control event (`disconnect`, `gap`) carrying JSON. */
export function sseControl(event: string, data: unknown): Buffer {
  return chunk(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

export const sseTransport: Transport = {
  name: 'sse',
  deliver: (conn, msg) => writeOne(conn, msg, sseFrame),
  resumed(conn, missed, gap) {
    if (gap !== undefined) conn.write(sseControl('gap', gap));
    writeMissed(conn, missed, sseFrame);
  },
  heartbeat: (conn) => conn.write(SSE_HEARTBEAT),
  tick(conn) {
    conn.n++;
    conn.write(chunk(`data: Chunk ${conn.n} for id ${conn.firstId}\n\n`));
  },
  goodbye(conn, reason) {
    conn.write(sseControl('disconnect', disconnectBody(reason)));
    endStream(conn);
  },
  input: dropInput,
};

/** Opens an SSE stream, resuming after `last` if given. */
export function startSse(
  conn: Connection,
  ids: readonly string[],
  head: RequestHead,
  last: string | undefined,
): void {
  const welcome = sseWelcome(ids, conn.host.opts.sseRetryMs);
  openStream(conn, sseTransport, ids, head, 'text/event-stream; charset=utf-8', welcome, last);
}
