/**
 * Fan-out stall: a user with 100,000 subscribers must not freeze the server. One send to
 * `celebrity` fans out to every subscriber while a probe keeps asking the same server's client
 * port for `GET /healthz`, back to back; the longest probe answer is the longest time another
 * client waited on the event loop.
 *
 *   node dist/bench/fanout-stall.js [--subscribers 100000] [--connected 10000]
 *        [--page-sizes 100,1000,10000] [--sends 5] [--max-load 1.0] [--max-others 25]
 *        [--node-args='…']
 *
 * Per page size: a fresh server process (`Switchboard.start({ pageSize })` with the lean V8
 * flags, see bench/support.ts; `serve --page-size` sets the same) on a SQLite store bulk-loaded with
 * `subscribers` subscriptions to `celebrity`; `connected` of those subscribers (evenly spread:
 * every 10th id, so they fall on every page) hold `/test/<id>` streams from one flood worker
 * process; the probe is its own process. For each send: the API answer time (fan-out wall time),
 * `delivered` (must equal `connected`), the chunks the flood received, the longest probe answer
 * during the send, and the server's own event-loop delay (monitorEventLoopDelay, 1 ms
 * resolution), and the CPU other processes on the machine used meanwhile (the box is shared:
 * `othersCpuPercent`, % of one core, of 200; before each send the bench waits, up to 2 minutes,
 * until they use at most `max-others` %). One unreported warm-up send goes first. Prints one JSON line per page size, then a summary line.
 */
import { type ChildProcess, fork } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  type BenchSpec,
  badFlag,
  NODE_ARGS_OPTION,
  nodeArgsOf,
  numberList,
  parseBenchArgs,
} from '../src/bench/harness/args.js';
import { openStore } from '../src/store/open-store.js';
import type { Subscription } from '../src/store/store.js';
import { listTargets } from '../src/tools/flood/targets.js';
import { LatencyHistogram } from '../src/tools/msggen/latency.js';
import { machineCpu } from '../src/tools/proc.js';
import {
  type BenchServer,
  cleanupOnExit,
  cpuSeconds,
  DEFAULT_WORKER_EXEC_ARGV,
  FloodWorker,
  httpJson,
  load1,
  note,
  QUIET_MACHINE_OPTIONS,
  round,
  rssMB,
  sleep,
  startScriptServer,
  tempDir,
  track,
  waitForOthersQuiet,
  waitForQuiet,
} from './support.js';

const spec = {
  name: 'bench/fanout-stall.js',
  summary:
    'One send to a user with many subscribers, per store page size: how long the server keeps other clients waiting.',
  options: {
    subscribers: {
      type: 'int',
      description: 'Subscribers of the celebrity',
      default: 100_000,
      min: 1,
      placeholder: 'N',
    },
    connected: {
      type: 'int',
      description: 'Subscribers holding a stream',
      default: 10_000,
      min: 1,
      placeholder: 'N',
    },
    'page-sizes': {
      type: 'list',
      description: 'Store page sizes, a server each',
      default: ['100', '1000', '10000'],
    },
    sends: { type: 'int', description: 'Measured sends per page size', default: 5, min: 1 },
    ...QUIET_MACHINE_OPTIONS,
    'node-args': NODE_ARGS_OPTION,
    probe: {
      type: 'int',
      description: '(internal) run as the probe of this client port',
      min: 1,
      max: 65_535,
    },
  },
} as const satisfies BenchSpec;
const values = parseBenchArgs(spec, (v) => {
  numberList(spec, 'page-sizes', v['page-sizes'], { min: 1, int: true });
  if (v.connected > v.subscribers)
    throw badFlag(spec, 'connected', `must be at most --subscribers (${v.subscribers})`, String(v.connected));
});

const CELEBRITY = 'celebrity';
/** Source addresses: the flood's and the probe's own, so neither competes for the other's ports. */
const FLOOD_SOURCES = ['127.0.44.2'];
const PROBE_SOURCE = '127.0.45.2';

// ── the probe (a child process) ──────────────────────────────────────────────────────────────
type ToProbe = { type: 'start' } | { type: 'stop' };
interface ProbeWindow {
  readonly requests: number;
  readonly errors: number;
  readonly maxMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** One `GET /healthz` on a new connection (the gateway closes after it); resolves to ms, or -1. */
function healthz(port: number): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let ok = false;
    const s = net.connect({ port, host: '127.0.0.1', localAddress: PROBE_SOURCE });
    s.setNoDelay(true);
    s.on('data', (b: Buffer) => {
      if (!ok && b.includes(' 200 ')) ok = true;
    });
    s.on('error', () => undefined);
    s.on('close', () => resolve(ok ? performance.now() - t0 : -1));
    s.end('GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n');
  });
}

