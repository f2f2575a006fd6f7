/**
 * Fan-out throughput: 15,000 connected users with a Barabási–Albert friends graph among them,
 * msggen at increasing open-loop rates; deliveries/s sustained with p99 latency under 100 ms.
 *
 *   node dist/bench/fanout.js [--users 15000] [--m 15] [--seed 1]
 *        [--rates 250,500,750,1000,1500,2000,4000,8000] [--article-rate 16666] [--warm 3] [--measure 20]
 *        [--batch auto|N] [--prewarm 8] [--max-load 1.0] [--max-others 25] [--node-args='…']
 *
 * Setup, each part its own process: `friends generate` and `friends load` (mutual: ~30
 * subscribers per user on average, a power-law tail) into a fresh SQLite store; `serve` with the
 * lean V8 flags; one flood worker process holding `/test/1` … `/test/<users>`; one msggen
 * process per step (open loop at the step's rate, `--stamp`, ids uniform over all users).
 *
 * First an unreported `prewarm`-second run at the first rate (JIT warm-up of every process).
 * Per step, after `warm` seconds, over a `measure`-second window: the send rate the server
 * accepted (messagesIn delta), deliveries/s (messagesOut delta), CPU of server, flood, msggen and
 * of everything else on the machine, server RSS. Over the whole step (after msggen stops and the
 * flood's count holds still): the API's `delivered` sum against the chunks the flood received,
 * and publish → receive latency of the messages received from the end of the warm-up on.
 * Stepping stops when p99 > 100 ms or the accepted rate falls short of the target by > 10 %.
 * `--batch auto` sends one message per request and, when a step falls short that way, runs it
 * again with the batch API (rate / 250 messages per request) and keeps batching from then on.
 * The machine is shared: before the run the 1-minute load average must fall to `max-load`, and
 * before each step other processes must use at most `max-others` % of one core (sampled; up to
 * 10 minutes of waiting). A step during which they used more is marked `contended`, run once more
 * if it failed, and never reported as sustained.
 * Prints one JSON line per step and a summary line.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  type BenchSpec,
  badFlag,
  NODE_ARGS_OPTION,
  nodeArgsOf,
  numberList,
  parseBenchArgs,
} from '../src/bench/harness/args.js';
import { CLI_MAIN } from '../src/bench/harness/cli-process.js';
import { templateTargets } from '../src/tools/flood/targets.js';
import { LatencyHistogram } from '../src/tools/msggen/latency.js';
import { MAX_BATCH, type MsggenOptions, type MsggenSummary } from '../src/tools/msggen/msggen.js';
import { machineCpu } from '../src/tools/proc.js';
import {
  type BenchServer,
  cleanupOnExit,
  cpuSeconds,
  cpuTimes,
  DEFAULT_WORKER_EXEC_ARGV,
  FloodWorker,
  histogramDelta,
  load1,
  note,
  QUIET_MACHINE_OPTIONS,
  round,
  rssMB,
  sleep,
  startCliServer,
  tempDir,
  track,
  waitForOthersQuiet,
  waitForQuiet,
} from './support.js';

const spec = {
  name: 'bench/fanout.js',
  summary:
    'Fan-out throughput over a friends graph: msggen at rising open-loop rates until p99 > 100 ms; JSON per step.',
  options: {
    users: {
      type: 'int',
      description: 'Connected users, also the friends graph size',
      default: 15_000,
      min: 1,
    },
    m: {
      type: 'int',
      description: 'Friends each new user makes (friends generate --m)',
      default: 15,
      min: 1,
    },
    seed: { type: 'int', description: 'Seed of the graph', default: 1, min: 0 },
    rates: {
      type: 'list',
      description: 'Send rates to step through, messages/s',
      default: ['250', '500', '750', '1000', '1500', '2000', '4000', '8000'],
    },
    'article-rate': {
      type: 'number',
      description: "A last step at the article's rate, not reported as sustained (0: none)",
      default: 16_666,
      min: 0,
    },
    warm: { type: 'number', description: 'Seconds of each step before the window', default: 3, min: 0 },
    measure: {
      type: 'number',
      description: "Seconds of each step's measured window",
      default: 20,
      min: 0.001,
    },
    prewarm: {
      type: 'number',
      description: 'Seconds of an unreported JIT warm-up run (0: none)',
      default: 8,
      min: 0,
    },
    batch: {
      type: 'string',
      description: 'Messages per API request: auto (batch once single sends fall short) or N',
      default: 'auto',
      placeholder: 'auto|N',
    },
    ...QUIET_MACHINE_OPTIONS,
    'node-args': NODE_ARGS_OPTION,
    msggen: { type: 'string', description: '(internal) run as the msggen child with these options (JSON)' },
  },
} as const satisfies BenchSpec;
const values = parseBenchArgs(spec, (v) => {
  numberList(spec, 'rates', v.rates, { min: 0.001 });
  if (v.batch !== 'auto' && !(/^\d+$/.test(v.batch) && Number(v.batch) <= MAX_BATCH))
    throw badFlag(spec, 'batch', `must be auto or a whole number up to ${MAX_BATCH}`, v.batch);
});

const FLOOD_SOURCES = ['127.0.44.2', '127.0.44.3'];
const P99_LIMIT_MS = 100;
const SHORTFALL = 0.9;
/** Requests per second the batch mode aims at: batch = ceil(rate / this). */
const BATCH_REQUESTS_PER_S = 250;

