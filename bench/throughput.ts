/**
 * Deliveries per second and server CPU per delivery, Switchboard against peers in one run, with the
 * same client and the same publisher. The client is a small C epoll program (bench/peers/c/client.c,
 * compiled here with the system compiler) holding `--streams` `GET /test/<id>` streams from
 * `--sources` loopback addresses and counting the messages that arrive; the publisher is this process,
 * keeping `--concurrency` requests of `--batch` messages to random ids in flight (a closed loop).
 *
 * Targets (`--targets`, in order):
 *   c           bench/peers/c/server.c: one thread, epoll, one chunk write per delivery (the floor)
 *   node        bench/peers/node-floor.ts: the same in plain node:net (what any Node server pays)
 *   switchboard `switchboard serve`, one process, lean flags (the embedded defaults)
 *   cluster     `switchboard cluster --gateways 2 --routers 1` over the machine's NATS
 *   nchan       nginx + Nchan from Debian (2 workers; no batch publish: one POST per message)
 *   mochiweb    the article's mochiweb app on Erlang/OTP (bench/peers/mochiweb), both cores
 *
 * `--server-args` adds serve flags to both Switchboard targets: the cluster keeps its resume history
 * in JetStream (a stored, acknowledged write per message) where one process keeps a ring in memory,
 * so `--server-args '--history 0'` compares the two without it.
 *
 * For each: start it, open the streams, warm up, then measure `--duration`: deliveries counted by the
 * client, CPU of the server's processes (and of NATS for the cluster), of the client and of this
 * publisher, from /proc. Prints one JSON line per target and a last one with the ratios to `c`.
 *
 *   node dist/bench/throughput.js --targets c,switchboard,cluster --streams 15000 --duration 20s
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type BenchSpec,
  badFlag,
  NODE_ARGS_OPTION,
  nodeArgsOf,
  parseBenchArgs,
} from '../src/bench/harness/args.js';
import { CLI_MAIN, CliProcess } from '../src/bench/harness/cli-process.js';
import { deleteHistoryStream } from '../src/bench/harness/nats.js';
import { findSocketOwners, scanPort } from '../src/tools/memlog/sockets.js';
import { readCpuSeconds, readCpuTimes } from '../src/tools/proc.js';
import { cleanup, cleanupOnExit, load1, note, round, sleep, tempDir, track } from './support.js';

const TARGETS = ['c', 'node', 'switchboard', 'cluster', 'nchan', 'mochiweb'] as const;
type Target = (typeof TARGETS)[number];

const spec = {
  name: 'bench/throughput.js',
  summary: 'Deliveries/s and server CPU per delivery against a C reference and peers, one run; JSON.',
  options: {
    targets: {
      type: 'list',
      description: `Servers to run, of ${TARGETS.join(', ')}`,
      default: ['c', 'switchboard', 'cluster'],
    },
    streams: {
      type: 'int',
      description: 'Streams held by the C client',
      default: 15_000,
      min: 1,
      max: 19_000,
    },
    sources: {
      type: 'int',
      description: 'Loopback source addresses for them',
      default: 30,
      min: 1,
      max: 250,
    },
    batch: { type: 'int', description: 'Messages per publish request', default: 500, min: 1, max: 10_000 },
    concurrency: { type: 'int', description: 'Publish requests in flight', default: 2, min: 1, max: 256 },
    duration: { type: 'duration', description: 'Measured time per target', default: 20_000, min: 1000 },
    warmup: { type: 'duration', description: 'Publishing before measuring', default: 5000, min: 0 },
    bus: {
      type: 'string',
      description: 'NATS for the cluster',
      default: 'nats://127.0.0.1:4222',
      placeholder: 'URL',
    },
    'node-args': NODE_ARGS_OPTION,
    'switchboard-main': {
      type: 'string',
      description:
        "The switchboard CLI to run (another build's dist/src/cli/main.js, to compare two versions)",
      default: CLI_MAIN,
      placeholder: 'FILE',
    },
    'server-args': {
      type: 'string',
      description: "More serve flags for switchboard and the cluster's processes (e.g. '--history 0')",
      default: '',
    },
  },
} as const satisfies BenchSpec;
const o = parseBenchArgs(spec, (v) => {
  for (const t of v.targets)
    if (!(TARGETS as readonly string[]).includes(t))
      throw badFlag(spec, 'targets', `must list some of ${TARGETS.join(', ')}`, t);
});
cleanupOnExit();

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** bench/peers/c, in the source tree (dist/bench/../../bench/peers/c). */
const C_DIR = path.resolve(HERE, '../../bench/peers/c');
const build = tempDir('sb-throughput-');
for (const name of ['client', 'server']) {
  execFileSync('cc', ['-O2', '-Wall', '-o', path.join(build, name), path.join(C_DIR, `${name}.c`)]);
}
const SOURCES = Array.from(
  { length: o.sources },
  (_, i) => `127.0.${3 + Math.floor(i / 250)}.${(i % 250) + 1}`,
);

