/**
 * Issue 16's bench: the cluster with its pieces on separate hosts, next to the same cluster on
 * loopback, in one run. Hosts are network namespaces on this machine (src/bench/harness/netns.ts):
 *
 * ```
 *   a  NATS n1, the router (API), PostgreSQL     b  NATS n2, gateway B     c  NATS n3, gateway C
 *   d  flood (the streams, half on each gateway) and msggen (stamped messages to the API on a)
 * ```
 *
 * n1–n3 are one NATS cluster with the resume history replicated three times. The loopback run
 * starts the same processes, with the same flags, on 127.0.0.1 with ports of their own. Each run
 * reports deliveries/s and publish → receive p50/p99 (flood's figures for msggen's stamps) at
 * `--rate` messages/s, the CPU of every server process per delivery, and then what a message costs
 * the router published from the bus (`msggen --bus`, NATS requests on `<prefix>.publish`) against
 * the HTTP batch API: the same batches, closed loop, router CPU per message.
 *
 *   node dist/bench/across-hosts.js --connections 10000 --rate 5000 --duration 20s
 *   node dist/bench/across-hosts.js --delay-us 2000        # hosts 2 ms apart, one way
 *
 * Needs root (namespaces), PostgreSQL's binaries (initdb), nats-server and a C compiler (the
 * delay switch). Prints JSON on stdout; progress on stderr. Stops everything it started, Ctrl-C too.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type BenchSpec, parseBenchArgs } from '../src/bench/harness/args.js';
import { CliProcess } from '../src/bench/harness/cli-process.js';
import { netnsUnavailable, TestNetwork } from '../src/bench/harness/netns.js';
import { LOOPBACK, type Place, startNatsNode, startPostgres } from '../src/bench/harness/services.js';
import { readCpuSeconds } from '../src/tools/proc.js';
import { note, round, sleep } from './support.js';

const spec = {
  name: 'bench/across-hosts.js',
  summary: 'The cluster on separate hosts (network namespaces) and on loopback, side by side; prints JSON.',
  options: {
    connections: {
      type: 'int',
      description: 'Streams, half on each gateway',
      default: 10_000,
      min: 2,
      max: 36_000,
    },
    rate: {
      type: 'number',
      description: 'Messages per second, each to one random stream',
      default: 5000,
      min: 1,
    },
    batch: { type: 'int', description: 'Messages per API request', default: 50, min: 1, max: 10_000 },
    duration: { type: 'duration', description: 'How long messages are sent', default: 20_000, min: 1000 },
    'delay-us': {
      type: 'int',
      description: 'One-way delay between hosts, µs (user-space switch)',
      default: 0,
      min: 0,
    },
    'cost-messages': {
      type: 'int',
      description: 'Messages for the bus-against-HTTP cost, each way (0: skip)',
      default: 100_000,
      min: 0,
    },
    'cost-batch': {
      type: 'int',
      description: 'Messages per request in that comparison',
      default: 500,
      min: 1,
    },
    runs: {
      type: 'string',
      description: 'Which runs, in order',
      default: 'hosts,loopback',
      placeholder: 'LIST',
    },
  },
} as const satisfies BenchSpec;
const values = parseBenchArgs(spec);
const KEY = 'across-hosts-bench-api-key-32-bytes-or-more';
const PREFIX = 'xb';

/** Where each role runs and on which ports: four hosts, or everything on loopback. */
interface Layout {
  readonly kind: 'hosts' | 'loopback';
  readonly a: Place;
  readonly b: Place;
  readonly c: Place;
  readonly d: Place;
  /** NATS client and route ports per node (a, b, c). */
  readonly nats: readonly { client: number; route: number }[];
  readonly pg: number;
  readonly api: number;
  /** Gateway B's and C's client ports. */
  readonly gw: readonly [number, number];
}

const started: { stop(): Promise<unknown> }[] = [];
let network: TestNetwork | undefined;
let interrupted = false;

