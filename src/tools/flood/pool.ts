/**
 * One process's share of a flood: opens its connections at its rate, parses what arrives,
 * counts. The parent runs one pool in-process (`--procs 1`) or one per forked worker.
 *
 * Connections are lean on purpose (the client must cost far less than the server it loads):
 * raw `net` sockets reading into one shared buffer (`onread`, so no per-read allocation and no
 * stream buffering), one set of listener functions for all sockets that find their state
 * through a back-reference on the socket (no closure per socket), no timer per connection, and
 * nothing received is kept.
 */
import type net from 'node:net';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { errorMessage } from '../../errors.js';
import type { HistogramSnapshot } from '../msggen/latency.js';
import { type ConnOwner, F_FAILED, F_OPENED, FloodConn, FloodCounters, tally } from './conn.js';
import { parse } from './parser.js';

/** Where a connection goes: the address to connect to and the Host header to send. */
export interface Origin {
  /** IP address (already resolved: a name would cost a DNS lookup per connection). */
  readonly host: string;
  readonly port: number;
  /** `Host:` header value, e.g. `127.0.0.1:8000`. */
  readonly hostHeader: string;
}

/** The request targets of one pool: an id template, or an explicit list (`--url-file`). */
export type FloodTargets =
  | {
      readonly kind: 'template';
      readonly origin: Origin;
      /** The path split around `{id}`: `['/test/', '']`. */
      readonly parts: readonly string[];
      /** Id of this pool's first connection; connection k gets `first + k`. */
      readonly first: number;
    }
  | {
      readonly kind: 'list';
      readonly origins: readonly Origin[];
      /** Per connection: index into `origins`, and the path (with query). */
      readonly origin: readonly number[];
      readonly paths: readonly string[];
    };

/** A pool's settings (plain data: it crosses the IPC channel to workers). */
export interface PoolOptions {
  readonly targets: FloodTargets;
  readonly count: number;
  readonly sources: readonly string[];
  /** Which of `sources` the first connection uses (spreads workers sharing sources). */
  readonly sourceStart: number;
  /** Connections per second; 0 = as fast as `maxConnecting` allows. */
  readonly rate: number;
  /** Ask for SSE (`Accept: text/event-stream`) and count SSE events as messages. */
  readonly sse: boolean;
  /** Most connections waiting for their response head at once (keeps the server's backlog sane). */
  readonly maxConnecting: number;
}

/** Cumulative figures of one pool (plain data, sent over IPC and summed by the parent). */
export interface FloodStats {
  started: number;
  connecting: number;
  open: number;
  opened: number;
  closed: number;
  failed: number;
  welcomes: number;
  chunks: number;
  controls: number;
  bytes: number;
  errors: Record<string, number>;
  closes: Record<string, number>;
  latency: HistogramSnapshot;
  /** This process's resident set size now and before the first connection (bytes). */
  rss: number;
  rssBase: number;
  /** Live JS heap now and before the first connection (bytes). */
  heapUsed: number;
  heapBase: number;
  /** Milliseconds from start to the last connection begun; -1 while ramping. */
  rampMs: number;
}

// The shared listeners. `this` is the connection (a net.Socket subclass holding its parser state).

function onRead(this: FloodConn, nread: number, buf: Uint8Array): boolean {
  const ctr = this.owner.counters;
  ctr.bytes += nread;
  if ((this.flags & F_FAILED) === 0) parse(this, buf as Buffer, nread, ctr, this.owner);
  return true;
}

function onError(this: FloodConn, err: NodeJS.ErrnoException): void {
  this.err = err.code ?? 'ERROR';
}

function onClose(this: FloodConn): void {
  this.owner.onClosed(this);
}

/** Read buffer shared by every socket of every pool in this process; parsing never keeps it. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
/** Socket options shared by every connection: reads land in READ_BUFFER, not in stream buffers. */
const READ_OPTIONS = { onread: { buffer: READ_BUFFER, callback: onRead } } as net.SocketConstructorOpts;

