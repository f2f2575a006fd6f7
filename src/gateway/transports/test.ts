/**
 * `GET /test/<id>`: the article's route, byte for byte: `200`, chunked `text/html`, a welcome
 * chunk, then `Recvd msg #N: '<msg>'<br/>` per message (N counts per connection; the message is
 * HTML-escaped). No heartbeat and no resume: the article's stream has neither.
 */
import type { Message } from '../../message.js';
import type { Connection, Transport } from '../connection.js';
import { chunk } from '../frames.js';
import type { RequestHead } from '../http-head.js';
import { dropInput, endStream, openStream, writeMissed, writeOne } from './stream.js';

const CRLF = '\r\n';

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  "'": '&#39;',
  '"': '&quot;',
};

/** Escapes text for the `text/html` `/test` route, so a message cannot inject markup. */
export function escapeHtml(text: string): string {
  return /[&<>'"]/.test(text) ? text.replace(/[&<>'"]/g, (c) => HTML_ESCAPES[c]!) : text;
}

/**
 * The frame of the `n`th message on a connection: `Recvd msg #N: '<msg>'<br/>` in one chunk.
 * Everything after `#N` is shared by all connections and cached; only the counter and chunk
 * size are per connection.
 */
export function testFrame(msg: Message, n: number): Buffer {
  let tail = msg.frames.testTail;
  if (tail === undefined) {
    tail = Buffer.from(`: '${escapeHtml(msg.body)}'<br/>${CRLF}`);
    msg.frames.testTail = tail;
  }
  const counter = `Recvd msg #${n}`;
  const size = counter.length + tail.length - 2;
  const head = `${size.toString(16)}${CRLF}${counter}`;
  const out = Buffer.allocUnsafe(head.length + tail.length);
  out.write(head, 0, 'latin1');
  tail.copy(out, head.length);
  return out;
}

/** The article's part 1 ticker chunk: `Chunk N for id X`. */
export function tickFrame(n: number, id: string): Buffer {
  return chunk(`Chunk ${n} for id ${id}\n`);
}

/** The article's welcome chunk on `/test/<id>`. */
export function testWelcome(id: string): Buffer {
  return chunk(`Mochiconntest welcomes you! Your Id: ${id}\n`);
}

const frame = (m: Message, conn: Connection): Buffer => testFrame(m, conn.n);

export const testTransport: Transport = {
  name: 'test',
  deliver: (conn, msg) => writeOne(conn, msg, frame),
  resumed: (conn, missed) => writeMissed(conn, missed, frame),
  heartbeat: () => undefined,
  tick(conn) {
    conn.n++;
    conn.write(tickFrame(conn.n, conn.firstId));
  },
  goodbye: endStream,
  input: dropInput,
};

/** Opens a `/test/<id>` stream (the article's route never resumes). */
export function startTest(conn: Connection, ids: readonly string[], head: RequestHead): void {
  openStream(conn, testTransport, ids, head, 'text/html; charset=utf-8', testWelcome(ids[0]!), undefined);
}
