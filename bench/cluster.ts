/**
 * Issue 5's scale-out benchmark: many connections across gateway processes on this one box, with
 * messages flowing over NATS. Starts `switchboard cluster` (N gateways behind one client port, M
 * routers on the API port, lean V8 flags on the gateways), runs `switchboard bench c10k` against it
 * (flood spreads the connections over its own processes and source addresses; memlog sums the RSS
 * of the primary and every worker), samples the NATS server's RSS, stops the cluster, prints JSON.
 *
 *   node dist/bench/cluster.js --connections 100000 --gateways 7 --rate 1000 --duration 60s --ramp-rate 1000
 *
 * Needs a NATS server (default nats://127.0.0.1:4222); a unique subject prefix isolates the run.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { findSocketOwners, readRssKb, scanPort } from '../src/tools/proc-net.js';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '100000' },
    gateways: { type: 'string', default: '7' },
    routers: { type: 'string', default: '1' },
    rate: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '60s' },
    'ramp-rate': { type: 'string', default: '1000' },
    'sample-every': { type: 'string', default: '10s' },
    bus: { type: 'string', default: 'nats://127.0.0.1:4222' },
    'out-dir': { type: 'string' },
  },
});

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Pids of the NATS server behind `busUrl` (the processes holding its port whose command is
 * nats-server), found once before the run: the search reads every process's open files, which
 * costs a core's worth of time once the gateways and the flood hold 200,000 sockets.
 */
async function natsPids(busUrl: string): Promise<number[]> {
  const port = Number(new URL(busUrl).port || 4222);
  const scan = await scanPort(port, true);
  const owners = await findSocketOwners(scan.inodes);
  return owners.pids.filter((pid) => /nats-server/.test(readFileSync(`/proc/${pid}/cmdline`, 'latin1')));
}

/** RSS (KB) of those pids, or null when there are none (NATS not local, or not readable). */
async function natsRssKb(pids: readonly number[]): Promise<number | null> {
  let total = 0;
  for (const pid of pids) total += (await readRssKb(pid)) ?? 0;
  return pids.length > 0 ? total : null;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sb-cluster-bench-'));
  const outDir = path.resolve(values['out-dir'] ?? path.join(dir, 'out'));
  const prefix = `bench_${process.pid}_${Date.now()}`;
  const cluster = spawn(
    process.execPath,
    [MAIN, 'cluster', '--gateways', values.gateways!, '--routers', values.routers!, '--bus', values.bus!]
      .concat(['--bus-prefix', prefix, '--port', '0', '--api-port', '0', '--host', '127.0.0.1'])
      .concat(['--data', path.join(dir, 'data'), '--json', '--log-level', 'warn']),
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  // Ctrl-C or SIGTERM: stop what this script started, in order (the bench first, so it writes its
  // interrupted report and closes its connections; the cluster when the bench is gone).
  let bench: ReturnType<typeof spawn> | undefined;
  const interrupt = (): void => {
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
  const nats = await natsPids(values.bus!);
  const natsBefore = await natsRssKb(nats);
  let natsPeak = natsBefore ?? 0;
  const natsTimer = setInterval(() => {
    void natsRssKb(nats).then((kb) => {
      natsPeak = Math.max(natsPeak, kb ?? 0);
    });
  }, 5000);
  bench = spawn(
    process.execPath,
    [MAIN, 'bench', 'c10k', '--server-url', ready.clients, '--api-url', ready.api]
      .concat(['--connections', values.connections!, '--ramp-rate', values['ramp-rate']!])
      .concat(['--rate', values.rate!, '--duration', values.duration!, '--out-dir', outDir, '--json'])
      .concat(['--sample-every', values['sample-every']!])
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
  const natsAfter = await natsRssKb(nats);
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
      bench: 'cluster',
      gateways: Number(values.gateways),
      routers: Number(values.routers),
      pids: ready.pids,
      benchExit: benchCode,
      clusterExit: clusterCode,
      natsRssKB: { before: natsBefore, peak: natsPeak, after: natsAfter },
      outDir,
      report: parsed ?? report.slice(0, 2000),
    }),
  );
  if (values['out-dir'] === undefined) rmSync(path.join(dir, 'data'), { recursive: true, force: true });
}

await main();