/** What the driver needs of a running target. */
interface Running {
  clientPort: number;
  /** Publishes one batch of ids; resolves to the delivered count the server answered. */
  publish(ids: number[]): Promise<number>;
  serverPids(): number[];
  extraPids?: number[];
  stop(): Promise<void>;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
function post(port: number, pathName: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: pathName, method: 'POST', agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
      });
      res.on('end', () =>
        // Nchan answers a publish with 201 (or 202 with no subscriber), the others with 200.
        res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300
          ? resolve(text)
          : reject(new Error(`${res.statusCode} ${text}`)),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A server speaking the C reference's protocol, started as `command args…`, ready when it says so. */
async function startC(
  command = path.join(build, 'server'),
  args: string[] = ['0', '0', String(o.streams + 10)],
): Promise<Running> {
  const child = track(spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] }));
  const line = await new Promise<string>((resolve) =>
    child.stdout?.once('data', (d: Buffer) => resolve(d.toString())),
  );
  const [, client, publish] = line.trim().split(' ').map(Number) as [number, number, number];
  return {
    clientPort: client,
    publish: async (ids) => Number(await post(publish, '/publish', ids.join('\n'))),
    serverPids: () => [child.pid!],
    stop: async () => {
      child.kill('SIGTERM');
    },
  };
}

async function startSwitchboard(): Promise<Running> {
  const p = new CliProcess(
    ['serve', '--port', '0', '--api-port', '0', '--host', '127.0.0.1', '--data', tempDir('sb-tp-data-')]
      .concat(['--max-lag', '0', '--max-inflight', String(o.batch * o.concurrency * 4)])
      .concat(nodeArgsOf(o['server-args'])),
    { nodeArgs: nodeArgsOf(o['node-args']), script: o['switchboard-main'] },
  );
  const client = Number((await p.waitFor(/clients: http:\/\/127\.0\.0\.1:(\d+)/))[1]);
  const api = Number((await p.waitFor(/publish API: http:\/\/127\.0\.0\.1:(\d+)/))[1]);
  return {
    clientPort: client,
    publish: async (ids) => {
      const body = JSON.stringify(ids.map((id) => ({ id: String(id), msg: 'x' })));
      return (JSON.parse(await post(api, '/api/send/batch', body)) as { delivered: number }).delivered;
    },
    serverPids: () => [p.pid],
    stop: async () => {
      await p.stop('SIGTERM');
    },
  };
}

async function natsPids(): Promise<number[]> {
  const owners = await findSocketOwners((await scanPort(Number(new URL(o.bus).port || 4222), true)).inodes);
  return owners.pids.filter((pid) => /nats-server/.test(readFileSync(`/proc/${pid}/cmdline`, 'latin1')));
}

