/**
 * The gateway: holds client connections on the client port (the article's mochiweb app).
 *
 * It owns raw `net` sockets and speaks just enough HTTP/1.1 for its routes (http-head.ts,
 * request.ts), keeps its connection index (hub.ts), hands each message to the transport of every
 * connection logged in as a recipient (transports/), and gives every connection a deadline in
 * every state (connection.ts). All timing runs off one 1-second interval:
 *
 * ```
 *   tick ─┬─ deadlines due now  → Head: 408 · poll: empty answer · Resuming: cut · Ending: destroy
 *         └─ 1/heartbeat of the list → SSE comment, WebSocket ping or stale cut, token expiry
 * ```
 *
 * so an idle connection costs no timer, and heartbeats are spread evenly over the interval.
 * The wheel ticks at an arbitrary phase, so a deadline of T seconds is filed under `now + T + 1`:
 * timeouts fire after at least T and at most T + 1 seconds.
 */
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import type { Deliverer, GatewayLoad } from '../bus/bus.js';
import { ConfigError, Disconnect, type DisconnectReason } from '../errors.js';
import { reusePortSupported } from '../limits.js';
import type { Logger } from '../log.js';
import type { Message } from '../message.js';
import type { Replay } from '../router/history.js';
import { PendingBytes } from './bytes.js';
import {
  Connection,
  type ConnSocket,
  type GatewayContext,
  kConn,
  State,
  type Transport,
} from './connection.js';
import type { GatewayOptions } from './gateway-options.js';
import { isHeadError, readHead } from './http-head.js';
import { Hub, type InterestListener } from './hub.js';
import { route } from './request.js';
import { type CommonHeaders, errorResponse } from './responses.js';
import { emptyOpenByKind, GatewayStats, type OpenByKind } from './stats.js';
import { answerPollEmpty } from './transports/poll.js';
import { DeadlineSlots } from './wheel.js';

export type { GatewayOptions } from './gateway-options.js';

/** Pipelined requests answered per read; the rest waits for the answers to drain. */
export const MAX_REQUESTS_PER_READ = 16;

/** Where resume history comes from (the router's, or the cluster's). */
export interface ReplaySource {
  /** What a client logged in as `ids` missed since `lastEid`, or why that cannot be known. */
  replay(ids: readonly string[], lastEid: string): Promise<Replay>;
  /** The newest event id: a resume cursor meaning "from now on". */
  lastEid(): string;
}

/** The gateway of one process: client sockets, their lifecycle, and the hub they log in to. */
export class Gateway implements GatewayContext, Deliverer {
  readonly stats = new GatewayStats();
  readonly opts: GatewayOptions;
  readonly log: Logger;
  /** `--access-log`: stream opens and closes. */
  readonly #access: Logger | undefined;
  readonly hub: Hub;
  readonly headers: { date: string; allowOrigin: string } & CommonHeaders;
  /** Seconds since start (the wheel's clock). */
  now = 0;
  /** The API's `/api/send` URL, set once the API listens; shown by the demo page. */
  publishUrl = '';
  readonly #history: ReplaySource;
  readonly #server: net.Server;
  readonly #conns: Connection[] = [];
  readonly #deadlines = new DeadlineSlots<Connection>();
  readonly #headTimeout: number;
  readonly #pollTimeout: number;
  readonly #linger: number;
  readonly #heartbeat: number;
  #cursor = 0;
  /** Connections owed a heartbeat visit (fractional: L/heartbeat accrue per tick). */
  #beatBudget = 0;
  #wheel: NodeJS.Timeout | undefined;
  #ticker: NodeJS.Timeout | undefined;
  #draining = false;
  #closing: Promise<void> | undefined;
  #emptied: (() => void) | undefined;

