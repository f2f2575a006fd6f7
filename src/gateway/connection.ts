/**
 * One client connection, its lifecycle, and the two contracts it sits between: the
 * {@link Transport} that frames what it is sent, and the {@link GatewayContext} it belongs to.
 *
 * A connection is a raw socket plus a few fields, kept small and of one shape because a gateway
 * holds tens of thousands of them. No closures, timers or buffers of its own while idle: the
 * socket's listeners are shared functions that find the connection through a symbol
 * back-reference, and every deadline comes from the gateway's one coarse wheel.
 *
 * ```
 *            request head parsed                 final answer written
 *   Head ───────────────────────▶ Open ──────────────────────────────▶ Ending ──▶ Closed
 *    │ ▲  (Last-Event-ID: Resuming ─▶ Open)  │ poll answered, keep-alive   ▲        ▲
 *    │ └──────────────────────────────────────┘                            │        │
 *    └─ 4xx, 408, OPTIONS/HEAD/healthz with close ────────────────────────┘  socket closed
 * ```
 *
 * Every state has a deadline: Head the head timeout (408), Open the heartbeat sweep (streams) or
 * the poll timeout, Resuming the head timeout, Ending the linger time after which the socket is
 * destroyed whether or not the client closed its side.
 */
import type { Socket } from 'node:net';
import type { TextDecoder } from 'node:util';
import type { DisconnectReason } from '../errors.js';
import type { Logger } from '../log.js';
import type { Message } from '../message.js';
import type { PendingBytes } from './bytes.js';
import { unchunk } from './frames.js';
import type { GatewayOptions } from './gateway-options.js';
import type { Receiver } from './hub.js';
import type { CommonHeaders } from './responses.js';
import type { GatewayStats, TransportName } from './stats.js';

/** Where a connection is in its life. The transport is separate: {@link Connection.transport}. */
export enum State {
  /** Reading a request head (new, or between keep-alive requests). */
  Head = 0,
  /** Logged in: a stream or WebSocket is open, or a long-poll waits for a message. */
  Open = 1,
  /** Logged in, replaying history; live messages are held until the replay is written. */
  Resuming = 2,
  /** The final answer is written; the socket lingers until the client closes or the deadline. */
  Ending = 3,
  Closed = 4,
}

export type { TransportName } from './stats.js';

/** Why a resume could not replay: the last id the client gave and the reason. */
export interface Gap {
  readonly last: string;
  readonly reason: string;
}

/**
 * One way of carrying messages to a client. Each lives in `transports/<name>.ts` with its frames;
 * the gateway calls these for every open connection of that transport.
 */
export interface Transport {
  readonly name: TransportName;
  /** Delivers one live message to an open connection. */
  deliver(conn: Connection, msg: Message): void;
  /** A resume finished: writes what the client missed, after telling it of a `gap` if any. */
  resumed(conn: Connection, missed: readonly Message[], gap: Gap | undefined): void;
  /** Once per heartbeat period while open: keep proxies awake, notice dead peers. */
  heartbeat(conn: Connection): void;
  /** Part 1's ticker: `Chunk N for id X`. */
  tick(conn: Connection): void;
  /** Writes the goodbye that says why the connection ends (the caller then ends the socket). */
  goodbye(conn: Connection, reason: DisconnectReason): void;
  /** Bytes from the client while open or resuming. */
  input(conn: Connection, bytes: Buffer): void;
}

/** What connections and transports need from the gateway that owns them. */
export interface GatewayContext {
  readonly opts: GatewayOptions;
  readonly stats: GatewayStats;
  readonly log: Logger;
  /** Headers every response carries; `date` is refreshed each tick. */
  readonly headers: CommonHeaders;
  /** Seconds since start (the wheel's clock). */
  readonly now: number;
  /** True once shutdown began. */
  readonly draining: boolean;
  /** The API's `/api/send` URL for the demo page ('' when this process has no API). */
  readonly publishUrl: string;
  /** Bytes from a client (the shared `data` listener). */
  data(conn: Connection, bytes: Buffer): void;
  /** A socket closed (the shared `close` listener). */
  closed(conn: Connection): void;
  /** Logs `conn` out and moves it to `next`; with `Closed` (the default) also forgets it. */
  release(conn: Connection, next?: State): void;
  /** Ends `conn` after `last` (if any): Ending, with the linger deadline. */
  finish(conn: Connection, last?: string | Buffer): void;
  /** Answers with an error status naming `reason`, then ends the connection. */
  reject(conn: Connection, status: number, reason: string, headers?: string): void;
  /** Logs `conn` in as `ids` with `transport`; with `last`, replays what it missed first. */
  attach(conn: Connection, transport: Transport, ids: readonly string[], last: string | undefined): void;
  /** Files a waiting long-poll under its timeout. */
  awaitPoll(conn: Connection): void;
  /** Puts a keep-alive connection back to reading a request head. */
  awaitNextRequest(conn: Connection): void;
  /** Keeps a request pipelined behind a waiting long-poll (bounded) until it is answered. */
  holdNext(conn: Connection, bytes: Buffer): void;
  /** The newest event id: a resume cursor meaning "from now on". */
  lastEid(): string;
}