async function startCluster(): Promise<Running> {
  const prefix = `tp_${process.pid}_${Date.now().toString(36)}`;
  const p = new CliProcess(
    ['cluster', '--gateways', '2', '--routers', '1', '--bus', o.bus, '--bus-prefix', prefix, '--port', '0']
      .concat(['--api-port', '0', '--host', '127.0.0.1', '--data', tempDir('sb-tp-cluster-'), '--json'])
      .concat([
        '--log-level',
        'warn',
        '--',
        '--max-lag',
        '0',
        '--max-inflight',
        String(o.batch * o.concurrency * 4),
      ])
      .concat(nodeArgsOf(o['server-args'])),
    { script: o['switchboard-main'] },
  );
  const ready = JSON.parse((await p.waitFor(/^\{.*\}$/m, 60_000))[0]) as {
    clients: string;
    api: string;
    pids: Record<string, number>;
  };
  const api = Number(new URL(ready.api).port);
  return {
    clientPort: Number(new URL(ready.clients).port),
    publish: async (ids) => {
      const body = JSON.stringify(ids.map((id) => ({ id: String(id), msg: 'x' })));
      return (JSON.parse(await post(api, '/api/send/batch', body)) as { delivered: number }).delivered;
    },
    serverPids: () => [p.pid, ...Object.values(ready.pids)],
    extraPids: await natsPids(),
    stop: async () => {
      await p.stop('SIGTERM', 60_000);
      await deleteHistoryStream(o.bus, prefix).catch(() => undefined);
    },
  };
}

async function startPeer(name: 'nchan' | 'mochiweb'): Promise<Running | string> {
  const peers = await import('../src/bench/harness/peers.js');
  const missing = peers.peerMissing(name);
  if (missing !== undefined) return missing;
  const s = name === 'nchan' ? await peers.startNchan({}) : await peers.startMochiweb({});
  return {
    clientPort: s.clientPort,
    publish:
      name === 'nchan'
        ? async (ids) => {
            const answers = await Promise.all(
              ids.map((id) => post(s.publishPort, `/pub/${id}`, 'Recvd msg: x<br/>')),
            );
            return answers.length;
          }
        : async (ids) => Number(await post(s.publishPort, '/publish', ids.join('\n'))),
    serverPids: () => s.pids,
    stop: () => s.stop(),
  };
}

/** The C client, with its latest report. */
function startClient(
  port: number,
  target: Target,
): { pid: number; latest: () => Record<string, number>; stop: () => void } {
  const child = track(
    spawn(
      path.join(build, 'client'),
      ['127.0.0.1', String(port), String(o.streams), '1', SOURCES.join(','), '/test/'].concat([
        target === 'nchan' ? 'TE: chunked' : '',
        '200',
      ]),
      { stdio: ['ignore', 'pipe', 'inherit'] },
    ),
  );
  let latest: Record<string, number> = { open: 0, received: 0, failed: 0 };
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) if (l.startsWith('{')) latest = JSON.parse(l) as Record<string, number>;
  });
  return { pid: child.pid!, latest: () => latest, stop: () => child.kill('SIGTERM') };
}

const cpu = (pids: readonly number[]): number => pids.reduce((a, pid) => a + (readCpuSeconds(pid) ?? 0), 0);
const sys = (pids: readonly number[]): number =>
  pids.reduce((a, pid) => a + (readCpuTimes(pid)?.sys ?? 0), 0);

