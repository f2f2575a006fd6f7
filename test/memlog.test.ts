import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { InvalidInputError } from '../src/errors.js';
import {
  formatDate,
  formatSample,
  parseMemlog,
  type Sample,
  takeSample,
} from '../src/tools/memlog/memlog.js';
import {
  findClusterWorkers,
  findSocketOwners,
  scanMethod,
  scanPort,
  TCP_TABLES,
} from '../src/tools/memlog/sockets.js';
import { readRssKb } from '../src/tools/proc.js';
import { runCli } from './support/cli.js';

/** A server in its own process (the test process must not be the one holding the port). */
const SERVER = `
const net = require('node:net');
const held = [];
const s = net.createServer((c) => {
  held.push(c);
  c.on('error', () => {});
  process.stdout.write('conn ' + process.pid + '\\n');
});
s.listen(0, '127.0.0.1', () => process.stdout.write('port ' + s.address().port + '\\n'));
`;

/** Node cluster: the primary holds the listening socket, two workers get the connections. */
const CLUSTER = `
const cluster = require('node:cluster');
const net = require('node:net');
cluster.schedulingPolicy = cluster.SCHED_RR;
if (cluster.isPrimary) {
  let listening = 0;
  cluster.on('listening', (w, addr) => {
    process.stdout.write('worker ' + w.process.pid + '\\n');
    if (++listening === 2) process.stdout.write('port ' + addr.port + '\\n');
  });
  cluster.fork();
  cluster.fork();
} else {
  const held = [];
  net.createServer((c) => {
    held.push(c);
    c.on('error', () => {});
    process.stdout.write('conn ' + process.pid + '\\n');
  }).listen(0, '127.0.0.1');
}
`;

interface Server {
  readonly child: ChildProcess;
  readonly port: number;
  /** Pids of the processes that accepted each connection, in order. */
  readonly accepted: number[];
  /** Cluster worker pids, as the primary announced them. */
  readonly workers: number[];
  waitForConnections(n: number): Promise<void>;
}

/** Runs `code` from a file (cluster workers re-run the main script, which `node -e` lacks). */
async function startServer(dir: string, name: string, code: string): Promise<Server> {
  const script = join(dir, `${name}.cjs`);
  await writeFile(script, code);
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const accepted: number[] = [];
  const workers: number[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  let buffered = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      buffered += chunk;
      let nl = buffered.indexOf('\n');
      while (nl !== -1) {
        const [kind, value] = buffered.slice(0, nl).split(' ');
        buffered = buffered.slice(nl + 1);
        if (kind === 'port') resolve(Number(value));
        if (kind === 'conn') accepted.push(Number(value));
        if (kind === 'worker') workers.push(Number(value));
        for (const w of waiters) if (accepted.length >= w.n) w.resolve();
        nl = buffered.indexOf('\n');
      }
    });
  });
  return {
    child,
    port,
    accepted,
    workers,
    waitForConnections: (n) =>
      new Promise<void>((resolve) => {
        if (accepted.length >= n) resolve();
        else waiters.push({ n, resolve });
      }),
  };
}

async function stopServer(server: Server | undefined): Promise<void> {
  if (server === undefined || server.child.exitCode !== null) return;
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGTERM');
  await exited;
}

async function connect(port: number, count: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < count; i++) {
    const s = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    sockets.push(s);
  }
  return sockets;
}

async function vmRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1]);
}

async function cli(argv: string[], signal?: AbortSignal, onStdout?: (t: string) => void) {
  return runCli(argv, { signal, onStdout });
}

/** The article's sample lines as they appear on the web page: tabs shown as spaces, line breaks lost. */
const ARTICLE_BLOB =
  'Mon Oct 20 16:57:24 BST 2008 1224518244 40388 1Mon Oct 20 16:58:25 BST 2008 1224518305 41120 263' +
  'Mon Oct 20 16:59:27 BST 2008 1224518367 65252 5267Mon Oct 20 17:00:32 BST 2008 1224518432 89008 9836' +
  'Mon Oct 20 17:01:37 BST 2008 1224518497 90748 10001Mon Oct 20 17:02:41 BST 2008 1224518561 90964 10001';

