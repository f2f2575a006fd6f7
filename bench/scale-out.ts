/**
 * Issue 5's scale-out benchmark: many connections across gateway processes on this one box, with
 * messages flowing over NATS. Starts `switchboard cluster` (N gateways behind one client port, M
 * routers on the API port, lean V8 flags on the gateways), runs `switchboard bench c10k` against it
 * (flood spreads the connections over its own processes and source addresses; memlog sums the RSS
 * of the primary and every worker), samples the NATS server's RSS, stops the cluster, prints JSON.
 *
 *   node dist/bench/scale-out.js --connections 100000 --gateways 7 --rate 1000 --duration 60s --ramp-rate 1000
 *
 * Needs a NATS server (default nats://127.0.0.1:4222); a unique subject prefix isolates the run.
 *
 * Before the measured run, `--warmup-messages` (default 20,000; 0 to skip) are sent at `--rate` to
 * 7,000 other connections (ids from connections + 1,000,000 on), which are then closed: the first
 * seconds of traffic through a freshly started cluster are slow while 8 processes compile their hot
 * paths at once on 2 cores (measured: a first 10 s at 1,000 msg/s had API p50 811 ms, p99 1.9 s; the
 * third, 23 ms p99), and that is start-up, not the steady state this bench reports. The JSON says
 * how the warm-up went.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MAX_C10K_CONNECTIONS } from '../src/bench/c10k/options.js';
import { type BenchSpec, parseBenchArgs } from '../src/bench/harness/args.js';
import { CLI_MAIN } from '../src/bench/harness/cli-process.js';
import { natsServerPids } from '../src/bench/harness/nats.js';
import { readRssKb } from '../src/tools/proc.js';
import { sleep } from './support.js';

const spec = {
  name: 'bench/scale-out.js',
  summary:
    'Scale-out over NATS: `switchboard cluster` on this box, warmed up, then `bench c10k` against it; prints JSON.',
  options: {
    connections: {
      type: 'int',
      description: 'Streaming connections',
      default: 100_000,
      min: 1,
      max: MAX_C10K_CONNECTIONS,
      placeholder: 'N',
    },
    gateways: { type: 'int', description: 'Gateway processes', default: 7, min: 1, max: 512 },
    routers: {
      type: 'int',
      description: 'Router processes (0: the gateways serve the API)',
      default: 1,
      min: 0,
      max: 64,
    },
    rate: {
      type: 'number',
      description: 'Messages per second, warm-up and measured run',
      default: 1000,
      min: 0.001,
      placeholder: 'PER_SECOND',
    },
    duration: { type: 'duration', description: 'How long messages are sent', default: 60_000, min: 1 },
    'ramp-rate': {
      type: 'number',
      description: 'New connections per second (0: as fast as possible)',
      default: 1000,
      min: 0,
      placeholder: 'PER_SECOND',
    },
    'sample-every': {
      type: 'duration',
      description: 'Time between memory samples',
      default: 10_000,
      min: 100,
    },
    'warmup-messages': {
      type: 'int',
      description: 'Messages sent through the cluster before the run (0: no warm-up)',
      default: 20_000,
      min: 0,
      placeholder: 'N',
    },
    bus: { type: 'string', description: 'NATS URL', default: 'nats://127.0.0.1:4222', placeholder: 'URL' },
    'out-dir': {
      type: 'string',
      description: "Folder for bench c10k's report and charts (default: a temp folder)",
      placeholder: 'DIR',
    },
  },
} as const satisfies BenchSpec;
const values = parseBenchArgs(spec);

/** A duration flag passed on as it is usually written (`60s`, `0.25s`). */
const seconds = (ms: number): string => `${ms / 1000}s`;

/** RSS (KB) of those pids, or null when there are none (NATS not local, or not readable). */
function natsRssKb(pids: readonly number[]): number | null {
  let total = 0;
  for (const pid of pids) total += readRssKb(pid) ?? 0;
  return pids.length > 0 ? total : null;
}

/** Runs a CLI command to its end; resolves with its exit code and the tail of its output. */
function run(args: readonly string[]): Promise<{ code: number | null; tail: string }> {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-2000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, tail: out })));
}

async function clusterConnections(api: string): Promise<number> {
  const s = (await (await fetch(`${api}/api/stats`)).json()) as { cluster: { connections: number } };
  return s.cluster.connections;
}

