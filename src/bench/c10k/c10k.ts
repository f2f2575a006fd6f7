/**
 * `bench c10k`: the article's part 2 "C10K again, with feeling", scripted.
 *
 * ```
 *  server   spawn `serve` (own process, own process group) ─ or use --server-url
 *  baseline memlog from here to the end; one interval with no client → "empty server" RSS
 *  ramp     flood opens /test/1 … /test/N at the ramp rate (forked worker)
 *  hold     connections idle → RSS "at full connections"
 *  messages msggen --stamp at the rate to random ids 1..N for the duration (open loop)
 *  drain    until flood has every delivered chunk, its count stops growing, or the drain time
 *  stop     flood, then the server (SIGTERM, must exit 0), then memlog
 *  report   c10k.json, c10k.png, c10k.svg, memlog.log, server.log
 * ```
 *
 * A signal stops the run in whatever phase it is in; the later phases are skipped, the stop
 * sequence still runs in order, and the report is written with `interrupted: true`.
 *
 * This folder is that benchmark scenario, shipped as a CLI command: this file runs the phases,
 * `options` resolves and checks its options, `report` builds the JSON record, `summary` the text
 * one, `chart` the memory chart with the phases drawn in. The server child process and the
 * `/proc` readers it shares with the scripts in bench/ are in ../harness.
 */
import { type FileHandle, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, errorMessage, UsageError } from '../../errors.js';
import { runFlood } from '../../tools/flood/flood.js';
import type { FloodReport, FloodSummary } from '../../tools/flood/report.js';
import { formatSample, runMemlog, type Sample, takeSample } from '../../tools/memlog/memlog.js';
import { childPids, findPortOwners } from '../../tools/memlog/sockets.js';
import { type MsggenReport, type MsggenSummary, runMsggen } from '../../tools/msggen/msggen.js';
import { sumCpuSeconds } from '../../tools/proc.js';
import type { ProcessExit } from '../harness/cli-process.js';
import { untilCountSettles } from '../harness/drain.js';
import { ServerProcess } from '../harness/server-process.js';
import { type PhaseSpan, renderC10kChart } from './chart.js';
import { type C10kOptions, type ResolvedC10kOptions, resolveC10kOptions } from './options.js';
import { buildC10kReport, type C10kPhase, type C10kReport, type MarkName, type PhaseMark } from './report.js';

export { C10K_DEFAULTS, type C10kOptions, MAX_C10K_CONNECTIONS } from './options.js';

/** A drain ends early once flood's chunk count has not moved for this long. */
const DRAIN_STABLE_MS = 1500;

/** Things worth showing while it runs. */
export type C10kEvent =
  | {
      readonly type: 'phase';
      readonly phase: C10kPhase;
      readonly elapsedMs: number;
      readonly message: string;
    }
  | {
      readonly type: 'sample';
      readonly phase: C10kPhase;
      readonly elapsedMs: number;
      readonly sample: Sample;
      readonly flood: FloodReport | undefined;
      readonly msggen: MsggenReport | undefined;
    }
  | { readonly type: 'warning'; readonly message: string };

/** Callbacks. */
export interface C10kHooks {
  /** Stops the run (SIGINT); the report is still written and returned. */
  readonly signal?: AbortSignal;
  onEvent?(event: C10kEvent): void;
}

/** Sleeps `ms`; false when `signal` aborted first. */
async function pause(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal?.aborted) return false;
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs the scenario and writes its files; resolves to the report (also when interrupted, and
 * when something failed at run time: see `problems`).
 *
 * @throws ConfigError for bad options, or flags the spawned server or node refused.
 */
export async function runC10k(options: C10kOptions, hooks: C10kHooks = {}): Promise<C10kReport> {
  const o = resolveC10kOptions(options);
  return new C10kRun(o, hooks).execute();
}

