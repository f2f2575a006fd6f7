/**
 * Shared pieces of the fan-out benches (bench/fanout.ts, bench/fanout-stall.ts): a quiet-machine
 * check, per-process CPU and RSS (over src/bench/harness/proc.ts), the server as its own process
 * (the `serve` CLI through the harness's ServerProcess, or `Switchboard.start` in a child when an
 * option has no flag yet), the flood's own worker process driven over its IPC protocol (so the
 * bench sees the raw latency histogram and can take per-step deltas), and cleanup of every child
 * and temp dir this process made.
 *
 * Run as a script (`node <lean flags> dist/bench/support.js --serve '<options JSON>'`) it is the
 * in-process server: Switchboard.start with those options, ports and event-loop delay over IPC.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { OptionSpec } from '../src/args.js';
import { ServerProcess } from '../src/bench/harness/server-process.js';
import type { ServerOptionsInput } from '../src/options.js';
import type { FloodStats, FloodTargets, PoolOptions } from '../src/tools/flood/pool.js';
import type { FromWorker, ToWorker } from '../src/tools/flood/worker.js';
import { bucketRange, type HistogramSnapshot } from '../src/tools/msggen/latency.js';
import { type CpuTimes, machineCpu, readCpuTimes, readRssKb } from '../src/tools/proc.js';

const FLOOD_WORKER = fileURLToPath(new URL('../src/tools/flood/worker.js', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;
/** Progress for the person running the bench; stdout is kept for JSON. */
export const note = (text: string): void => void process.stderr.write(`# ${text}\n`);

// ── cleanup ──────────────────────────────────────────────────────────────────────────────────
const children = new Set<ChildProcess>();
const dirs = new Set<string>();

/** Remembers `child` so it is killed (by pid) if the bench ends before stopping it. */
export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** A fresh temp dir, removed at exit. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

/** Kills what is still running and removes temp dirs (idempotent, synchronous: runs on exit). */
export function cleanup(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

/** Installs cleanup on exit and on SIGINT/SIGTERM (call once, from a bench's main). */
export function cleanupOnExit(): void {
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => {
      cleanup();
      process.exit(130);
    });
}

// ── the machine ──────────────────────────────────────────────────────────────────────────────
/** Waits until the 1-minute load average is at most `maxLoad` (polling), up to `maxWaitMs`. */
export async function waitForQuiet(
  maxLoad: number,
  maxWaitMs = 600_000,
  pollMs = 30_000,
): Promise<{ load1: number; waitedS: number; quiet: boolean }> {
  const t0 = performance.now();
  for (;;) {
    const load1 = loadavg()[0]!;
    const waitedS = Math.round((performance.now() - t0) / 1000);
    if (load1 <= maxLoad) return { load1: round(load1, 2), waitedS, quiet: true };
    if (performance.now() - t0 + pollMs > maxWaitMs) return { load1: round(load1, 2), waitedS, quiet: false };
    note(`load average ${load1.toFixed(2)} > ${maxLoad}: waiting ${pollMs / 1000}s`);
    await sleep(pollMs);
  }
}

export const load1 = (): number => round(loadavg()[0]!, 2);

/** The flags of a bench that waits for a quiet machine: {@link waitForQuiet}, {@link waitForOthersQuiet}. */
export const QUIET_MACHINE_OPTIONS = {
  'max-load': {
    type: 'number',
    description: 'First wait for a 1-minute load average at most this',
    default: 1.0,
    min: 0,
  },
  'max-others': {
    type: 'number',
    description: 'Before each measured step, wait until other processes use at most this % of a core',
    default: 25,
    min: 0,
  },
} as const satisfies Record<string, OptionSpec>;

/**
 * CPU other processes use, % of one core, sampled over `sampleMs`: the whole machine's busy time
 * minus that of `ours` (this bench's own processes, whose load the load average also counts).
 */
export async function othersCpuPercent(
  ours: readonly (number | undefined)[],
  sampleMs = 3000,
): Promise<number> {
  const sum = (): number => ours.reduce<number>((a, pid) => a + cpuSeconds(pid), 0);
  const m0 = machineCpu();
  const o0 = sum();
  const t0 = performance.now();
  await sleep(sampleMs);
  // The machine's and the processes' counters tick separately (jiffies), so a quiet sample can
  // come out slightly below zero.
  const busy = Math.max(0, machineCpu().busy - m0.busy - (sum() - o0));
  return round((busy / ((performance.now() - t0) / 1000)) * 100);
}

/**
 * Before a measured step on a shared machine: waits (sampling every ~13 s, up to `maxWaitMs`)
 * until other processes use at most `maxPercent` of one core.
 */
