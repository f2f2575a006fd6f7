/** Gateway settings; `resolveOptions` in options.ts fills the defaults. */
export interface GatewayOptions {
  readonly port: number;
  readonly host: string;
  /** Largest request head (request line + headers), bytes; past it 431. */
  readonly maxHeadBytes: number;
  /** A connection that has not sent a complete request head by then is closed (408). */
  readonly headTimeoutMs: number;
  /** How long a connection whose final answer is written may stay open for the client to close it. */
  readonly lingerMs: number;
  /** SSE comment / WebSocket ping / plain-stream heartbeat interval. */
  readonly heartbeatMs: number;
  /** A long-poll with nothing to deliver answers empty after this long. */
  readonly pollTimeoutMs: number;
  /** `retry:` sent to SSE clients (their reconnect delay). */
  readonly sseRetryMs: number;
  /** Outbound bytes queued per connection before it is cut off. */
  readonly maxQueueBytes: number;
  /** Largest frame (and fragmented message) a WebSocket client may send. */
  readonly maxClientFrameBytes: number;
  /** Most ids one connection may log in as (`/feed/a?also=b,c`). */
  readonly maxIdsPerConnection: number;
  /** HS256 secret for client tokens; empty: tokens are not accepted. */
  readonly tokenSecret: string;
  /** Required token audience and issuer (empty: not checked); longest token lifetime from now (0: none). */
  readonly tokenAudience: string;
  readonly tokenIssuer: string;
  readonly tokenMaxTtlMs: number;
  /** Whether an id from the URL alone, without a token, may log in. */
  readonly allowAnonymous: boolean;
  /** `Access-Control-Allow-Origin` for client responses; empty for none. */
  readonly allowOrigin: string;
  /** Part 1's ticker: a chunk to every stream every this many ms; 0 is off. */
  readonly tickerMs: number;
  /** How long shutdown waits for clients to go before cutting them. */
  readonly shutdownTimeoutMs: number;
  /**
   * Listen with SO_REUSEPORT (and not through a node:cluster primary): each process sharing the
   * port has its own accept queue and the kernel picks one per connection.
   */
  readonly reusePort: boolean;
  /** Most open connections; past it new ones are closed at once. 0: no limit. */
  readonly maxConnections: number;
  /** Log each stream's open and close (info, component `gateway.access`). */
  readonly accessLog: boolean;
  /** Serve the demo page at `GET /`. */
  readonly demo: boolean;
}
