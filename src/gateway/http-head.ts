/**
 * A minimal, strict HTTP/1.1 request-head parser for the client port.
 *
 * The gateway does not use `node:http` for client connections: its per-connection objects
 * (IncomingMessage, ServerResponse, parser) cost about 10 KB per idle stream, five times our
 * budget. Client requests here are simple GETs, so the head is parsed once, the few headers the
 * gateway needs are kept in a fixed-shape object, and the raw bytes are dropped.
 *
 * Bytes arrive in pieces; {@link readHead} accumulates them up to a limit (431 past it) and
 * looks for the blank line that ends the head. Parsing is strict, as RFC 9112 asks of a server
 * that does not forward requests: lines end in CRLF only (a bare CR or LF, NUL or any other
 * control character but HTAB in a header value is a 400), so a request cannot be read one way
 * here and another way by a proxy in front.
 */
import { PendingBytes } from './bytes.js';

/** The request head fields the gateway uses. Header values are trimmed; absent is `undefined`. */
export class RequestHead {
  method = '';
  /** Request target as sent, e.g. `/feed/42?also=7`. */
  target = '';
  /** Target before `?`. */
  path = '';
  /** Target after `?`, without it (may be empty). */
  query = '';
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor = 1;
  host: string | undefined = undefined;
  accept: string | undefined = undefined;
  connection: string | undefined = undefined;
  upgrade: string | undefined = undefined;
  wsKey: string | undefined = undefined;
  wsVersion: string | undefined = undefined;
  lastEventId: string | undefined = undefined;
  authorization: string | undefined = undefined;
  origin: string | undefined = undefined;
  contentLength: string | undefined = undefined;
  transferEncoding: string | undefined = undefined;

  /** True when the client asked to close after this response (or HTTP/1.0 without keep-alive). */
  get wantsClose(): boolean {
    const c = this.connection?.toLowerCase();
    if (this.minor === 0) return !c?.includes('keep-alive');
    return c?.includes('close') === true;
  }

  /** The query parameters (parsed on demand; most requests never need them). */
  params(): URLSearchParams {
    return new URLSearchParams(this.query);
  }
}

/** Why a head was rejected: HTTP status and a human reason for the response body. */
export interface HeadError {
  readonly status: 400 | 431 | 501 | 505;
  readonly reason: string;
}

const MAX_HEADERS = 100;
/** Control characters allowed nowhere in a head line (HTAB is allowed in header values). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
const CTL_LINE = /[\x00-\x08\x0a-\x1f\x7f]/;
/** In the request line not even HTAB. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
const CTL_REQUEST_LINE = /[\x00-\x1f\x7f]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CRLFCRLF = Buffer.from('\r\n\r\n');

/**
 * Parses a complete head (the text before the blank line, without it). Returns the head or the
 * reason it is unacceptable.
 */
export function parseHead(text: string): RequestHead | HeadError {
  const lines = text.split('\r\n');
  const requestLine = lines[0] ?? '';
  if (CTL_REQUEST_LINE.test(requestLine))
    return { status: 400, reason: lineProblem(requestLine, 'request line') };
  const sp1 = requestLine.indexOf(' ');
  const sp2 = requestLine.lastIndexOf(' ');
  if (sp1 <= 0 || sp2 === sp1) return { status: 400, reason: 'malformed request line' };
  const head = new RequestHead();
  head.method = requestLine.slice(0, sp1);
  head.target = requestLine.slice(sp1 + 1, sp2);
  const version = requestLine.slice(sp2 + 1);
  if (!TOKEN.test(head.method)) return { status: 400, reason: 'malformed method' };
  if (version === 'HTTP/1.1') head.minor = 1;
  else if (version === 'HTTP/1.0') head.minor = 0;
  else if (/^HTTP\/\d\.\d$/.test(version)) return { status: 505, reason: `${version} is not supported` };
  else return { status: 400, reason: 'malformed request line' };
  const target = originForm(head.target, head.method);
  if (target === undefined) {
    return { status: 400, reason: 'request target must be a path (or an absolute http URL)' };
  }
  head.target = target;
  const q = head.target.indexOf('?');
  head.path = q === -1 ? head.target : head.target.slice(0, q);
  head.query = q === -1 ? '' : head.target.slice(q + 1);
  if (lines.length - 1 > MAX_HEADERS)
    return { status: 431, reason: `more than ${MAX_HEADERS} header fields` };

  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (CTL_LINE.test(line)) return { status: 400, reason: lineProblem(line, `header line ${i}`) };
    const colon = line.indexOf(':');
    if (colon <= 0) return { status: 400, reason: `malformed header line ${i}` };
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return { status: 400, reason: `malformed header name on line ${i}` };
    const value = line.slice(colon + 1).trim();
    switch (name.toLowerCase()) {
      case 'host':
        if (head.host !== undefined) return { status: 400, reason: 'duplicate Host header' };
        head.host = value;
        break;
      case 'accept':
        head.accept = head.accept === undefined ? value : `${head.accept}, ${value}`;
        break;
      case 'connection':
        head.connection = head.connection === undefined ? value : `${head.connection}, ${value}`;
        break;
      case 'upgrade':
        head.upgrade = value;
        break;
      case 'sec-websocket-key':
        head.wsKey = value;
        break;
      case 'sec-websocket-version':
        head.wsVersion = value;
        break;
      case 'last-event-id':
        head.lastEventId = value;
        break;
      case 'authorization':
        head.authorization = value;
        break;
      case 'origin':
        head.origin = value;
        break;
      case 'content-length':
        if (head.contentLength !== undefined && head.contentLength !== value) {
          return { status: 400, reason: 'conflicting Content-Length headers' };
        }
        head.contentLength = value;
        break;
      case 'transfer-encoding':
        head.transferEncoding = value;
        break;
    }
  }
  if (head.minor === 1 && head.host === undefined) return { status: 400, reason: 'missing Host header' };
  return head;
}

