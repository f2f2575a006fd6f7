/**
 * The gateway: holds client connections on the client port (the article's mochiweb app).
 *
 * It owns raw `net` sockets and speaks just enough HTTP/1.1 for its routes (see http-head.ts),
 * logs connections into the router, and writes each message's shared frame to them. All timing
 * runs off one 1-second interval:
 *
 * ```
 *   tick ─┬─ head deadlines due now   → 408 + close   (client never finished its request head)
 *         ├─ poll deadlines due now   → empty answer  (long-poll timeout)
 *         └─ 1/heartbeat of the list  → SSE comment, WebSocket ping or stale cut, token expiry
 * ```
 *
 * so an idle connection costs no timer, and heartbeats are spread evenly over the interval.
 * The wheel ticks at an arbitrary phase, so a deadline of T seconds is filed under `now + T + 1`:
 * timeouts fire after at least T and at most T + 1 seconds.
 */
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { Disconnect, type DisconnectReason } from '../errors.js';
import type { Logger } from '../log.js';
import type { Message } from '../router/message.js';
import type { Router } from '../router/router.js';
import { Connection, type ConnectionHost, type ConnSocket, Kind, kConn, State } from './connection.js';
import { chunk, messageJson, SSE_HEARTBEAT, tickFrame, wsControl } from './frames.js';
import { isHeadError, readHead } from './http-head.js';
import { type CommonHeaders, errorResponse, response } from './responses.js';
import { route, wsData } from './routes.js';
import { GatewayStats, type OpenByKind } from './stats.js';
import { encodeWsFrame, WS_OP_PING } from './websocket.js';
import { DeadlineSlots } from './wheel.js';

/** Gateway settings; `resolveOptions` in options.ts fills the defaults. */
export interface GatewayOptions {
  readonly port: number;
  readonly host: string;
  /** Largest request head (request line + headers), bytes; past it 431. */
  readonly maxHeadBytes: number;
  /** A connection that has not sent a complete request head by then is closed (408). */
  readonly headTimeoutMs: number;
  /** SSE comment / WebSocket ping interval. */
  readonly heartbeatMs: number;
  /** A long-poll with nothing to deliver answers empty after this long. */
  readonly pollTimeoutMs: number;
  /** `retry:` sent to SSE clients (their reconnect delay). */
  readonly sseRetryMs: number;
  /** Outbound bytes queued per connection before it is cut off. */
  readonly maxQueueBytes: number;
  /** Largest frame a WebSocket client may send. */
  readonly maxClientFrameBytes: number;
  /** Most ids one connection may log in as (`/feed/a?also=b,c`). */
  readonly maxIdsPerConnection: number;
  /** HS256 secret for client tokens; empty: tokens are not accepted. */
  readonly tokenSecret: string;
  /** Whether an id from the URL alone, without a token, may log in. */
  readonly allowAnonymous: boolean;
  /** `Access-Control-Allow-Origin` for client responses; empty for none. */
  readonly allowOrigin: string;
  /** Part 1's ticker: a chunk to every stream every this many ms; 0 is off. */
  readonly tickerMs: number;
  /** How long shutdown waits for clients to go before cutting them. */
  readonly shutdownTimeoutMs: number;
  /** Most open connections; past it new ones are closed at once. 0: no limit. */
  readonly maxConnections: number;
}

const WS_PING = encodeWsFrame(WS_OP_PING, Buffer.alloc(0));

/** Pipelined requests answered per read; the rest waits for the answers to drain. */
export const MAX_REQUESTS_PER_READ = 16;

export class Gateway implements ConnectionHost {
  readonly stats = new GatewayStats();
  readonly opts: GatewayOptions;
  readonly router: Router;
  readonly log: Logger;
  readonly maxQueueBytes: number;
  /** Headers every response carries; `date` is refreshed each tick. */
  readonly headers: { date: string; allowOrigin: string } & CommonHeaders;
  /** Seconds since start (the wheel's clock). */
  now = 0;
  readonly heads = new DeadlineSlots<Connection>();
  readonly polls = new DeadlineSlots<Connection>();
  readonly #server: net.Server;
  readonly #conns: Connection[] = [];
  readonly #headTimeout: number;
  readonly #pollTimeout: number;
  readonly #heartbeat: number;
  #cursor = 0;
  #wheel: NodeJS.Timeout | undefined;
  #ticker: NodeJS.Timeout | undefined;
  #draining = false;
  #closing: Promise<void> | undefined;
  #emptied: (() => void) | undefined;

