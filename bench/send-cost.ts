/**
 * What one send costs a cluster, against the number of gateways: the CPU of every cluster
 * process (primary, router, gateways) and of the NATS server per message, at a steady rate to
 * random ids, with idle `/test/<id>` streams spread over the gateways. A send's cost must not
 * grow with the gateways (the router asks only those holding a recipient).
 *
 *   node dist/bench/send-cost.js --gateways 2,7,14,51 --connections 20000 --rate 1000 --duration 30s
 *
 * For each gateway count: `switchboard cluster` (1 router) on the machine's NATS under a fresh
 * prefix, `flood` opens the streams, `msggen` warms up (`--warmup`), then `msggen` sends at
 * `--rate` for `--duration` while the CPU of each process is read from /proc before and after.
 * `--history off` runs without the JetStream resume history, to see what it costs. Prints one
 * JSON line per gateway count.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type BenchSpec, numberList, parseBenchArgs } from '../src/bench/harness/args.js';
import { CLI_MAIN, CliProcess } from '../src/bench/harness/cli-process.js';
import { deleteHistoryStream } from '../src/bench/harness/nats.js';
import { findSocketOwners, scanPort } from '../src/tools/memlog/sockets.js';
import { readCpuSeconds, readCpuTimes, readProcessMemory } from '../src/tools/proc.js';
import { cleanup, cleanupOnExit, load1, note, round, sleep, tempDir, track } from './support.js';

const spec = {
  name: 'bench/send-cost.js',
  summary: 'Cluster CPU per message against the number of gateways; JSON per gateway count.',
  options: {
    gateways: { type: 'list', description: 'Gateway counts to run', default: ['2', '7', '14', '51'] },
    connections: {
      type: 'int',
      description: 'Idle streams spread over the gateways',
      default: 20_000,
      min: 1,
    },
    rate: { type: 'int', description: 'Messages per second', default: 1000, min: 1 },
    duration: {
      type: 'duration',
      description: 'How long the measured sends last',
      default: 30_000,
      min: 1000,
    },
    warmup: { type: 'duration', description: 'Sends at --rate before measuring', default: 10_000, min: 0 },
    'warmup-per-gateway': {
      type: 'int',
      description:
        'Messages per gateway sent in batches before that, so every gateway runs optimised code (V8 tiers hot code up after thousands of runs: a gateway of 51 gets 20 messages a second)',
      default: 3000,
      min: 0,
    },
    history: {
      type: 'string',
      description: 'JetStream resume history',
      default: 'on',
      choices: ['on', 'off'],
    },
    idle: {
      type: 'boolean',
      description: 'Send nothing: measure what the idle cluster costs over --duration, per gateway',
    },
    bus: { type: 'string', description: 'NATS URL', default: 'nats://127.0.0.1:4222', placeholder: 'URL' },
    'node-args': {
      type: 'string',
      description:
        "Node flags for the gateway processes (the cluster's --node-args; its default when not given)",
      placeholder: 'FLAGS',
    },
  },
} as const satisfies BenchSpec;
const o = parseBenchArgs(spec);
const counts = numberList(spec, 'gateways', o.gateways, { min: 1, int: true });
cleanupOnExit();

async function natsPids(busUrl: string): Promise<number[]> {
  const port = Number(new URL(busUrl).port || 4222);
  const owners = await findSocketOwners((await scanPort(port, true)).inodes);
  return owners.pids.filter((pid) => /nats-server/.test(readFileSync(`/proc/${pid}/cmdline`, 'latin1')));
}

/** Runs a CLI command to its end and returns its last JSON line. */
function runJson(args: readonly string[]): Promise<Record<string, unknown>> {
  const child = track(spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', () => undefined);
  return new Promise((resolve, reject) =>
    child.once('exit', (code) => {
      const lines = out
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('{'));
      if (code !== 0 || lines.length === 0)
        reject(new Error(`${args[0]} exited ${code}: ${out.slice(-500)}`));
      else resolve(JSON.parse(lines.at(-1)!) as Record<string, unknown>);
    }),
  );
}

async function stats(api: string): Promise<Record<string, unknown>> {
  return (await (await fetch(`${api}/api/stats`)).json()) as Record<string, unknown>;
}

const cpuOf = (pids: readonly number[]): number => pids.reduce((a, pid) => a + (readCpuSeconds(pid) ?? 0), 0);

