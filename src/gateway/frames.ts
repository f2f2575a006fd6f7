/**
 * Chunked transfer coding, shared by the streaming transports. A message's frame is built once,
 * on first use, and cached on the message (see each transport), so delivering to 100,000
 * connections writes one shared Buffer 100,000 times. The cached frames include the chunk
 * framing, and the rare HTTP/1.0 client gets a zero-copy view of the payload inside it.
 *
 * ```
 *  chunk frame:  "1f\r\n" <payload> "\r\n"
 *                 └hex─┘  └─ raw view for HTTP/1.0 ─┘
 * ```
 */
import type { DisconnectReason } from '../errors.js';

const CRLF = '\r\n';

/** Wraps `payload` in one HTTP/1.1 chunk. */
export function chunk(payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const head = `${body.length.toString(16)}${CRLF}`;
  const out = Buffer.allocUnsafe(head.length + body.length + 2);
  out.write(head, 0, 'latin1');
  body.copy(out, head.length);
  out.write(CRLF, head.length + body.length, 'latin1');
  return out;
}

/** The payload inside a frame built by {@link chunk}, without copying. */
export function unchunk(frame: Buffer): Buffer {
  const start = frame.indexOf(CRLF) + 2;
  return frame.subarray(start, frame.length - 2);
}

/** The chunk that ends a chunked body. */
export const LAST_CHUNK = Buffer.from(`0${CRLF}${CRLF}`);

/** The JSON body of a disconnect notice. */
export function disconnectBody(reason: DisconnectReason): {
  code: number;
  reason: string;
  reconnect: boolean;
} {
  return { code: reason.code, reason: reason.reason, reconnect: reason.reconnect };
}
