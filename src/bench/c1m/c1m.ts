/**
 * `bench c1m`: the article's part 3 on one machine, end to end.
 *
 * ```
 *  check     kernel settings (refuse, or --tune: set them and put them back at the end)
 *  friends   Barabási–Albert graph of --users (m = 15), loaded as mutual subscriptions (SQLite)
 *  nats      the machine's NATS, or one of the run's own (--nats-server)
 *  cluster   `switchboard cluster`: enough gateways for the open-files limit, routers
 *  empty     memory of the empty cluster
 *  ramp      flood workers open /test/1 … /test/N from many 127.x source addresses
 *  hold      idle connections → memory "at full connections"
 *  messages  stamped messages to random users at --msg-rate, fanned out to their online friends
 *  drain     until the flood has every delivery, or its count stops growing
 *  stop      flood, cluster, NATS, kernel settings; report.json, chart, summary
 * ```
 *
 * Memory by role is sampled over the whole run (PSS, private and RSS from smaps_rollup; kernel
 * slab and TCP pages; MemAvailable). The run stops itself, writes a partial report and stops
 * everything it started, by pid, when MemAvailable falls under the floor, when a process it
 * started dies, at the time limit, or on a signal.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, errorMessage } from '../../errors.js';
import { reusePortSupported } from '../../limits.js';
import { runFlood } from '../../tools/flood/flood.js';
import type { FloodReport, FloodSummary } from '../../tools/flood/report.js';
import { childPids } from '../../tools/memlog/sockets.js';
import { type MsggenReport, type MsggenSummary, runMsggen } from '../../tools/msggen/msggen.js';
import { cpuByProcess, machineCpu, machineCpuSplit } from '../../tools/proc.js';
import { CliProcess } from '../harness/cli-process.js';
import { untilCountSettles } from '../harness/drain.js';
import { deleteHistoryStream, natsServerPids } from '../harness/nats.js';
import { freePorts } from '../harness/peers.js';
import { renderC1mChart } from './chart.js';
import {
  checkKernel,
  KernelTuning,
  kernelRequirements,
  readKernelMemory,
  readSlabCaches,
  slabGrowth,
  tuneCommands,
} from './kernel.js';
import {
  type C1mSample,
  type GatewaySpread,
  gatewaySpread,
  ROLES,
  type Role,
  SERVER_ROLES,
  sampleRoles,
} from './memory.js';
import { acceptWarning, type C1mOptions, type ResolvedC1mOptions, resolveC1mOptions } from './options.js';
import { buildC1mReport, type C1mMark, type C1mMarkName, type C1mReport } from './report.js';

export { C1M_DEFAULTS, type C1mOptions } from './options.js';

export type C1mPhase =
  | 'check'
  | 'friends'
  | 'nats'
  | 'cluster'
  | 'empty'
  | 'ramp'
  | 'hold'
  | 'messages'
  | 'drain'
  | 'stop';

export interface C1mHooks {
  readonly signal?: AbortSignal;
  /** Progress lines for the operator. */
  onLine?(line: string): void;
}

/** A drain ends early once the flood's count has not moved for this long. */
const DRAIN_STABLE_MS = 3000;
/** The cluster's ready line, printed by `cluster --json`. */
const READY_LINE = /^\{"clients".*\}$/m;

/** Runs the scenario; resolves to the report (also when it stopped early). */
export async function runC1m(options: C1mOptions, hooks: C1mHooks = {}): Promise<C1mReport> {
  return new C1mRun(resolveC1mOptions(options), hooks).execute();
}

