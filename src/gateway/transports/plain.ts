/**
 * `GET /feed/<id>` (no `Accept: text/event-stream`, no upgrade): a plain chunked stream, one
 * chunk per message holding the body and a newline. An empty line every heartbeat keeps
 * proxies' idle timeouts from cutting a quiet stream: a line reader skips empty lines.
 */
import type { Message } from '../../message.js';
import type { Connection, Transport } from '../connection.js';
import { chunk } from '../frames.js';
import type { RequestHead } from '../http-head.js';
import { dropInput, endStream, openStream, writeMissed, writeOne } from './stream.js';
import { tickFrame } from './test.js';

/** The frame of one message: its body and a newline, in one chunk (cached on the message). */
export function plainFrame(msg: Message): Buffer {
  let frame = msg.frames.chunk;
  if (frame === undefined) {
    frame = chunk(`${msg.body}\n`);
    msg.frames.chunk = frame;
  }
  return frame;
}

/** The plain stream's heartbeat: an empty line. */
export const PLAIN_HEARTBEAT = chunk('\n');

/** Plain chunked stream opening. */
export function plainWelcome(ids: readonly string[]): Buffer {
  return chunk(`Switchboard welcomes you! Your Id: ${ids.join(', ')}\n`);
}

export const plainTransport: Transport = {
  name: 'plain',
  deliver: (conn, msg) => writeOne(conn, msg, plainFrame),
  resumed: (conn, missed) => writeMissed(conn, missed, plainFrame),
  heartbeat: (conn) => conn.write(PLAIN_HEARTBEAT),
  tick(conn) {
    conn.n++;
    conn.write(tickFrame(conn.n, conn.firstId));
  },
  goodbye: endStream,
  input: dropInput,
};

/** Opens a plain stream, resuming after `last` if given. */
export function startPlain(
  conn: Connection,
  ids: readonly string[],
  head: RequestHead,
  last: string | undefined,
): void {
  openStream(conn, plainTransport, ids, head, 'text/plain; charset=utf-8', plainWelcome(ids), last);
}
