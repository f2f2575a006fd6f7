/**
 * Disconnect storm: every client of a gateway goes at once (a load balancer restarts, a network
 * blip). How long until the server has logged every connection out, how much CPU that took, and
 * the longest the event loop was blocked meanwhile. One server in this process (lean V8 flags
 * expected: run as below), `connections` `/test/<id>` streams from one flood process; then the
 * flood is stopped and every socket closes together. Prints one JSON line per bus.
 *
 *   node --max-semi-space-size=1 --optimize-for-size dist/bench/disconnect-storm.js \
 *     [--connections 14000] [--bus local,nats://127.0.0.1:4222]
 */
import { spawn } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { type BenchSpec, parseBenchArgs } from '../src/bench/harness/args.js';
import { CLI_MAIN } from '../src/bench/harness/cli-process.js';
import { Switchboard } from '../src/server.js';
import { cleanup, load1, sleep, tempDir, track } from './support.js';

const spec = {
  name: 'bench/disconnect-storm.js',
  summary:
    'Every client of a server goes at once: time, CPU and event-loop stall until all are logged out; JSON per bus.',
  options: {
    connections: {
      type: 'int',
      description: 'Streams that disconnect together',
      default: 14_000,
      min: 1,
      placeholder: 'N',
    },
    bus: {
      type: 'list',
      description: 'Buses to run it on, one run each',
      default: ['local', 'nats://127.0.0.1:4222'],
    },
  },
} as const satisfies BenchSpec;
const values = parseBenchArgs(spec);

async function storm(bus: string, n: number): Promise<Record<string, unknown>> {
  const sb = await Switchboard.start({
    bus,
    busPrefix: `storm_${process.pid}_${Date.now()}`,
    port: 0,
    apiPort: 0,
    host: '127.0.0.1',
    data: tempDir('sb-storm-'),
    logLevel: 'error',
  });
  try {
    const gateway = sb.gateway!;
    const url = `http://127.0.0.1:${gateway.address().port}/test/{id}`;
    const flood = track(
      spawn(process.execPath, [CLI_MAIN, 'flood', '--url', url, '--count', String(n), '--rate', '7000'], {
        stdio: 'ignore',
      }),
    );
    const end = Date.now() + 60_000;
    while (gateway.open < n) {
      if (Date.now() > end) throw new Error(`only ${gateway.open} of ${n} connections opened`);
      await sleep(100);
    }
    await sleep(1000);
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    flood.kill('SIGINT');
    while (gateway.open > 0) await sleep(5);
    const cpu = process.cpuUsage(cpu0);
    const allGoneMs = performance.now() - t0;
    delay.disable();
    const cpuMs = (cpu.user + cpu.system) / 1000;
    return {
      bench: 'disconnect-storm',
      bus: bus.startsWith('nats') ? 'nats' : bus,
      connections: n,
      allGoneMs: Math.round(allGoneMs),
      cpuMs: Math.round(cpuMs),
      cpuUsPerConnection: Math.round((cpuMs * 1000) / n),
      loopBlockedMaxMs: Math.round(delay.max / 1e6),
      load1AtStart: load1(),
    };
  } finally {
    await sb.close();
  }
}

try {
  for (const bus of values.bus) console.log(JSON.stringify(await storm(bus, values.connections)));
} finally {
  cleanup();
}