  /** `interest`: told when an id gets its first connection here or loses its last (the bus). */
  constructor(opts: GatewayOptions, history: ReplaySource, log: Logger, interest?: InterestListener) {
    this.opts = opts;
    this.#history = history;
    this.log = log;
    this.#access = opts.accessLog ? log.child('access') : undefined;
    this.hub = new Hub(interest);
    this.headers = { date: new Date().toUTCString(), allowOrigin: opts.allowOrigin };
    this.#headTimeout = Math.max(1, Math.ceil(opts.headTimeoutMs / 1000));
    this.#pollTimeout = Math.max(1, Math.ceil(opts.pollTimeoutMs / 1000));
    this.#linger = Math.max(1, Math.ceil(opts.lingerMs / 1000));
    this.#heartbeat = Math.max(1, Math.round(opts.heartbeatMs / 1000));
    this.#server = net.createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
    if (opts.maxConnections > 0) this.#server.maxConnections = opts.maxConnections;
    this.#server.on('connection', (socket: ConnSocket) => this.#accept(socket));
    this.#server.on('error', (err) => this.log.error('client server error', { err }));
    this.#server.on('drop', () => this.stats.rejected++);
  }

  /** Starts listening; resolves to the bound address. */
  async listen(): Promise<AddressInfo> {
    if (this.opts.reusePort && !reusePortSupported()) {
      throw new ConfigError(
        `--reuse-port needs Node ≥ 22.12 on Linux (this is Node ${process.versions.node} on ${process.platform})`,
      );
    }
    this.#server.listen({
      port: this.opts.port,
      host: this.opts.host,
      backlog: 4096,
      // exclusive: in a node:cluster worker, bind here instead of asking the primary for its handle.
      ...(this.opts.reusePort ? { reusePort: true, exclusive: true } : {}),
    });
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

  /** Open sockets, in every state. */
  get open(): number {
    return this.#conns.length;
  }

  /** Open sockets by state and transport; the parts add up to {@link open}. */
  openByKind(): OpenByKind {
    const out = emptyOpenByKind();
    for (const c of this.#conns) {
      if (c.state === State.Ending) out.ending++;
      else if (c.state === State.Head || c.transport === null) out.head++;
      else out[c.transport.name]++;
    }
    return out;
  }

  /** Delivers `msg` to this gateway's connections of `recipients` (the bus calls this). */
  deliver(msg: Message, recipients: readonly string[]): number {
    return this.hub.deliver(msg, recipients);
  }

  /** What this gateway holds, announced to the cluster. */
  load(): GatewayLoad {
    return { connections: this.#conns.length, ids: this.hub.ids };
  }

  lastEid(): string {
    return this.#history.lastEid();
  }

  #accept(socket: ConnSocket): void {
    if (this.#draining) {
      socket.destroy();
      return;
    }
    const conn = new Connection(socket, this);
    socket[kConn] = conn;
    conn.index = this.#conns.push(conn) - 1;
    this.#deadline(conn, this.#headTimeout);
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', onError);
    this.stats.accepted++;
  }

  /** Files `conn`'s deadline `seconds` from now (one per connection; a new one replaces it). */
  #deadline(conn: Connection, seconds: number): void {
    const due = this.now + seconds + 1;
    if (conn.due === due) return;
    conn.due = due;
    this.#deadlines.add(conn, due);
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
        case State.Open:
        case State.Resuming:
          conn.transport!.input(conn, input);
          return;
        default:
          // Ending or closed: what the client still sends is read and dropped.
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

  holdNext(conn: Connection, bytes: Buffer): void {
    const held = (conn.pending?.length ?? 0) + bytes.length;
    if (held > this.opts.maxHeadBytes) {
      this.reject(conn, 431, `request head over ${this.opts.maxHeadBytes} bytes`);
      return;
    }
    conn.pending ??= new PendingBytes();
    conn.pending.push(bytes);
  }

  /** Something threw while handling `conn`: end that connection, log why, keep serving the rest. */
  #fail(conn: Connection, err: unknown): void {
    this.stats.errors++;
    this.log.error('connection handler failed; connection closed', { err });
    this.release(conn);
    conn.socket.destroy();
  }

  reject(conn: Connection, status: number, reason: string, headers = ''): void {
    this.stats.rejected++;
    this.finish(conn, errorResponse(this.headers, status, reason, headers));
  }

  finish(conn: Connection, last?: string | Buffer): void {
    const state = conn.state;
    if (state === State.Closed || state === State.Ending) return;
    this.release(conn, State.Ending);
    conn.pending = undefined;
    conn.fragments = null;
    this.#deadline(conn, this.#linger);
    if (last === undefined) conn.socket.end();
    else conn.socket.end(last);
  }

  release(conn: Connection, next: State = State.Closed): void {
    if (conn.state === State.Closed) return;
    if (conn.ids !== null) {
      this.#access?.info('close', {
        transport: conn.transport?.name,
        ids: conn.ids,
        seconds: this.now - conn.openedAt,
        messages: conn.n,
        remote: conn.socket.remoteAddress,
      });
      this.hub.logout(conn);
    }
    conn.held = null;
    conn.state = next;
    if (next !== State.Closed) return;
    conn.pending = undefined;
    conn.due = 0;
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

  closed(conn: Connection): void {
    this.release(conn);
    conn.socket[kConn] = undefined;
    this.stats.closed++;
  }

  awaitNextRequest(conn: Connection): void {
    const pending = conn.pending;
    conn.pending = undefined;
    conn.state = State.Head;
    conn.transport = null;
    this.#deadline(conn, this.#headTimeout);
    // Bytes held behind a long-poll are read once its answer has drained (never from inside the
    // delivery that answered it).
    if (pending !== undefined) this.#resumeAfterDrain(conn, pending.join());
  }

  awaitPoll(conn: Connection): void {
    this.#deadline(conn, this.#pollTimeout);
  }

  /**
   * Logs `conn` in as `ids` over `transport`. With `last` it resumes: logged in at once (so
   * nothing sent from now on is missed), live messages are held while the history is read, then
   * the replay is written and the held messages not already in it.
   */
  attach(conn: Connection, transport: Transport, ids: readonly string[], last: string | undefined): void {
    conn.transport = transport;
    conn.due = 0;
    if (this.#access !== undefined) {
      conn.openedAt = this.now;
      this.#access.info('open', {
        transport: transport.name,
        ids,
        remote: conn.socket.remoteAddress,
        ...(last === undefined ? {} : { resume: last }),
      });
    }
    if (last === undefined) {
      conn.state = State.Open;
      for (const id of ids) this.hub.login(id, conn);
      return;
    }
    conn.state = State.Resuming;
    conn.held = [];
    for (const id of ids) this.hub.login(id, conn);
    this.#deadline(conn, this.#headTimeout);
    this.#history.replay(ids, last).then(
      (replay) => this.#resumed(conn, replay, last),
      (err: unknown) => {
        this.log.warn('resume failed', { err, ids });
        if (conn.state === State.Resuming) conn.disconnect(Disconnect.InternalError);
      },
    );
  }

  #resumed(conn: Connection, replay: Replay, last: string): void {
    if (conn.state !== State.Resuming) return;
    const held = conn.held ?? [];
    conn.held = null;
    conn.state = State.Open;
    conn.due = 0;
    try {
      if (replay.ok) {
        this.stats.resumed++;
        const seen = new Set(replay.messages.map((m) => m.eid));
        conn.transport!.resumed(
          conn,
          replay.messages.concat(held.filter((m) => !seen.has(m.eid))),
          undefined,
        );
      } else {
        this.stats.gaps++;
        conn.transport!.resumed(conn, held, { last, reason: replay.reason });
      }
    } catch (err) {
      this.#fail(conn, err);
    }
  }

  #tick(): void {
    this.now++;
    this.headers.date = new Date().toUTCString();
    for (const [c, due] of this.#deadlines.take(this.now)) {
      if (c.due !== due) continue;
      c.due = 0;
      try {
        this.#expire(c);
      } catch (err) {
        this.#fail(c, err);
      }
    }
    this.#sweep();
  }

  /** A connection's deadline passed: what that means depends on its state. */
  #expire(c: Connection): void {
    switch (c.state) {
      case State.Head:
        this.stats.headTimeouts++;
        this.reject(c, 408, `request head not received within ${this.opts.headTimeoutMs} ms`);
        return;
      case State.Open:
        if (c.transport?.name === 'poll') answerPollEmpty(c);
        return;
      case State.Resuming:
        this.log.warn('resume did not finish in time; connection ended', { ids: c.ids });
        c.disconnect(Disconnect.InternalError);
        return;
      case State.Ending:
        this.stats.lingerTimeouts++;
        this.release(c);
        c.socket.destroy();
        return;
      default:
    }
  }

  /**
   * Visits the share of the connections owed a heartbeat this second: over one heartbeat
   * period every connection is visited once, however few there are.
   */
  #sweep(): void {
    const list = this.#conns;
    if (list.length === 0) {
      this.#beatBudget = 0;
      return;
    }
    this.#beatBudget = Math.min(this.#beatBudget + list.length / this.#heartbeat, list.length);
    const count = Math.floor(this.#beatBudget);
    this.#beatBudget -= count;
    const epochSeconds = Math.floor(Date.now() / 1000);
    for (let k = 0; k < count && list.length > 0; k++) {
      if (this.#cursor >= list.length) this.#cursor = 0;
      const c = list[this.#cursor++]!;
      if (c.state !== State.Open) continue;
      try {
        if (c.exp !== 0 && c.exp <= epochSeconds) {
          this.stats.expired++;
          c.disconnect(Disconnect.TokenExpired);
        } else {
          c.transport!.heartbeat(c);
        }
      } catch (err) {
        this.#fail(c, err);
      }
    }
  }

  /** The article's part 1: every stream gets `Chunk N for id X`, from one timer for all. */
  #tickAll(): void {
    for (const c of [...this.#conns]) {
      if (c.state === State.Open) c.transport!.tick(c);
    }
  }

  /** Connections logged in as `id`. */
  count(id: string): number {
    return this.hub.count(id);
  }

  /** Ends every connection logged in as `id` with `reason`; returns how many. */
  disconnect(id: string, reason: DisconnectReason): number {
    return this.hub.disconnect(id, reason);
  }

  /** Every id with a connection here. */
  heldIds(): Iterable<string> {
    return this.hub.heldIds();
  }

  /**
   * The bus says messages may have been lost: every open connection that can resume (all but the
   * article's `/test`, which has no event ids) is ended with reason 3007 and comes back with its
   * last event id. Returns how many.
   */
  missedMessages(): number {
    let n = 0;
    for (const c of [...this.#conns]) {
      if (c.state === State.Head || c.state === State.Ending || c.transport === null) continue;
      if (c.transport.name === 'test') continue;
      c.disconnect(Disconnect.InsufficientState);
      n++;
    }
    this.stats.insufficientState += n;
    return n;
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
    clearInterval(this.#ticker);
    const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const c of [...this.#conns]) {
      if (c.state === State.Head) {
        this.release(c);
        c.socket.destroy();
      } else {
        c.disconnect(Disconnect.Shutdown);
      }
    }
    if (this.#conns.length > 0) {
      const emptied = new Promise<void>((resolve) => {
        this.#emptied = resolve;
      });
      const timer = setTimeout(() => {
        for (const c of [...this.#conns]) {
          this.release(c);
          c.socket.destroy();
        }
      }, this.opts.shutdownTimeoutMs);
      await emptied;
      clearTimeout(timer);
    }
    clearInterval(this.#wheel);
    await stopped;
  }
}

function onData(this: ConnSocket, bytes: Buffer): void {
  const conn = this[kConn];
  if (conn !== undefined) conn.host.data(conn, bytes);
}

function onClose(this: ConnSocket): void {
  const conn = this[kConn];
  if (conn !== undefined) conn.host.closed(conn);
}

function onError(this: ConnSocket): void {
  // ECONNRESET and friends: 'close' follows and does the cleanup.
}