// ── msggen (a child process per step) ────────────────────────────────────────────────────────
type FromMsggen = { type: 'started' } | { type: 'done'; summary: MsggenSummary };

async function msggenChild(optionsJson: string): Promise<void> {
  const { runMsggen } = await import('../src/tools/msggen/msggen.js');
  process.send?.({ type: 'started' } satisfies FromMsggen);
  const summary = await runMsggen(JSON.parse(optionsJson) as MsggenOptions);
  process.send?.({ type: 'done', summary } satisfies FromMsggen, () => process.exit(0));
}

// ── setup ────────────────────────────────────────────────────────────────────────────────────
/** Runs the CLI to completion; resolves to its `--json` output and wall seconds. */
async function cli(args: readonly string[]): Promise<{ json: Record<string, unknown>; seconds: number }> {
  note(`node dist/src/cli/main.js ${args.join(' ')} --json`);
  const t0 = performance.now();
  const child = track(
    spawn(process.execPath, [CLI_MAIN, ...args, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] }),
  );
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const code = await new Promise<number | null>((r) => child.on('close', r));
  if (code !== 0) throw new Error(`switchboard ${args.join(' ')} exited with ${code}`);
  return {
    json: JSON.parse(out) as Record<string, unknown>,
    seconds: round((performance.now() - t0) / 1000, 2),
  };
}

// ── one step ─────────────────────────────────────────────────────────────────────────────────
interface Snapshot {
  /** When the CPU figures were read. */
  readonly t: number;
  /** When the stats answer arrived (an overloaded server answers late: rates use this clock). */
  readonly tStats: number;
  readonly stats: Record<string, number>;
  readonly cpu: { server: number; flood: number; msggen: number; bench: number };
  readonly serverSys: number;
  readonly machine: { busy: number; total: number };
}

async function snapshot(
  server: BenchServer,
  flood: FloodWorker,
  msggenPid: number | undefined,
): Promise<Snapshot> {
  const t = performance.now();
  const st = cpuTimes(server.pid);
  const cpu = {
    server: st.user + st.sys,
    flood: cpuSeconds(flood.pid),
    msggen: cpuSeconds(msggenPid),
    bench: cpuSeconds(process.pid),
  };
  const machine = machineCpu();
  const stats = await server.stats();
  return { t, tStats: performance.now(), stats, cpu, serverSys: st.sys, machine };
}

interface StepPlan {
  readonly step: string;
  readonly rate: number;
  readonly batch: number;
  readonly users: number;
  readonly warmS: number;
  readonly measureS: number;
  readonly seed: number;
}

