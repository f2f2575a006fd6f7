/**
 * Gateway counters: plain numeric fields bumped on the hot path (no maps, no labels), read by
 * `/api/stats` and `/metrics`.
 */
export class GatewayStats {
  /** Sockets accepted since start. */
  accepted = 0;
  /** Sockets closed since start. */
  closed = 0;
  /** Message frames written to clients. */
  deliveries = 0;
  /** Bytes written to clients (frames and response heads). */
  bytesOut = 0;
  /** Connections cut off because their outbound queue passed the limit. */
  slowConsumers = 0;
  /** Connections closed because their request head did not arrive in time. */
  headTimeouts = 0;
  /** Requests answered with a 4xx/5xx status. */
  rejected = 0;
  /** Requests refused for a missing, bad or expired token. */
  authFailures = 0;
  /** Streams ended because their token expired. */
  expired = 0;
  /** WebSocket connections closed for not answering pings. */
  stale = 0;
  /** Resume requests answered from history, and those that could not be (gap). */
  resumed = 0;
  gaps = 0;
  /** Connections told to resume (3007) because the bus may have lost messages for them. */
  insufficientState = 0;
  /** Ended connections destroyed because the client had not closed its side within the linger time. */
  lingerTimeouts = 0;
  /** Connections ended because handling them threw (a bug, logged; the process goes on). */
  errors = 0;
}

/** The transports, as named in stats: one module each under transports/. */
export const TRANSPORT_NAMES = ['test', 'plain', 'sse', 'ws', 'poll'] as const;
export type TransportName = (typeof TRANSPORT_NAMES)[number];

/**
 * Open sockets by state and transport, computed from the connection list on demand; the parts
 * add up to the gateway's open count. `head`: reading a request head (new or between keep-alive
 * requests); `ending`: final answer written, waiting for the client to close (at most the linger
 * time); the rest by transport.
 */
export type OpenByKind = Record<'head' | TransportName | 'ending', number>;

/** A zero count of each. */
export function emptyOpenByKind(): OpenByKind {
  const out = { head: 0 } as OpenByKind;
  for (const name of TRANSPORT_NAMES) out[name] = 0;
  out.ending = 0;
  return out;
}
