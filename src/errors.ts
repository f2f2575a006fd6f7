/**
 * Every error Switchboard raises on purpose, in one place.
 *
 * Each class carries a stable `code` string (for logs, JSON error bodies and tests), the HTTP
 * status it maps to when it reaches an API client, and keeps the underlying `cause`. Messages
 * name the bad input so an operator can act on them without reading code.
 */

/** Stable machine-readable error codes. Never renamed once published. */
export type ErrorCode =
  | 'ERR_INVALID_ID'
  | 'ERR_INVALID_INPUT'
  | 'ERR_INVALID_OPTION'
  | 'ERR_USAGE'
  | 'ERR_PAYLOAD_TOO_LARGE'
  | 'ERR_NOT_FOUND'
  | 'ERR_METHOD_NOT_ALLOWED'
  | 'ERR_UNAUTHORIZED'
  | 'ERR_UNAVAILABLE'
  | 'ERR_CLOSED'
  | 'ERR_INTERNAL'
  | 'ERR_WIRE_FORMAT';

/** Base class: `code` is stable, `status` is the HTTP status an API answers with. */
export class SwitchboardError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; status?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = options.status ?? 500;
  }

  /** The JSON body an API answers with. */
  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/** What a caller is told of an error that is not one of ours (500; the error itself is logged, not shown). */
export function internalError(): SwitchboardError {
  return new SwitchboardError('ERR_INTERNAL', 'internal error (logged on the server)');
}

/** Input from a client or a file that cannot be used (HTTP 400). */
export class InvalidInputError extends SwitchboardError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ERR_INVALID_INPUT', message, { cause: options.cause, status: 400 });
  }
}

/** An id that breaks the id rules (ids.ts), from a client or a file (HTTP 400). */
export class InvalidIdError extends InvalidInputError {
  override readonly code = 'ERR_INVALID_ID';
}

/** No such route (HTTP 404). */
export class NotFoundError extends SwitchboardError {
  constructor(message: string) {
    super('ERR_NOT_FOUND', message, { status: 404 });
  }
}

/** The route exists but not with this method (HTTP 405); `allow` lists the methods it takes. */
export class MethodNotAllowedError extends SwitchboardError {
  readonly allow: readonly string[];
  constructor(message: string, allow: readonly string[]) {
    super('ERR_METHOD_NOT_ALLOWED', message, { status: 405 });
    this.allow = allow;
  }
}

/** A body, message or frame larger than the configured limit (HTTP 413). */
export class PayloadTooLargeError extends SwitchboardError {
  readonly limit: number;
  constructor(message: string, limit: number) {
    super('ERR_PAYLOAD_TOO_LARGE', message, { status: 413 });
    this.limit = limit;
  }
}

/** Missing or bad credentials (HTTP 401). */
export class UnauthorizedError extends SwitchboardError {
  constructor(message: string) {
    super('ERR_UNAUTHORIZED', message, { status: 401 });
  }
}

/** A dependency (bus, store) is down; the request was not carried out (HTTP 503). */
export class UnavailableError extends SwitchboardError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ERR_UNAVAILABLE', message, { cause: options.cause, status: 503 });
  }
}

/** The component was closed before or during the call. */
export class ClosedError extends SwitchboardError {
  constructor(message: string) {
    super('ERR_CLOSED', message, { status: 503 });
  }
}

/**
 * A bad option value, or a component used in a way its configuration does not allow (CLI exit
 * code 2). Reaching an API client at run time it is the server's fault, not the caller's: 500.
 */
export class ConfigError extends SwitchboardError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ERR_INVALID_OPTION', message, { cause: options.cause, status: 500 });
  }
}

/** Wrong command-line use: unknown flag, missing argument (CLI exit code 2). */
export class UsageError extends SwitchboardError {
  constructor(message: string) {
    super('ERR_USAGE', message, { status: 400 });
  }
}

/** A broken internal invariant: a bug, reported with what was found. */
export class InternalError extends SwitchboardError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ERR_INTERNAL', message, { cause: options.cause, status: 500 });
  }
}

/** A payload on the bus that is not in Switchboard's wire format (another program's, or corrupt). */
export class WireFormatError extends SwitchboardError {
  constructor(message: string) {
    super('ERR_WIRE_FORMAT', message, { status: 500 });
  }
}

/** True when `err` is one of ours with the given code. */
export function isSwitchboardError(err: unknown, code?: ErrorCode): err is SwitchboardError {
  return err instanceof SwitchboardError && (code === undefined || err.code === code);
}

/** The message of any thrown value, for logs. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Why the server ends a client connection. Codes 3000–3499 mean "reconnect" (the client should
 * come back, after a backoff), 3500–3999 mean "do not reconnect" (it would fail the same way).
 * WebSocket closes use the code directly; SSE and chunked streams send a final `disconnect`
 * event carrying the same object before closing.
 */
export interface DisconnectReason {
  readonly code: number;
  readonly reason: string;
  readonly reconnect: boolean;
}

/** The numbered disconnect reasons. */
export const Disconnect = {
  /** The server is shutting down or restarting. */
  Shutdown: { code: 3001, reason: 'shutdown', reconnect: true },
  /** The client did not read fast enough; its outbound queue passed the limit. */
  SlowConsumer: { code: 3002, reason: 'slow consumer', reconnect: true },
  /** No sign of life from the client within the heartbeat window. */
  Stale: { code: 3003, reason: 'stale connection', reconnect: true },
  /** The server failed while serving this connection. */
  InternalError: { code: 3004, reason: 'internal server error', reconnect: true },
  /** The token expired while connected; reconnect with a fresh one. */
  TokenExpired: { code: 3005, reason: 'token expired', reconnect: true },
  /** An operator or the API ended the connection; the client may come back. */
  ForceReconnect: { code: 3006, reason: 'force reconnect', reconnect: true },
  /**
   * The bus may have lost messages for this connection (the gateway's NATS connection dropped,
   * or a router it had lost touch with is back): reconnect with the last event id and the
   * history fills the hole (Centrifugo's "insufficient state").
   */
  InsufficientState: { code: 3007, reason: 'insufficient state', reconnect: true },
  /** The token is missing, malformed or its signature does not match. */
  InvalidToken: { code: 3500, reason: 'invalid token', reconnect: false },
  /** The client sent something the protocol does not allow. */
  BadRequest: { code: 3501, reason: 'bad request', reconnect: false },
  /** The client sent a frame over the size limit. */
  MessageTooBig: { code: 3502, reason: 'message too big', reconnect: false },
  /** The token does not allow the ids asked for. */
  Forbidden: { code: 3503, reason: 'permission denied', reconnect: false },
  /** An operator or the API ended the connection for good. */
  ForceDisconnect: { code: 3504, reason: 'force disconnect', reconnect: false },
} as const satisfies Record<string, DisconnectReason>;