async function waitFor(what: string, check: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`warm-up: timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** The warm-up's flood while it runs (stopped by the interrupt handler too). */
let warmFlood: ReturnType<typeof spawn> | undefined;

/** See the file comment: traffic through the cluster before the measured run. */
async function warmUp(clients: string, api: string): Promise<unknown> {
  const messages = values['warmup-messages'];
  if (!(messages > 0)) return null;
  const conns = 7000;
  const first = values.connections + 1_000_000;
  const t0 = performance.now();
  const flood = spawn(
    process.execPath,
    [
      CLI_MAIN,
      'flood',
      '--url',
      `${clients}/test/{id}`,
      '--from',
      String(first),
      '--count',
      String(conns),
    ].concat(['--rate', '3500', '--duration', '10m']),
    { stdio: 'ignore' },
  );
  warmFlood = flood;
  try {
    await waitFor(
      `${conns} warm-up connections`,
      async () => (await clusterConnections(api)) >= conns,
      60_000,
    );
    const msggen = await run(
      ['msggen', '--api', api, '--rate', String(values.rate), '--count', String(messages)].concat([
        '--min-id',
        String(first),
        '--max-id',
        String(first + conns - 1),
      ]),
    );
    const latency = /api latency.*/.exec(msggen.tail)?.[0] ?? null;
    const seconds = Math.round((performance.now() - t0) / 1000);
    return { messages, connections: conns, msggenExit: msggen.code, latency, seconds };
  } finally {
    if (flood.exitCode === null && flood.signalCode === null) {
      flood.kill('SIGINT');
      await new Promise((resolve) => flood.once('exit', resolve));
    }
    await waitFor('warm-up connections to close', async () => (await clusterConnections(api)) === 0, 30_000);
    console.error(`# warm-up done in ${Math.round((performance.now() - t0) / 1000)} s`);
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sb-scale-out-'));
  const outDir = path.resolve(values['out-dir'] ?? path.join(dir, 'out'));
  const prefix = `bench_${process.pid}_${Date.now()}`;
  const cluster = spawn(
    process.execPath,
    [CLI_MAIN, 'cluster', '--gateways', String(values.gateways), '--routers', String(values.routers)]
      .concat(['--bus', values.bus])
      .concat(['--bus-prefix', prefix, '--port', '0', '--api-port', '0', '--host', '127.0.0.1'])
      .concat(['--data', path.join(dir, 'data'), '--json', '--log-level', 'warn']),
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  // Ctrl-C or SIGTERM: stop what this script started, in order (the bench first, so it writes its
  // interrupted report and closes its connections; the cluster when the bench is gone).
  let bench: ReturnType<typeof spawn> | undefined;
  const interrupt = (): void => {
    if (warmFlood !== undefined && warmFlood.exitCode === null) warmFlood.kill('SIGINT');
    if (bench !== undefined && bench.exitCode === null) bench.kill('SIGINT');
    else cluster.kill('SIGTERM');
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  let out = '';
  const ready = await new Promise<{ clients: string; api: string; pids: Record<string, number> }>(
    (resolve, reject) => {
      cluster.stdout.on('data', (d: Buffer) => {
        out += d;
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve(JSON.parse(line));
      });
      cluster.once('exit', (code) => reject(new Error(`cluster exited ${code} before ready`)));
    },
  );
  const warmup = await warmUp(ready.clients, ready.api);
  const nats = await natsServerPids(values.bus);
  const natsBefore = natsRssKb(nats);
  let natsPeak = natsBefore ?? 0;
  const natsTimer = setInterval(() => {
    natsPeak = Math.max(natsPeak, natsRssKb(nats) ?? 0);
  }, 5000);
  bench = spawn(
    process.execPath,
    [CLI_MAIN, 'bench', 'c10k', '--server-url', ready.clients, '--api-url', ready.api]
      .concat(['--connections', String(values.connections), '--ramp-rate', String(values['ramp-rate'])])
      .concat([
        '--rate',
        String(values.rate),
        '--duration',
        seconds(values.duration),
        '--out-dir',
        outDir,
        '--json',
      ])
      .concat(['--sample-every', seconds(values['sample-every'])])
      // The cluster's own processes, so memlog need not search every process's sockets (slow at
      // 200,000 sockets): the primary, which holds the listening sockets, and every worker.
      .concat([cluster.pid!, ...Object.values(ready.pids)].flatMap((pid) => ['--server-pid', String(pid)])),
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let report = '';
  bench.stdout!.on('data', (d: Buffer) => {
    report += d;
  });
  const started = bench;
  const benchCode = await new Promise<number | null>((resolve) => started.once('exit', resolve));
  clearInterval(natsTimer);
  const natsAfter = natsRssKb(nats);
  // The router's own view before it stops: its event-loop delay since start, load shedding, bus.
  let routerStats: unknown = null;
  try {
    const s = (await (await fetch(`${ready.api}/api/stats`)).json()) as Record<string, unknown>;
    routerStats = { api: s.api, bus: s.bus, cluster: s.cluster };
  } catch (err) {
    routerStats = { error: String(err) };
  }
  cluster.kill('SIGTERM');
  const clusterCode = await new Promise<number | null>((resolve) => cluster.once('exit', resolve));
  await sleep(100);
  let parsed: Record<string, unknown> | undefined;
  try {
    parsed = JSON.parse(report) as Record<string, unknown>;
  } catch {
    parsed = undefined;
  }
  console.log(
    JSON.stringify({
      bench: 'scale-out',
      gateways: values.gateways,
      routers: values.routers,
      pids: ready.pids,
      benchExit: benchCode,
      clusterExit: clusterCode,
      natsRssKB: { before: natsBefore, peak: natsPeak, after: natsAfter },
      router: routerStats,
      warmup,
      outDir,
      report: parsed ?? report.slice(0, 2000),
    }),
  );
  if (values['out-dir'] === undefined) rmSync(path.join(dir, 'data'), { recursive: true, force: true });
}

await main();
