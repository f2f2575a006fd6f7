/**
 * Soak: the article's part 2 shape held for a long time, with churn. One server (its own
 * process, lean flags, `serve` defaults), `--streams` SSE clients in this process, each its own
 * id; `--rate` messages a second to random ids through the batch API, each message numbered per
 * id (`<id>:<k>`); every minute `--churn` of the clients drop their connection and come back at
 * once with `Last-Event-ID`, spread over the minute.
 *
 * What must hold, checked at the end: every client got exactly the messages sent to its id, in
 * order, none twice, none missing (resumes replayed what was sent meanwhile), and no `gap` for a
 * client that resumed in time; the server's open fds, RSS, PSS and heap flat (first vs last fifth
 * of the run). Prints samples as progress and one JSON report on stdout.
 *
 *   node dist/bench/soak.js [--duration 30m] [--streams 10000] [--rate 1000] [--churn 0.05]
 */
import net from 'node:net';
import { type BenchSpec, NODE_ARGS_OPTION, nodeArgsOf, parseBenchArgs } from '../src/bench/harness/args.js';
import { ServerProcess } from '../src/bench/harness/server-process.js';
import { countFds, memAvailableBytes, readProcessMemory } from '../src/tools/proc.js';
import { cleanup, cleanupOnExit, note, round, sleep, tempDir } from './support.js';

const spec = {
  name: 'bench/soak.js',
  summary: 'Long run at the part-2 shape with reconnect churn: exact delivery and flat memory, as JSON.',
  options: {
    duration: { type: 'duration', description: 'How long messages flow', default: 30 * 60_000, min: 10_000 },
    streams: { type: 'int', description: 'SSE clients, one id each', default: 10_000, min: 10, max: 18_000 },
    rate: { type: 'int', description: 'Messages per second', default: 1000, min: 1, max: 100_000 },
    churn: {
      type: 'number',
      description: 'Share of the clients that reconnect each minute',
      default: 0.05,
      min: 0,
      max: 1,
    },
    'sample-every': {
      type: 'duration',
      description: 'Server memory sample period',
      default: 10_000,
      min: 1000,
    },
    'min-available': {
      type: 'size',
      description: 'Stop when MemAvailable falls below this',
      default: 1536 * 1024 ** 2,
    },
    'node-args': NODE_ARGS_OPTION,
  },
} as const satisfies BenchSpec;
const o = parseBenchArgs(spec);
cleanupOnExit();

/** One SSE client: counts the numbered messages of its id and keeps the last event id. */
class Client {
  readonly id: string;
  socket: net.Socket | undefined = undefined;
  lastEventId = '';
  /** Highest message number received. */
  got = 0;
  received = 0;
  duplicates = 0;
  missing = 0;
  gaps = 0;
  reconnects = 0;
  #text = '';

  constructor(id: string) {
    this.id = id;
  }

  connect(port: number): void {
    const s = net.connect(port, '127.0.0.1');
    this.socket = s;
    this.#text = '';
    s.setEncoding('latin1');
    const resume = this.lastEventId ? `Last-Event-ID: ${this.lastEventId}\r\n` : '';
    s.on('connect', () =>
      s.write(`GET /feed/${this.id} HTTP/1.1\r\nHost: soak\r\nAccept: text/event-stream\r\n${resume}\r\n`),
    );
    s.on('data', (d: string) => this.#read(d));
    s.on('error', () => undefined);
  }

  /** Drops the connection and comes back at once, resuming from the last event id. */
  reconnect(port: number): void {
    this.reconnects++;
    this.socket?.destroy();
    this.connect(port);
  }

  #read(d: string): void {
    this.#text += d;
    let end = this.#text.lastIndexOf('\n\n');
    if (end === -1) return;
    end += 2;
    const events = this.#text.slice(0, end);
    this.#text = this.#text.slice(end);
    if (events.includes('event: gap')) this.gaps++;
    for (const m of events.matchAll(/id: (\S+)\ndata: [^:\n]+:(\d+)\n/g)) {
      this.lastEventId = m[1]!;
      const k = Number(m[2]);
      this.received++;
      if (k <= this.got) this.duplicates++;
      else {
        this.missing += k - this.got - 1;
        this.got = k;
      }
    }
  }
}

async function json(url: string, body?: string): Promise<Record<string, unknown>> {
  const res = await fetch(url, body === undefined ? {} : { method: 'POST', body });
  return (await res.json()) as Record<string, unknown>;
}

