/**
 * How long one huge publish batch keeps a server's event loop from everything else. The server
 * runs as its own process (lean flags); one stream receives half the batch; this process sends
 * one `--messages`-message batch and meanwhile opens `GET /healthz` on the client port again and
 * again, timing each answer. Prints one JSON line: the batch's time, the worst and p99 probe wait,
 * and the server's own worst event-loop delay.
 *
 *   node dist/bench/big-batch.js [--messages 200000]
 */
import net from 'node:net';
import { type BenchSpec, NODE_ARGS_OPTION, nodeArgsOf, parseBenchArgs } from '../src/bench/harness/args.js';
import { ServerProcess } from '../src/bench/harness/server-process.js';
import { cleanup, cleanupOnExit, load1, tempDir } from './support.js';

const spec = {
  name: 'bench/big-batch.js',
  summary: 'One huge batch against a responsiveness probe on the client port; JSON.',
  options: {
    messages: {
      type: 'int',
      description: 'Messages in the batch',
      default: 200_000,
      min: 1,
      max: 10_000_000,
    },
    'node-args': NODE_ARGS_OPTION,
  },
} as const satisfies BenchSpec;
const o = parseBenchArgs(spec);
cleanupOnExit();

/** Opens the client port, sends `request`, resolves when the server closes: the time it took, ms. */
function probe(port: number, request: string): Promise<number> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect(port, '127.0.0.1', () => s.write(request));
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    s.on('close', () => resolve(performance.now() - t0));
  });
}

const server = await ServerProcess.start({
  dataDir: tempDir('sb-bigbatch-'),
  nodeArgs: nodeArgsOf(o['node-args']),
  serverArgs: ['--max-inflight', String(Math.max(10_000, o.messages)), '--max-lag', '0'],
});
try {
  const stream = net.connect(server.clientPort, '127.0.0.1', () =>
    stream.write('GET /test/big HTTP/1.1\r\nHost: b\r\n\r\n'),
  );
  let bytes = 0;
  stream.on('data', (d: Buffer) => {
    bytes += d.length;
  });
  while (bytes === 0) await new Promise((r) => setTimeout(r, 10));
  const body = JSON.stringify(
    Array.from({ length: o.messages }, (_, i) => ({ id: i % 2 ? 'big' : `x${i}`, msg: 'm' })),
  );
  const t0 = performance.now();
  let done = false;
  const sending = fetch(`${server.apiUrl}/api/send/batch`, { method: 'POST', body }).then(async (r) => {
    done = true;
    return { status: r.status, body: await r.json() };
  });
  const waits: number[] = [];
  while (!done) waits.push(await probe(server.clientPort, 'GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n'));
  const answer = await sending;
  const batchMs = performance.now() - t0;
  const stats = (await (await fetch(`${server.apiUrl}/api/stats`)).json()) as {
    api: { eventLoopDelayMaxMs: number };
    stalls: { worstMs: number };
  };
  waits.sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      bench: 'big-batch',
      messages: o.messages,
      status: answer.status,
      answer: answer.body,
      batchMs: Math.round(batchMs),
      messagesPerSecond: Math.round(o.messages / (batchMs / 1000)),
      probes: waits.length,
      probeWaitP99Ms: Math.round(waits[Math.floor(waits.length * 0.99)] ?? 0),
      probeWaitMaxMs: Math.round(waits.at(-1) ?? 0),
      serverLoopDelayMaxMs: stats.api.eventLoopDelayMaxMs,
      load1: load1(),
    }),
  );
  stream.destroy();
} finally {
  await server.stop();
  cleanup();
}
