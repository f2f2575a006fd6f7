/**
 * NATS bus throughput and tally latency through a real nats-server, plus two measurements behind
 * design choices in src/bus: the wire codec (binary vs JSON) and a gateway's heap per interest.
 *
 *     node --expose-gc dist/bench/bus.js [--server nats://127.0.0.1:4222] [--seconds 10]
 *          [--interests 10000] [--gateways 2] [--recipients 30] [--inflight 200] [--children]
 *          [--parts load,codec,heap]
 *
 * Gateways hold `interests` ids between them (one fake connection each) and run in this process,
 * or with --children each in its own process. One router publishes messages to `recipients`
 * distinct random ids as fast as it can with at most `inflight` publishes waiting for their count.
 * CPU time is reported per delivery for the router and the gateways (with --children, per
 * process), which stays meaningful when other work shares the machine. Prints one JSON object.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setImmediate as turn } from 'node:timers/promises';
import { type BenchSpec, badFlag, parseBenchArgs } from '../src/bench/harness/args.js';
import type { Deliverer } from '../src/bus/bus.js';
import { NatsBus } from '../src/bus/nats-bus.js';
import * as codec from '../src/bus/nats-codec.js';
import { Message } from '../src/message.js';

/** What the bench can measure (`--parts`). */
const PARTS = ['load', 'codec', 'heap'] as const;

const spec = {
  name: 'bench/bus.js',
  summary:
    'NATS bus throughput and tally latency, the wire codec and the heap cost of an interest; prints JSON.',
  options: {
    server: { type: 'string', description: 'NATS URL', default: 'nats://127.0.0.1:4222', placeholder: 'URL' },
    seconds: { type: 'number', description: 'How long the load part publishes', default: 10, min: 0.001 },
    interests: { type: 'int', description: 'Ids the gateways hold between them', default: 10_000, min: 1 },
    gateways: { type: 'int', description: 'Gateways', default: 2, min: 1 },
    recipients: { type: 'int', description: 'Distinct recipients per message', default: 30, min: 1 },
    inflight: { type: 'int', description: 'Publishes waiting for their count at most', default: 200, min: 1 },
    children: { type: 'boolean', description: 'Each gateway in its own process', default: false },
    parts: { type: 'list', description: `What to measure, of ${PARTS.join(',')}`, default: [...PARTS] },
    'child-gateway': {
      type: 'string',
      description: '(internal) run as child gateway INDEX,GATEWAYS,INTERESTS',
    },
    prefix: { type: 'string', description: '(internal) subject prefix of the parent run' },
  },
} as const satisfies BenchSpec;
const flags = parseBenchArgs(spec, (v) => {
  const unknown = v.parts.find((p) => !(PARTS as readonly string[]).includes(p));
  if (unknown !== undefined)
    throw badFlag(spec, 'parts', `must list some of ${PARTS.join(', ')}`, v.parts.join(','));
  if (v.recipients > v.interests)
    throw badFlag(spec, 'recipients', `must be at most --interests (${v.interests})`, String(v.recipients));
});