/** One run's state; phases in {@link C10kRun.execute}, teardown in {@link C10kRun.finish}. */
class C10kRun {
  readonly #o: ResolvedC10kOptions;
  readonly #hooks: C10kHooks;
  readonly #signal: AbortSignal | undefined;
  readonly #t0 = performance.now();
  readonly #startedAt = new Date();
  readonly #loadStart = os.loadavg();
  readonly #cpuStart = process.cpuUsage();
  readonly #problems: string[] = [];
  readonly #marks: PhaseMark[] = [];
  readonly #samples: Sample[] = [];
  readonly #phases: { phase: C10kPhase; startMs: number }[] = [];
  #memlogFile: FileHandle | undefined;
  #phase: C10kPhase = 'server';
  #interruptedIn: C10kPhase | null = null;
  #server: ServerProcess | undefined;
  #serverExit: ProcessExit | undefined;
  #clientUrl: string | undefined;
  #apiUrl: string | undefined;
  #port = 0;
  #pids: readonly number[] = [];
  #dataDir: string | undefined;
  #memlogAbort = new AbortController();
  #memlogDone: Promise<void> | undefined;
  #skipped = 0;
  #floodAbort = new AbortController();
  #floodRun: Promise<FloodSummary | undefined> | undefined;
  #flood: FloodSummary | undefined;
  #floodLatest: FloodReport | undefined;
  #rampComplete = false;
  #msggen: MsggenSummary | undefined;
  #msggenLatest: MsggenReport | undefined;
  #loadGenCpu: number | null = null;
  #loopDelay: { p99: number; max: number } | null = null;
  #onExit = (): void => this.#server?.killNow();

  constructor(o: ResolvedC10kOptions, hooks: C10kHooks) {
    this.#o = o;
    this.#hooks = hooks;
    this.#signal = hooks.signal;
  }

  #elapsed(): number {
    return Math.round(performance.now() - this.#t0);
  }

