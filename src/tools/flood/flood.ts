/**
 * `flood`: the article's floodtest.erl (URLs at a rate, `{Active, Closed, Chunks}` every 10 s),
 * floodtest2.erl (source addresses per connection, `{Open, Closed, Chunks, Bytes}`) and the
 * libevent httpclient (lean connections, chunk counting) in one library function.
 *
 * This folder is the `flood` load generator: this file drives it; `plan` splits the connections
 * over worker processes and source addresses, `targets` resolves the URLs, `worker` is the forked
 * process, `pool` opens and holds one share of the connections, `conn` is one connection's state,
 * `parser` reads its HTTP head and chunks and `scan` the stamps and SSE fields inside them, and
 * `report` sums and prints the figures.
 *
 * ```
 *  runFlood ─► targets (template or URL file, hosts resolved once)
 *           ─► plan (workers × source addresses, checked against files and ports limits)
 *           ─► one FloodPool in this process (--procs 1), or one forked worker per share
 *           ─► reports every reportEvery; stop on signal, duration, or when all ended
 *           ─► summary (memory and `open` as they were just before stopping)
 * ```
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ConfigError, UnavailableError } from '../../errors.js';
import { type FloodPlan, type MachineLimits, parseSources, planFlood, readMachineLimits } from './plan.js';
import { FloodPool, type FloodStats, type PoolOptions } from './pool.js';
import { type FloodReport, type FloodSummary, sumStats, toReport } from './report.js';
import { fileTargets, listTargets, type ResolvedTargets, templateTargets } from './targets.js';
import type { FromWorker, ToWorker } from './worker.js';

/** Default connections per second (the article used 10 and 100; this box does far more). */
export const DEFAULT_RATE = 1000;
/** Default time between reports, as in the article. */
export const DEFAULT_REPORT_EVERY_MS = 10_000;
/** Default most connections waiting for a response head, per process. */
export const DEFAULT_MAX_CONNECTING = 1000;
/** Time between stats messages from workers, and between progress callbacks. */
const STATS_EVERY_MS = 500;
/**
 * V8 flags for workers: a small young generation keeps a process's memory close to what its
 * connections hold, and `gc` lets a pool collect once after its ramp (see FloodPool).
 */
export const DEFAULT_WORKER_EXEC_ARGV: readonly string[] = ['--max-semi-space-size=1', '--expose-gc'];

/** What to flood and how. */
export interface FloodOptions {
  /** URL template; `{id}` is replaced by each id (`http://127.0.0.1:8000/test/{id}`). */
  readonly url?: string;
  /** A file with one URL per line, instead of `url`. */
  readonly urlFile?: string;
  /** URLs given directly, instead of `url` or `urlFile`. */
  readonly urls?: readonly string[];
  /** First id for the template (default 1). */
  readonly from?: number;
  /** Connections to open (required with `url`; with a list, the first `count` URLs). */
  readonly count?: number;
  /** Connections per second over all processes; 0 = as fast as possible (default {@link DEFAULT_RATE}). */
  readonly rate?: number;
  /** Source addresses or ranges (`127.0.0.2-127.0.0.41`); default none, or automatic above 20,000. */
  readonly sources?: string | readonly string[];
  /** Worker processes (default ceil(count / 15,000)). */
  readonly procs?: number;
  /** Ask for Server-Sent Events and count events instead of chunks. */
  readonly sse?: boolean;
  /** Stop after this many ms (default: run until stopped or every connection ended). */
  readonly duration?: number;
  /** Milliseconds between reports (default {@link DEFAULT_REPORT_EVERY_MS}). */
  readonly reportEvery?: number;
  /** Most connections waiting for a response head, per process. */
  readonly maxConnecting?: number;
  /** Use a child process even for one worker. */
  readonly fork?: boolean;
  /** Node flags for workers (default {@link DEFAULT_WORKER_EXEC_ARGV}). */
  readonly workerExecArgv?: readonly string[];
  /** This machine's limits (read from /proc when not given; tests pass their own). */
  readonly limits?: MachineLimits;
}