describe('parseMemlog', () => {
  test('reads back what formatSample writes', () => {
    const samples: Sample[] = [
      { date: 'Mon Oct 20 16:57:24 BST 2008', time: 1224518244, rssKb: 40388, connections: 1, processes: 1 },
      {
        date: 'Mon Oct  5 09:01:02 UTC 2008',
        time: 1224518305,
        rssKb: 41120,
        connections: 263,
        processes: 3,
      },
      {
        date: 'Mon Oct  5 09:02:02 UTC 2008',
        time: 1224518365,
        rssKb: 183000,
        connections: 263,
        processes: 3,
        pssKb: 98000,
      },
    ];
    const text = samples.map((s) => `${formatSample(s)}\n`).join('');
    assert.equal(text.split('\n')[0], 'Mon Oct 20 16:57:24 BST 2008\t1224518244\t40388\t1\t1');
    assert.deepEqual(parseMemlog(text), samples);
  });

  test("reads the article's one-liner output (tabs, ps padding, no process column)", () => {
    const text =
      'Mon Oct 20 16:57:24 BST 2008\t1224518244\t 40388\t1\r\nMon Oct 20 16:58:25 BST 2008\t1224518305\t 41120\t263\n';
    assert.deepEqual(parseMemlog(text), [
      {
        date: 'Mon Oct 20 16:57:24 BST 2008',
        time: 1224518244,
        rssKb: 40388,
        connections: 1,
        processes: undefined,
      },
      {
        date: 'Mon Oct 20 16:58:25 BST 2008',
        time: 1224518305,
        rssKb: 41120,
        connections: 263,
        processes: undefined,
      },
    ]);
  });

  test("reads the article's sample lines as printed, tabs turned to spaces", () => {
    const lines = ARTICLE_BLOB.split(/(?=Mon Oct)/).join('\n');
    const samples = parseMemlog(lines);
    assert.equal(samples.length, 6);
    assert.deepEqual(
      samples.map((s) => [s.time, s.rssKb, s.connections]),
      [
        [1224518244, 40388, 1],
        [1224518305, 41120, 263],
        [1224518367, 65252, 5267],
        [1224518432, 89008, 9836],
        [1224518497, 90748, 10001],
        [1224518561, 90964, 10001],
      ],
    );
    assert.equal(samples[3]!.date, 'Mon Oct 20 17:00:32 BST 2008');
  });

  test('skips blank and comment lines, names the line of a bad one', () => {
    assert.equal(parseMemlog('\n# date\ttime\trss\tconns\n\n').length, 0);
    const text = 'Mon\t1224518244\t40388\t1\n\nMon\t1224518305\t\t263\n';
    assert.throws(
      () => parseMemlog(text, 'mem.log'),
      (err: unknown) => err instanceof InvalidInputError && /^mem\.log line 3: /.test(err.message),
    );
    assert.throws(() => parseMemlog('hello world\n', 'x.log'), /x\.log line 1: .*"hello world"/);
  });

  test('formatDate looks like date(1)', () => {
    assert.match(formatDate(new Date()), /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ \d{4}$/);
  });
});

describe('scanPort', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchboard-memlog-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const header =
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
  const row = (i: number, local: string, st: string, inode: number) =>
    `${String(i).padStart(6)}: ${local} 0100007F:D431 ${st} 00000000:00000000 00:00000000 00000000     0        0 ${inode} 1 0000000000000000 20 4 30 10 -1\n`;

  test('streams a large table across chunk boundaries', async () => {
    // 100k rows (~15 MB) so lines straddle many read chunks; port 8000 = 1F40, listener on 127.0.0.1.
    let text = header;
    let expectEst = 0;
    const expectInodes: number[] = [];
    for (let i = 0; i < 100_000; i++) {
      if (i % 7 === 0) {
        text += row(i, '0100007F:1F40', '01', 1000 + i);
        expectEst++;
        expectInodes.push(1000 + i);
      } else if (i % 11 === 0) {
        text += row(i, '0100007F:1F40', '06', 0); // TIME_WAIT: no inode
      } else if (i % 13 === 0) {
        // A client bound to 127.0.0.5 that drew 8000 as its source port: not the server's.
        text += row(i, '0500007F:1F40', '01', 1000 + i);
      } else {
        text += row(i, '0100007F:1F41', '01', 1000 + i);
      }
    }
    text += row(100_000, '0100007F:1F40', '0A', 77);
    expectInodes.unshift(77);
    const table = join(dir, 'tcp');
    await writeFile(table, text);
    const scan = await scanPort(8000, true, [table, join(dir, 'missing')]);
    assert.equal(scan.established, expectEst);
    assert.equal(scan.listening, 1);
    assert.deepEqual([...scan.inodes], expectInodes);
  });

  test('a wildcard listener covers every address; no listener counts all', async () => {
    const rows = [
      row(1, '0100007F:1F40', '01', 11),
      row(2, '0500007F:1F40', '01', 12),
      row(3, '0100007F:1F40', '08', 13), // CLOSE_WAIT: held by the server, not established
    ].join('');
    const wild = join(dir, 'tcp-wild');
    await writeFile(wild, `${header}${rows}${row(4, '00000000:1F40', '0A', 14)}`);
    const w = await scanPort(8000, true, [wild]);
    assert.deepEqual([w.established, w.listening, [...w.inodes]], [2, 1, [11, 12, 13, 14]]);

    const none = join(dir, 'tcp-none');
    await writeFile(none, `${header}${rows}`);
    const n = await scanPort(8000, true, [none]);
    assert.deepEqual([n.established, n.listening, [...n.inodes]], [2, 0, [11, 12, 13]]);

    // The kernel may list a row twice while the table changes under a read; each socket counts once.
    // Accept-queue rows have inode 0 and are told apart by remote address.
    const dup = join(dir, 'tcp-dup');
    const queued = (i: number, remote: string) =>
      row(i, '0100007F:1F40', '01', 0).replace('0100007F:D431', remote);
    await writeFile(
      dup,
      header +
        row(1, '0100007F:1F40', '0A', 20) +
        row(2, '0100007F:1F40', '01', 21) +
        row(3, '0100007F:1F40', '01', 22) +
        row(3, '0100007F:1F40', '01', 22) +
        queued(4, '0100007F:A001') +
        queued(5, '0100007F:A002') +
        queued(5, '0100007F:A002') +
        row(1, '0100007F:1F40', '0A', 20),
    );
    const d = await scanPort(8000, true, [dup]);
    assert.deepEqual([d.established, d.listening, [...d.inodes]], [4, 1, [20, 21, 22]]);

    // The listener in tcp6 does not cover tcp.
    const v6 = join(dir, 'tcp6');
    await writeFile(v6, `${header}${row(5, '00000000000000000000000000000000:1F40', '0A', 15)}`);
    const m = await scanPort(8000, true, [none, v6]);
    assert.deepEqual([m.established, m.listening, [...m.inodes]], [0, 1, [15]]);
  });
});