/** Says what is wrong with a line holding a control character. */
function lineProblem(line: string, where: string): string {
  return /[\r\n]/.test(line) ? `bare CR or LF in the ${where}` : `control character in the ${where}`;
}

/**
 * The origin-form of a request target: a path as sent, the path of an absolute `http(s)://` URL
 * (RFC 9112 §3.2.2: a server must accept the absolute form), `*` for OPTIONS; else undefined.
 */
function originForm(target: string, method: string): string | undefined {
  if (/\s/.test(target)) return undefined;
  if (target[0] === '/') return target;
  if (target === '*' && method === 'OPTIONS') return target;
  const m = /^https?:\/\/[^/?#]+([/?][^#]*)?$/i.exec(target);
  if (m === null) return undefined;
  const rest = m[1] ?? '/';
  return rest[0] === '?' ? `/${rest}` : rest;
}

/** True when `x` is a {@link HeadError}. */
export function isHeadError(x: RequestHead | HeadError): x is HeadError {
  return !(x instanceof RequestHead);
}

/** What {@link readHead} made of the bytes so far. */
export interface HeadChunk {
  /** The parsed head or why it was rejected; `undefined` while incomplete. */
  readonly result: RequestHead | HeadError | undefined;
  /** Bytes after the head (a WebSocket frame, a pipelined request), if any. */
  readonly rest: Buffer | undefined;
  /** Bytes to keep for the next read when incomplete. */
  readonly pending: PendingBytes | undefined;
}

const tooLarge = (maxBytes: number): HeadChunk => ({
  result: { status: 431, reason: `request head over ${maxBytes} bytes` },
  rest: undefined,
  pending: undefined,
});
const bareLf: HeadChunk = {
  result: { status: 400, reason: 'bare LF in the request head (lines must end in CRLF)' },
  rest: undefined,
  pending: undefined,
};

/** True when `area` has an LF at or after `from` that is not preceded by CR. */
function hasBareLf(area: Buffer, from: number): boolean {
  for (let i = area.indexOf(10, from); i !== -1; i = area.indexOf(10, i + 1)) {
    if (i === 0 || area[i - 1] !== 13) return true;
  }
  return false;
}

/**
 * Adds `chunk` to `pending` and tries to complete the head. `maxBytes` bounds the head size
 * (request line plus headers); past it the result is a 431. A bare LF is refused (400) as soon
 * as it arrives rather than at the head timeout. Pieces are joined once, when the head is whole.
 */
export function readHead(pending: PendingBytes | undefined, chunk: Buffer, maxBytes: number): HeadChunk {
  if (pending === undefined) {
    const end = chunk.indexOf(CRLFCRLF);
    if (end === -1) {
      if (chunk.length > maxBytes) return tooLarge(maxBytes);
      if (hasBareLf(chunk, 0)) return bareLf;
      const keep = new PendingBytes();
      keep.push(chunk);
      return { result: undefined, rest: undefined, pending: keep };
    }
    return complete(chunk, end, maxBytes);
  }
  const tail = pending.tail(3);
  const area = tail.length === 0 ? chunk : Buffer.concat([tail, chunk]);
  const at = area.indexOf(CRLFCRLF);
  if (at === -1) {
    if (pending.length + chunk.length > maxBytes) return tooLarge(maxBytes);
    if (hasBareLf(area, tail.length)) return bareLf;
    pending.push(chunk);
    return { result: undefined, rest: undefined, pending };
  }
  const end = pending.length - tail.length + at;
  return complete(Buffer.concat([pending.join(), chunk]), end, maxBytes);
}

function complete(buf: Buffer, end: number, maxBytes: number): HeadChunk {
  if (end > maxBytes) return tooLarge(maxBytes);
  const result = parseHead(buf.toString('latin1', 0, end));
  const restStart = end + 4;
  return { result, rest: restStart < buf.length ? buf.subarray(restStart) : undefined, pending: undefined };
}