/** Callbacks while flooding. */
export interface FloodHooks {
  /** Stops the run (SIGINT); the summary is still returned. */
  readonly signal?: AbortSignal;
  /** The plan, once made (before any connection). */
  onPlan?(plan: FloodPlan): void;
  /** Every `reportEvery` ms. */
  onReport?(report: FloodReport): void;
  /** About twice a second, for live progress lines. */
  onProgress?(report: FloodReport): void;
  /** Things worth telling the operator (port range nearly used up, …). */
  onWarning?(message: string): void;
}

/** A set of pools: in this process, or in forked workers. */
interface Runner {
  start(): Promise<void>;
  /** Latest figures, summed. */
  snapshot(): FloodStats;
  /** Resolves when every pool has begun and ended all its connections. */
  readonly idle: Promise<void>;
  /** Stops every pool: figures just before and after. */
  stop(): Promise<{ before: FloodStats; after: FloodStats }>;
  readonly errors: string[];
}

class LocalRunner implements Runner {
  readonly #pool: FloodPool;
  readonly errors: string[] = [];

  constructor(options: PoolOptions) {
    this.#pool = new FloodPool(options);
  }
  async start(): Promise<void> {
    this.#pool.start();
  }
  snapshot(): FloodStats {
    return this.#pool.snapshot();
  }
  get idle(): Promise<void> {
    return this.#pool.idle;
  }
  async stop(): Promise<{ before: FloodStats; after: FloodStats }> {
    const before = this.#pool.snapshot();
    await this.#pool.stop();
    return { before, after: this.#pool.snapshot() };
  }
}

interface Worker {
  readonly index: number;
  readonly child: ChildProcess;
  readonly options: PoolOptions;
  latest: FloodStats | undefined;
  final: { before: FloodStats; after: FloodStats } | undefined;
  idle: boolean;
  exited: Promise<void>;
  done: boolean;
}

const WORKER_PATH = fileURLToPath(new URL('./worker.js', import.meta.url));

class ForkRunner implements Runner {
  readonly #workers: Worker[] = [];
  readonly #shares: readonly PoolOptions[];
  readonly #execArgv: readonly string[];
  readonly errors: string[] = [];
  #onIdle: (() => void) | undefined;
  readonly idle: Promise<void>;
  #onFinal: (() => void) | undefined;

  constructor(shares: readonly PoolOptions[], execArgv: readonly string[]) {
    this.#shares = shares;
    this.#execArgv = execArgv;
    this.idle = new Promise((resolve) => {
      this.#onIdle = resolve;
    });
  }

  async start(): Promise<void> {
    const ready: Promise<void>[] = [];
    for (const [index, options] of this.#shares.entries()) {
      // Own process group: the terminal's Ctrl-C goes to the parent, which stops workers in order.
      const child = fork(WORKER_PATH, [], {
        execArgv: [...this.#execArgv],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        detached: true,
      });
      const w: Worker = {
        index,
        child,
        options,
        latest: undefined,
        final: undefined,
        idle: false,
        done: false,
        // 'close', not 'exit': it comes after the IPC channel is drained and closed, so the
        // worker's final figures, sent just before it exits, have been received by then.
        exited: new Promise((resolve) => child.once('close', () => resolve())),
      };
      this.#workers.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          const onExit = (code: number | null): void =>
            reject(new UnavailableError(`flood worker ${index} exited (${code}) before it was ready`));
          child.once('exit', onExit);
          child.once('error', reject);
          child.on('message', (msg: FromWorker) => {
            if (msg.type === 'ready') {
              child.off('exit', onExit);
              resolve();
            } else this.#onMessage(w, msg);
          });
        }),
      );
      child.once('close', (code, signal) => {
        w.done = true;
        if (w.final === undefined)
          this.errors.push(
            `worker ${index} (pid ${child.pid}) exited with ${signal ?? code} before its final figures`,
          );
        this.#checkIdle();
        this.#checkFinal();
      });
    }
    try {
      await Promise.all(ready);
    } catch (err) {
      await this.#killAll();
      throw err;
    }
    for (const w of this.#workers)
      this.#send(w, { type: 'start', options: w.options, statsEvery: STATS_EVERY_MS });
  }