const data = tempDir('sb-soak-');
const server = await ServerProcess.start({ dataDir: data, nodeArgs: nodeArgsOf(o['node-args']) });
const samples: Record<string, number>[] = [];
let stopReason = 'done';
try {
  const clients = Array.from({ length: o.streams }, (_, i) => new Client(`s${i}`));
  for (let i = 0; i < clients.length; i++) {
    clients[i]!.connect(server.clientPort);
    if (i % 500 === 499) await sleep(50);
  }
  const stats = async (): Promise<Record<string, unknown>> => json(`${server.apiUrl}/api/stats`);
  for (let t = 0; (await stats()).connections !== o.streams; t++) {
    if (t > 300) throw new Error(`only ${(await stats()).connections} of ${o.streams} streams opened`);
    await sleep(100);
  }
  note(`${o.streams} streams open; sending ${o.rate} msg/s for ${o.duration / 1000} s`);

  const sentTo = new Map<string, number>();
  let sent = 0;
  let delivered = 0;
  const t0 = Date.now();
  const sample = async (): Promise<void> => {
    const mem = readProcessMemory(server.pid);
    const st = await stats();
    const m = st.memory as { heapUsed: number };
    const row = {
      s: Math.round((Date.now() - t0) / 1000),
      connections: st.connections as number,
      fds: countFds(server.pid) ?? 0,
      rssMB: round((mem?.rssBytes ?? 0) / 1e6),
      pssMB: round((mem?.pssBytes ?? 0) / 1e6),
      heapUsedMB: round(m.heapUsed / 1e6),
      sent,
      received: clients.reduce((a, c) => a + c.received, 0),
    };
    samples.push(row);
    note(JSON.stringify(row));
  };
  await sample();
  // Publisher: one batch every 100 ms; churn: a steady trickle of reconnects.
  const perBatch = Math.max(1, Math.round(o.rate / 10));
  const churnEveryMs = o.churn > 0 ? 60_000 / Math.max(1, Math.round(o.streams * o.churn)) : 0;
  let nextChurn = Date.now() + churnEveryMs;
  let nextSample = Date.now() + o['sample-every'];
  let tick = Date.now();
  while (Date.now() - t0 < o.duration) {
    const batch: { id: string; msg: string }[] = [];
    for (let i = 0; i < perBatch; i++) {
      const id = `s${Math.floor(Math.random() * o.streams)}`;
      const k = (sentTo.get(id) ?? 0) + 1;
      sentTo.set(id, k);
      batch.push({ id, msg: `${id}:${k}` });
    }
    const r = await json(`${server.apiUrl}/api/send/batch`, JSON.stringify(batch));
    if (typeof r.delivered !== 'number') throw new Error(`batch refused: ${JSON.stringify(r)}`);
    sent += batch.length;
    delivered += r.delivered;
    while (churnEveryMs > 0 && Date.now() >= nextChurn) {
      clients[Math.floor(Math.random() * clients.length)]!.reconnect(server.clientPort);
      nextChurn += churnEveryMs;
    }
    if (Date.now() >= nextSample) {
      nextSample += o['sample-every'];
      await sample();
      if (memAvailableBytes() < o['min-available']) {
        stopReason = `MemAvailable under ${o['min-available']} bytes`;
        break;
      }
    }
    tick += 100;
    await sleep(Math.max(0, tick - Date.now()));
  }
  await sleep(3000);
  await sample();
  const received = clients.reduce((a, c) => a + c.received, 0);
  const short = clients.filter((c) => c.got !== (sentTo.get(c.id) ?? 0));
  const sum = (f: (c: Client) => number): number => clients.reduce((a, c) => a + f(c), 0);
  /** Mean of a field over the first and the last fifth of the samples. */
  const drift = (field: string): { first: number; last: number } => {
    const n = Math.max(1, Math.floor(samples.length / 5));
    const mean = (rows: Record<string, number>[]): number =>
      round(rows.reduce((a, r) => a + r[field]!, 0) / rows.length);
    return { first: mean(samples.slice(1, n + 1)), last: mean(samples.slice(-n)) };
  };
  const st = await stats();
  console.log(
    JSON.stringify({
      bench: 'soak',
      stopReason,
      durationS: Math.round((Date.now() - t0) / 1000),
      streams: o.streams,
      rate: o.rate,
      churnPerMinute: o.churn,
      sent,
      deliveredLive: delivered,
      received,
      replayed: received - delivered,
      exact: received === sent && short.length === 0 && sum((c) => c.duplicates) === 0,
      clientsShort: short.length,
      duplicates: sum((c) => c.duplicates),
      missing: sum((c) => c.missing),
      gaps: sum((c) => c.gaps),
      reconnects: sum((c) => c.reconnects),
      server: { resumed: st.resumed, gaps: st.gaps, slowConsumers: st.slowConsumers, stalls: st.stalls },
      fds: drift('fds'),
      rssMB: drift('rssMB'),
      pssMB: drift('pssMB'),
      heapUsedMB: drift('heapUsedMB'),
      samples,
    }),
  );
  for (const c of clients) c.socket?.destroy();
} finally {
  await server.stop();
  cleanup();
}
