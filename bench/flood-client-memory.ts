/**
 * Benchmark: what one flood client connection costs the load generator — the worker's resident
 * memory growth per open streaming connection — so a million-connection run can be sized
 * (DESIGN.md: the client must cost well under the server's ~2 KB per connection).
 *
 * A minimal raw `net` server runs in a child process (so its memory is not counted): it answers
 * every request with a 200 chunked head and the article's welcome chunk, then holds the stream.
 * `runFlood` opens `--count` connections in one forked worker (the same process layout as
 * `switchboard flood`), waits until every head is in and the worker has settled, samples, stops.
 *
 *     node dist/bench/flood-client-memory.js [--count 15000] [--rate 5000] [--sources 127.0.0.2-127.0.0.4]
 *                                           [--settle 3000] [--messages 0]
 *
 * `--messages N` sends N chunks to every connection after the ramp (memory under traffic).
 * Prints one JSON object on stdout.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { type BenchSpec, parseBenchArgs } from '../src/bench/harness/args.js';
import { runFlood } from '../src/tools/flood/flood.js';
import type { FloodReport } from '../src/tools/flood/report.js';

const spec = {
  name: 'bench/flood-client-memory.js',
  summary:
    "What one flood connection costs the load generator: the worker's RSS per open stream; prints JSON.",
  options: {
    count: { type: 'int', description: 'Connections', default: 15_000, min: 1, placeholder: 'N' },
    rate: {
      type: 'number',
      description: 'New connections per second (0: as fast as possible)',
      default: 5000,
      min: 0,
    },
    sources: {
      type: 'string',
      description: "Source addresses (flood --sources; default: flood's)",
      default: '',
    },
    settle: {
      type: 'duration',
      description: 'Wait after the ramp (and after the traffic) before sampling',
      default: 3000,
      min: 0,
    },
    messages: {
      type: 'int',
      description: 'Chunks then sent to every connection (0: none)',
      default: 0,
      min: 0,
    },
    'child-server': { type: 'boolean', description: '(internal) run as the stream server', default: false },
  },
} as const satisfies BenchSpec;
const flags = parseBenchArgs(spec);

/** The child: a raw chunked-stream server that keeps no per-connection state but the socket. */
function serve(): void {
  const head =
    'HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n';
  const welcome = 'Mochiconntest welcomes you! Your Id: x\n';
  const first = Buffer.from(`${head}${welcome.length.toString(16)}\r\n${welcome}\r\n`);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.once('data', () => s.write(first));
  });
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
    process.send?.({ port: (server.address() as net.AddressInfo).port });
  });
  let n = 0;
  process.on('message', (msg: { send?: number }) => {
    for (let k = 0; k < (msg.send ?? 0); k++) {
      n++;
      const text = `Recvd msg #${n}: 'Fake message Num = ${n}'<br/>`;
      const frame = Buffer.from(`${text.length.toString(16)}\r\n${text}\r\n`);
      for (const s of sockets) s.write(frame);
    }
    process.send?.({ sent: msg.send ?? 0 });
  });
  process.on('disconnect', () => process.exit(0));
}

async function main(): Promise<void> {
  const { count, messages } = flags;
  const child = fork(fileURLToPath(import.meta.url), ['--child-server'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const [{ port }] = (await once(child, 'message')) as [{ port: number }];
  const ac = new AbortController();
  let ready: FloodReport | undefined;
  let loaded: FloodReport | undefined;
  let phase: 'ramp' | 'settle' | 'traffic' | 'done' = 'ramp';
  let settleUntil = 0;
  const summary = await runFlood(
    {
      url: `http://127.0.0.1:${port}/test/{id}`,
      count,
      rate: flags.rate,
      procs: 1,
      fork: true,
      sources: flags.sources ? flags.sources : undefined,
    },
    {
      signal: ac.signal,
      onProgress: (r) => {
        if (phase === 'ramp' && !r.ramping && r.connecting === 0) {
          phase = 'settle';
          settleUntil = performance.now() + flags.settle;
        } else if (phase === 'settle' && performance.now() >= settleUntil) {
          ready = r;
          if (messages > 0) {
            phase = 'traffic';
            child.send({ send: messages });
            child.once('message', () => {
              settleUntil = performance.now() + flags.settle;
            });
          } else {
            phase = 'done';
            ac.abort();
          }
        } else if (phase === 'traffic' && settleUntil > 0 && performance.now() >= settleUntil) {
          if (r.chunks >= messages * r.open) {
            loaded = r;
            phase = 'done';
            ac.abort();
          }
        }
      },
    },
  );
  child.disconnect();
  const idle = ready ?? summary;
  console.log(
    JSON.stringify({
      bench: 'flood-client-memory',
      node: process.version,
      count,
      rate: flags.rate,
      sources: summary.sources,
      open: idle.open,
      failed: summary.failed,
      errors: summary.errors,
      rampMs: summary.rampMs,
      connectRate: summary.connectRate,
      workerRssBytes: idle.rss,
      rssPerConnectionBytes: idle.rssPerConnection,
      heapPerConnectionBytes: idle.heapPerConnection,
      underTraffic: loaded
        ? {
            messagesPerConnection: messages,
            chunks: loaded.chunks,
            rssPerConnectionBytes: loaded.rssPerConnection,
            heapPerConnectionBytes: loaded.heapPerConnection,
          }
        : null,
    }),
  );
}

if (flags['child-server']) serve();
else await main();