  #send(w: Worker, msg: ToWorker): void {
    if (w.child.connected) w.child.send(msg);
  }

  #onMessage(w: Worker, msg: FromWorker): void {
    switch (msg.type) {
      case 'stats':
        w.latest = msg.stats;
        break;
      case 'idle':
        w.idle = true;
        this.#checkIdle();
        break;
      case 'final':
        w.final = { before: msg.before, after: msg.after };
        w.latest = msg.after;
        this.#checkFinal();
        break;
      case 'error':
        this.errors.push(`worker ${w.index} (pid ${w.child.pid}): ${msg.message}`);
        break;
      default:
        break;
    }
  }

  #checkIdle(): void {
    if (this.#onIdle && this.#workers.every((w) => w.idle || w.done)) {
      const resolve = this.#onIdle;
      this.#onIdle = undefined;
      resolve();
    }
  }

  #checkFinal(): void {
    if (this.#onFinal && this.#workers.every((w) => w.final !== undefined || w.done)) {
      const resolve = this.#onFinal;
      this.#onFinal = undefined;
      resolve();
    }
  }

  snapshot(): FloodStats {
    return sumStats(this.#workers.flatMap((w) => (w.latest ? [w.latest] : [])));
  }

  async stop(): Promise<{ before: FloodStats; after: FloodStats }> {
    const finals = new Promise<void>((resolve) => {
      this.#onFinal = resolve;
    });
    this.#checkFinal();
    for (const w of this.#workers) this.#send(w, { type: 'stop' });
    // Closing takes time in proportion to what is open, on every side of a loopback connection at
    // once: a million over 53 workers took longer than 15 s on 2 cores (most workers were killed
    // before their final figures). About 60 µs per connection of CPU, on top.
    const connections = this.#workers.reduce((a, w) => a + w.options.count, 0);
    await withTimeout(finals, 15_000 + Math.ceil(connections * 0.06));
    await withTimeout(Promise.all(this.#workers.map((w) => w.exited)), 3000);
    await this.#killAll();
    const before = sumStats(
      this.#workers.flatMap((w) => (w.final ? [w.final.before] : w.latest ? [w.latest] : [])),
    );
    const after = sumStats(
      this.#workers.flatMap((w) => (w.final ? [w.final.after] : w.latest ? [w.latest] : [])),
    );
    return { before, after };
  }

  /** Kills workers that are still running (ours, by pid, through their ChildProcess). */
  async #killAll(): Promise<void> {
    const alive = this.#workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
    for (const w of alive) w.child.kill('SIGKILL');
    await withTimeout(Promise.all(alive.map((w) => w.exited)), 3000);
  }
}

async function withTimeout(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

function checkInt(name: string, value: number | undefined, min: number): void {
  if (value !== undefined && (!Number.isFinite(value) || value < min)) {
    throw new ConfigError(`${name} must be at least ${min}, got ${value}`);
  }
}

/** Resolves what to connect to from the options. */
async function resolveTargets(options: FloodOptions): Promise<ResolvedTargets> {
  const given = [options.url, options.urlFile, options.urls].filter((x) => x !== undefined).length;
  if (given !== 1) throw new ConfigError('give exactly one of --url and --url-file');
  if (options.url !== undefined) {
    if (options.count === undefined) throw new ConfigError('--count is required with --url');
    return templateTargets(options.url, options.from ?? 1, options.count);
  }
  if (options.urlFile !== undefined) return fileTargets(options.urlFile, options.count);
  return listTargets(options.urls ?? [], 'urls', options.count);
}

/**
 * Opens the connections, reports while they stream, and resolves to the summary when stopped
 * (signal, duration) or when every connection has ended. Bad options throw {@link ConfigError}
 * before any connection is made; connection failures are counted, never thrown.
 */
export async function runFlood(options: FloodOptions, hooks: FloodHooks = {}): Promise<FloodSummary> {
  checkInt('--count', options.count, 1);
  checkInt('--rate', options.rate, 0);
  checkInt('--procs', options.procs, 1);
  checkInt('--report-every', options.reportEvery, 1);
  checkInt('--max-connecting', options.maxConnecting, 1);
  const targets = await resolveTargets(options);
  const sources = options.sources === undefined ? undefined : parseSources(options.sources);
  const rate = options.rate ?? DEFAULT_RATE;
  const plan = planFlood({
    count: targets.count,
    rate,
    procs: options.procs,
    sources,
    loopback: targets.loopback,
    limits: options.limits ?? readMachineLimits(),
  });
  hooks.onPlan?.(plan);
  for (const w of plan.warnings) hooks.onWarning?.(w);

  const sse = options.sse ?? false;
  const maxConnecting = options.maxConnecting ?? DEFAULT_MAX_CONNECTING;
  const shares: PoolOptions[] = plan.shares.map((share) => ({
    targets: targets.forShare(share),
    count: share.count,
    sources: share.sources,
    sourceStart: share.sourceStart,
    rate: share.rate,
    sse,
    maxConnecting,
  }));
  const runner: Runner =
    plan.procs === 1 && !options.fork
      ? new LocalRunner(shares[0]!)
      : new ForkRunner(shares, options.workerExecArgv ?? DEFAULT_WORKER_EXEC_ARGV);

  const t0 = performance.now();
  const elapsed = (): number => performance.now() - t0;
  const report = (): FloodReport => toReport(runner.snapshot(), elapsed(), plan.procs);
  const signal = hooks.signal;
  let stoppedBy: FloodSummary['stoppedBy'] = 'signal';
  if (!signal?.aborted) {
    await runner.start();
    const timers: NodeJS.Timeout[] = [];
    let onAbort: (() => void) | undefined;
    stoppedBy = await new Promise<FloodSummary['stoppedBy']>((resolve) => {
      onAbort = () => resolve('signal');
      signal?.addEventListener('abort', onAbort, { once: true });
      if (signal?.aborted) resolve('signal');
      if (options.duration !== undefined && options.duration > 0) {
        timers.push(setTimeout(() => resolve('duration'), options.duration));
      }
      void runner.idle.then(() => resolve('idle'));
      if (hooks.onReport)
        timers.push(
          setInterval(() => hooks.onReport?.(report()), options.reportEvery ?? DEFAULT_REPORT_EVERY_MS),
        );
      if (hooks.onProgress) timers.push(setInterval(() => hooks.onProgress?.(report()), STATS_EVERY_MS));
    });
    for (const t of timers) clearTimeout(t);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
  const { before, after } = await runner.stop();
  const last = toReport(after, elapsed(), plan.procs);
  const atStop = toReport(before, elapsed(), plan.procs);
  const rampMs = before.rampMs;
  return {
    ...last,
    ramping: rampMs < 0,
    open: atStop.open,
    rss: atStop.rss,
    rssPerConnection: atStop.rssPerConnection,
    heapPerConnection: atStop.heapPerConnection,
    target: targets.label,
    count: targets.count,
    rampMs: Math.round(rampMs),
    connectRate: rampMs > 0 ? Math.round((before.opened * 1000) / rampMs) : 0,
    sources: plan.sources.length,
    autoSources: plan.autoSources,
    warnings: plan.warnings,
    workerErrors: runner.errors,
    stoppedBy,
  };
}
