/**
 * The flood client's incremental response parser: HTTP/1.x status line and headers, then
 * chunked transfer decoding, then either "one chunk is one message" (the article's `/test`
 * stream and plain `/feed` streams) or Server-Sent Events (scan.ts). Nothing received
 * is kept: a few small integers on the connection say where the parser is, so a chunk split
 * across TCP reads, or many chunks in one read, cost nothing extra.
 *
 * ```
 *  STATUS ─► HEADER ─► SIZE ─► (EXT) ─► SIZE_LF ─► DATA ─► DATA_CR ─► DATA_LF ─┐
 *                        ▲                                                     │
 *                        └─────────────────────────────────────────────────────┘
 *            (no chunked coding) ─► BODY until close
 * ```
 *
 * The first chunk of a stream is the server's welcome; it is counted in `welcomes`, not in
 * `chunks`.
 */
import {
  F_CHUNKED,
  F_SSE,
  F_WELCOMED,
  type FloodConn,
  type FloodCounters,
  type ParseEvents,
} from './conn.js';
import { finishStamp, resetStamp, scanBytes, sseBytes } from './scan.js';

/** Parser states (small integers, so the connection keeps one Smi field). */
const S_STATUS = 0;
const S_HEADER = 1;
const S_SIZE = 2;
const S_EXT = 3;
const S_SIZE_LF = 4;
const S_DATA = 5;
const S_DATA_CR = 6;
const S_DATA_LF = 7;
const S_TRAILER = 8;
const S_BODY = 9;
const S_END = 10;

const LF = 10;
const CR = 13;
/** Longest response head accepted before the connection counts as failed (`EHEADTOOBIG`). */
export const MAX_HEAD_BYTES = 16 * 1024;

/**
 * Parses `buf[0, n)` received on `conn`. Returns false when the connection failed (after
 * calling `events.onFail`) and the rest must be ignored.
 */
export function parse(
  conn: FloodConn,
  buf: Buffer,
  n: number,
  ctr: FloodCounters,
  events: ParseEvents,
): boolean {
  let i = 0;
  while (i < n) {
    const state = conn.state;
    if (state <= S_HEADER) {
      i = parseHead(conn, buf, i, n, events);
      if (i < 0) return false;
      continue;
    }
    if (state === S_DATA) {
      const take = Math.min(conn.size, n - i);
      const end = i + take;
      if ((conn.flags & F_WELCOMED) !== 0) {
        if ((conn.flags & F_SSE) !== 0) sseBytes(conn, buf, i, end, ctr);
        else scanBytes(conn, buf, i, end, ctr);
      }
      conn.size -= take;
      i = end;
      if (conn.size === 0) {
        conn.state = S_DATA_CR;
        endChunk(conn, ctr);
      }
      continue;
    }
    if (state === S_BODY) {
      if ((conn.flags & F_SSE) !== 0) sseBytes(conn, buf, i, n, ctr);
      return true;
    }
    const b = buf[i++]!;
    switch (state) {
      case S_SIZE: {
        const h = hexValue(b);
        if (h >= 0) {
          conn.size = conn.size * 16 + h;
          if (conn.size > 0x7ffffff) return fail(conn, events, 'EPROTO');
        } else if (b === CR) conn.state = S_SIZE_LF;
        else if (b === LF) startChunk(conn);
        else if (b === 0x3b || b === 0x20 || b === 0x09) conn.state = S_EXT;
        else return fail(conn, events, 'EPROTO');
        break;
      }
      case S_EXT:
        if (b === LF) startChunk(conn);
        else if (b === CR) conn.state = S_SIZE_LF;
        break;
      case S_SIZE_LF:
        if (b !== LF) return fail(conn, events, 'EPROTO');
        startChunk(conn);
        break;
      case S_DATA_CR:
        if (b === CR) conn.state = S_DATA_LF;
        else if (b === LF) conn.state = S_SIZE;
        else return fail(conn, events, 'EPROTO');
        break;
      case S_DATA_LF:
        if (b !== LF) return fail(conn, events, 'EPROTO');
        conn.state = S_SIZE;
        break;
      case S_TRAILER:
        // Trailer lines end with an empty line; a bare CRLF right away is the usual case.
        if (b === LF) {
          if (conn.size === 0) conn.state = S_END;
          conn.size = 0;
        } else if (b !== CR) conn.size = 1;
        break;
      default:
        // S_END: the server finished the body; anything more is ignored until it closes.
        return true;
    }
  }
  return true;
}

function fail(conn: FloodConn, events: ParseEvents, code: string): false {
  events.onFail(conn, code);
  return false;
}

function failHead(conn: FloodConn, events: ParseEvents, code: string): number {
  events.onFail(conn, code);
  return -1;
}

function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  const l = b | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

/** The size line is complete: a data chunk starts, or the zero chunk ends the body. */
function startChunk(conn: FloodConn): void {
  if (conn.size === 0) {
    conn.state = S_TRAILER;
    return;
  }
  conn.state = S_DATA;
  if ((conn.flags & F_SSE) === 0) resetStamp(conn);
}

/** A chunk's data is complete: the welcome, or (not SSE) one message. */
function endChunk(conn: FloodConn, ctr: FloodCounters): void {
  if ((conn.flags & F_WELCOMED) === 0) {
    conn.flags |= F_WELCOMED;
    ctr.welcomes++;
    return;
  }
  if ((conn.flags & F_SSE) !== 0) return;
  ctr.chunks++;
  finishStamp(conn, ctr);
}

/** Reads the status line and headers; returns the next index, or -1 when the connection failed. */
function parseHead(conn: FloodConn, buf: Buffer, i: number, n: number, events: ParseEvents): number {
  while (i < n) {
    let lf = buf.indexOf(LF, i);
    if (lf >= n) lf = -1;
    const stop = lf === -1 ? n : lf;
    conn.headBytes += stop - i + (lf === -1 ? 0 : 1);
    if (conn.headBytes > MAX_HEAD_BYTES) return failHead(conn, events, 'EHEADTOOBIG');
    if (lf === -1) {
      conn.line += buf.toString('latin1', i, n);
      return n;
    }
    let line = conn.line + buf.toString('latin1', i, lf);
    conn.line = '';
    i = lf + 1;
    if (line.charCodeAt(line.length - 1) === CR) line = line.slice(0, -1);
    if (conn.state === S_STATUS) {
      // "HTTP/1.1 200 OK"
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(line);
      if (m === null) return failHead(conn, events, 'EPROTO');
      conn.status = Number(m[1]);
      conn.state = S_HEADER;
      continue;
    }
    if (line.length > 0) {
      const colon = line.indexOf(':');
      if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === 'transfer-encoding') {
        if (
          line
            .slice(colon + 1)
            .toLowerCase()
            .includes('chunked')
        )
          conn.flags |= F_CHUNKED;
        else conn.flags &= ~F_CHUNKED;
      }
      continue;
    }
    // Empty line: the head is complete.
    if (conn.status === 100) {
      conn.state = S_STATUS;
      continue;
    }
    if (conn.status !== 200) return failHead(conn, events, `HTTP_${conn.status}`);
    if ((conn.flags & F_CHUNKED) !== 0) conn.state = S_SIZE;
    else {
      // Without chunked coding there are no chunks to tell the welcome apart; SSE still has events.
      conn.state = S_BODY;
      conn.flags |= F_WELCOMED;
    }
    events.onOpen(conn);
    return i;
  }
  return i;
}