class C1mRun {
  readonly #o: ResolvedC1mOptions;
  readonly #hooks: C1mHooks;
  readonly #t0 = performance.now();
  readonly #startedAt = new Date().toISOString();
  readonly #stop = new AbortController();
  readonly #floodAbort = new AbortController();
  readonly #tuning = new KernelTuning();
  readonly #problems: string[] = [];
  readonly #marks: C1mMark[] = [];
  readonly #samples: C1mSample[] = [];
  readonly #phases: { phase: C1mPhase; startMs: number }[] = [];
  readonly #pids: Record<Role, number[]> = { gateways: [], routers: [], primary: [], nats: [], flood: [] };
  #phase: C1mPhase = 'check';
  #abortedBy: string | null = null;
  #kernelSettings: string[] = [];
  #tmp: string | undefined;
  #nats: ChildProcess | undefined;
  #prefix = `c1m_${process.pid}_${Date.now()}`;
  #busUrl: string;
  #cluster: CliProcess | undefined;
  #clientUrl = '';
  #apiUrl = '';
  #friends: Record<string, unknown> | null = null;
  #flood: FloodSummary | undefined;
  #floodLatest: FloodReport | undefined;
  #floodRun: Promise<FloodSummary | undefined> | undefined;
  #msggen: MsggenSummary | undefined;
  #msggenLatest: MsggenReport | undefined;
  readonly #slab = new Map<C1mMarkName, Map<string, number>>();
  #memStart = readKernelMemory().memAvailableBytes;
  #memMin = this.#memStart;
  #watch: Promise<void> | undefined;
  #onSignalExit = (): void => this.#emergencyStop();

  constructor(o: ResolvedC1mOptions, hooks: C1mHooks) {
    this.#o = o;
    this.#hooks = hooks;
    this.#busUrl = o.bus;
  }

  #elapsed(): number {
    return Math.round(performance.now() - this.#t0);
  }