async function runStep(
  server: BenchServer,
  flood: FloodWorker,
  plan: StepPlan,
): Promise<Record<string, unknown>> {
  const { rate, batch, warmS, measureS } = plan;
  const f0 = await flood.next();
  const s0 = await server.stats();
  const load = load1();
  const options: MsggenOptions = {
    api: `http://127.0.0.1:${server.apiPort}`,
    count: Math.ceil(rate * (warmS + measureS) * 2),
    maxId: plan.users,
    minId: 1,
    rate,
    batch,
    stamp: true,
    seed: plan.seed,
    duration: (warmS + measureS) * 1000 + 250,
  };
  const child: ChildProcess = track(
    fork(fileURLToPath(import.meta.url), ['--msggen', JSON.stringify(options)]),
  );
  const done = new Promise<MsggenSummary>((resolve, reject) => {
    child.on('message', (m: FromMsggen) => {
      if (m.type === 'done') resolve(m.summary);
    });
    child.once('exit', (code) => reject(new Error(`msggen exited ${code} without a summary`)));
  });
  await new Promise<void>((r) => child.once('message', () => r()));
  await sleep(warmS * 1000);
  const fa = await flood.next();
  const a = await snapshot(server, flood, child.pid);
  await sleep(measureS * 1000);
  const b = await snapshot(server, flood, child.pid);
  const rssServer = rssMB(server.pid);
  const rssFlood = rssMB(flood.pid);
  const summary = await done;
  const f1 = await flood.settle(1000, 30_000);
  const s1 = await server.stats();

  const secs = (b.t - a.t) / 1000;
  const statSecs = (b.tStats - a.tStats) / 1000;
  const d = (k: string): number => (b.stats[k] ?? 0) - (a.stats[k] ?? 0);
  const core = (k: keyof Snapshot['cpu']): number => round(((b.cpu[k] - a.cpu[k]) / secs) * 100);
  const ours = (['server', 'flood', 'msggen', 'bench'] as const).reduce((x, k) => x + b.cpu[k] - a.cpu[k], 0);
  const latency = LatencyHistogram.from(histogramDelta(fa.latency, f1.latency)).summary();
  const chunks = f1.chunks - f0.chunks;
  const achieved = d('messagesIn') / statSecs;
  return {
    bench: 'fanout',
    step: plan.step,
    mode: batch > 1 ? 'batch' : 'single',
    batch,
    targetRate: rate,
    achievedRate: round(achieved),
    msggenRate: summary.sentPerSecond,
    deliveriesPerSec: round(d('messagesOut') / statSecs),
    recipientsPerMessage: round(d('messagesOut') / Math.max(1, d('messagesIn')), 2),
    windowS: round(statSecs, 2),
    sent: summary.sent,
    failed: summary.failed,
    errors: summary.errors,
    behind: summary.behind,
    apiDelivered: summary.delivered,
    floodChunks: chunks,
    serverMessagesOut: (s1.messagesOut ?? 0) - (s0.messagesOut ?? 0),
    mismatch: summary.delivered - chunks,
    latencyMs: {
      count: latency.count,
      p50: latency.p50,
      p90: latency.p90,
      p99: latency.p99,
      max: latency.max,
    },
    apiLatencyMs: { p50: summary.apiLatency.p50, p99: summary.apiLatency.p99, max: summary.apiLatency.max },
    cpuPercentOfOneCore: {
      server: core('server'),
      serverKernel: round(((b.serverSys - a.serverSys) / secs) * 100),
      flood: core('flood'),
      msggen: core('msggen'),
      bench: core('bench'),
      machine: round(((b.machine.busy - a.machine.busy) / secs) * 100),
      others: round((Math.max(0, b.machine.busy - a.machine.busy - ours) / secs) * 100),
    },
    rssMB: { server: rssServer, flood: rssFlood },
    slowConsumers: (s1.slowConsumers ?? 0) - (s0.slowConsumers ?? 0),
    floodClosed: f1.closed - f0.closed,
    floodOpen: f1.open,
    load1AtStart: load,
  };
}

const passes = (r: Record<string, unknown>): boolean =>
  (r.latencyMs as { p99: number }).p99 < P99_LIMIT_MS &&
  (r.achievedRate as number) >= SHORTFALL * (r.targetRate as number) &&
  (r.failed as number) === 0;