/** Opens and tracks one process's connections. */
export class FloodPool implements ConnOwner {
  readonly counters = new FloodCounters();
  readonly #opts: PoolOptions;
  readonly #conns: FloodConn[] = [];
  readonly #tick = (): void => this.#ramp();
  readonly #accept: string;
  #t0 = 0;
  #rampMs = -1;
  #rssBase = 0;
  #heapBase = 0;
  #lastRss = 0;
  #settled = false;
  #timer: NodeJS.Timeout | undefined;
  /** The ramp waits for a connection to leave `connecting` (see #ramp). */
  #blocked = false;
  #stopping = false;
  #started = false;
  #onIdle: (() => void) | undefined;
  #idle: Promise<void>;

  constructor(opts: PoolOptions) {
    this.#opts = opts;
    this.#accept = opts.sse ? 'Accept: text/event-stream\r\n' : '';
    this.#idle = new Promise((resolve) => {
      this.#onIdle = resolve;
    });
  }

  /** Begins opening connections. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    const mem = this.#memory();
    this.#rssBase = mem.rss;
    this.#heapBase = mem.heapUsed;
    this.#t0 = performance.now();
    this.#ramp();
  }

  /** Resolves once every connection was begun and has ended (or the pool was stopped). */
  get idle(): Promise<void> {
    return this.#idle;
  }

  /** True while connections are still being begun. */
  get ramping(): boolean {
    return this.#rampMs < 0;
  }

  /** Stops opening, closes every socket, resolves when they are closed (or after `timeoutMs`). */
  async stop(timeoutMs = 5000): Promise<void> {
    this.#stopping = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const conn of [...this.#conns]) conn.destroy();
    this.#checkIdle();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#idle,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** The figures so far. */
  snapshot(): FloodStats {
    const c = this.counters;
    const mem = this.#memory();
    return {
      started: c.started,
      connecting: c.connecting,
      open: c.open,
      opened: c.opened,
      closed: c.closed,
      failed: c.failed,
      welcomes: c.welcomes,
      chunks: c.chunks,
      controls: c.controls,
      bytes: c.bytes,
      errors: Object.fromEntries(c.errors),
      closes: Object.fromEntries(c.closes),
      latency: c.latency.toJSON(),
      rss: mem.rss,
      rssBase: this.#rssBase,
      heapUsed: mem.heapUsed,
      heapBase: this.#heapBase,
      rampMs: this.#rampMs,
    };
  }

  /**
   * RSS and live heap. Reading RSS opens /proc/self/stat, which fails with EMFILE exactly when
   * the connections have used up the file limit; then the last good RSS figure stands.
   */
  #memory(): { rss: number; heapUsed: number } {
    const heapUsed = getHeapStatistics().used_heap_size;
    try {
      this.#lastRss = process.memoryUsage.rss();
    } catch {
      // keep the last figure
    }
    return { rss: this.#lastRss, heapUsed };
  }

  /** Opens the connections that are due by now, then sleeps until the next one is. */
  #ramp(): void {
    this.#timer = undefined;
    if (this.#stopping) return;
    const { count, rate, maxConnecting } = this.#opts;
    const c = this.counters;
    const now = performance.now();
    const due = rate > 0 ? Math.min(count, Math.floor(((now - this.#t0) * rate) / 1000) + 1) : count;
    // Open in slices so a large backlog does not hold the event loop (and the reads) for long.
    let slice = 500;
    while (c.started < due && c.connecting < maxConnecting && slice-- > 0) this.#open(c.started);
    if (c.started >= count) {
      this.#rampMs = performance.now() - this.#t0;
      this.#settle();
      this.#checkIdle();
      return;
    }
    if (c.started < due && c.connecting >= maxConnecting) {
      // Held back by the cap on connections waiting for their head: the next head (or failure)
      // resumes the ramp. Polling instead (every millisecond, in each of 50 workers) is what
      // starved a slow server of the CPU it needed to answer them.
      this.#blocked = true;
      return;
    }
    let delay = 1;
    if (c.started >= due && rate > 0) {
      const next = this.#t0 + (c.started * 1000) / rate;
      delay = Math.min(1000, Math.max(1, Math.ceil(next - performance.now())));
    }
    this.#timer = setTimeout(this.#tick, delay);
  }

  /** Begins connection `k` of this pool. */
  #open(k: number): void {
    const opts = this.#opts;
    const c = this.counters;
    c.started++;
    let origin: Origin;
    let path: string;
    const t = opts.targets;
    if (t.kind === 'template') {
      origin = t.origin;
      path = t.parts.join(String(t.first + k));
    } else {
      origin = t.origins[t.origin[k]!]!;
      path = t.paths[k]!;
    }
    const sources = opts.sources;
    const localAddress = sources.length > 0 ? sources[(opts.sourceStart + k) % sources.length] : undefined;
    let conn: FloodConn | undefined;
    try {
      conn = new FloodConn(this, opts.sse, READ_OPTIONS);
      conn.on('error', onError);
      conn.on('close', onClose);
      conn.connect({ host: origin.host, port: origin.port, localAddress });
    } catch (err) {
      // Thrown, not emitted (e.g. a bad address): count it here; the slot of -1 keeps the
      // socket's own close out of the bookkeeping.
      if (conn !== undefined) {
        conn.flags |= F_FAILED;
        conn.destroy();
      }
      c.failed++;
      tally(c.errors, (err as NodeJS.ErrnoException).code ?? errorMessage(err));
      return;
    }
    conn.write(`GET ${path} HTTP/1.1\r\nHost: ${origin.hostHeader}\r\n${this.#accept}\r\n`);
    conn.slot = this.#conns.length;
    this.#conns.push(conn);
    c.connecting++;
  }

  onOpen(conn: FloodConn): void {
    conn.flags |= F_OPENED;
    const c = this.counters;
    c.connecting--;
    c.open++;
    c.opened++;
    this.#unblock();
    this.#settle();
  }

  /**
   * Once, when the ramp is over and every head is in: a full GC when the process allows it
   * (workers run with --expose-gc), so the ramp's garbage does not sit in RSS for the rest of the
   * run — the same idea as the article's hibernate, once instead of per message.
   */
  #settle(): void {
    if (this.#settled || this.#rampMs < 0 || this.counters.connecting > 0 || this.#stopping) return;
    this.#settled = true;
    const gc = (globalThis as { gc?: () => void }).gc;
    if (typeof gc !== 'function') return;
    setImmediate(() => {
      // Compact too: the ramp leaves old-space pages half empty, and only compaction returns them.
      setFlagsFromString('--compact-on-every-full-gc');
      gc();
      setFlagsFromString('--no-compact-on-every-full-gc');
    });
  }

  onFail(conn: FloodConn, code: string): void {
    if ((conn.flags & F_FAILED) !== 0) return;
    conn.flags |= F_FAILED;
    const c = this.counters;
    if ((conn.flags & F_OPENED) !== 0) {
      // A protocol error mid-stream: the stream is over, count it as closed with that reason.
      c.open--;
      c.closed++;
      tally(c.closes, code);
    } else {
      c.connecting--;
      c.failed++;
      tally(c.errors, code);
      this.#unblock();
    }
    conn.destroy();
    this.#settle();
  }

  onClosed(conn: FloodConn): void {
    if (conn.slot < 0) return;
    const conns = this.#conns;
    const last = conns.pop();
    if (last !== undefined && last !== conn) {
      conns[conn.slot] = last;
      last.slot = conn.slot;
    }
    const c = this.counters;
    if ((conn.flags & F_FAILED) === 0) {
      if ((conn.flags & F_OPENED) !== 0) {
        c.open--;
        if (!this.#stopping) {
          c.closed++;
          tally(c.closes, conn.err || 'EOF');
        }
      } else {
        c.connecting--;
        this.#unblock();
        // Sockets flood itself aborted while connecting are neither failures nor closes.
        if (!this.#stopping || conn.err !== '') {
          c.failed++;
          tally(c.errors, conn.err || 'EOF_BEFORE_RESPONSE');
        }
      }
    }
    this.#settle();
    this.#checkIdle();
  }

  /** A connection left `connecting`: resume a ramp that waited for that, once, after this turn. */
  #unblock(): void {
    if (!this.#blocked) return;
    this.#blocked = false;
    this.#timer = setTimeout(this.#tick, 0);
  }

  #checkIdle(): void {
    if (this.#conns.length === 0 && (this.#rampMs >= 0 || this.#stopping) && this.#onIdle) {
      const resolve = this.#onIdle;
      this.#onIdle = undefined;
      resolve();
    }
  }
}
