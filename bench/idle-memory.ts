/**
 * Idle-connection memory: server RSS per connection with N idle `/test/<id>` streams (the
 * DESIGN.md budget: ≤ 2 KB). Starts `switchboard serve` as its own process, reads its RSS from
 * /proc before and after opening N connections from many 127.x source addresses, and prints JSON.
 *
 *   node dist/bench/idle-memory.js --count 15000 [--node-args '…'] [--settle 5]
 *
 * The server runs with the lean V8 flags the `switchboard` executable uses (LEAN_NODE_ARGS);
 * `--node-args ''` measures plain node for comparison; `--server naive-http` measures the reference
 * server in bench/naive-http-server.ts (the obvious `node:http` implementation) the same way.
 *
 * `perConnKB` is (RSS after − RSS before) / N: the marginal cost of a connection, the figure the
 * article's 45 KB → 8 KB and the reference measurements compare. `totalPerConnKB` divides the
 * whole RSS, base process included, as the article's 450 MB / 10k did. `kernelSlabPerSocketKB` is
 * the growth of kernel slab memory per socket (client and server ends both count), system-wide.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchSpec, NODE_ARGS_OPTION, nodeArgsOf, parseBenchArgs } from '../src/bench/harness/args.js';
import { ServerProcess } from '../src/bench/harness/server-process.js';
import { readRssKb } from '../src/tools/proc.js';

const spec = {
  name: 'bench/idle-memory.js',
  summary: 'Server RSS per idle /test/<id> stream, the server in its own process; prints JSON.',
  options: {
    count: { type: 'int', description: 'Idle streams', default: 15_000, min: 1, placeholder: 'N' },
    'node-args': NODE_ARGS_OPTION,
    server: {
      type: 'string',
      description: 'Which server (naive-http: bench/naive-http-server.ts)',
      default: 'switchboard',
      choices: ['switchboard', 'naive-http'],
    },
    settle: {
      type: 'number',
      description: 'Seconds to wait after the ramp before measuring',
      default: 5,
      min: 0,
    },
    client: { type: 'boolean', description: '(internal) run as a client process', default: false },
    port: { type: 'int', description: '(internal) the client port to connect to', min: 1, max: 65_535 },
    from: { type: 'int', description: "(internal) a client's first id", default: 0, min: 0 },
  },
} as const satisfies BenchSpec;
const values = parseBenchArgs(spec);

/** Kernel slab memory (KB) and TCP buffer pages in use, system-wide. */
function kernelKB(): { slab: number; tcpPages: number } {
  const slab = Number(/^Slab:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
  const tcpPages = Number(/^TCP: .* mem (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'))?.[1] ?? 0);
  return { slab, tcpPages };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Client side (a child process): opens `count` streams from 127.0.<k>.<j> addresses, lean. */
async function client(): Promise<void> {
  const net = await import('node:net');
  const port = values.port!;
  const { count, from: base } = values;
  let open = 0;
  let failed = 0;
  const onData = function (this: { got?: boolean }): void {
    if (!this.got) {
      this.got = true;
      open++;
    }
  };
  const onError = (): void => {
    failed++;
  };
  const sockets: unknown[] = [];
  for (let i = 0; i < count; i++) {
    const n = base + i;
    // 10,000 connections per source address, well inside the ~28k ephemeral ports per address.
    const addr = `127.0.${1 + Math.floor(n / 10_000)}.${2 + (Math.floor(n / 250) % 200)}`;
    const s = net.connect({ port, host: '127.0.0.1', localAddress: addr });
    s.setNoDelay(true);
    s.on('data', onData);
    s.on('error', onError);
    s.write(`GET /test/${n} HTTP/1.1\r\nHost: bench\r\n\r\n`);
    sockets.push(s);
    if (i % 500 === 499) await sleep(25);
  }
  while (open + failed < count) await sleep(50);
  process.send?.({ open, failed });
  setInterval(() => undefined, 1 << 30);
}

async function main(): Promise<void> {
  const { count } = values;
  const data = mkdtempSync(path.join(tmpdir(), 'sb-bench-'));
  const nodeArgs = nodeArgsOf(values['node-args']);
  const naive = values.server === 'naive-http';
  // The naive server logs its port the way serve does, so both start the same way.
  const server = await ServerProcess.start(
    naive
      ? { nodeArgs, script: fileURLToPath(new URL('./naive-http-server.js', import.meta.url)) }
      : { nodeArgs, dataDir: data },
  );
  await sleep(1000);
  const before = readRssKb(server.pid) ?? 0;
  const kernelBefore = kernelKB();
  const stats = async (): Promise<{ connections: number; memory: { heapUsed: number; heapTotal: number } }> =>
    (await (await fetch(`${server.apiUrl}/api/stats`)).json()) as {
      connections: number;
      memory: { heapUsed: number; heapTotal: number };
    };
  const noStats = { connections: Number.NaN, memory: { heapUsed: Number.NaN, heapTotal: Number.NaN } };
  const heapBefore = naive ? noStats.memory : (await stats()).memory;
  const started = Date.now();
  const clients: ChildProcess[] = [];
  const perClient = 15_000;
  const opened: Promise<{ open: number; failed: number }>[] = [];
  for (let from = 0; from < count; from += perClient) {
    const n = Math.min(perClient, count - from);
    const child = fork(fileURLToPath(import.meta.url), [
      '--client',
      '--port',
      String(server.clientPort),
      '--count',
      String(n),
      '--from',
      String(from),
    ]);
    clients.push(child);
    opened.push(
      new Promise((resolve) => child.once('message', (m) => resolve(m as { open: number; failed: number }))),
    );
  }
  const results = await Promise.all(opened);
  const rampSeconds = (Date.now() - started) / 1000;
  await sleep(values.settle * 1000);
  const after = readRssKb(server.pid) ?? 0;
  const kernelAfter = kernelKB();
  const st = naive ? noStats : await stats();
  for (const c of clients) c.kill();
  await server.stop();
  rmSync(data, { recursive: true, force: true });
  const open = results.reduce((a, r) => a + r.open, 0);
  console.log(
    JSON.stringify({
      bench: 'idle-memory',
      server: values.server,
      count,
      open,
      failed: results.reduce((a, r) => a + r.failed, 0),
      serverConnections: st.connections,
      nodeArgs: nodeArgs.join(' '),
      rampSeconds: Math.round(rampSeconds * 10) / 10,
      rssBeforeKB: before,
      rssAfterKB: after,
      perConnKB: Math.round(((after - before) / open) * 100) / 100,
      totalPerConnKB: Math.round((after / open) * 100) / 100,
      heapUsedPerConnB: Math.round((st.memory.heapUsed - heapBefore.heapUsed) / open),
      heapTotalPerConnB: Math.round((st.memory.heapTotal - heapBefore.heapTotal) / open),
      // Both ends of each connection are on this box: two sockets per connection. System-wide,
      // so other activity on the machine adds noise.
      kernelSlabPerSocketKB: Math.round(((kernelAfter.slab - kernelBefore.slab) / (2 * open)) * 100) / 100,
      tcpBufferPerSocketKB:
        Math.round((((kernelAfter.tcpPages - kernelBefore.tcpPages) * 4) / (2 * open)) * 100) / 100,
      node: process.version,
    }),
  );
}

if (values.client) await client();
else await main();
