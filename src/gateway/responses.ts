/**
 * Response heads and small complete responses for the client port, built as strings: the gateway
 * writes raw HTTP/1.1 on its own sockets (see http-head.ts for why).
 */

const STATUS_TEXT: Record<number, string> = {
  101: 'Switching Protocols',
  200: 'OK',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  426: 'Upgrade Required',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  505: 'HTTP Version Not Supported',
};

/** Headers common to every client-port response. */
export interface CommonHeaders {
  /** `Date` value, refreshed once a second by the gateway's wheel. */
  readonly date: string;
  /** `Access-Control-Allow-Origin` value, or empty for none. */
  readonly allowOrigin: string;
}

function common(h: CommonHeaders): string {
  let out = `Server: Switchboard\r\nDate: ${h.date}\r\n`;
  if (h.allowOrigin) out += `Access-Control-Allow-Origin: ${h.allowOrigin}\r\n`;
  return out;
}

/**
 * The head of a streaming response (chunked unless `raw`, for HTTP/1.0 clients, which end by close).
 * `X-Accel-Buffering: no` tells nginx (and proxies that copy it) to pass each chunk on at once.
 */
export function streamHead(h: CommonHeaders, contentType: string, raw: boolean, extra = ''): string {
  return (
    `HTTP/1.1 200 OK\r\n${common(h)}Content-Type: ${contentType}\r\nCache-Control: no-cache\r\n` +
    'X-Accel-Buffering: no\r\n' +
    `${raw ? 'Connection: close\r\n' : 'Transfer-Encoding: chunked\r\n'}${extra}\r\n`
  );
}

/** A complete response with a body; `close` adds `Connection: close`. */
export function response(
  h: CommonHeaders,
  status: number,
  body: string,
  opts: { contentType?: string; close?: boolean; headers?: string; headOnly?: boolean } = {},
): string {
  const len = Buffer.byteLength(body);
  return (
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Unknown'}\r\n${common(h)}` +
    `Content-Type: ${opts.contentType ?? 'text/plain; charset=utf-8'}\r\nContent-Length: ${len}\r\n` +
    `Cache-Control: no-store\r\n${opts.headers ?? ''}${opts.close ? 'Connection: close\r\n' : ''}\r\n` +
    (opts.headOnly ? '' : body)
  );
}

/** An error response naming the reason; always closes the connection. */
export function errorResponse(h: CommonHeaders, status: number, reason: string, headers = ''): string {
  return response(h, status, `${status} ${STATUS_TEXT[status] ?? 'Error'}: ${reason}\n`, {
    close: true,
    headers,
  });
}

/** The reply to a CORS preflight. */
export function preflight(h: CommonHeaders): string {
  return (
    `HTTP/1.1 204 No Content\r\n${common(h)}Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n` +
    'Access-Control-Allow-Headers: Authorization, Last-Event-ID, Accept\r\nAccess-Control-Max-Age: 600\r\n' +
    'Content-Length: 0\r\n\r\n'
  );
}

/** The WebSocket handshake answer. */
export function wsAccept(h: CommonHeaders, accept: string): string {
  return (
    `HTTP/1.1 101 Switching Protocols\r\nServer: Switchboard\r\nDate: ${h.date}\r\n` +
    `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`
  );
}