  constructor(opts: GatewayOptions, router: Router, log: Logger) {
    this.opts = opts;
    this.router = router;
    this.log = log;
    this.maxQueueBytes = opts.maxQueueBytes;
    this.headers = { date: new Date().toUTCString(), allowOrigin: opts.allowOrigin };
    this.#headTimeout = Math.max(1, Math.ceil(opts.headTimeoutMs / 1000));
    this.#pollTimeout = Math.max(1, Math.ceil(opts.pollTimeoutMs / 1000));
    this.#heartbeat = Math.max(1, Math.round(opts.heartbeatMs / 1000));
    this.#server = net.createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
    if (opts.maxConnections > 0) this.#server.maxConnections = opts.maxConnections;
    this.#server.on('connection', (socket: ConnSocket) => this.#accept(socket));
    this.#server.on('error', (err) => this.log.error('client server error', { err }));
    this.#server.on('drop', () => this.stats.rejected++);
  }

  /** Starts listening; resolves to the bound address. */
  async listen(): Promise<AddressInfo> {
    this.#server.listen({ port: this.opts.port, host: this.opts.host, backlog: 4096 });
    await once(this.#server, 'listening');
    this.#wheel = setInterval(() => this.#tick(), 1000);
    this.#wheel.unref();
    if (this.opts.tickerMs > 0) {
      this.#ticker = setInterval(() => this.#tickAll(), this.opts.tickerMs);
      this.#ticker.unref();
    }
    return this.address();
  }

  address(): AddressInfo {
    return this.#server.address() as AddressInfo;
  }

  /** True once shutdown began. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Open sockets. */
  get open(): number {
    return this.#conns.length;
  }

  /** Open connections by transport (walks the list: for stats, not the hot path). */
  openByKind(): OpenByKind {
    const out: OpenByKind = { head: 0, test: 0, plain: 0, sse: 0, ws: 0, poll: 0 };
    for (const c of this.#conns) {
      if (c.state === State.Head) out.head++;
      else if (c.kind === Kind.Test) out.test++;
      else if (c.kind === Kind.Plain) out.plain++;
      else if (c.kind === Kind.Sse) out.sse++;
      else if (c.kind === Kind.Ws) out.ws++;
      else if (c.kind === Kind.Poll) out.poll++;
    }
    return out;
  }

  #accept(socket: ConnSocket): void {
    if (this.#draining) {
      socket.destroy();
      return;
    }
    const conn = new Connection(socket, this);
    socket[kConn] = conn;
    conn.index = this.#conns.push(conn) - 1;
    conn.since = this.now;
    this.heads.add(conn, this.now + this.#headTimeout + 1);
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', onError);
    this.stats.accepted++;
  }

  /**
   * Bytes from a client, by connection state. Pipelined requests are served in a loop, at most
   * {@link MAX_REQUESTS_PER_READ} per read; the rest waits until the answers have drained, with
   * reading paused meanwhile, so a client can never make the gateway queue more than it reads.
   * A throw while handling one connection ends that connection, never the process.
   */
  data(conn: Connection, bytes: Buffer): void {
    try {
      this.#feed(conn, bytes);
    } catch (err) {
      this.#fail(conn, err);
    }
  }

  #feed(conn: Connection, bytes: Buffer): void {
    let input: Buffer | undefined = bytes;
    let served = 0;
    while (input !== undefined) {
      switch (conn.state) {
        case State.Head: {
          if (served === MAX_REQUESTS_PER_READ) {
            this.#resumeAfterDrain(conn, input);
            return;
          }
          const got = readHead(conn.pending, input, this.opts.maxHeadBytes);
          conn.pending = got.pending;
          if (got.result === undefined) return;
          if (isHeadError(got.result)) {
            this.reject(conn, got.result.status, got.result.reason);
            return;
          }
          served++;
          input = route(this, conn, got.result, got.rest);
          break;
        }
        case State.Ws:
          wsData(this, conn, input);
          return;
        case State.Poll:
          this.holdNext(conn, input);
          return;
        default:
          // Streams take no input; anything sent is read and dropped so the socket never backs up.
          return;
      }
    }
    // Answers still queued on a keep-alive connection: read no more until the client takes them.
    if (conn.state === State.Head && conn.socket.writableLength > 0) this.#resumeAfterDrain(conn, undefined);
  }