  get #aborted(): boolean {
    return this.#signal?.aborted === true;
  }

  #enter(phase: C10kPhase, message: string): void {
    this.#phase = phase;
    this.#phases.push({ phase, startMs: this.#elapsed() });
    this.#hooks.onEvent?.({ type: 'phase', phase, elapsedMs: this.#elapsed(), message });
  }

  async execute(): Promise<C10kReport> {
    const o = this.#o;
    const onAbort = (): void => {
      this.#interruptedIn ??= this.#phase;
    };
    this.#signal?.addEventListener('abort', onAbort, { once: true });
    if (this.#aborted) onAbort();
    await mkdir(o.outDir, { recursive: true });
    process.on('exit', this.#onExit);
    let configError: ConfigError | undefined;
    try {
      await this.#startServer();
      if (!this.#aborted) {
        this.#enter('baseline', `empty server for ${o.sampleEveryMs} ms`);
        await this.#startMemlog();
        if (await pause(o.sampleEveryMs, this.#signal)) await this.#mark('empty');
      }
      if (!this.#aborted) await this.#ramp();
      if (!this.#aborted && this.#rampComplete) {
        this.#enter('hold', `${this.#floodLatest?.open ?? 0} connections open; holding ${o.holdMs} ms`);
        if (await pause(o.holdMs, this.#signal)) await this.#mark('full');
      }
      if (!this.#aborted && this.#rampComplete) await this.#messages();
    } catch (err) {
      if (err instanceof ConfigError || err instanceof UsageError) {
        configError = err;
        this.#problems.push(err.message);
      } else if (!this.#aborted) this.#problems.push(errorMessage(err));
    } finally {
      this.#signal?.removeEventListener('abort', onAbort);
    }
    const report = await this.finish();
    process.off('exit', this.#onExit);
    if (configError) throw configError;
    return report;
  }

  async #startServer(): Promise<void> {
    const o = this.#o;
    if (o.serverUrl !== undefined && o.apiUrl !== undefined) {
      this.#enter('server', `using the running server at ${o.serverUrl}`);
      this.#clientUrl = o.serverUrl;
      this.#apiUrl = o.apiUrl;
      this.#port = Number(new URL(o.serverUrl).port || 80);
      this.#pids = o.serverPids.length > 0 ? o.serverPids : await findPortOwners(this.#port);
      if (this.#pids.length === 0)
        throw new ConfigError(`no process found serving port ${this.#port}; pass --server-pid`);
      return;
    }
    this.#enter('server', 'starting the server');
    this.#dataDir = await mkdtemp(path.join(os.tmpdir(), 'sb-c10k-'));
    this.#server = await ServerProcess.start({
      nodeArgs: o.nodeArgs,
      serverArgs: o.serverArgs,
      dataDir: this.#dataDir,
      logFile: path.join(o.outDir, 'server.log'),
      // Own process group: a Ctrl-C in the terminal reaches the bench only, which then stops
      // msggen, flood and the server in that order instead of all at once.
      detached: true,
      signal: this.#signal,
    });
    this.#clientUrl = this.#server.clientUrl;
    this.#apiUrl = this.#server.apiUrl;
    this.#port = this.#server.clientPort;
    this.#pids = [this.#server.pid];
    this.#hooks.onEvent?.({
      type: 'phase',
      phase: 'server',
      elapsedMs: this.#elapsed(),
      message: `server pid ${this.#server.pid}: ${this.#server.command}`,
    });
  }

  async #startMemlog(): Promise<void> {
    const file = await open(path.join(this.#o.outDir, 'memlog.log'), 'w');
    this.#memlogFile = file;
    let first: (() => void) | undefined;
    const firstSample = new Promise<void>((resolve) => {
      first = resolve;
    });
    this.#memlogDone = runMemlog({
      port: this.#port,
      pids: this.#pids,
      everyMs: this.#o.sampleEveryMs,
      signal: this.#memlogAbort.signal,
      onSample: async (sample, line) => {
        this.#samples.push(sample);
        await file.write(`${line}\n`);
        first?.();
        this.#hooks.onEvent?.({
          type: 'sample',
          phase: this.#phase,
          elapsedMs: this.#elapsed(),
          sample,
          flood: this.#floodLatest,
          msggen: this.#msggenLatest,
        });
      },
      onSkip: () => {
        this.#skipped++;
      },
    })
      .then(
        () => undefined,
        (err: unknown) => {
          this.#problems.push(`memlog: ${errorMessage(err)}`);
          first?.();
        },
      )
      .finally(() => {
        this.#memlogFile = undefined;
        return file.close();
      });
    // The run's first sample is the empty server; wait for it so the chart starts there.
    await firstSample;
  }

  /** Reads RSS, connections and CPU now; with `log`, also adds the sample to the memlog and chart. */
  async #mark(mark: MarkName, log = false): Promise<PhaseMark> {
    const r = await takeSample({ port: this.#port, pids: this.#pids });
    if (log && r.sample !== undefined && this.#memlogFile !== undefined) {
      this.#samples.push(r.sample);
      await this.#memlogFile.write(`${formatSample(r.sample)}\n`);
    }
    const cpu = sumCpuSeconds(this.#pids);
    const m: PhaseMark = {
      mark,
      elapsedMs: this.#elapsed(),
      rssKb: r.sample?.rssKb ?? null,
      connections: r.sample?.connections ?? null,
      serverCpuSeconds: cpu === undefined ? null : Math.round(cpu * 100) / 100,
    };
    this.#marks.push(m);
    return m;
  }

  async #ramp(): Promise<void> {
    const o = this.#o;
    this.#enter('ramp', `opening ${o.connections} connections at ${o.rampRate || 'full speed'}/s`);
    let rampDone: () => void = () => undefined;
    const ramped = new Promise<void>((resolve) => {
      rampDone = resolve;
    });
    const run = runFlood(
      { url: `${this.#clientUrl}/test/{id}`, from: 1, count: o.connections, rate: o.rampRate, fork: true },
      {
        signal: this.#floodAbort.signal,
        onWarning: (message) => this.#hooks.onEvent?.({ type: 'warning', message: `flood: ${message}` }),
        onProgress: (r) => {
          this.#floodLatest = r;
          if (!r.ramping && r.connecting === 0) rampDone();
        },
      },
    );
    // Never rejects: a flood failure is a problem of the run, reported once.
    this.#floodRun = run.then(
      (summary) => {
        this.#flood = summary;
        return summary;
      },
      (err: unknown) => {
        this.#problems.push(`flood: ${errorMessage(err)}`);
        return undefined;
      },
    );
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<'aborted'>((resolve) => {
      onAbort = () => resolve('aborted');
      if (this.#aborted) onAbort();
      this.#signal?.addEventListener('abort', onAbort, { once: true });
    });
    const first = await Promise.race([
      ramped.then(() => 'ramped' as const),
      this.#floodRun.then(() => 'ended' as const),
      aborted,
    ]);
    if (onAbort) this.#signal?.removeEventListener('abort', onAbort);
    if (first === 'ended') {
      if (this.#flood !== undefined) {
        this.#problems.push(
          `flood ended before every connection opened (stopped by ${this.#flood.stoppedBy})`,
        );
      }
      return;
    }
    if (first !== 'ramped') return;
    this.#rampComplete = true;
    const mark = await this.#mark('connected');
    const r = this.#floodLatest;
    if (r !== undefined && r.failed > 0) {
      this.#hooks.onEvent?.({
        type: 'warning',
        message: `${r.failed} of ${o.connections} connections failed: ${JSON.stringify(r.errors)}`,
      });
    }
    this.#hooks.onEvent?.({
      type: 'phase',
      phase: 'ramp',
      elapsedMs: this.#elapsed(),
      message: `${r?.open ?? 0} open, ${r?.failed ?? 0} failed; server RSS ${mark.rssKb === null ? '?' : (mark.rssKb / 1024).toFixed(1)} MB`,
    });
  }

  async #messages(): Promise<void> {
    const o = this.#o;
    const planned = Math.max(1, Math.round((o.rate * o.durationMs) / 1000));
    this.#enter(
      'messages',
      `${o.rate} msg/s to random ids 1..${o.connections} for ${o.durationMs} ms (${planned} messages)`,
    );
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    try {
      this.#msggen = await runMsggen(
        {
          api: this.#apiUrl,
          count: planned,
          maxId: o.connections,
          minId: 1,
          rate: o.rate,
          batch: o.batch,
          // The count ends the send; the duration is only a cap, with slack for the last
          // message or two (msggen wakes up to one interval after a message is due).
          duration: o.durationMs + Math.ceil(2000 / o.rate) + 1000,
          seed: o.seed,
          stamp: true,
          apiKey: o.apiKey,
          reportEvery: Math.min(1000, o.sampleEveryMs),
        },
        { signal: this.#signal, onReport: (r) => (this.#msggenLatest = r) },
      );
      this.#msggenLatest = this.#msggen;
    } finally {
      delay.disable();
      const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
      this.#loopDelay = { p99: ms(delay.percentile(99)), max: ms(delay.max) };
      await this.#mark('after-messages');
      await this.#drain();
    }
  }

  /** Waits for flood to receive what the API delivered (or stop growing, or the drain time). */
  async #drain(): Promise<void> {
    const target = this.#msggen?.delivered ?? 0;
    this.#enter('drain', `waiting up to ${this.#o.drainMs} ms for ${target} chunks`);
    await untilCountSettles(() => this.#floodLatest?.chunks ?? 0, target, {
      stableMs: DRAIN_STABLE_MS,
      maxMs: this.#o.drainMs,
    });
    await this.#mark('drained');
    const cpu = sumCpuSeconds(
      await childPids([process.pid]).then((p) => p.filter((x) => !this.#pids.includes(x))),
    );
    const own = process.cpuUsage(this.#cpuStart);
    this.#loadGenCpu = Math.round(((cpu ?? 0) + (own.user + own.system) / 1e6) * 100) / 100;
  }

  /** Stops flood, the server and memlog in that order; writes charts and the report. */
  async finish(): Promise<C10kReport> {
    const o = this.#o;
    this.#enter('stop', 'stopping flood, the server, memlog');
    if (this.#floodRun !== undefined) {
      this.#floodAbort.abort();
      await this.#floodRun;
      for (const w of this.#flood?.workerErrors ?? []) this.#problems.push(`flood ${w}`);
      if (this.#server?.exit === undefined) {
        await sleep(Math.min(1000, o.sampleEveryMs));
        // Into the memlog too: the chart should show the connections leaving.
        await this.#mark('disconnected', true);
      }
    }
    if (this.#server !== undefined) {
      if (this.#server.exit !== undefined) {
        this.#problems.push(
          `the server died during the run (${this.#server.exit.signal ?? this.#server.exit.code}):\n${this.#server.tail()}`,
        );
      }
      this.#serverExit = await this.#server.stop();
      if (this.#serverExit.killed)
        this.#problems.push('the server did not exit after SIGTERM and was killed');
      else if (this.#serverExit.code !== 0) {
        this.#problems.push(
          `the server exited with ${this.#serverExit.signal ?? this.#serverExit.code}, not 0`,
        );
      }
    }
    this.#memlogAbort.abort();
    await this.#memlogDone;
    if (this.#dataDir !== undefined) await rm(this.#dataDir, { recursive: true, force: true });

    let png: string | null = null;
    let svg: string | null = null;
    if (this.#samples.length > 0) {
      try {
        const base = o.jsonPath.replace(/\.json$/i, '');
        const chart = renderC10kChart(this.#samples, o.title, this.#spans());
        await writeFile(`${base}.png`, chart.png);
        png = `${base}.png`;
        await writeFile(`${base}.svg`, chart.svg);
        svg = `${base}.svg`;
      } catch (err) {
        this.#problems.push(`chart: ${errorMessage(err)}`);
      }
    }
    const report = buildC10kReport({
      settings: {
        connections: o.connections,
        rampRate: o.rampRate,
        rate: o.rate,
        durationMs: o.durationMs,
        holdMs: o.holdMs,
        sampleEveryMs: o.sampleEveryMs,
        drainMs: o.drainMs,
        batch: o.batch,
        seed: o.seed,
        nodeArgs: o.nodeArgs,
        serverArgs: o.serverArgs,
        title: o.title,
      },
      commandLine: o.commandLine,
      startedAt: this.#startedAt,
      elapsedMs: this.#elapsed(),
      loadAverageStart: this.#loadStart,
      problems: this.#problems,
      interruptedIn: this.#interruptedIn,
      rampComplete: this.#rampComplete,
      flood: this.#flood,
      msggen: this.#msggen,
      phases: this.#phases,
      marks: this.#marks,
      samples: this.#samples,
      skipped: this.#skipped,
      server: {
        spawned: this.#server !== undefined,
        pids: this.#pids,
        clientUrl: this.#clientUrl ?? null,
        apiUrl: this.#apiUrl ?? null,
        command: this.#server?.command ?? null,
        exit: this.#serverExit,
      },
      loadGenCpuSeconds: this.#loadGenCpu,
      loadGenLoopDelayMs: this.#loopDelay,
      files: {
        json: o.jsonPath,
        png,
        svg,
        memlog: path.join(o.outDir, 'memlog.log'),
        serverLog: this.#server === undefined ? null : path.join(o.outDir, 'server.log'),
      },
    });
    await mkdir(path.dirname(o.jsonPath), { recursive: true });
    await writeFile(o.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
    return report;
  }

  /** The phases as time spans for the chart (unix seconds); the server's start is left out. */
  #spans(): PhaseSpan[] {
    const labels: Record<C10kPhase, string> = {
      server: '',
      baseline: 'empty',
      ramp: 'connect',
      hold: 'hold',
      messages: `messages, ${this.#o.rate}/s`,
      drain: 'drain',
      stop: 'stop',
    };
    const base = this.#startedAt.getTime() / 1000;
    let end = 0;
    for (const s of this.#samples) if (s.time > end) end = s.time;
    const spans: PhaseSpan[] = [];
    for (const [i, p] of this.#phases.entries()) {
      if (p.phase === 'server') continue;
      const next = this.#phases[i + 1];
      const from = base + p.startMs / 1000;
      spans.push({
        label: labels[p.phase],
        from,
        to: next === undefined ? Math.max(from, end + 1) : base + next.startMs / 1000,
        shade: p.phase === 'messages',
      });
    }
    return spans;
  }
}