async function run(target: Target): Promise<Record<string, unknown>> {
  const started =
    target === 'c'
      ? await startC()
      : target === 'node'
        ? await startC(process.execPath, [
            ...nodeArgsOf(o['node-args']),
            path.join(HERE, 'peers', 'node-floor.js'),
            String(o.streams + 10),
          ])
        : target === 'switchboard'
          ? await startSwitchboard()
          : target === 'cluster'
            ? await startCluster()
            : await startPeer(target);
  if (typeof started === 'string') return { bench: 'throughput', target, skipped: started };
  const client = startClient(started.clientPort, target);
  try {
    const deadline = Date.now() + 120_000;
    while ((client.latest().open ?? 0) < o.streams) {
      if (Date.now() > deadline)
        throw new Error(`${target}: only ${client.latest().open} of ${o.streams} streams opened`);
      await sleep(200);
    }
    let publishing = true;
    let sent = 0;
    let answered = 0;
    let errors = 0;
    const loop = async (): Promise<void> => {
      while (publishing) {
        const ids = Array.from({ length: o.batch }, () => 1 + Math.floor(Math.random() * o.streams));
        try {
          answered += await started.publish(ids);
          sent += ids.length;
        } catch {
          errors++;
          await sleep(10);
        }
      }
    };
    const loops = Array.from({ length: o.concurrency }, () => loop());
    await sleep(o.warmup);
    await sleep(300); // a client report lands inside each window edge
    const pids = started.serverPids();
    const sys0 = sys(pids);
    const c0 = {
      server: cpu(pids),
      extra: cpu(started.extraPids ?? []),
      client: cpu([client.pid]),
      pub: process.cpuUsage(),
    };
    const r0 = client.latest().received ?? 0;
    const s0 = sent;
    const t0 = performance.now();
    await sleep(o.duration);
    const seconds = (performance.now() - t0) / 1000;
    const r1 = client.latest().received ?? 0;
    const c1 = {
      server: cpu(pids),
      extra: cpu(started.extraPids ?? []),
      client: cpu([client.pid]),
      pub: process.cpuUsage(c0.pub),
    };
    publishing = false;
    await Promise.all(loops);
    const deliveries = r1 - r0;
    return {
      bench: 'throughput',
      target,
      streams: o.streams,
      batch: o.batch,
      concurrency: o.concurrency,
      seconds: round(seconds, 1),
      deliveriesPerSecond: Math.round(deliveries / seconds),
      sentPerSecond: Math.round((sent - s0) / seconds),
      serverCpuPercent: round(((c1.server - c0.server) / seconds) * 100),
      serverCpuUsPerDelivery: round(((c1.server - c0.server) * 1e6) / deliveries, 2),
      serverSysUsPerDelivery: round(((sys(pids) - sys0) * 1e6) / deliveries, 2),
      ...(started.extraPids
        ? { natsCpuUsPerDelivery: round(((c1.extra - c0.extra) * 1e6) / deliveries, 2) }
        : {}),
      clientCpuPercent: round(((c1.client - c0.client) / seconds) * 100),
      publisherCpuPercent: round(((c1.pub.user + c1.pub.system) / 1e6 / seconds) * 100),
      answeredDelivered: answered,
      publishErrors: errors,
      streamsOpenAtEnd: client.latest().open,
      load1: load1(),
    };
  } finally {
    client.stop();
    await started.stop();
    await sleep(1000);
  }
}

const results: Record<string, unknown>[] = [];
try {
  for (const t of o.targets as Target[]) {
    note(`${t}: starting`);
    const r = await run(t);
    results.push(r);
    console.log(JSON.stringify(r));
  }
  const base = results.find((r) => r.target === 'c' && r.deliveriesPerSecond !== undefined);
  if (base !== undefined) {
    const ratios = Object.fromEntries(
      results
        .filter((r) => r.deliveriesPerSecond !== undefined && r !== base)
        .map((r) => [
          r.target,
          {
            deliveriesVsC: round(Number(r.deliveriesPerSecond) / Number(base.deliveriesPerSecond), 3),
            cpuPerDeliveryVsC: round(
              Number(r.serverCpuUsPerDelivery) / Number(base.serverCpuUsPerDelivery),
              3,
            ),
          },
        ]),
    );
    console.log(JSON.stringify({ bench: 'throughput', ratios }));
  }
} finally {
  agent.destroy();
  cleanup();
}