// ── main ─────────────────────────────────────────────────────────────────────────────────────
async function main(): Promise<void> {
  cleanupOnExit();
  const { users, warm: warmS, measure: measureS } = values;
  const dir = tempDir('sb-fanout-');
  const edges = `${dir}/friends.txt`;
  const db = `sqlite:${dir}/store.db`;
  const gen = await cli([
    'friends',
    'generate',
    '--users',
    String(users),
    '--m',
    String(values.m),
    '--seed',
    String(values.seed),
    '--out',
    edges,
  ]);
  const load = await cli(['friends', 'load', edges, '--store', db]);
  note(`generated in ${gen.seconds}s, loaded in ${load.seconds}s: ${JSON.stringify(load.json)}`);

  const quiet = await waitForQuiet(values['max-load']);
  note(`load average ${quiet.load1} (waited ${quiet.waitedS}s${quiet.quiet ? '' : ', gave up waiting'})`);
  const nodeArgs = nodeArgsOf(values['node-args']);
  const server = await startCliServer(nodeArgs, ['--data', dir, '--store', db]);
  let flood: FloodWorker | undefined;
  const steps: Record<string, unknown>[] = [];
  try {
    const targets = (
      await templateTargets(`http://127.0.0.1:${server.clientPort}/test/{id}`, 1, users)
    ).forShare({
      offset: 0,
      count: users,
      sources: FLOOD_SOURCES,
      sourceStart: 0,
      rate: 0,
    });
    flood = await FloodWorker.start(DEFAULT_WORKER_EXEC_ARGV, targets, users, FLOOD_SOURCES, 100);
    const t0 = performance.now();
    const opened = await flood.until((s) => s.open + s.failed >= users, 180_000);
    if (opened.open !== users)
      throw new Error(`only ${opened.open} of ${users} streams opened: ${JSON.stringify(opened.errors)}`);
    note(`${users} streams open in ${round((performance.now() - t0) / 1000)}s`);
    await sleep(3000);

    // JIT warm-up of server, flood and API paths at the first rate: not reported as a step.
    const prewarmS = values.prewarm;
    if (prewarmS > 0) {
      const rate = Number(values.rates[0]);
      const w = await runStep(server, flood, {
        step: 'prewarm',
        rate,
        batch: 1,
        users,
        warmS: 1,
        measureS: prewarmS,
        seed: 0,
      });
      note(`prewarm: ${JSON.stringify(w)}`);
      await sleep(2000);
    }
    let batchMode = values.batch === 'auto' ? 0 : Number(values.batch);
    const batchFor = (rate: number): number =>
      batchMode === 0 ? 1 : values.batch === 'auto' ? Math.ceil(rate / BATCH_REQUESTS_PER_S) : batchMode;
    let seed = 1;
    const maxOthers = values['max-others'];
    const contended = (r: Record<string, unknown>): boolean =>
      (r.cpuPercentOfOneCore as { others: number }).others > maxOthers;
    const once = async (step: string, rate: number, batch: number): Promise<Record<string, unknown>> => {
      const before = await waitForOthersQuiet([server.pid, flood!.pid, process.pid], maxOthers);
      const r = await runStep(server, flood!, { step, rate, batch, users, warmS, measureS, seed: seed++ });
      const row = { ...r, othersBefore: before, contended: contended(r) };
      console.log(JSON.stringify(row));
      steps.push(row);
      await sleep(2000);
      return row;
    };
    // A step that fails while other processes took the CPU is run once more.
    const run = async (step: string, rate: number, batch: number): Promise<Record<string, unknown>> => {
      const r = await once(step, rate, batch);
      if (passes(r) || !contended(r)) return r;
      note(`step ${step} failed while other processes used the CPU: once more`);
      return once(step, rate, batch);
    };
    for (const rate of values.rates.map(Number)) {
      let r = await run(`${rate}`, rate, batchFor(rate));
      const short = (r.achievedRate as number) < SHORTFALL * rate;
      if (short && values.batch === 'auto' && batchMode === 0) {
        note(`single sends reached ${r.achievedRate} of ${rate} msg/s: trying the batch API`);
        batchMode = 1;
        r = await run(`${rate}`, rate, batchFor(rate));
      }
      if (!passes(r)) break;
    }
    const article = values['article-rate'];
    if (article > 0) {
      batchMode = values.batch === 'auto' ? 1 : batchMode;
      // Far past saturation: a rerun would tell nothing new.
      await once('article', article, batchFor(article));
    }
  } finally {
    await flood?.stop();
    await server.stop();
  }
  const sustained = steps.filter((s) => s.step !== 'article' && passes(s) && !s.contended).at(-1);
  console.log(
    JSON.stringify({
      bench: 'fanout-summary',
      users,
      m: values.m,
      subscriptions: load.json.subscriptions ?? load.json.added ?? null,
      loadBefore: quiet,
      sustained: sustained
        ? {
            targetRate: sustained.targetRate,
            mode: sustained.mode,
            achievedRate: sustained.achievedRate,
            deliveriesPerSec: sustained.deliveriesPerSec,
            latencyMs: sustained.latencyMs,
          }
        : null,
      article: steps.find((s) => s.step === 'article') ?? null,
      nodeArgs: nodeArgs.join(' '),
      node: process.version,
    }),
  );
}

if (values.msggen !== undefined) await msggenChild(values.msggen);
else await main();
