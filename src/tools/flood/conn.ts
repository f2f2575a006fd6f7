/**
 * One flood connection and what it reports to: the socket and its parser state are one object
 * ({@link FloodConn} extends `net.Socket`), with small-integer fields only — no second object,
 * no back-reference property added after construction, and no double-valued field (V8 boxes
 * each in a 16-byte heap number). The listeners and the parser reach everything from `this`.
 */
import net from 'node:net';
import { LatencyHistogram } from '../msggen/latency.js';

/** Connection flags, one bit each in {@link FloodConn.flags}. */
export const F_CHUNKED = 1;
export const F_SSE = 2;
/** The welcome chunk has ended. */
export const F_WELCOMED = 4;
/** Counted as opened (a 200 head arrived). */
export const F_OPENED = 8;
/** Counted as failed (or, after opening, closed by a protocol error). */
export const F_FAILED = 16;
/** The SSE event being read has a `data:` field / an `event:` name. */
export const F_EV_DATA = 32;
export const F_EV_NAMED = 64;

/** What a worker counts; shared by all its connections (plain fields on the hot path). */
export class FloodCounters {
  /** Connections begun. */
  started = 0;
  /** Begun, no response head yet. */
  connecting = 0;
  /** Got a 200 head and still open. */
  open = 0;
  /** Got a 200 head, ever. */
  opened = 0;
  /** Opened, then closed by the server or the network (not by flood stopping). */
  closed = 0;
  /** Never opened: connect error, non-200 status, bad response. */
  failed = 0;
  /** Welcome chunks (the first chunk of each stream). */
  welcomes = 0;
  /** Messages: chunks after the welcome, or SSE events with data. */
  chunks = 0;
  /** Named SSE events (`event: disconnect`, `gap`), not counted as messages. */
  controls = 0;
  /** Bytes received, response heads included. */
  bytes = 0;
  /** Failures by error code or `HTTP_<status>`. */
  readonly errors = new Map<string, number>();
  /** Closes of opened connections by reason (`EOF`, `ECONNRESET`, …). */
  readonly closes = new Map<string, number>();
  /** Publish → receive latency of stamped messages. */
  readonly latency = new LatencyHistogram();
}

/** Tallies `key` in `map`. */
export function tally(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/** Parser outcomes besides "keep going"; the pool implements them. */
export interface ParseEvents {
  /** A 200 head arrived. */
  onOpen(conn: FloodConn): void;
  /** The response cannot be used (`HTTP_404`, `EPROTO`, …): count a failure and close. */
  onFail(conn: FloodConn, code: string): void;
}

/** What owns a connection: the counters, the parse outcomes, and the close bookkeeping. */
export interface ConnOwner extends ParseEvents {
  readonly counters: FloodCounters;
  /** The socket closed, for whatever reason. */
  onClosed(conn: FloodConn): void;
}

/**
 * One flood connection: the socket and its parser state in one object. Every field is set in
 * the constructor, so all connections share one hidden class.
 */
export class FloodConn extends net.Socket {
  readonly owner: ConnOwner;
  /** Position in the pool's connection array (swap-remove). */
  slot = -1;
  /** HTTP/chunked parser state (parser.ts); 0 = status line. */
  state = 0;
  status = 0;
  /** A head line split across reads (only while in the head). */
  line = '';
  headBytes = 0;
  /** Chunk size being read, then bytes left in the chunk. */
  size = 0;
  /** `F_*` bits. */
  flags: number;
  /** The last socket error code, for the failure/close tally. */
  err = '';
  /** Stamp scanner (scan.ts): state, high and low digit groups, low digits × 32 + fraction digits. */
  st = 0;
  stHi = 0;
  stLo = 0;
  stCounts = 0;
  /** SSE scanner (scan.ts): line state, and field-name match (position × 4 + candidate bits). */
  ln = 0;
  field = 0;

  constructor(owner: ConnOwner, sse: boolean, options?: net.SocketConstructorOpts) {
    super(options);
    this.owner = owner;
    this.flags = sse ? F_SSE : 0;
  }
}