  /** Stops reading `conn` until its queued answers have drained, then goes on with `input`. */
  #resumeAfterDrain(conn: Connection, input: Buffer | undefined): void {
    const socket = conn.socket;
    socket.pause();
    const go = (): void => {
      if (conn.state === State.Closed) return;
      socket.resume();
      if (input !== undefined) this.data(conn, input);
    };
    if (socket.writableLength > 0) socket.once('drain', go);
    else setImmediate(go);
  }

  /** A request pipelined behind a waiting long-poll: kept (bounded) until the poll is answered. */
  holdNext(conn: Connection, bytes: Buffer): void {
    const held = conn.pending === undefined ? bytes.length : conn.pending.length + bytes.length;
    if (held > this.opts.maxHeadBytes) {
      this.reject(conn, 431, `request head over ${this.opts.maxHeadBytes} bytes`);
      return;
    }
    conn.pending = conn.pending === undefined ? Buffer.from(bytes) : Buffer.concat([conn.pending, bytes]);
  }

  /** Something threw while handling `conn`: end that connection, log why, keep serving the rest. */
  #fail(conn: Connection, err: unknown): void {
    this.stats.errors++;
    this.log.error('connection handler failed; connection closed', { err });
    this.release(conn);
    conn.socket.destroy();
  }

  /** Answers with an error status naming `reason`, then closes. */
  reject(conn: Connection, status: number, reason: string, headers = ''): void {
    this.stats.rejected++;
    this.release(conn, State.Ending);
    conn.pending = undefined;
    const socket = conn.socket;
    socket.end(errorResponse(this.headers, status, reason, headers));
  }

  release(conn: Connection, next: State = State.Closed): void {
    if (conn.state === State.Closed) return;
    if (conn.ids !== null) this.router.logout(conn);
    conn.held = null;
    conn.state = next;
    if (next !== State.Closed) return;
    conn.pending = undefined;
    const list = this.#conns;
    const i = conn.index;
    const last = list.pop()!;
    if (last !== conn) {
      list[i] = last;
      last.index = i;
    }
    conn.index = -1;
    if (list.length === 0) this.#emptied?.();
  }

  /** A socket closed: log its connection out at once (the article's hibernating process never noticed). */
  closed(conn: Connection): void {
    this.release(conn);
    this.stats.closed++;
  }

  /**
   * Puts a keep-alive connection back to reading a request head. Bytes held behind a long-poll
   * are read once the answer has drained (never from inside the delivery that answered it).
   */
  awaitNextRequest(conn: Connection): void {
    conn.state = State.Head;
    conn.kind = Kind.None;
    conn.since = this.now;
    this.heads.add(conn, this.now + this.#headTimeout + 1);
    const pending = conn.pending;
    conn.pending = undefined;
    if (pending !== undefined) this.#resumeAfterDrain(conn, pending);
  }

  /** Files a waiting long-poll under its timeout. */
  awaitPoll(conn: Connection): void {
    conn.since = this.now;
    this.polls.add(conn, this.now + this.#pollTimeout + 1);
  }

  answerPoll(conn: Connection, messages: readonly Message[], extra = ''): void {
    if (conn.state !== State.Poll) return;
    this.release(conn, State.Ending);
    const last = messages.length > 0 ? messages[messages.length - 1]!.eid : this.router.lastEid();
    const body = `{"messages":[${messages.map(messageJson).join(',')}],"last":${JSON.stringify(last)}${extra}}`;
    const text = response(this.headers, 200, body, { contentType: 'application/json', close: conn.raw });
    this.stats.deliveries += messages.length;
    if (!this.answer(conn, text)) return;
    if (conn.raw || this.#draining) conn.socket.end();
    else this.awaitNextRequest(conn);
  }

  /**
   * Writes a complete answer on a connection that may be kept alive. Like stream frames it goes
   * through the slow-consumer limit: false when the client was cut off for not reading.
   */
  answer(conn: Connection, text: string): boolean {
    const socket = conn.socket;
    socket.write(text);
    this.stats.bytesOut += text.length;
    if (socket.writableLength <= this.maxQueueBytes) return true;
    conn.cut();
    return false;
  }

  answerPollEmpty(conn: Connection, reason?: DisconnectReason): void {
    if (reason !== undefined) conn.raw = true;
    this.answerPoll(conn, [], reason === undefined ? '' : `,"disconnect":${JSON.stringify(reason)}`);
  }

  #tick(): void {
    this.now++;
    this.headers.date = new Date().toUTCString();
    for (const c of this.heads.take(this.now)) {
      if (c.state === State.Head && this.now - c.since > this.#headTimeout) {
        this.stats.headTimeouts++;
        this.reject(c, 408, `request head not received within ${this.opts.headTimeoutMs} ms`);
      }
    }
    for (const c of this.polls.take(this.now)) {
      if (c.state === State.Poll && this.now - c.since > this.#pollTimeout) this.answerPollEmpty(c);
    }
    this.#sweep();
  }

  /** Visits 1/heartbeat of the connections: heartbeats, stale WebSockets, expired tokens. */
  #sweep(): void {
    const list = this.#conns;
    if (list.length === 0) return;
    const count = Math.ceil(list.length / this.#heartbeat);
    const epochSeconds = Math.floor(Date.now() / 1000);
    for (let k = 0; k < count && list.length > 0; k++) {
      if (this.#cursor >= list.length) this.#cursor = 0;
      const c = list[this.#cursor++]!;
      if (c.state !== State.Stream && c.state !== State.Ws) continue;
      if (c.exp !== 0 && c.exp <= epochSeconds) {
        this.stats.expired++;
        c.disconnect(Disconnect.TokenExpired);
      } else if (c.kind === Kind.Sse) {
        c.write(SSE_HEARTBEAT);
      } else if (c.kind === Kind.Ws) {
        if (this.now - c.since > 2 * this.#heartbeat) {
          this.stats.stale++;
          c.disconnect(Disconnect.Stale);
        } else {
          c.write(WS_PING);
        }
      }
    }
  }

  /** The article's part 1: every stream gets `Chunk N for id X`, from one timer for all. */
  #tickAll(): void {
    for (const c of this.#conns) {
      if (c.state !== State.Stream) continue;
      c.n++;
      if (c.kind === Kind.Sse) c.write(chunk(`data: Chunk ${c.n} for id ${c.firstId}\n\n`));
      else if (c.kind === Kind.Ws) c.write(wsControl('tick', { n: c.n, id: c.firstId }));
      else c.write(tickFrame(c.n, c.firstId));
    }
  }

  /**
   * Graceful shutdown: stop accepting, tell every client to reconnect (SSE `disconnect` event,
   * WebSocket close 3001, final chunk, empty long-poll answer), wait for them to go, then cut the
   * rest after `shutdownTimeoutMs`.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#draining = true;
    clearInterval(this.#wheel);
    clearInterval(this.#ticker);
    const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const c of [...this.#conns]) {
      if (c.state === State.Head) c.socket.destroy();
      else c.disconnect(Disconnect.Shutdown);
    }
    if (this.#conns.length > 0) {
      const emptied = new Promise<void>((resolve) => {
        this.#emptied = resolve;
      });
      const timer = setTimeout(() => {
        for (const c of [...this.#conns]) c.socket.destroy();
      }, this.opts.shutdownTimeoutMs);
      await emptied;
      clearTimeout(timer);
    }
    await stopped;
  }
}

function onData(this: ConnSocket, bytes: Buffer): void {
  const conn = this[kConn];
  if (conn !== undefined) (conn.gw as Gateway).data(conn, bytes);
}

function onClose(this: ConnSocket): void {
  const conn = this[kConn];
  if (conn !== undefined) (conn.gw as Gateway).closed(conn);
}

function onError(this: ConnSocket): void {
  // ECONNRESET and friends: 'close' follows and does the cleanup.
}