function probe(port: number): void {
  let running = false;
  let loop: Promise<void> = Promise.resolve();
  let h = new LatencyHistogram();
  let errors = 0;
  process.on('message', async (m: ToProbe) => {
    if (m.type === 'start') {
      h = new LatencyHistogram();
      errors = 0;
      running = true;
      loop = (async () => {
        while (running) {
          const ms = await healthz(port);
          if (ms < 0) errors++;
          else h.record(ms);
        }
      })();
    } else {
      running = false;
      await loop;
      const s = h.summary();
      const w: ProbeWindow = { requests: s.count, errors, maxMs: s.max, p50Ms: s.p50, p99Ms: s.p99 };
      process.send?.(w);
    }
  });
  process.on('disconnect', () => process.exit(0));
}

// ── the bench ────────────────────────────────────────────────────────────────────────────────
interface SendResult {
  readonly wallMs: number;
  readonly delivered: number;
  readonly chunks: number;
  readonly allReceivedMs: number;
  readonly probe: ProbeWindow;
  readonly serverLoopDelayMaxMs: number | null;
  /** CPU used by other processes on the machine during the send, % of one core. */
  readonly othersCpuPercent: number;
}

async function loadStore(file: string, subscribers: number): Promise<number> {
  const store = await openStore(`sqlite:${file}`);
  try {
    async function* batches(): AsyncIterable<Subscription[]> {
      for (let from = 1; from <= subscribers; from += 10_000) {
        const batch: Subscription[] = [];
        for (let i = from; i < from + 10_000 && i <= subscribers; i++)
          batch.push({ subscriber: String(i), subscribee: CELEBRITY });
        yield batch;
      }
    }
    return (await store.bulkLoad(batches())).added;
  } finally {
    await store.close();
  }
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.floor((s.length - 1) / 2)]!;
};

async function oneSend(
  server: BenchServer,
  flood: FloodWorker,
  prober: ChildProcess,
  k: number,
): Promise<SendResult> {
  const window = (): Promise<ProbeWindow> =>
    new Promise((resolve) => {
      prober.once('message', (w: ProbeWindow) => resolve(w));
      prober.send({ type: 'stop' } satisfies ToProbe);
    });
  const ours = (): number =>
    cpuSeconds(server.pid) + cpuSeconds(flood.pid) + cpuSeconds(prober.pid) + cpuSeconds(process.pid);
  const before = (await flood.next()).chunks;
  const m0 = machineCpu();
  const ours0 = ours();
  const w0 = performance.now();
  await server.eventLoopDelay(true);
  prober.send({ type: 'start' } satisfies ToProbe);
  await sleep(200);
  const t0 = performance.now();
  const res = await httpJson(`http://127.0.0.1:${server.apiPort}/api/send`, {
    id: CELEBRITY,
    msg: `fan-out ${k}`,
  });
  const wallMs = res.ms;
  const delivered = Number(res.json.delivered ?? -1);
  const got = await flood.until((s) => s.chunks - before >= delivered, 30_000);
  const allReceivedMs = performance.now() - t0;
  await sleep(300);
  const probeWindow = await window();
  const eld = await server.eventLoopDelay(true);
  const m1 = machineCpu();
  const others = Math.max(0, m1.busy - m0.busy - (ours() - ours0)) / ((performance.now() - w0) / 1000);
  return {
    wallMs: round(wallMs),
    delivered,
    chunks: got.chunks - before,
    allReceivedMs: round(allReceivedMs),
    probe: probeWindow,
    serverLoopDelayMaxMs: eld ? round(eld.maxMs) : null,
    othersCpuPercent: round(others * 100),
  };
}