export async function waitForOthersQuiet(
  ours: readonly (number | undefined)[],
  maxPercent: number,
  maxWaitMs = 600_000,
): Promise<{ othersPercent: number; waitedS: number; quiet: boolean }> {
  const t0 = performance.now();
  for (;;) {
    const othersPercent = await othersCpuPercent(ours);
    const waitedS = Math.round((performance.now() - t0) / 1000);
    if (othersPercent <= maxPercent) return { othersPercent, waitedS, quiet: true };
    if (performance.now() - t0 > maxWaitMs) return { othersPercent, waitedS, quiet: false };
    note(`other processes use ${othersPercent}% of a core (> ${maxPercent}%): waiting 10s`);
    await sleep(10_000);
  }
}

// The benches' convention over the harness's /proc readers: a pid not started yet (undefined)
// or gone reads as zero, so sums over a step's processes need no checks.

/** CPU seconds in user and kernel mode a process has used; zeros once it is gone. */
export function cpuTimes(pid: number | undefined): CpuTimes {
  return (pid === undefined ? undefined : readCpuTimes(pid)) ?? { user: 0, sys: 0 };
}

/** CPU seconds (user + system) a process has used; 0 once it is gone. */
export function cpuSeconds(pid: number | undefined): number {
  const t = cpuTimes(pid);
  return t.user + t.sys;
}

/** Resident set size of a process in MB (0 once it is gone). */
export function rssMB(pid: number | undefined): number {
  return round(((pid === undefined ? undefined : readRssKb(pid)) ?? 0) / 1024);
}