function service(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): ChildProcess {
  started.push({
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await Promise.race([once(child, 'exit'), sleep(5000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  });
  return child;
}

function cli(place: Place, args: string[]): CliProcess {
  const p = new CliProcess(args, { via: place.via, env: { SWITCHBOARD_API_KEY: KEY }, keepChars: 200_000 });
  if (place.track !== undefined) place.track(p.child);
  started.push({ stop: () => p.stop('SIGTERM', 10_000) });
  return p;
}

async function stopAll(): Promise<void> {
  for (const s of started.splice(0).reverse()) await s.stop().catch(() => undefined);
  await network?.destroy();
  network = undefined;
}

/** The server processes' CPU seconds, by role. */
function cpu(pids: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(pids).map(([role, pid]) => [role, readCpuSeconds(pid) ?? 0]));
}

function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, round(v - (before[k] ?? 0), 2)]));
}

/** The last JSON line of type `summary` (or the last report) a CLI process printed. */
function lastJson(p: CliProcess, type: 'summary' | 'report'): Record<string, unknown> | undefined {
  const lines = p.stdout.trimEnd().split('\n').reverse();
  for (const line of lines) {
    if (!line.startsWith('{')) continue;
    const o = JSON.parse(line) as Record<string, unknown>;
    if (o.type === type) return o;
  }
  return undefined;
}

async function layout(kind: Layout['kind']): Promise<Layout> {
  if (kind === 'loopback') {
    const base = 20_000 + (process.pid % 2000) * 10;
    return {
      kind,
      a: LOOPBACK,
      b: LOOPBACK,
      c: LOOPBACK,
      d: LOOPBACK,
      nats: [0, 1, 2].map((i) => ({ client: base + i, route: base + 3 + i })),
      pg: base + 6,
      api: base + 7,
      gw: [base + 8, base + 9],
    };
  }
  const why = await netnsUnavailable();
  if (why !== undefined) throw new Error(`the hosts run needs network namespaces: ${why}`);
  const delayUs = values['delay-us'];
  network = await TestNetwork.create(['a', 'b', 'c', 'd'], delayUs > 0 ? { delayUs } : {});
  const n = network;
  return {
    kind,
    a: n.place('a'),
    b: n.place('b'),
    c: n.place('c'),
    d: n.place('d'),
    nats: [0, 1, 2].map(() => ({ client: 4222, route: 6222 })),
    pg: 5432,
    api: 8001,
    gw: [8000, 8000],
  };
}