/** Symbol under which a socket points back to its connection. */
export const kConn = Symbol('switchboard.connection');

/** A socket with the back-reference the shared listeners use. */
export type ConnSocket = Socket & { [kConn]?: Connection };

/** State of a fragmented WebSocket message being received (only while one is). */
export interface WsFragments {
  /** Opcode of the first fragment (text or binary). */
  readonly opcode: number;
  /** Payload bytes received so far. */
  length: number;
  /** Streaming UTF-8 check of a text message. */
  readonly utf8: TextDecoder | undefined;
}

export class Connection implements Receiver {
  ids: string | string[] | null = null;
  readonly socket: ConnSocket;
  readonly host: GatewayContext;
  state: State = State.Head;
  transport: Transport | null = null;
  /** HTTP/1.0 stream: frames are written without chunk framing and the stream ends by closing. */
  unframed = false;
  /** Close after the current answer (HTTP/1.0 without keep-alive, or `Connection: close`). */
  closeAfter = false;
  /** Messages (and ticks) written, the article's `#N`. */
  n = 0;
  /** Partial request head, partial WebSocket frame, or a request held behind a long-poll. */
  pending: PendingBytes | undefined = undefined;
  /** Live messages held while a resume replay is being read. */
  held: Message[] | null = null;
  /** Position in the gateway's connection list. */
  index = -1;
  /** Wheel second of the last sign of life from a WebSocket client. */
  since = 0;
  /** Wheel second the stream was opened (`--access-log` only). */
  openedAt = 0;
  /** Wheel second of this connection's current deadline (0: none; the sweep watches it). */
  due = 0;
  /** Token expiry, seconds since the epoch; 0 for anonymous. */
  exp = 0;
  /** A fragmented WebSocket message in progress. */
  fragments: WsFragments | null = null;

  constructor(socket: ConnSocket, host: GatewayContext) {
    this.socket = socket;
    this.host = host;
  }

  /** The first id this connection logged in as (for the ticker and logs). */
  get firstId(): string {
    const ids = this.ids;
    return ids === null ? '' : typeof ids === 'string' ? ids : ids[0]!;
  }

  /** Delivers a message; false if this connection can no longer take messages. */
  push(msg: Message): boolean {
    if (this.state === State.Resuming) {
      this.held?.push(msg);
      return true;
    }
    if (this.state !== State.Open) return false;
    this.transport!.deliver(this, msg);
    // The write may have cut a slow consumer off (state changes under us).
    return (this.state as State) !== State.Closed;
  }

  /**
   * Writes a frame (chunk-framed for HTTP/1.1 streams). Cuts the connection off when its
   * outbound queue passes the limit: a client that stops reading is never buffered without end.
   */
  write(frame: Buffer): void {
    const socket = this.socket;
    socket.write(this.unframed ? unchunk(frame) : frame);
    this.host.stats.bytesOut += frame.length;
    if (socket.writableLength > this.host.opts.maxQueueBytes) this.cut();
  }

  /** Writes response text (a head, a whole answer) under the same limit; false if cut off. */
  send(text: string): boolean {
    const socket = this.socket;
    socket.write(text);
    this.host.stats.bytesOut += text.length;
    if (socket.writableLength <= this.host.opts.maxQueueBytes) return true;
    this.cut();
    return false;
  }

  /** Drops a slow consumer at once (its queue is full, a goodbye frame would not get through). */
  cut(): void {
    if (this.state === State.Closed) return;
    this.host.stats.slowConsumers++;
    this.host.release(this);
    this.socket.destroy();
  }

  /**
   * Ends the connection telling the client why: SSE gets a `disconnect` event, WebSocket a close
   * frame with the numbered code, chunked streams their final chunk, a waiting long-poll an
   * answer naming the reason. Then the socket is ended and lingers (see {@link State.Ending}).
   */
  disconnect(reason: DisconnectReason): void {
    const state = this.state;
    if (state === State.Closed || state === State.Ending) return;
    if (state !== State.Head) this.transport?.goodbye(this, reason);
    this.host.finish(this);
  }
}
