/**
 * One client connection: a raw socket plus a few fields, kept small and of one shape because a
 * gateway holds tens of thousands of them. No closures, timers or buffers of its own while idle:
 * the socket's listeners are shared functions that find the connection through a symbol
 * back-reference, and all timing (head timeout, heartbeat, long-poll timeout, token expiry)
 * comes from the gateway's one coarse wheel.
 */
import type { Socket } from 'node:net';
import { Disconnect, type DisconnectReason } from '../errors.js';
import type { Message } from '../router/message.js';
import type { Receiver } from '../router/registry.js';
import {
  disconnectBody,
  LAST_CHUNK,
  plainFrame,
  sseControl,
  sseFrame,
  testFrame,
  unchunk,
  wsControl,
  wsFrame,
} from './frames.js';
import type { GatewayStats } from './stats.js';
import { closeFrame } from './websocket.js';

/** Connection states. */
export enum State {
  /** Reading a request head (new, or between keep-alive long-polls). */
  Head = 0,
  /** Streaming: `/test`, plain chunked or SSE. */
  Stream = 1,
  /** WebSocket open. */
  Ws = 2,
  /** A long-poll request waiting for a message. */
  Poll = 3,
  /** Logged in, replaying history; live messages are held until the replay is written. */
  Resuming = 4,
  /** A final response is being written; no more messages. */
  Ending = 5,
  Closed = 6,
}

/** Transports. */
export enum Kind {
  None = 0,
  /** The article's `/test/<id>` (text/html chunks, `Recvd msg #N`). */
  Test = 1,
  /** `/feed/<id>` plain chunked: one body plus newline per chunk. */
  Plain = 2,
  Sse = 3,
  Ws = 4,
  Poll = 5,
}

/** What a connection needs from the gateway that owns it. */
export interface ConnectionHost {
  readonly stats: GatewayStats;
  /** Outbound bytes a connection may have queued before it is cut off as a slow consumer. */
  readonly maxQueueBytes: number;
  /** Logs `conn` out; with `Closed` (the default) also forgets it. Idempotent. */
  release(conn: Connection, next?: State): void;
  /** Answers a waiting long-poll with `messages`. */
  answerPoll(conn: Connection, messages: readonly Message[]): void;
  /** Answers a waiting long-poll with no messages (timeout or shutdown). */
  answerPollEmpty(conn: Connection, reason?: DisconnectReason): void;
}

/** Symbol under which a socket points back to its connection. */
export const kConn = Symbol('switchboard.connection');

/** A socket with the back-reference the shared listeners use. */
export type ConnSocket = Socket & { [kConn]?: Connection };

export class Connection implements Receiver {
  ids: string | string[] | null = null;
  recent: Message[] | null = null;
  readonly socket: ConnSocket;
  readonly gw: ConnectionHost;
  state: State = State.Head;
  kind: Kind = Kind.None;
  /** HTTP/1.0 client: no chunk framing, the stream ends by closing. */
  raw = false;
  /** Messages (and ticks) written, the article's `#N`. */
  n = 0;
  /** Partial request head or WebSocket frame bytes. */
  pending: Buffer | undefined = undefined;
  /** Live messages held while a resume replay is being read. */
  held: Message[] | null = null;
  /** Position in the gateway's connection list. */
  index = -1;
  /** Wheel second of the last state change (head timeout, poll timeout) or last client frame (WS). */
  since = 0;
  /** Token expiry, seconds since the epoch; 0 for anonymous. */
  exp = 0;

  constructor(socket: ConnSocket, gw: ConnectionHost) {
    this.socket = socket;
    this.gw = gw;
  }

  /** The first id this connection logged in as (for the ticker and logs). */
  get firstId(): string {
    const ids = this.ids;
    return ids === null ? '' : typeof ids === 'string' ? ids : ids[0]!;
  }

  /** Delivers a message; false if this connection can no longer take messages. */
  push(msg: Message): boolean {
    switch (this.state) {
      case State.Stream:
      case State.Ws:
        break;
      case State.Resuming:
        this.held?.push(msg);
        return true;
      case State.Poll:
        this.gw.answerPoll(this, [msg]);
        return true;
      default:
        return false;
    }
    this.n++;
    switch (this.kind) {
      case Kind.Test:
        this.write(testFrame(msg, this.n));
        break;
      case Kind.Sse:
        this.write(sseFrame(msg));
        break;
      case Kind.Ws:
        this.write(wsFrame(msg));
        break;
      default:
        this.write(plainFrame(msg));
    }
    this.gw.stats.deliveries++;
    // The write may have cut a slow consumer off (state changes under us).
    return (this.state as State) !== State.Closed;
  }

  /**
   * Writes a frame (chunk-framed for HTTP/1.1 streams). Cuts the connection off when its
   * outbound queue passes the limit: a client that stops reading is never buffered without end.
   */
  write(frame: Buffer): void {
    const socket = this.socket;
    if (this.raw && this.kind !== Kind.Ws) socket.write(unchunk(frame));
    else socket.write(frame);
    this.gw.stats.bytesOut += frame.length;
    if (socket.writableLength > this.gw.maxQueueBytes) this.cut();
  }

  /** Drops a slow consumer at once (its queue is full, a goodbye frame would not get through). */
  cut(): void {
    if (this.state === State.Closed) return;
    this.gw.stats.slowConsumers++;
    this.gw.release(this);
    this.socket.destroy();
  }

  /**
   * Ends a stream telling the client why: SSE gets a `disconnect` event, WebSocket a close frame
   * with the numbered code, chunked streams their final chunk. Then the socket is ended (FIN
   * after the queued bytes).
   */
  disconnect(reason: DisconnectReason = Disconnect.Shutdown): void {
    const state = this.state;
    if (state === State.Closed || state === State.Ending) return;
    if (state === State.Poll) {
      this.gw.answerPollEmpty(this, reason);
      return;
    }
    this.gw.release(this, State.Ending);
    const socket = this.socket;
    if (state === State.Stream || state === State.Resuming) {
      if (this.kind === Kind.Sse) this.write(sseControl('disconnect', disconnectBody(reason)));
      if (!this.raw) socket.write(LAST_CHUNK);
    } else if (state === State.Ws) {
      socket.write(wsControl('disconnect', disconnectBody(reason)));
      socket.write(closeFrame(reason.code, reason.reason));
    }
    socket.end();
  }
}