// ── HTTP ─────────────────────────────────────────────────────────────────────────────────────
/** A JSON request; resolves to status, parsed body and round-trip ms. */
export async function httpJson(
  url: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown>; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(url, {
    method: body === undefined ? 'GET' : 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  return { status: res.status, json, ms: performance.now() - t0 };
}

// ── the server ───────────────────────────────────────────────────────────────────────────────
/** A server process started by a bench: the `serve` CLI or a script server, and what the bench asks it. */
export interface BenchServer {
  readonly pid: number;
  readonly clientPort: number;
  readonly apiPort: number;
  /** `/api/stats`. */
  stats(): Promise<Record<string, number>>;
  /** Event-loop delay since the last reset, ms (script servers only; null for the CLI). */
  eventLoopDelay(reset: boolean): Promise<{ maxMs: number; p99Ms: number; meanMs: number } | null>;
  stop(): Promise<void>;
}

/** How long a server has to exit after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 10_000;

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(STOP_TIMEOUT_MS)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await exited;
}

function statsOf(apiPort: number): () => Promise<Record<string, number>> {
  return async () => (await httpJson(`http://127.0.0.1:${apiPort}/api/stats`)).json as Record<string, number>;
}

/** `node <nodeArgs> dist/src/cli/main.js serve --port 0 --api-port 0 --host 127.0.0.1 <args>`. */
export async function startCliServer(
  nodeArgs: readonly string[],
  args: readonly string[],
): Promise<BenchServer> {
  const server = await ServerProcess.start({ nodeArgs, serverArgs: args });
  track(server.process.child);
  note(`server: ${server.command}`);
  return {
    pid: server.pid,
    clientPort: server.clientPort,
    apiPort: server.apiPort,
    stats: statsOf(server.apiPort),
    eventLoopDelay: async () => null,
    stop: async () => void (await server.stop(STOP_TIMEOUT_MS)),
  };
}

type ToServer = { type: 'eld'; reset: boolean };
type FromServer =
  | { type: 'ready'; client: number; api: number }
  | { type: 'eld'; maxMs: number; p99Ms: number; meanMs: number };

/**
 * `node <nodeArgs> dist/bench/support.js --serve '<options>'`: Switchboard.start(options) in its
 * own process, for options `serve` has no flag for (pageSize). Also reports event-loop delay.
 */
export async function startScriptServer(
  nodeArgs: readonly string[],
  options: ServerOptionsInput,
): Promise<BenchServer> {
  const opts = { port: 0, apiPort: 0, host: '127.0.0.1', logLevel: 'warn', ...options };
  note(`server: node ${nodeArgs.join(' ')} dist/bench/support.js --serve '${JSON.stringify(opts)}'`);
  const child = track(fork(SELF, ['--serve', JSON.stringify(opts)], { execArgv: [...nodeArgs] }));
  const ready = await new Promise<{ client: number; api: number }>((resolve, reject) => {
    child.once('message', (m: FromServer) => (m.type === 'ready' ? resolve(m) : reject(new Error('bad'))));
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  return {
    pid: child.pid!,
    clientPort: ready.client,
    apiPort: ready.api,
    stats: statsOf(ready.api),
    eventLoopDelay: (reset) =>
      new Promise((resolve) => {
        child.once('message', (m: FromServer) => resolve(m.type === 'eld' ? m : null));
        child.send({ type: 'eld', reset } satisfies ToServer);
      }),
    stop: () => stopChild(child),
  };
}

/** The `--serve` side of {@link startScriptServer}. */
async function serveScript(optionsJson: string): Promise<void> {
  const { Switchboard } = await import('../src/server.js');
  const sb = await Switchboard.start(JSON.parse(optionsJson) as ServerOptionsInput);
  // 1 ms resolution: stalls of a few ms matter here.
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  const send = (m: FromServer): void => void process.send?.(m);
  process.on('message', (m: ToServer) => {
    if (m.type !== 'eld') return;
    send({ type: 'eld', maxMs: eld.max / 1e6, p99Ms: eld.percentile(99) / 1e6, meanMs: eld.mean / 1e6 });
    if (m.reset) eld.reset();
  });
  const stop = (): void => {
    void sb.close().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('disconnect', stop);
  send({
    type: 'ready',
    client: Number(new URL(sb.clientUrl).port),
    api: Number(new URL(sb.apiUrl).port),
  });
}

// ── flood ────────────────────────────────────────────────────────────────────────────────────
/** The Node flags `flood` gives its workers (runFlood's DEFAULT_WORKER_EXEC_ARGV). */
export { DEFAULT_WORKER_EXEC_ARGV } from '../src/tools/flood/flood.js';

/**
 * One flood worker process (dist/src/tools/flood/worker.js, the process `flood --procs N` forks),
 * driven over its IPC protocol, so the bench gets each cumulative {@link FloodStats} — with the
 * whole latency histogram — every `statsEvery` ms.
 */
export class FloodWorker {
  readonly child: ChildProcess;
  latest: FloodStats | undefined;
  #waiters: Array<() => void> = [];

  private constructor(child: ChildProcess) {
    this.child = child;
    child.on('message', (m: FromWorker) => {
      if (m.type === 'stats') {
        this.latest = m.stats;
        for (const w of this.#waiters.splice(0)) w();
      } else if (m.type === 'error') note(`flood worker: ${m.message}`);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(
    execArgv: readonly string[],
    targets: FloodTargets,
    count: number,
    sources: readonly string[],
    statsEvery = 100,
  ): Promise<FloodWorker> {
    const child = track(fork(FLOOD_WORKER, [], { execArgv: [...execArgv] }));
    await new Promise<void>((resolve, reject) => {
      child.once('message', (m: FromWorker) => (m.type === 'ready' ? resolve() : reject(new Error(m.type))));
      child.once('exit', (code) => reject(new Error(`flood worker exited ${code}`)));
    });
    const w = new FloodWorker(child);
    const options: PoolOptions = {
      targets,
      count,
      sources,
      sourceStart: 0,
      rate: 0,
      sse: false,
      maxConnecting: 1000,
    };
    child.send({ type: 'start', options, statsEvery } satisfies ToWorker);
    return w;
  }

  /** The next stats message (fresh figures). */
  async next(): Promise<FloodStats> {
    await new Promise<void>((r) => this.#waiters.push(r));
    return this.latest!;
  }

  /** Waits until `done(stats)` or `timeoutMs`; resolves to the last stats seen. */
  async until(done: (s: FloodStats) => boolean, timeoutMs: number): Promise<FloodStats> {
    const end = performance.now() + timeoutMs;
    let s = await this.next();
    while (!done(s) && performance.now() < end) s = await this.next();
    return s;
  }

  /** Waits until the message count holds still for `quietMs` (or `timeoutMs`). */
  async settle(quietMs: number, timeoutMs: number): Promise<FloodStats> {
    const end = performance.now() + timeoutMs;
    let s = await this.next();
    let since = performance.now();
    while (performance.now() < end) {
      const t = await this.next();
      if (t.chunks !== s.chunks) since = performance.now();
      s = t;
      if (performance.now() - since >= quietMs) break;
    }
    return s;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    if (this.child.connected) this.child.send({ type: 'stop' } satisfies ToWorker);
    await Promise.race([exited, sleep(15_000)]);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/**
 * The values recorded between two cumulative snapshots of one histogram (`after` − `before`,
 * bucket by bucket). Min and max of the difference are not known exactly: they are taken as the
 * edges of the lowest and highest non-empty buckets (within 0.8 %).
 */
export function histogramDelta(before: HistogramSnapshot, after: HistogramSnapshot): HistogramSnapshot {
  const counts = new Map<number, number>();
  for (let i = 0; i + 1 < after.buckets.length; i += 2) counts.set(after.buckets[i]!, after.buckets[i + 1]!);
  for (let i = 0; i + 1 < before.buckets.length; i += 2) {
    const k = before.buckets[i]!;
    counts.set(k, (counts.get(k) ?? 0) - before.buckets[i + 1]!);
  }
  const buckets: number[] = [];
  for (const k of [...counts.keys()].sort((a, b) => a - b))
    if (counts.get(k)! > 0) buckets.push(k, counts.get(k)!);
  const count = after.count - before.count;
  if (buckets.length === 0) return { count: 0, sum: 0, min: 0, max: 0, buckets: [] };
  const min = bucketRange(buckets[0]!)[0] / 1000;
  const max = Math.min(after.max, bucketRange(buckets[buckets.length - 2]!)[1] / 1000);
  return { count, sum: after.sum - before.sum, min, max, buckets };
}

if (process.argv[1] === SELF && process.argv[2] === '--serve') await serveScript(process.argv[3] ?? '{}');