async function runPageSize(
  pageSize: number,
  dbFile: string,
  dataDir: string,
): Promise<Record<string, unknown>> {
  const { subscribers, connected, sends } = values;
  const nodeArgs = nodeArgsOf(values['node-args']);
  const server = await startScriptServer(nodeArgs, { pageSize, store: `sqlite:${dbFile}`, data: dataDir });
  const prober = track(
    fork(fileURLToPath(import.meta.url), ['--probe', String(server.clientPort)], { execArgv: [] }),
  );
  let flood: FloodWorker | undefined;
  try {
    const stride = Math.max(1, Math.floor(subscribers / connected));
    const urls = Array.from(
      { length: connected },
      (_, i) => `http://127.0.0.1:${server.clientPort}/test/${(i + 1) * stride}`,
    );
    const targets = (await listTargets(urls, 'connected subscribers')).forShare({
      offset: 0,
      count: connected,
      sources: FLOOD_SOURCES,
      sourceStart: 0,
      rate: 0,
    });
    flood = await FloodWorker.start(DEFAULT_WORKER_EXEC_ARGV, targets, connected, FLOOD_SOURCES, 50);
    const opened = await flood.until((s) => s.open + s.failed >= connected, 120_000);
    if (opened.open !== connected)
      throw new Error(`only ${opened.open} of ${connected} streams opened: ${JSON.stringify(opened.errors)}`);
    await sleep(2000);
    // A probe window with no send: what the probe sees on an idle server.
    prober.send({ type: 'start' } satisfies ToProbe);
    await sleep(1000);
    const idle = await new Promise<ProbeWindow>((resolve) => {
      prober.once('message', (w: ProbeWindow) => resolve(w));
      prober.send({ type: 'stop' } satisfies ToProbe);
    });
    // One unreported send first: the first fan-out also pays for JIT compilation.
    note(`page ${pageSize} warm-up send: ${JSON.stringify(await oneSend(server, flood, prober, 0))}`);
    await sleep(1000);
    const load = load1();
    const cpu0 = cpuSeconds(server.pid);
    const results: SendResult[] = [];
    for (let k = 1; k <= sends; k++) {
      const quiet = await waitForOthersQuiet(
        [server.pid, flood.pid, prober.pid, process.pid],
        values['max-others'],
        120_000,
      );
      if (!quiet.quiet) note(`sending anyway: other processes use ${quiet.othersPercent}% of a core`);
      const r = await oneSend(server, flood, prober, k);
      note(`page ${pageSize} send ${k}: ${JSON.stringify(r)}`);
      results.push(r);
      await sleep(1000);
    }
    const stats = await server.stats();
    return {
      bench: 'fanout-stall',
      pageSize,
      subscribers,
      connected: opened.open,
      sends,
      load1AtStart: load,
      idleProbe: idle,
      wallMs: results.map((r) => r.wallMs),
      delivered: results.map((r) => r.delivered),
      chunks: results.map((r) => r.chunks),
      allReceivedMs: results.map((r) => r.allReceivedMs),
      probeMaxMs: results.map((r) => r.probe.maxMs),
      probeP99Ms: results.map((r) => r.probe.p99Ms),
      probeRequests: results.map((r) => r.probe.requests),
      probeErrors: results.reduce((a, r) => a + r.probe.errors, 0),
      serverLoopDelayMaxMs: results.map((r) => r.serverLoopDelayMaxMs),
      othersCpuPercent: results.map((r) => r.othersCpuPercent),
      medianWallMs: round(median(results.map((r) => r.wallMs))),
      medianProbeMaxMs: round(median(results.map((r) => r.probe.maxMs))),
      worstProbeMaxMs: round(Math.max(...results.map((r) => r.probe.maxMs))),
      allDelivered: results.every((r) => r.delivered === connected && r.chunks === connected),
      serverCpuSeconds: round(cpuSeconds(server.pid) - cpu0, 2),
      serverRssMB: rssMB(server.pid),
      slowConsumers: stats.slowConsumers,
      nodeArgs: nodeArgs.join(' '),
    };
  } finally {
    await flood?.stop();
    prober.kill();
    await server.stop();
  }
}

async function main(): Promise<void> {
  cleanupOnExit();
  const { subscribers } = values;
  const dir = tempDir('sb-fanout-stall-');
  const dbFile = `${dir}/store.db`;
  const t0 = performance.now();
  const added = await loadStore(dbFile, subscribers);
  note(`store: ${added} subscriptions to ${CELEBRITY} in ${round((performance.now() - t0) / 1000, 2)}s`);
  const quiet = await waitForQuiet(values['max-load']);
  note(`load average ${quiet.load1} (waited ${quiet.waitedS}s${quiet.quiet ? '' : ', gave up waiting'})`);
  const rows: Record<string, unknown>[] = [];
  for (const pageSize of values['page-sizes'].map(Number)) {
    const row = await runPageSize(pageSize, dbFile, dir);
    console.log(JSON.stringify(row));
    rows.push(row);
  }
  console.log(
    JSON.stringify({
      bench: 'fanout-stall-summary',
      subscribers,
      connected: values.connected,
      loadBefore: quiet,
      byPageSize: rows.map((r) => ({
        pageSize: r.pageSize,
        medianWallMs: r.medianWallMs,
        medianProbeMaxMs: r.medianProbeMaxMs,
        worstProbeMaxMs: r.worstProbeMaxMs,
        allDelivered: r.allDelivered,
      })),
      node: process.version,
    }),
  );
}

if (values.probe !== undefined) probe(values.probe);
else await main();