describe('memlog against a real server', () => {
  const K = 5;
  let dir: string;
  let server: Server | undefined;
  let cluster: Server | undefined;
  const clients: net.Socket[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchboard-memlog-'));
    server = await startServer(dir, 'server', SERVER);
    clients.push(...(await connect(server.port, K)));
    await server.waitForConnections(K);
  });

  after(async () => {
    for (const c of clients) c.destroy();
    await stopServer(server);
    await stopServer(cluster);
    await rm(dir, { recursive: true, force: true });
  });

  test('finds the server by port and counts its connections', async () => {
    const s = server!;
    const scan = await scanPort(s.port, true);
    assert.equal(scan.established, K);
    assert.equal(scan.listening, 1);
    assert.deepEqual((await findSocketOwners(scan.inodes)).pids, [s.child.pid]);
    // On this box the default scan goes through ss (netlink); the /proc reader finds the same.
    if (spawnSync('ss', ['-H', '-tln']).status === 0) assert.equal(scanMethod(), 'ss');
    const proc = await scanPort(s.port, true, [...TCP_TABLES]);
    assert.equal(proc.established, scan.established);
    assert.equal(proc.listening, scan.listening);
    assert.deepEqual(proc.inodes, scan.inodes);

    const before = await vmRss(s.child.pid!);
    const result = await takeSample({ port: s.port });
    const afterRss = await vmRss(s.child.pid!);
    assert.ok(result.sample, 'a sample was taken');
    assert.equal(result.sample.connections, K);
    assert.equal(result.sample.processes, 1);
    assert.ok(result.sample.rssKb > 10_000, `a node process uses > 10 MB, got ${result.sample.rssKb} KB`);
    assert.ok(result.sample.rssKb >= Math.min(before, afterRss) * 0.9, 'RSS matches /proc status');
    assert.ok(result.sample.rssKb <= Math.max(before, afterRss) * 1.1, 'RSS matches /proc status');
    assert.equal(readRssKb(2 ** 30), undefined);
  });

  test('sums RSS over a cluster primary and its workers', async () => {
    cluster = await startServer(dir, 'cluster', CLUSTER);
    const primary = cluster.child.pid!;
    const expected = [primary, ...cluster.workers].sort((a, b) => a - b);
    assert.equal(expected.length, 3);

    // Idle workers hold no socket on the port; they are found as the primary's cluster workers.
    const idle = await scanPort(cluster.port, true);
    assert.deepEqual((await findSocketOwners(idle.inodes)).pids, [primary]);
    assert.deepEqual(
      await findClusterWorkers([primary]),
      [...cluster.workers].sort((a, b) => a - b),
    );
    assert.deepEqual(await findClusterWorkers([process.pid]), [], 'the test runner has no cluster workers');
    const before = await takeSample({ port: cluster.port });
    assert.equal(before.sample?.processes, 3);
    assert.equal(before.sample?.connections, 0);

    const conns = await connect(cluster.port, 4);
    clients.push(...conns);
    await cluster.waitForConnections(4);
    // Workers that got a connection now hold a socket on the port themselves.
    const holders = [primary, ...new Set(cluster.accepted)].sort((a, b) => a - b);
    const scan = await scanPort(cluster.port, true);
    assert.equal(scan.established, 4);
    assert.deepEqual((await findSocketOwners(scan.inodes)).pids, holders);

    let sum = 0;
    for (const pid of expected) sum += await vmRss(pid);
    const result = await takeSample({ port: cluster.port });
    assert.ok(result.sample);
    assert.equal(result.sample.processes, expected.length);
    assert.equal(result.sample.connections, 4);
    assert.ok(Math.abs(result.sample.rssKb - sum) < sum * 0.1, `${result.sample.rssKb} KB vs ${sum} KB`);
    // PSS splits the node binary's shared pages between the three: less than the summed RSS.
    const pss = result.sample.pssKb;
    assert.ok(
      pss !== undefined && pss > 0 && pss < result.sample.rssKb,
      `PSS ${pss} KB, RSS ${result.sample.rssKb} KB`,
    );
    assert.match(formatSample(result.sample), new RegExp(`\\t3\\t${pss}$`));
  });

  test('--samples writes that many parseable lines to the file and stdout', async () => {
    const out = join(dir, 'samples.log');
    const r = await cli([
      'memlog',
      '--port',
      String(server!.port),
      '--every',
      '20ms',
      '--samples',
      '3',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const logged = parseMemlog(await readFile(out, 'utf8'), out);
    assert.equal(logged.length, 3);
    assert.deepEqual(parseMemlog(r.stdout), logged);
    for (const s of logged) {
      assert.equal(s.connections, K);
      assert.equal(s.processes, 1);
      assert.ok(s.rssKb > 10_000);
    }
    assert.match(
      r.stderr,
      /3 samples every 20ms written to .*samples\.log; peak [\d.]+ MB RSS at 5 connections/,
    );

    // Appends, as the article's `tee -a` did.
    await cli(['memlog', '--port', String(server!.port), '--samples', '1', '--out', out]);
    assert.equal(parseMemlog(await readFile(out, 'utf8')).length, 4);
  });

  test('--pid measures the given process', async () => {
    const pid = server!.child.pid!;
    const r = await cli([
      'memlog',
      '--port',
      String(server!.port),
      '--pid',
      String(pid),
      '--samples',
      '1',
      '--out',
      '-',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const [s] = parseMemlog(r.stdout);
    assert.equal(s?.processes, 1);
    assert.equal(s?.connections, K);
    const rss = await vmRss(pid);
    assert.ok(Math.abs((s?.rssKb ?? 0) - rss) < rss * 0.1);
  });

  test('--duration stops it', async () => {
    const r = await cli([
      'memlog',
      '-p',
      String(server!.port),
      '--every',
      '40ms',
      '--duration',
      '100ms',
      '--out',
      '-',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const n = parseMemlog(r.stdout).length;
    // Slots at 0, 40 and 80 ms fit in 100 ms; a slow machine may skip some, never add.
    assert.ok(n >= 1 && n <= 3, `got ${n} samples`);
  });

  test('the abort signal stops it and it still prints its summary', { timeout: 60_000 }, async () => {
    const ac = new AbortController();
    const r = await cli(
      ['memlog', '--port', String(server!.port), '--every', '1h', '--out', '-'],
      ac.signal,
      () => ac.abort(),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(parseMemlog(r.stdout).length, 1);
    assert.match(r.stderr, /1 sample every 1h written/);
  });

  test('no server on the port is a run-time failure (exit 1)', async () => {
    const probe = net.createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => probe.once('listening', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const r = await cli(['memlog', '--port', String(port), '--samples', '1', '--out', '-']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`nothing is listening on port ${port}`));
  });

  test('bad flags exit 2 and name the flag', async () => {
    const cases: [string[], RegExp][] = [
      [['memlog'], /--port is required/],
      [['memlog', '--port', '0'], /--port must be at least 1/],
      [['memlog', '--port', '8000', '--every', 'soon'], /--every must be a duration/],
      [['memlog', '--port', '8000', '--samples', '0'], /--samples must be at least 1/],
      [['memlog', '--port', '8000', '--pid', 'abc'], /--pid must be a whole number/],
      [['memlog', '--port', '8000', '--bogus'], /unknown option --bogus/],
    ];
    for (const [argv, message] of cases) {
      const r = await cli(argv);
      assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });
});