const nats = await natsPids(o.bus);
try {
  for (const gateways of counts) {
    const prefix = `sendcost_${process.pid}_${gateways}_${Date.now().toString(36)}`;
    const data = tempDir('sb-sendcost-');
    note(`${gateways} gateways: starting the cluster`);
    const cluster = new CliProcess(
      ['cluster', '--gateways', String(gateways), '--routers', '1', '--bus', o.bus, '--bus-prefix', prefix]
        .concat([
          '--port',
          '0',
          '--api-port',
          '0',
          '--host',
          '127.0.0.1',
          '--data',
          data,
          '--json',
          '--log-level',
          'warn',
        ])
        .concat(o['node-args'] === undefined ? [] : [`--node-args=${o['node-args']}`])
        .concat(['--', '--history', o.history === 'on' ? '10000' : '0', '--max-lag', '0']),
    );
    let flood: ChildProcess | undefined;
    try {
      const ready = JSON.parse((await cluster.waitFor(/^\{.*\}$/m, 120_000))[0]) as {
        clients: string;
        api: string;
        pids: Record<string, number>;
      };
      const pids = [cluster.pid, ...Object.values(ready.pids)];
      flood = track(
        spawn(
          process.execPath,
          [
            CLI_MAIN,
            'flood',
            '--url',
            `${ready.clients}/test/{id}`,
            '--count',
            String(o.connections),
            '--rate',
            '2000',
          ],
          { stdio: 'ignore' },
        ),
      );
      const deadline = Date.now() + 180_000;
      while (((await stats(ready.api)).cluster as { connections: number }).connections < o.connections) {
        if (Date.now() > deadline) throw new Error('the streams did not all open');
        await sleep(500);
      }
      const msggen = (seconds: number): Promise<Record<string, unknown>> =>
        runJson(
          ['msggen', '--api', ready.api, '--rate', String(o.rate), '--duration', `${seconds}s`].concat([
            '--max-id',
            String(o.connections),
            '--count',
            String(o.rate * seconds + 1),
            '--json',
          ]),
        );
      const perGateway = o['warmup-per-gateway'];
      if (perGateway > 0) {
        const total = perGateway * gateways;
        await runJson(
          ['msggen', '--api', ready.api, '--rate', String(Math.min(20_000, total)), '--batch', '100'].concat([
            '--max-id',
            String(o.connections),
            '--count',
            String(total),
            '--json',
          ]),
        );
      }
      if (o.warmup > 0) await msggen(o.warmup / 1000);
      await sleep(1000);
      const routerPids = Object.entries(ready.pids)
        .filter(([k]) => k.startsWith('router'))
        .map(([, p]) => p);
      const gatewayPids = Object.entries(ready.pids)
        .filter(([k]) => k.startsWith('gateway'))
        .map(([, p]) => p);
      const sample = () => ({
        cluster: cpuOf(pids),
        router: cpuOf(routerPids),
        gateways: cpuOf(gatewayPids),
        nats: cpuOf(nats),
        gatewaysSys: gatewayPids.reduce((a, pid) => a + (readCpuTimes(pid)?.sys ?? 0), 0),
        t: performance.now(),
      });
      const before = sample();
      const sent: Record<string, unknown> = o.idle
        ? await sleep(o.duration).then(() => ({ sent: 0 }))
        : await msggen(o.duration / 1000);
      const after = sample();
      if (o.idle) {
        const seconds = (after.t - before.t) / 1000;
        console.log(
          JSON.stringify({
            bench: 'send-cost',
            idle: true,
            gateways,
            connections: o.connections,
            gatewayCpuPercentEach: round(((after.gateways - before.gateways) / seconds / gateways) * 100, 2),
            routerCpuPercent: round(((after.router - before.router) / seconds) * 100, 2),
            natsCpuPercent: round(((after.nats - before.nats) / seconds) * 100, 2),
            load1: load1(),
          }),
        );
        continue;
      }
      const us = (k: 'cluster' | 'router' | 'gateways' | 'nats' | 'gatewaysSys'): number =>
        round(((after[k] - before[k]) * 1e6) / Number(sent.sent ?? 1));
      const st = await stats(ready.api);
      const messages = Number(sent.sent ?? 0);
      const mem = pids.map((pid) => readProcessMemory(pid)).filter((m) => m !== undefined);
      console.log(
        JSON.stringify({
          bench: 'send-cost',
          gateways,
          history: o.history,
          connections: o.connections,
          rate: o.rate,
          messages,
          delivered: sent.delivered,
          apiLatencyMs: sent.apiLatency,
          clusterCpuUsPerMessage: us('cluster'),
          routerCpuUsPerMessage: us('router'),
          gatewaysCpuUsPerMessage: us('gateways'),
          gatewaysSysCpuUsPerMessage: us('gatewaysSys'),
          natsCpuUsPerMessage: us('nats'),
          clusterCpuPercent: round(((after.cluster - before.cluster) / ((after.t - before.t) / 1000)) * 100),
          tallyRounds: (st.bus as { tallyRounds?: number }).tallyRounds,
          clusterPssMB: round(mem.reduce((a, m) => a + m.pssBytes, 0) / 1e6),
          load1: load1(),
        }),
      );
    } finally {
      flood?.kill('SIGINT');
      await cluster.stop('SIGTERM', 60_000);
      await deleteHistoryStream(o.bus, prefix).catch(() => undefined);
    }
  }
} finally {
  cleanup();
}