/** One fake connection per id; dedupes by Message identity like the real registry. */
class CountingDeliverer implements Deliverer {
  readonly #ids = new Set<string>();
  #last: Message | undefined = undefined;
  add(id: string): void {
    this.#ids.add(id);
  }
  load(): { connections: number; ids: number } {
    return { connections: this.#ids.size, ids: this.#ids.size };
  }
  deliver(msg: Message, recipients: readonly string[]): number {
    this.#last = msg;
    let n = 0;
    for (const id of recipients) if (this.#ids.has(id)) n++;
    return this.#last === msg ? n : 0;
  }
  count(id: string): number {
    return this.#ids.has(id) ? 1 : 0;
  }
  disconnect(id: string): number {
    return this.#ids.delete(id) ? 1 : 0;
  }
  heldIds(): Iterable<string> {
    return this.#ids;
  }
}

async function gateway(server: string, prefix: string, ids: readonly string[]): Promise<NatsBus> {
  const bus = await NatsBus.connect({ servers: server, prefix, role: 'gateway' });
  const d = new CountingDeliverer();
  bus.attach(d);
  for (const id of ids) {
    d.add(id);
    bus.interest(id);
  }
  await bus.flush();
  return bus;
}

function idsOf(index: number, gateways: number, interests: number): string[] {
  const ids: string[] = [];
  for (let i = index; i < interests; i += gateways) ids.push(`user:${i}`);
  return ids;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * CPU ns per encode and per decode of a send with a ~100-byte body, binary (ours) vs JSON. A send
 * is encoded once for all the gateways it goes to; a gateway decodes each record of a batch.
 */
function codecBench(): Record<string, number> {
  const msg = new Message('AbCdEfGh-123456', 'user:123456', 'x'.repeat(90) + ' ünï ✓', Date.now());
  const n = 200_000;
  const time = (fn: () => void): number => {
    for (let i = 0; i < 10_000; i++) fn();
    // CPU time, not wall time: stays meaningful when other processes share the cores.
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) fn();
    const c = process.cpuUsage(c0);
    return ((c.user + c.system) * 1000) / n;
  };
  let sink = 0;
  const ids = ['user:123456'];
  const batch = new codec.DeliveryBatch('pubid123');
  batch.add(codec.encodeSendRecord(1, msg), ids);
  const bin = batch.take();
  const json = Buffer.from(JSON.stringify(['pubid123', 1, msg.eid, msg.subject, msg.body, msg.ts, ids]));
  const visit: codec.DeliveryVisitor = (_p, _s, m) => {
    sink += m.body.length;
  };
  return {
    binaryBytes: bin.length,
    jsonBytes: json.length,
    binaryEncodeNs: round(
      time(() => {
        batch.add(codec.encodeSendRecord(1, msg), ids);
        sink += batch.size;
        if (batch.records >= 100) batch.take();
      }),
    ),
    jsonEncodeNs: round(
      time(
        () =>
          (sink += Buffer.from(
            JSON.stringify(['pubid123', 1, msg.eid, msg.subject, msg.body, msg.ts, ids]),
          ).length),
      ),
    ),
    binaryDecodeNs: round(time(() => (sink += codec.decodeDeliveries(bin, visit)))),
    jsonDecodeNs: round(
      time(() => {
        const a = JSON.parse(json.toString()) as [string, number, string, string, string, number, string[]];
        sink += new Message(a[2], a[3], a[4], a[5]).body.length + a[6].length;
      }),
    ),
    sink: sink > 0 ? 1 : 0,
  };
}

/** Heap bytes per interest a gateway holds, over `n` ids (needs --expose-gc). */
async function interestHeap(server: string, n: number): Promise<Record<string, number> | string> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return 'run node with --expose-gc';
  const bus = await NatsBus.connect({ servers: server, prefix: `heap-${process.pid}` });
  bus.attach(new CountingDeliverer());
  const ids = Array.from({ length: n }, (_, i) => `user:${i}`);
  await bus.flush();
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  for (const id of ids) bus.interest(id);
  await bus.flush();
  gc();
  gc();
  const bytesPerInterest = round((process.memoryUsage().heapUsed - before) / n, 1);
  await bus.close();
  return { bytesPerInterest, interests: n };
}

async function runChild(server: string, prefix: string, spec: string): Promise<void> {
  const [index, gateways, interests] = spec.split(',').map(Number) as [number, number, number];
  const bus = await gateway(server, prefix, idsOf(index, gateways, interests));
  process.stdout.write(`${JSON.stringify({ id: bus.id })}\n`);
  const cpu0 = process.cpuUsage();
  process.once('SIGTERM', () => {
    const cpu = process.cpuUsage(cpu0);
    const { received } = bus.stats();
    process.stdout.write(`${JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000, received })}\n`);
    void bus.close().then(() => process.exit(0));
  });
  setInterval(() => undefined, 1 << 30);
}

async function main(): Promise<void> {
  const server = flags.server;
  if (flags['child-gateway'] !== undefined && flags.prefix !== undefined) {
    await runChild(server, flags.prefix, flags['child-gateway']);
    return;
  }
  const { seconds, interests, gateways, recipients, inflight: inflightLimit } = flags;
  const prefix = `bench-${process.pid}-${Date.now().toString(36)}`;

  const parts = new Set(flags.parts);
  const codecFigures = parts.has('codec') ? codecBench() : undefined;
  const heap = parts.has('heap') ? await interestHeap(server, 20_000) : undefined;
  const load = parts.has('load')
    ? await loadBench(server, seconds, interests, gateways, recipients, inflightLimit, prefix)
    : undefined;
  const result = {
    bench: 'bus',
    server,
    ...load,
    codec: codecFigures,
    interestHeap: heap,
    node: process.version,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function loadBench(
  server: string,
  seconds: number,
  interests: number,
  gateways: number,
  recipients: number,
  inflightLimit: number,
  prefix: string,
): Promise<Record<string, unknown>> {
  const local: NatsBus[] = [];
  const children: ReturnType<typeof spawn>[] = [];
  const gatewayIds: string[] = [];
  for (let g = 0; g < gateways; g++) {
    if (flags.children) {
      const child = spawn(
        process.execPath,
        [
          ...process.execArgv,
          process.argv[1] as string,
          '--server',
          server,
          '--prefix',
          prefix,
          '--child-gateway',
          `${g},${gateways},${interests}`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      children.push(child);
      const [line] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
      gatewayIds.push((JSON.parse(line.toString()) as { id: string }).id);
    } else {
      const bus = await gateway(server, prefix, idsOf(g, gateways, interests));
      local.push(bus);
      gatewayIds.push(bus.id);
    }
  }
  const router = await NatsBus.connect({ servers: server, prefix, role: 'router' });
  while (!gatewayIds.every((id) => router.liveGateways().includes(id)))
    await new Promise((r) => setTimeout(r, 10));

  let x = 2463534242;
  const rand = (n: number): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const recipientsOf = (): string[] => {
    const ids = new Set<string>();
    while (ids.size < recipients) ids.add(`user:${rand(interests)}`);
    return [...ids];
  };

  // Unloaded: one publish at a time, the tally's own latency (batch turn + round trips).
  const idle: number[] = [];
  for (let i = 0; i < 1000; i++) {
    const t0 = performance.now();
    await router.publish(new Message(`idle-${i}`, 'song:1', 'idle probe', Date.now()), recipientsOf());
    idle.push(performance.now() - t0);
  }
  const idleSorted = Float64Array.from(idle).sort();

  const cpu0 = process.cpuUsage();
  const latencies = new Float64Array(5_000_000);
  let samples = 0;
  let inflight = 0;
  let sent = 0;
  let delivered = 0;
  let inexact = 0;
  let failed = 0;
  let wake: (() => void) | undefined;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let seq = 0;
  while (performance.now() < deadline) {
    // A burst per event-loop turn: its publishes share one tally round.
    for (let b = 0; b < 200 && inflight < inflightLimit; b++) {
      const ids = recipientsOf();
      const msg = new Message(
        `bench-${++seq}`,
        'song:1',
        `message ${seq} body with some text in it`,
        Date.now(),
      );
      const t0 = performance.now();
      inflight++;
      sent++;
      router.publish(msg, ids).then(
        ({ delivered: n }) => {
          if (samples < latencies.length) latencies[samples++] = performance.now() - t0;
          delivered += n;
          if (n !== recipients) inexact++;
          inflight--;
          wake?.();
        },
        () => {
          failed++;
          inflight--;
          wake?.();
        },
      );
    }
    if (inflight >= inflightLimit) await new Promise<void>((r) => (wake = r));
    else await turn();
    wake = undefined;
  }
  const publishEnd = performance.now();
  while (inflight > 0) await new Promise<void>((r) => (wake = r));
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const thisCpuMs = (cpu.user + cpu.system) / 1000;
  const sorted = latencies.subarray(0, samples).sort();
  const stats = router.stats();
  await router.close();
  await Promise.all(local.map((b) => b.close()));
  const childCpuMs: number[] = [];
  for (const c of children) {
    const line = once(c.stdout as NodeJS.ReadableStream, 'data');
    c.kill('SIGTERM');
    const [data] = (await line) as [Buffer];
    childCpuMs.push((JSON.parse(data.toString()) as { cpuMs: number }).cpuMs);
    await once(c, 'exit');
  }
  const perDelivery = (ms: number): number => round((ms * 1000) / Math.max(1, delivered), 3);
  return {
    mode: flags.children ? 'gateways in child processes' : 'gateways in this process',
    config: { seconds, interests, gateways, recipients, inflight: inflightLimit },
    messages: sent,
    delivered,
    deliveriesPerSec: Math.round(delivered / elapsed),
    messagesPerSec: Math.round(sent / elapsed),
    publishSeconds: round((publishEnd - started) / 1000),
    unloadedTallyMs: { p50: round(percentile(idleSorted, 50)), p99: round(percentile(idleSorted, 99)) },
    tallyMs: {
      p50: round(percentile(sorted, 50)),
      p99: round(percentile(sorted, 99)),
      max: round(percentile(sorted, 100)),
    },
    tallyRounds: stats.tallyRounds,
    publishesPerRound: round(sent / Math.max(1, stats.tallyRounds), 1),
    tallyTimeouts: stats.tallyTimeouts,
    inexact,
    failed,
    cpuUsPerDelivery: flags.children
      ? { router: perDelivery(thisCpuMs), gateways: childCpuMs.map(perDelivery) }
      : { routerAndGateways: perDelivery(thisCpuMs) },
  };
}

await main();