  #say(line: string): void {
    this.#hooks.onLine?.(`[${(this.#elapsed() / 1000).toFixed(1).padStart(7)}s] ${line}`);
  }

  #enter(phase: C1mPhase, message: string): void {
    this.#phase = phase;
    this.#phases.push({ phase, startMs: this.#elapsed() });
    this.#say(`${phase}: ${message}`);
  }

  get #stopped(): boolean {
    return this.#stop.signal.aborted;
  }

  /** Stops the run early: later phases are skipped, the stop sequence runs. */
  #abort(why: string): void {
    if (this.#abortedBy !== null) return;
    this.#abortedBy = `${why} (in ${this.#phase})`;
    this.#say(`STOPPING: ${why}`);
    this.#stop.abort();
  }

  /** The exit path (nothing can wait): kill what was started, put the kernel back. */
  #emergencyStop(): void {
    this.#cluster?.killNow();
    if (this.#nats?.exitCode === null) this.#nats.kill('SIGKILL');
    this.#tuning.restore();
  }

  async execute(): Promise<C1mReport> {
    const o = this.#o;
    const onSignal = (): void => this.#abort('interrupted');
    this.#hooks.signal?.addEventListener('abort', onSignal, { once: true });
    if (this.#hooks.signal?.aborted) onSignal();
    process.on('exit', this.#onSignalExit);
    await mkdir(o.outDir, { recursive: true });
    let configError: ConfigError | undefined;
    try {
      this.#checkKernel();
      this.#tmp = await mkdtemp(path.join(os.tmpdir(), 'sb-c1m-'));
      this.#watch = this.#watchLoop();
      if (!this.#stopped) await this.#buildFriends();
      if (!this.#stopped) await this.#startNats();
      if (!this.#stopped) await this.#startCluster();
      if (!this.#stopped) {
        this.#enter('empty', `empty cluster for ${o.sampleEveryMs} ms`);
        await this.#pause(o.sampleEveryMs);
        await this.#mark('empty');
      }
      if (!this.#stopped) await this.#ramp();
      if (!this.#stopped) {
        this.#enter('hold', `${this.#floodLatest?.open ?? 0} connections open; holding ${o.holdMs} ms`);
        await this.#pause(o.holdMs);
        if (!this.#stopped) await this.#mark('full');
      }
      if (!this.#stopped) await this.#messages();
    } catch (err) {
      if (err instanceof ConfigError) configError = err;
      this.#problems.push(errorMessage(err));
    } finally {
      this.#hooks.signal?.removeEventListener('abort', onSignal);
    }
    const report = await this.#finish();
    process.off('exit', this.#onSignalExit);
    if (configError) throw configError;
    return report;
  }

  async #pause(ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: this.#stop.signal });
    } catch {
      // stopped
    }
  }

  #checkKernel(): void {
    const checks = checkKernel(kernelRequirements(this.#o.connections));
    const failed = checks.filter((c) => !c.ok);
    this.#kernelSettings = checks.map((c) => `${c.key} = ${c.value ?? 'absent'} (needs ≥ ${c.atLeast})`);
    if (failed.length === 0) {
      this.#enter('check', 'kernel settings are enough');
      return;
    }
    const missing = failed.filter((c) => c.value === null);
    if (missing.length > 0) {
      throw new ConfigError(`kernel setting ${missing.map((c) => c.key).join(', ')} not found in /proc/sys`);
    }
    if (!this.#o.tune) {
      throw new ConfigError(
        [
          `the kernel settings are too small for ${this.#o.connections} connections:`,
          ...failed.map((c) => `  ${c.key} = ${c.value}, needs ≥ ${c.atLeast}: ${c.why}`),
          'Run again with --tune (sets them for the run and puts them back after), or as root:',
          ...tuneCommands(failed).map((c) => `  ${c}`),
        ].join('\n'),
      );
    }
    try {
      const changed = this.#tuning.apply(failed);
      this.#kernelSettings.push(...changed.map((c) => `tuned for the run: ${c}`));
      this.#enter('check', `tuned for this run: ${changed.join('; ')}`);
    } catch (err) {
      this.#tuning.restore();
      throw new ConfigError(`--tune could not set the kernel settings (root needed): ${errorMessage(err)}`);
    }
  }

  /** Builds (or reuses) the friends database. */
  async #buildFriends(): Promise<void> {
    const o = this.#o;
    const db = o.friendsDb ?? path.join(this.#tmp ?? o.outDir, 'friends.db');
    const meta = `${db}.json`;
    const want = { users: o.users, m: o.m, seed: o.seed };
    if (o.friendsDb !== undefined && existsSync(db)) {
      const had = existsSync(meta)
        ? (JSON.parse(await readFile(meta, 'utf8')) as Record<string, unknown>)
        : {};
      if (had.users !== want.users || had.m !== want.m || had.seed !== want.seed) {
        throw new ConfigError(
          `--friends-db ${db} holds a graph of ${JSON.stringify(had)}, not ${JSON.stringify(want)}: delete it or name another file`,
        );
      }
      this.#enter('friends', `reusing ${db} (${o.users} users, m = ${o.m}, seed ${o.seed})`);
      this.#friends = { ...had, db, reused: true };
      return;
    }
    this.#enter('friends', `Barabási–Albert graph of ${o.users} users, m = ${o.m}, loaded into ${db}`);
    const edges = path.join(this.#tmp ?? o.outDir, 'friends.txt');
    const t0 = performance.now();
    await this.#runCli(
      [
        'friends',
        'generate',
        '--users',
        String(o.users),
        '--m',
        String(o.m),
        '--seed',
        String(o.seed),
      ].concat(['--out', edges]),
    );
    const generatedMs = Math.round(performance.now() - t0);
    const load = await this.#runCli(['friends', 'load', edges, '--store', `sqlite:${db}`, '--json']);
    const loadedMs = Math.round(performance.now() - t0) - generatedMs;
    await rm(edges, { force: true });
    const result = JSON.parse(load.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
    this.#friends = {
      ...want,
      db,
      reused: false,
      generatedMs,
      loadedMs,
      edges: result.edges,
      subscriptions: result.subscriptions,
    };
    if (o.friendsDb !== undefined) await writeFile(meta, `${JSON.stringify(want)}\n`);
    this.#say(
      `friends: ${result.edges} friendships, ${result.subscriptions} subscriptions (${generatedMs} + ${loadedMs} ms)`,
    );
  }

  /** Runs a CLI command to its end; resolves with its stdout; throws with its output if it fails. */
  async #runCli(args: readonly string[]): Promise<string> {
    const p = new CliProcess(args, { keepChars: 64 * 1024 });
    const onStop = (): void => void p.stop('SIGINT');
    this.#stop.signal.addEventListener('abort', onStop, { once: true });
    const exit = await p.closed;
    this.#stop.signal.removeEventListener('abort', onStop);
    if (exit.code !== 0) {
      throw new Error(
        `switchboard ${args.slice(0, 2).join(' ')} exited with ${exit.signal ?? exit.code}:\n${p.tail()}`,
      );
    }
    return p.stdout;
  }

  async #startNats(): Promise<void> {
    const o = this.#o;
    if (o.natsServer === undefined) {
      this.#enter('nats', `using the NATS server at ${o.bus}`);
      this.#pids.nats = await natsServerPids(o.bus);
      if (this.#pids.nats.length === 0) {
        this.#say('nats: its process is not on this machine (or not readable); its memory is not counted');
      }
      return;
    }
    const [port] = await freePorts(1);
    const dir = path.join(this.#tmp ?? o.outDir, 'jetstream');
    this.#enter('nats', `starting ${o.natsServer} on 127.0.0.1:${port} (JetStream in ${dir})`);
    const child = spawn(o.natsServer, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    this.#nats = child;
    let log = '';
    const ready = new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, sig) =>
        reject(new ConfigError(`${o.natsServer} exited (${sig ?? code}):\n${log}`)),
      );
      child.stderr?.on('data', (d: Buffer) => {
        log = (log + d.toString()).slice(-8192);
        if (log.includes('Server is ready')) resolve();
      });
    });
    await Promise.race([
      ready,
      sleep(20_000).then(() => Promise.reject(new Error('NATS did not start in 20 s'))),
    ]);
    child.stderr?.resume();
    this.#busUrl = `nats://127.0.0.1:${port}`;
    this.#pids.nats = child.pid === undefined ? [] : [child.pid];
  }

  async #startCluster(): Promise<void> {
    const o = this.#o;
    const db = String(this.#friends?.db);
    const prefix = this.#prefix;
    const args = ['cluster', '--gateways', String(o.gateways), '--routers', String(o.routers)]
      .concat(['--bus', this.#busUrl, '--bus-prefix', prefix, '--store', `sqlite:${db}`])
      .concat(['--data', path.join(this.#tmp ?? o.outDir, 'data'), '--port', '0', '--api-port', '0'])
      .concat(['--host', '127.0.0.1', '--json', '--log-level', 'warn'])
      .concat(o.nodeArgs === undefined ? [] : [`--node-args=${o.nodeArgs.join(' ')}`])
      .concat(o.serverArgs.length > 0 ? ['--', ...o.serverArgs] : []);
    this.#enter('cluster', `${o.gateways} gateways, ${o.routers} routers, bus ${this.#busUrl}`);
    const warning = acceptWarning(o.connections, reusePortSupported(), process.versions.node);
    if (warning !== undefined) this.#say(`warning: ${warning}`);
    this.#cluster = new CliProcess(args, {
      detached: true,
      logFile: path.join(o.outDir, 'cluster.log'),
      keepChars: 256 * 1024,
    });
    const line = await this.#cluster.waitFor(READY_LINE, 60_000 + o.gateways * 2000, this.#stop.signal);
    const ready = JSON.parse(line[0]) as { clients: string; api: string; pids: Record<string, number> };
    this.#clientUrl = ready.clients;
    this.#apiUrl = ready.api;
    this.#pids.primary = [this.#cluster.pid];
    for (const [name, pid] of Object.entries(ready.pids)) {
      (name.startsWith('gateway') ? this.#pids.gateways : this.#pids.routers).push(pid);
    }
    this.#say(`cluster: clients ${ready.clients}, API ${ready.api}, primary pid ${this.#cluster.pid}`);
    this.#renice('router', this.#pids.routers, o.routerNice);
  }

  /** Sets `nice` on `pids` (0: left as they are), saying which could not be set. */
  #renice(what: string, pids: readonly number[], nice: number): void {
    if (nice === 0) return;
    for (const pid of pids) {
      try {
        os.setPriority(pid, nice);
      } catch (err) {
        this.#say(`${what}: nice ${nice} not set on ${pid}: ${errorMessage(err)}`);
      }
    }
    this.#say(`${pids.length} ${what}s at nice ${nice}`);
  }

  async #ramp(): Promise<void> {
    const o = this.#o;
    this.#enter(
      'ramp',
      `${o.connections} connections at ${o.rampRate || 'full speed'}/s, ${o.floodWorkers} flood workers`,
    );
    let rampDone: () => void = () => undefined;
    const ramped = new Promise<'ramped'>((resolve) => {
      rampDone = () => resolve('ramped');
    });
    const known = new Set(ROLES.flatMap((r) => this.#pids[r]));
    this.#floodRun = runFlood(
      {
        url: `${this.#clientUrl}/test/{id}`,
        from: 1,
        count: o.connections,
        rate: o.rampRate,
        procs: o.floodWorkers,
        fork: true,
        reportEvery: o.sampleEveryMs,
      },
      {
        signal: this.#floodAbort.signal,
        onWarning: (m) => this.#say(`flood: ${m}`),
        onProgress: (r) => {
          this.#floodLatest = r;
          if (!r.ramping && r.connecting === 0) rampDone();
        },
      },
    ).then(
      (s) => {
        this.#flood = s;
        return s;
      },
      (err: unknown) => {
        this.#problems.push(`flood: ${errorMessage(err)}`);
        return undefined;
      },
    );
    // The flood workers are this process's children that are not the cluster or NATS.
    await sleep(500);
    this.#pids.flood = (await childPids([process.pid])).filter((p) => !known.has(p));
    this.#renice('flood worker', this.#pids.flood, o.floodNice);
    const stopped = new Promise<'stopped'>((resolve) => {
      if (this.#stopped) resolve('stopped');
      this.#stop.signal.addEventListener('abort', () => resolve('stopped'), { once: true });
    });
    const first = await Promise.race([ramped, this.#floodRun.then(() => 'ended' as const), stopped]);
    if (first === 'ended') this.#abort('the flood ended before every connection opened');
    if (first !== 'ramped') return;
    const r = this.#floodLatest;
    await this.#mark('connected');
    this.#say(
      `ramp: ${r?.open ?? 0} open, ${r?.failed ?? 0} failed ${r && r.failed > 0 ? JSON.stringify(r.errors) : ''}`,
    );
  }

  async #messages(): Promise<void> {
    const o = this.#o;
    const planned = Math.max(1, Math.round((o.msgRate * o.durationMs) / 1000));
    this.#enter(
      'messages',
      `${o.msgRate} msg/s to random users 1..${o.connections} for ${o.durationMs} ms (${planned})`,
    );
    try {
      this.#msggen = await runMsggen(
        {
          api: this.#apiUrl,
          count: planned,
          minId: 1,
          maxId: o.connections,
          rate: o.msgRate,
          duration: o.durationMs + Math.ceil(2000 / o.msgRate) + 5000,
          seed: o.seed,
          stamp: true,
          reportEvery: 1000,
        },
        { signal: this.#stop.signal, onReport: (r) => (this.#msggenLatest = r) },
      );
      this.#msggenLatest = this.#msggen;
      const g = this.#msggen;
      if (g.sent + g.failed < planned) {
        this.#problems.push(
          `the API took ${g.sent} of ${planned} messages in the time (${g.stoppedBy}; ${g.behind} went out late, API p99 ${Math.round(g.apiLatency.p99)} ms): the cluster fell behind ${o.msgRate}/s`,
        );
      }
    } finally {
      await this.#mark('messages');
      await this.#drain();
    }
  }

  async #drain(): Promise<void> {
    const target = this.#msggen?.delivered ?? this.#msggenLatest?.delivered ?? 0;
    this.#enter('drain', `up to ${this.#o.drainMs} ms for ${target} deliveries`);
    await untilCountSettles(() => this.#floodLatest?.chunks ?? 0, target, {
      stableMs: DRAIN_STABLE_MS,
      maxMs: this.#o.drainMs,
    });
    await this.#mark('drained');
  }

  /** Takes a sample now (also into the series); with `others`, the other processes' CPU too. */
  async #sample(others = false): Promise<C1mSample> {
    const kernel = readKernelMemory();
    this.#memMin = Math.min(this.#memMin, kernel.memAvailableBytes);
    const server = await this.#serverConnections();
    const s: C1mSample = {
      elapsedMs: this.#elapsed(),
      phase: this.#phase,
      roles: sampleRoles(this.#pids),
      kernel,
      clientConnections: this.#floodLatest?.open ?? 0,
      serverConnections: server.total,
      gatewaySpread: server.spread,
      received: this.#floodLatest?.chunks ?? 0,
      sent: this.#msggenLatest?.sent ?? 0,
      machineBusySeconds: Math.round(machineCpu().busy * 100) / 100,
      machineCpu: machineCpuSplit(),
      ...(others ? { otherCpu: cpuByProcess(new Set(ROLES.flatMap((r) => this.#pids[r]))) } : {}),
    };
    this.#samples.push(s);
    return s;
  }

  async #mark(mark: C1mMarkName): Promise<void> {
    const sample = await this.#sample(true);
    this.#marks.push({ mark, sample });
    if (mark === 'empty' || mark === 'full' || mark === 'messages') this.#slab.set(mark, readSlabCaches());
  }

  /** The gateways' connections as the router sums them and their spread, or nulls (no answer in 3 s). */
  async #serverConnections(): Promise<{ total: number | null; spread: GatewaySpread | null }> {
    const none = { total: null, spread: null };
    if (this.#apiUrl === '') return none;
    try {
      const res = await fetch(`${this.#apiUrl}/api/stats`, { signal: AbortSignal.timeout(3000) });
      const body = (await res.json()) as {
        cluster?: { connections?: number; perGateway?: Record<string, { connections: number }> };
      };
      return { total: body.cluster?.connections ?? null, spread: gatewaySpread(body.cluster?.perGateway) };
    } catch {
      return none;
    }
  }

  /** Samples every interval and stops the run on the machine's or its processes' distress. */
  async #watchLoop(): Promise<void> {
    const o = this.#o;
    const deadline = performance.now() + o.timeLimitMs;
    while (!this.#stopped) {
      await this.#pause(o.sampleEveryMs);
      if (this.#stopped) break;
      const s = await this.#sample();
      const total = ROLES.reduce((a, r) => a + s.roles[r].processes, 0);
      const r = s.roles;
      this.#say(
        `${this.#phase.padEnd(8)} conns ${s.clientConnections} (server ${s.serverConnections ?? '?'})  PSS gw ${mb(r.gateways.pssBytes)} nats ${mb(r.nats.pssBytes)} flood ${mb(r.flood.pssBytes)}  slab ${mb(s.kernel.slabBytes)}  avail ${mb(s.kernel.memAvailableBytes)}  sent ${s.sent} received ${s.received}  (${total} processes)`,
      );
      if (s.kernel.memAvailableBytes < o.minAvailableBytes) {
        this.#abort(
          `MemAvailable fell to ${mb(s.kernel.memAvailableBytes)}, under the floor of ${mb(o.minAvailableBytes)}`,
        );
      }
      const dead = this.#deadPids();
      if (dead.length > 0) this.#abort(`process(es) died: ${dead.join(', ')}`);
      if (performance.now() > deadline) this.#abort(`time limit of ${o.timeLimitMs} ms reached`);
    }
  }

  #deadPids(): string[] {
    const dead: string[] = [];
    for (const role of SERVER_ROLES) {
      for (const pid of this.#pids[role]) {
        try {
          process.kill(pid, 0);
        } catch {
          dead.push(`${role} pid ${pid}`);
        }
      }
    }
    if (this.#cluster !== undefined && !this.#cluster.running) dead.push('the cluster primary');
    return dead;
  }

  async #finish(): Promise<C1mReport> {
    const o = this.#o;
    this.#stop.abort();
    this.#enter('stop', 'stopping the flood, the cluster, NATS');
    await this.#watch;
    if (this.#floodRun !== undefined) {
      this.#floodAbort.abort();
      await this.#floodRun;
      for (const w of this.#flood?.workerErrors ?? []) this.#problems.push(`flood ${w}`);
    }
    if (this.#cluster !== undefined) {
      const exit = await this.#cluster.stop('SIGTERM', 120_000);
      if (exit.killed) this.#problems.push('the cluster did not stop after SIGTERM and was killed');
      else if (exit.code !== 0 && this.#abortedBy === null) {
        this.#problems.push(`the cluster exited with ${exit.signal ?? exit.code}:\n${this.#cluster.tail()}`);
      }
    }
    if (this.#nats !== undefined) await stopChild(this.#nats);
    else if (this.#cluster !== undefined) {
      await deleteHistoryStream(this.#busUrl, this.#prefix).catch((err: unknown) =>
        this.#problems.push(`could not delete the run's JetStream stream: ${errorMessage(err)}`),
      );
    }
    this.#problems.push(...this.#tuning.restore());
    if (this.#tmp !== undefined) await rm(this.#tmp, { recursive: true, force: true });

    const json = path.join(o.outDir, 'report.json');
    let png: string | null = null;
    let svg: string | null = null;
    if (this.#samples.length > 1) {
      try {
        const chart = renderC1mChart(this.#samples, this.#title(), this.#spans());
        png = path.join(o.outDir, 'c1m.png');
        svg = path.join(o.outDir, 'c1m.svg');
        await writeFile(png, chart.png);
        await writeFile(svg, chart.svg);
      } catch (err) {
        this.#problems.push(`chart: ${errorMessage(err)}`);
      }
    }
    const f = this.#flood ?? this.#floodLatest;
    const m = this.#msggen ?? this.#msggenLatest;
    const report = buildC1mReport({
      settings: { ...o, outDir: undefined, commandLine: undefined, busUrl: this.#busUrl },
      commandLine: o.commandLine,
      startedAt: this.#startedAt,
      elapsedMs: this.#elapsed(),
      problems: this.#problems,
      abortedBy: this.#abortedBy,
      marks: this.#marks,
      samples: this.#samples,
      counts:
        m === undefined
          ? null
          : { sent: m.sent, delivered: m.delivered, received: f?.chunks ?? 0, failed: m.failed },
      latency: f?.latency ?? null,
      apiLatency: m?.apiLatency ?? null,
      ramp:
        f === undefined
          ? null
          : {
              asked: o.rampRate,
              reached: this.#flood?.connectRate ?? null,
              opened: f.opened,
              failed: f.failed,
              errors: f.errors,
              closes: f.closes,
            },
      friends: this.#friends,
      kernelSettings: this.#kernelSettings,
      slabCaches: this.#slabCaches(),
      memAvailableStartBytes: this.#memStart,
      memAvailableMinBytes: this.#memMin,
      loadAverage: os.loadavg(),
      files: { json, png, svg, clusterLog: path.join(o.outDir, 'cluster.log') },
    });
    await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
    return report;
  }

  #slabCaches(): { cache: string; bytes: number }[] | null {
    const empty = this.#slab.get('empty');
    const head = this.#slab.get('messages') ?? this.#slab.get('full');
    return empty === undefined || head === undefined || head.size === 0 ? null : slabGrowth(empty, head);
  }

  #title(): string {
    const o = this.#o;
    return `${o.connections.toLocaleString('en-US')} connections, ${o.gateways} gateways, ${o.msgRate} msg/s to ${o.users.toLocaleString('en-US')} users with friends`;
  }

  #spans(): { label: string; fromMs: number; toMs: number; shade: boolean }[] {
    const end = this.#samples.at(-1)?.elapsedMs ?? this.#elapsed();
    const shown = new Set<C1mPhase>(['empty', 'ramp', 'hold', 'messages', 'drain', 'stop']);
    return this.#phases.flatMap((p, i) => {
      if (!shown.has(p.phase)) return [];
      const next = this.#phases[i + 1];
      return [
        { label: p.phase, fromMs: p.startMs, toMs: next?.startMs ?? end, shade: p.phase === 'messages' },
      ];
    });
  }
}

const mb = (b: number): string => `${Math.round(b / 1024 ** 2)} MB`;

/** SIGTERM, then SIGKILL after 30 s; resolves when it has exited. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const late = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(late);
}
