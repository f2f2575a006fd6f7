/**
 * Wire frames for each client transport. A message's frame is built once, on first use, and
 * cached on the {@link Message}, so delivering to 100,000 connections writes one shared Buffer
 * 100,000 times. Streams on HTTP/1.1 use chunked transfer coding; the cached frames include the
 * chunk framing, and the rare HTTP/1.0 client gets a zero-copy view of the payload inside it.
 *
 * ```
 *  chunk frame:  "1f\r\n" <payload> "\r\n"
 *                 └hex─┘  └─ raw view for HTTP/1.0 ─┘
 * ```
 */
import type { DisconnectReason } from '../errors.js';
import type { Message } from '../router/message.js';
import { encodeWsFrame, WS_OP_TEXT } from './websocket.js';

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
 * The article's `/test` frame for the `n`th message on a connection:
 * `Recvd msg #N: '<msg>'<br/>` in one chunk. Everything after `#N` is shared by all connections
 * and cached; only the counter and chunk size are per connection.
 */
export function testFrame(msg: Message, n: number): Buffer {
  let tail = msg.testTail;
  if (tail === undefined) {
    tail = Buffer.from(`: '${escapeHtml(msg.body)}'<br/>${CRLF}`);
    msg.testTail = tail;
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

/** One SSE event for `msg`: `id:` then one `data:` line per body line. */
export function sseFrame(msg: Message): Buffer {
  let frame = msg.sseFrame;
  if (frame === undefined) {
    frame = chunk(`id: ${msg.eid}\ndata: ${msg.body.split(/\r\n|\r|\n/).join('\ndata: ')}\n\n`);
    msg.sseFrame = frame;
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

/** The plain chunked stream: the message body and a newline per chunk. */
export function plainFrame(msg: Message): Buffer {
  let frame = msg.chunkFrame;
  if (frame === undefined) {
    frame = chunk(`${msg.body}\n`);
    msg.chunkFrame = frame;
  }
  return frame;
}

/** Plain chunked stream opening. */
export function plainWelcome(ids: readonly string[]): Buffer {
  return chunk(`Switchboard welcomes you! Your Id: ${ids.join(', ')}\n`);
}

/** The message as JSON text (WebSocket and long-poll), cached. */
export function messageJson(msg: Message): string {
  let text = msg.jsonText;
  if (text === undefined) {
    text = JSON.stringify(msg);
    msg.jsonText = text;
  }
  return text;
}

/** One WebSocket text frame carrying the message JSON. */
export function wsFrame(msg: Message): Buffer {
  let frame = msg.wsFrame;
  if (frame === undefined) {
    frame = encodeWsFrame(WS_OP_TEXT, Buffer.from(messageJson(msg)));
    msg.wsFrame = frame;
  }
  return frame;
}

/** A WebSocket control message as a JSON text frame (`welcome`, `gap`, `disconnect`). */
export function wsControl(type: string, data: Record<string, unknown>): Buffer {
  return encodeWsFrame(WS_OP_TEXT, Buffer.from(JSON.stringify({ type, ...data })));
}

/** The JSON body of a disconnect notice. */
export function disconnectBody(reason: DisconnectReason): {
  code: number;
  reason: string;
  reconnect: boolean;
} {
  return { code: reason.code, reason: reason.reason, reconnect: reason.reconnect };
}