async function run(kind: Layout['kind']): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(path.join(tmpdir(), `sb-across-${kind}-`));
  try {
    const l = await layout(kind);
    const nodes = [l.a, l.b, l.c];
    const url = (i: number): string => `nats://${nodes[i]!.address}:${l.nats[i]!.client}`;
    note(`${kind}: PostgreSQL, three NATS nodes`);
    service(startPostgres(l.a, path.join(dir, 'pg'), l.pg), 'SIGINT');
    const natsPids: number[] = [];
    nodes.forEach((place, i) => {
      const peers = nodes.flatMap((p, j) => (j === i ? [] : [`${p.address}:${l.nats[j]!.route}`]));
      const child = startNatsNode(place, {
        name: `n${i + 1}`,
        cluster: 'xb',
        clientPort: l.nats[i]!.client,
        routePort: l.nats[i]!.route,
        peers,
        dir: path.join(dir, `nats${i + 1}`),
      });
      service(child);
      natsPids.push(child.pid ?? 0);
    });
    const store = `postgres://postgres@${l.a.address}:${l.pg}/postgres`;
    const common = [
      'serve',
      '--bus-prefix',
      PREFIX,
      '--history-replicas',
      '3',
      '--store',
      store,
      '--log-level',
      'info',
    ];
    // The router creates the history stream: it fails while the NATS cluster has no JetStream
    // leader yet (or PostgreSQL is not up), so it is started until it stays up.
    let router: CliProcess | undefined;
    for (let attempt = 0; router === undefined; attempt++) {
      const p = cli(
        l.a,
        [...common, '--role', 'router', '--bus', url(0), '--api-host', l.a.address].concat([
          '--api-port',
          String(l.api),
          '--data',
          path.join(dir, 'router'),
        ]),
      );
      try {
        await p.waitFor(/store, bus and history/, 30_000);
        router = p;
      } catch (err) {
        await p.stop('SIGKILL', 1000);
        if (attempt >= 30 || interrupted) throw err;
        note(`router not up yet (${p.tail(3).replace(/\s+/g, ' ').slice(0, 300)}); again`);
        await sleep(1000);
      }
    }
    const gateway = (place: Place, i: 1 | 2, port: number): CliProcess =>
      cli(
        place,
        [...common, '--role', 'gateway', '--no-api', '--bus', url(i), '--host', place.address].concat([
          '--port',
          String(port),
          '--anonymous',
          '--data',
          path.join(dir, `gw${i}`),
        ]),
      );
    const gwB = gateway(l.b, 1, l.gw[0]);
    const gwC = gateway(l.c, 2, l.gw[1]);
    await gwB.waitFor(/store, bus and history/, 60_000);
    await gwC.waitFor(/store, bus and history/, 60_000);

    const n = values.connections;
    const urls = Array.from({ length: n }, (_, k) => {
      const id = k + 1;
      const [place, port] = id % 2 === 1 ? [l.b, l.gw[0]] : [l.c, l.gw[1]];
      return `http://${place.address}:${port}/test/${id}`;
    });
    writeFileSync(path.join(dir, 'urls.txt'), `${urls.join('\n')}\n`);
    note(`${kind}: ${n} streams from d`);
    const flood = cli(
      l.d,
      ['flood', '--url-file', path.join(dir, 'urls.txt'), '--count', String(n), '--rate', '5000'].concat([
        '--sources',
        l.d.address,
        '--report-every',
        '1s',
        '--json',
      ]),
    );
    const deadline = Date.now() + 120_000;
    while (Number(lastJson(flood, 'report')?.open ?? 0) < n) {
      if (Date.now() > deadline || !flood.running)
        throw new Error(`${kind}: streams did not all open:\n${flood.tail(5)}`);
      await sleep(250);
    }
    await sleep(2000);
    const pids = {
      router: router.pid,
      gatewayB: gwB.pid,
      gatewayC: gwC.pid,
      n1: natsPids[0]!,
      n2: natsPids[1]!,
      n3: natsPids[2]!,
    };
    const clients = { flood: flood.pid };
    const cpu0 = cpu({ ...pids, ...clients });
    const received0 = Number(lastJson(flood, 'report')?.chunks ?? 0);
    note(`${kind}: ${values.rate} msg/s for ${values.duration / 1000} s`);
    const seconds = values.duration / 1000;
    const msggen = cli(
      l.d,
      ['msggen', '--api', `http://${l.a.address}:${l.api}`, '--rate', String(values.rate)]
        .concat([
          '--count',
          String(Math.ceil(values.rate * seconds)),
          '--duration',
          `${seconds}s`,
          '--batch',
          String(values.batch),
        ])
        .concat(['--max-id', String(n), '--stamp', '--api-key', KEY, '--json']),
    );
    await msggen.exited;
    const msggenCpu = readCpuSeconds(msggen.pid);
    // Two flood reports later (one a second): every message in, counted.
    await sleep(2500);
    const cpu1 = cpu({ ...pids, ...clients });
    const sent = lastJson(msggen, 'summary') ?? {};
    const received = Number(lastJson(flood, 'report')?.chunks ?? 0) - received0;
    // With the streams still open, so that the cost run's messages are delivered too (unstamped:
    // flood's latency figures stay the timed run's).
    const publishCost = values['cost-messages'] > 0 ? await cost(l, router, url(0), n) : undefined;
    await flood.stop('SIGINT', 30_000);
    const fl = lastJson(flood, 'summary') ?? {};
    const used = delta(cpu1, cpu0);
    const elapsed = Number(sent.elapsedMs ?? values.duration) / 1000;
    const server = used.router! + used.gatewayB! + used.gatewayC! + used.n1! + used.n2! + used.n3!;
    const latency = fl.latency as { p50?: number; p99?: number; max?: number } | undefined;
    const result: Record<string, unknown> = {
      kind,
      delayUs: kind === 'hosts' ? values['delay-us'] : 0,
      connections: n,
      rate: values.rate,
      batch: values.batch,
      sent: sent.sent,
      failed: sent.failed,
      delivered: sent.delivered,
      received,
      deliveriesPerSecond: round(received / elapsed, 0),
      latencyMs: { p50: latency?.p50, p99: latency?.p99, max: latency?.max },
      apiLatencyMs: sent.apiLatency,
      cpuSeconds: { ...used, msggen: msggenCpu },
      serverCpuUsPerDelivery: received > 0 ? round((server * 1e6) / received, 1) : null,
    };
    if (publishCost !== undefined) result.publishCost = publishCost;
    return result;
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The router's CPU per message for the same closed-loop batches sent over HTTP and over the bus,
 * from host d (a gateway holds each id, so every message is delivered and counted). Each way runs
 * twice, in the order http, bus, bus, http, so that a drift over the run (the history stream
 * growing, the heap) falls on both alike; each run is reported, and the mean of the two.
 */
async function cost(
  l: Layout,
  router: CliProcess,
  bus: string,
  maxId: number,
): Promise<Record<string, unknown>> {
  const runs: Record<'http' | 'bus', Record<string, unknown>[]> = { http: [], bus: [] };
  for (const via of ['http', 'bus', 'bus', 'http'] as const) {
    const target =
      via === 'http'
        ? ['--api', `http://${l.a.address}:${l.api}`, '--api-key', KEY]
        : ['--bus', bus, '--bus-prefix', PREFIX];
    const count = values['cost-messages'];
    note(`cost: ${count} messages over ${via}, batches of ${values['cost-batch']}`);
    const before = readCpuSeconds(router.pid) ?? 0;
    const p = cli(
      l.d,
      ['msggen', ...target, '--count', String(count), '--batch', String(values['cost-batch'])].concat([
        '--max-id',
        String(maxId),
        '--interval',
        '0',
        '--json',
      ]),
    );
    await p.exited;
    const used = (readCpuSeconds(router.pid) ?? 0) - before;
    const s = lastJson(p, 'summary') ?? {};
    const sent = Number(s.sent ?? 0);
    runs[via].push({
      sent,
      failed: s.failed,
      delivered: s.delivered,
      messagesPerSecond: s.sentPerSecond,
      requestP50Ms: (s.apiLatency as { p50?: number } | undefined)?.p50,
      routerCpuSeconds: round(used, 2),
      routerCpuUsPerMessage: sent > 0 ? round((used * 1e6) / sent, 2) : null,
    });
  }
  const mean = (list: Record<string, unknown>[], key: string): number =>
    round(list.reduce((sum, r) => sum + Number(r[key] ?? 0), 0) / list.length, 2);
  const out: Record<string, unknown> = {};
  for (const [via, list] of Object.entries(runs)) {
    out[via] = {
      routerCpuUsPerMessage: mean(list, 'routerCpuUsPerMessage'),
      messagesPerSecond: mean(list, 'messagesPerSecond'),
      runs: list,
    };
  }
  return out;
}

async function main(): Promise<void> {
  const onSignal = (): void => {
    interrupted = true;
    note('interrupted: stopping everything');
    void stopAll().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const runs: Record<string, unknown>[] = [];
  for (const kind of values.runs.split(',').map((k) => k.trim())) {
    if (kind !== 'hosts' && kind !== 'loopback') throw new Error(`--runs: ${kind} is not hosts or loopback`);
    runs.push(await run(kind));
  }
  process.stdout.write(
    `${JSON.stringify({ bench: 'across-hosts', node: process.version, runs }, null, 2)}\n`,
  );
}

main().catch(async (err: unknown) => {
  process.stderr.write(`bench/across-hosts: ${err instanceof Error ? err.stack : String(err)}\n`);
  await stopAll();
  process.exit(1);
});
