/**
 * flood: the latency histogram, the response parser fed in every split, the source/process plan
 * against this machine's limits, and runs against the real Switchboard (counts checked against
 * the server's own stats), a raw net server (source addresses seen server-side), and the CLI.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError } from '../src/errors.js';
import { type ConnOwner, FloodConn, FloodCounters } from '../src/tools/flood/conn.js';
import { type FloodOptions, runFlood } from '../src/tools/flood/flood.js';
import { parse } from '../src/tools/flood/parser.js';
import {
  AUTO_PER_SOURCE,
  autoSources,
  type MachineLimits,
  parseSources,
  planFlood,
} from '../src/tools/flood/plan.js';
import type { FloodReport, FloodSummary } from '../src/tools/flood/report.js';
import { bucketOf, bucketRange, LatencyHistogram } from '../src/tools/msggen/latency.js';
import { runCli } from './support/cli.js';
import { api, startServer, type TestServer, until } from './support/server.js';

const LIMITS: MachineLimits = { portLow: 32768, portHigh: 60999, maxFiles: 20_000 };

describe('LatencyHistogram', () => {
  test('every value falls in its bucket, and buckets are at most 1/128 wide', () => {
    for (const v of [0, 1, 127, 128, 255, 256, 1000, 65_535, 1_000_000, 2 ** 31 + 5, 123_456_789_012]) {
      const [low, high] = bucketRange(bucketOf(v));
      assert.ok(low <= v && v <= high, `${v} in [${low}, ${high}]`);
      assert.ok((high - low + 1) / Math.max(1, low) <= 1 / 128 || high === low, `width at ${v}`);
    }
  });

  test('percentiles of 1..10000 ms are within 1%, min and max exact', () => {
    const h = new LatencyHistogram();
    for (let v = 1; v <= 10_000; v++) h.record(v);
    const s = h.summary();
    assert.equal(s.count, 10_000);
    assert.equal(s.min, 1);
    assert.equal(s.max, 10_000);
    assert.ok(Math.abs(s.p50 - 5000) / 5000 < 0.01, `p50 ${s.p50}`);
    assert.ok(Math.abs(s.p99 - 9900) / 9900 < 0.01, `p99 ${s.p99}`);
    assert.ok(Math.abs(s.mean - 5000.5) < 1e-6, `mean ${s.mean}`);
  });

  test('merging two halves equals recording everything in one', () => {
    const all = new LatencyHistogram();
    const odd = new LatencyHistogram();
    const even = new LatencyHistogram();
    for (let k = 0; k < 5000; k++) {
      const v = (k * 7.31) % 900;
      all.record(v);
      (k % 2 ? odd : even).record(v);
    }
    const merged = LatencyHistogram.from(odd.toJSON());
    merged.merge(even);
    assert.deepEqual(merged.toJSON().buckets, all.toJSON().buckets);
    assert.deepEqual({ ...merged.summary(), mean: 0 }, { ...all.summary(), mean: 0 });
  });

  test('negative values (clock skew) count as zero', () => {
    const h = new LatencyHistogram();
    h.record(-3);
    assert.deepEqual([h.count, h.min, h.max], [1, 0, 0]);
  });
});

/** A parser harness: a FloodConn that is never connected, with counters and recorded outcomes. */
function harness(sse = false): {
  conn: FloodConn;
  ctr: FloodCounters;
  opened: () => number;
  fails: string[];
} {
  const ctr = new FloodCounters();
  const fails: string[] = [];
  let opened = 0;
  const owner: ConnOwner = {
    counters: ctr,
    onOpen: () => opened++,
    onFail: (_c, code) => fails.push(code),
    onClosed: () => undefined,
  };
  return { conn: new FloodConn(owner, sse), ctr, opened: () => opened, fails };
}

/** Feeds `bytes` to a fresh harness in pieces of the given sizes (cycled). */
function feed(bytes: Buffer, sizes: readonly number[], sse = false): ReturnType<typeof harness> {
  const h = harness(sse);
  let i = 0;
  let k = 0;
  while (i < bytes.length) {
    const n = Math.min(sizes[k++ % sizes.length]!, bytes.length - i);
    // Copy into a scratch buffer with garbage after it, as the shared read buffer would have.
    const buf = Buffer.alloc(n + 16, 'x');
    bytes.copy(buf, 0, i, i + n);
    if (!parse(h.conn, buf, n, h.ctr, h.conn.owner)) break;
    i += n;
  }
  return h;
}

const chunk = (text: string, ext = ''): string =>
  `${Buffer.byteLength(text).toString(16)}${ext}\r\n${text}\r\n`;
const HEAD =
  'HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n';
/** A stamp 1,000,000 ms in the past: the latency read back must be just over 1e6 ms. */
const oldStamp = (): string => (performance.timeOrigin + performance.now() - 1e6).toFixed(3);

describe('flood parser', () => {
  const body = (): Buffer =>
    Buffer.from(
      HEAD +
        chunk('Mochiconntest welcomes you! Your Id: 7\n') +
        chunk(`Recvd msg #1: 'Fake message Num = 3 t=${oldStamp()}'<br/>`) +
        chunk("Recvd msg #2: 'no stamp here, t=5 is too small'<br/>", ';ext=1') +
        chunk(`Recvd msg #3: 'at the end t=${oldStamp()}`).toUpperCase().replace(/T=/, 't=') +
        chunk(`Recvd msg #4: 'word-t=${oldStamp()} still counts after a dash'`),
    );

  for (const [name, sizes] of [
    ['in one read', [1 << 20]],
    ['byte by byte', [1]],
    ['in uneven pieces', [3, 7, 1, 13, 2]],
  ] as const) {
    test(`counts the welcome apart and one message per chunk, ${name}`, () => {
      const h = feed(body(), sizes);
      assert.deepEqual(h.fails, []);
      assert.equal(h.opened(), 1);
      assert.equal(h.ctr.welcomes, 1);
      assert.equal(h.ctr.chunks, 4);
      const lat = h.ctr.latency.summary();
      assert.equal(lat.count, 3, 'three stamped messages');
      assert.ok(lat.min >= 1e6 && lat.max < 1e6 + 60_000, `latency read back ${lat.min}..${lat.max}`);
    });
  }

  test('the end of a chunked body and its trailer are accepted', () => {
    const h = feed(Buffer.from(`${HEAD}${chunk('welcome')}${chunk('one')}0\r\nX-Trailer: 1\r\n\r\n`), [5]);
    assert.deepEqual([h.fails, h.ctr.welcomes, h.ctr.chunks], [[], 1, 1]);
  });

  test('a non-200 status fails the connection with its code', () => {
    const h = feed(Buffer.from('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n'), [4]);
    assert.deepEqual([h.fails, h.opened()], [['HTTP_404'], 0]);
  });

  test('garbage instead of HTTP, and a bad chunk size, fail with EPROTO', () => {
    assert.deepEqual(feed(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'), [100]).fails, ['EPROTO']);
    const bad = feed(Buffer.from(`${HEAD}${chunk('welcome')}zz\r\nhello\r\n`), [100]);
    assert.deepEqual([bad.fails, bad.opened(), bad.ctr.chunks], [['EPROTO'], 1, 0]);
  });

  test('SSE: events with data are messages; comments, retry and named events are not', () => {
    const sse = Buffer.from(
      HEAD +
        chunk('retry: 2000\n: Switchboard welcomes you! Your Id: 1\n\n') +
        chunk(`id: e-1\ndata: Fake message Num = 1 t=${oldStamp()}\n\n`) +
        chunk(':\n\n') +
        chunk('event: gap\ndata: {"missed":3}\n\n') +
        chunk('id: e-2\ndata: line one\ndata: line two\n\n') +
        chunk('id: e-3\nda') +
        chunk(`ta: split across chunks t=${oldStamp()}\n`) +
        chunk('\n') +
        chunk('dataset: not a data field\n\n'),
    );
    for (const sizes of [[1 << 20], [1], [5, 2, 9]]) {
      const h = feed(sse, sizes, true);
      assert.deepEqual(h.fails, []);
      assert.equal(h.ctr.welcomes, 1);
      assert.equal(h.ctr.chunks, 3, `messages with sizes ${sizes}`);
      assert.equal(h.ctr.controls, 1);
      assert.equal(h.ctr.latency.count, 2);
    }
  });
});

describe('flood plan', () => {
  test('parses source ranges and lists, skipping .0 and .255 inside ranges', () => {
    assert.deepEqual(parseSources('127.0.0.2-127.0.0.4,127.0.1.1'), [
      '127.0.0.2',
      '127.0.0.3',
      '127.0.0.4',
      '127.0.1.1',
    ]);
    assert.deepEqual(parseSources(['127.0.0.254-127.0.1.2']), ['127.0.0.254', '127.0.1.1', '127.0.1.2']);
    assert.deepEqual(autoSources(3), ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    assert.throws(() => parseSources('127.0.0.300'), /127\.0\.0\.300.*not an IPv4 address/);
    assert.throws(() => parseSources('127.0.0.9-127.0.0.2'), /ends before it starts/);
    assert.throws(() => parseSources('127.0.0.1-127.9.0.0'), /addresses, the limit is 65536/);
  });

  test('more connections than one address has ports fails, naming the numbers and a fix', () => {
    assert.throws(
      () =>
        planFlood({
          count: 40_000,
          rate: 0,
          procs: 3,
          sources: ['127.0.0.2'],
          loopback: true,
          limits: LIMITS,
        }),
      (err: unknown) =>
        err instanceof ConfigError &&
        /40,000 connections/.test(err.message) &&
        /32768–60999 gives only 28,232 ports per source address/.test(err.message) &&
        /--sources 127\.0\.0\.2-127\.0\.0\.10/.test(err.message),
    );
  });

  test('without --sources, a large count spreads over automatic addresses and processes', () => {
    const plan = planFlood({ count: 40_000, rate: 1000, loopback: true, limits: LIMITS });
    assert.equal(plan.autoSources, true);
    assert.equal(plan.procs, 3);
    // 8 addresses would do at 5,000 each; 9 gives each of the 3 workers 3 of its own.
    assert.deepEqual(plan.sources, parseSources('127.0.0.2-127.0.0.10'));
    assert.deepEqual(
      plan.shares.map((s) => s.sources.length),
      [3, 3, 3],
    );
    assert.equal(
      plan.shares.reduce((a, s) => a + s.count, 0),
      40_000,
    );
    assert.ok(Math.abs(plan.shares.reduce((a, s) => a + s.rate, 0) - 1000) < 1e-9);
    assert.ok(plan.maxPerSource <= AUTO_PER_SOURCE, `${plan.maxPerSource} per source`);
    assert.deepEqual(plan.warnings, []);
    // The 100,000-connection bench: 7 workers; 20 addresses would leave one worker 2 for its 14,286.
    const big = planFlood({ count: 100_000, rate: 1000, loopback: true, limits: LIMITS });
    assert.equal(big.procs, 7);
    assert.equal(big.sources.length, 21);
    assert.ok(big.maxPerSource <= AUTO_PER_SOURCE, `${big.maxPerSource} per source`);
    assert.throws(
      () => planFlood({ count: 40_000, rate: 0, loopback: false, limits: LIMITS }),
      /not loopback/,
    );
  });

  test('too many connections per process fails with the file limit and a --procs that fits', () => {
    assert.throws(
      () =>
        planFlood({
          count: 30_000,
          rate: 0,
          procs: 1,
          sources: ['127.0.0.2', '127.0.0.3'],
          loopback: true,
          limits: LIMITS,
        }),
      /30,000 per process.*20,000 open files.*--procs 2/,
    );
  });

  test('warns when an address carries over a quarter of its ports (binding slows down)', () => {
    const plan = planFlood({
      count: 16_000,
      rate: 0,
      procs: 1,
      sources: ['127.0.0.2', '127.0.0.3'],
      loopback: true,
      limits: LIMITS,
    });
    assert.equal(plan.warnings.length, 1);
    assert.match(
      plan.warnings[0]!,
      /8,000 connections.*quarter of its 28,232 ports.*--sources 127\.0\.0\.2-127\.0\.0\.5/,
    );
    const spread = planFlood({
      count: 16_000,
      rate: 0,
      procs: 1,
      sources: parseSources('127.0.0.2-127.0.0.5'),
      loopback: true,
      limits: LIMITS,
    });
    assert.deepEqual(spread.warnings, []);
  });

  test('warns above 90% of a source address port range', () => {
    const plan = planFlood({
      count: 26_000,
      rate: 0,
      procs: 2,
      sources: ['127.0.0.2'],
      loopback: true,
      limits: LIMITS,
    });
    assert.equal(plan.warnings.length, 1);
    assert.match(plan.warnings[0]!, /26,000 connections.*28,232 ports/);
  });

  test('workers get their own addresses when there are enough, else share them evenly', () => {
    const own = planFlood({
      count: 300,
      rate: 0,
      procs: 3,
      sources: parseSources('127.0.0.2-127.0.0.7'),
      loopback: true,
      limits: LIMITS,
    });
    assert.deepEqual(
      own.shares.map((s) => s.sources),
      [
        ['127.0.0.2', '127.0.0.5'],
        ['127.0.0.3', '127.0.0.6'],
        ['127.0.0.4', '127.0.0.7'],
      ],
    );
    const shared = planFlood({
      count: 301,
      rate: 0,
      procs: 3,
      sources: ['127.0.0.2', '127.0.0.3'],
      loopback: true,
      limits: LIMITS,
    });
    assert.deepEqual(
      shared.shares.map((s) => [s.offset, s.count, s.sourceStart]),
      [
        [0, 101, 0],
        [101, 100, 1],
        [201, 100, 0],
      ],
    );
    assert.equal(shared.maxPerSource, 151);
  });
});

/** Runs flood in the background; `last` is its latest progress report. */
function background(options: FloodOptions): {
  done: Promise<FloodSummary>;
  last: () => FloodReport | undefined;
  stop: () => void;
} {
  const ac = new AbortController();
  let last: FloodReport | undefined;
  const done = runFlood(options, { signal: ac.signal, onProgress: (r) => (last = r) });
  return { done, last: () => last, stop: () => ac.abort() };
}

describe('flood against Switchboard', () => {
  let s: TestServer;
  let base: string;
  before(async () => {
    s = await startServer();
    base = `http://127.0.0.1:${s.clientPort}`;
  });
  after(() => s.stop());

  test('open and message counts match the server; bytes match what it wrote', async () => {
    const before = await s.sb.stats();
    const f = background({ url: `${base}/test/f{id}`, count: 200, rate: 0 });
    await until(
      async () => f.last()?.open === 200 && (await s.sb.stats()).connections === 200,
      '200 open',
      20_000,
    );
    for (let id = 1; id <= 50; id++) {
      const r = await api(s.apiUrl, '/api/send', { id: `f${id}`, msg: `hello ${id}` });
      assert.deepEqual(r.body, { delivered: 1 });
    }
    await until(() => f.last()?.chunks === 50, '50 messages at flood', 10_000);
    const stats = await s.sb.stats();
    f.stop();
    const sum = await f.done;
    assert.equal(sum.stoppedBy, 'signal');
    assert.deepEqual(
      [sum.opened, sum.open, sum.closed, sum.failed, sum.welcomes, sum.chunks],
      [200, 200, 0, 0, 200, 50],
    );
    assert.equal(stats.messagesOut - before.messagesOut, 50);
    assert.equal(sum.bytes, stats.bytesOut - before.bytesOut, 'every byte the server wrote was read');
    assert.ok(sum.rssPerConnection !== null && sum.rssPerConnection > 0);
    await until(async () => (await s.sb.stats()).connections === 0, 'server saw the closes');
  });

  test('--procs 3 × 100 aggregates to 300 open, from three worker processes', async () => {
    const f = background({
      url: `${base}/test/p{id}`,
      count: 300,
      rate: 0,
      procs: 3,
      sources: '127.0.0.2-127.0.0.4',
    });
    await until(
      async () => f.last()?.open === 300 && (await s.sb.stats()).connections === 300,
      '300 open',
      30_000,
    );
    for (const id of ['p1', 'p150', 'p300']) await api(s.apiUrl, '/api/send', { id, msg: 'x' });
    await until(() => f.last()?.chunks === 3, 'three messages over three workers', 10_000);
    f.stop();
    const sum = await f.done;
    assert.deepEqual(
      [sum.procs, sum.opened, sum.open, sum.welcomes, sum.chunks, sum.failed],
      [3, 300, 300, 300, 3, 0],
    );
    assert.deepEqual(sum.workerErrors, []);
  });

  test('streams the server ends count as closed; a wrong route and a dead port as failed', async () => {
    const own = await startServer();
    const f = background({ url: `http://127.0.0.1:${own.clientPort}/test/{id}`, count: 20, rate: 0 });
    await until(() => f.last()?.open === 20, '20 open', 10_000);
    await own.stop();
    // Every stream ended and nothing is left to open: flood stops by itself.
    const closed = await f.done;
    assert.equal(closed.stoppedBy, 'idle');
    assert.deepEqual([closed.opened, closed.closed, closed.failed], [20, 20, 0]);

    const notFound = await runFlood({ url: `${base}/nope/{id}`, count: 5, rate: 0 });
    assert.deepEqual([notFound.opened, notFound.failed, notFound.errors], [0, 5, { HTTP_404: 5 }]);

    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as net.AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const refused = await runFlood({ url: `http://127.0.0.1:${port}/test/{id}`, count: 5, rate: 0 });
    assert.deepEqual([refused.opened, refused.failed, refused.errors], [0, 5, { ECONNREFUSED: 5 }]);
  });

  test('--sse on /feed counts SSE events as messages', async () => {
    const f = background({ url: `${base}/feed/sse{id}`, count: 10, rate: 0, sse: true });
    await until(
      async () => f.last()?.open === 10 && (await s.sb.stats()).streams.sse === 10,
      '10 SSE streams',
      10_000,
    );
    for (let id = 1; id <= 10; id++)
      await api(s.apiUrl, '/api/send', { id: `sse${id}`, msg: `line\nsecond line ${id}` });
    await until(() => f.last()?.chunks === 10, '10 events', 10_000);
    f.stop();
    const sum = await f.done;
    assert.deepEqual([sum.open, sum.welcomes, sum.chunks, sum.controls], [10, 10, 10, 0]);
  });

  test('--url-file opens one connection per listed URL', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'flood-urls-'));
    try {
      const file = path.join(dir, 'mochi-urls.txt');
      const lines = Array.from({ length: 12 }, (_, i) => `http://127.0.0.1:${s.clientPort}/test/u${i + 1}`);
      writeFileSync(file, `# the article's /tmp/mochi-urls.txt\n${lines.join('\n')}\n\n`);
      const f = background({ urlFile: file, rate: 0 });
      await until(() => f.last()?.open === 12, '12 open', 10_000);
      await api(s.apiUrl, '/api/send', { id: 'u12', msg: 'last line' });
      await until(() => f.last()?.chunks === 1, 'message to the last URL', 10_000);
      f.stop();
      const sum = await f.done;
      assert.deepEqual([sum.count, sum.opened, sum.chunks], [12, 12, 1]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('flood source addresses', () => {
  test('--sources spreads connections over the addresses, seen server-side', async () => {
    const seen = new Map<string, number>();
    const sockets = new Set<net.Socket>();
    const server = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => undefined);
      seen.set(sock.remoteAddress ?? '?', (seen.get(sock.remoteAddress ?? '?') ?? 0) + 1);
      sock.once('data', () =>
        sock.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${chunk('welcome')}`),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const f = background({
        url: `http://127.0.0.1:${port}/test/{id}`,
        count: 60,
        rate: 0,
        sources: '127.0.0.2-127.0.0.4,127.0.1.9',
      });
      await until(() => f.last()?.open === 60, '60 open', 10_000);
      f.stop();
      const sum = await f.done;
      assert.equal(sum.sources, 4);
      assert.deepEqual(Object.fromEntries([...seen].sort()), {
        '127.0.0.2': 15,
        '127.0.0.3': 15,
        '127.0.0.4': 15,
        '127.0.1.9': 15,
      });
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('flood against a slow server', () => {
  test('a ramp held back by --max-connecting waits for heads instead of polling every millisecond', async () => {
    // Heads are answered one every 25 ms, so with 2 connecting at most the ramp of 24 takes
    // about 0.6 s, nearly all of it blocked on the cap.
    const sockets = new Set<net.Socket>();
    const queue: net.Socket[] = [];
    const server = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => undefined);
      sock.once('data', () => queue.push(sock));
    });
    const answer = setInterval(() => {
      queue.shift()?.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${chunk('welcome')}`);
    }, 25);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const real = globalThis.setTimeout;
    let shortTimers = 0;
    const call = real as (fn: unknown, ms?: number, ...args: unknown[]) => NodeJS.Timeout;
    globalThis.setTimeout = ((fn: unknown, ms?: number, ...args: unknown[]) => {
      if ((ms ?? 0) <= 1) shortTimers++;
      return call(fn, ms, ...args);
    }) as typeof setTimeout;
    try {
      const port = (server.address() as net.AddressInfo).port;
      const f = background({
        url: `http://127.0.0.1:${port}/test/{id}`,
        count: 24,
        rate: 0,
        maxConnecting: 2,
      });
      await until(() => f.last()?.open === 24, '24 open', 10_000);
      globalThis.setTimeout = real;
      f.stop();
      const sum = await f.done;
      assert.deepEqual([sum.opened, sum.failed], [24, 0]);
      // One resume per head (24), and a few of the runner's own; polling made about 600.
      assert.ok(shortTimers < 100, `${shortTimers} timers of at most 1 ms during the ramp`);
    } finally {
      globalThis.setTimeout = real;
      clearInterval(answer);
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});

/** Runs the CLI with captured output. */
async function cli(
  argv: string[],
  signal?: AbortSignal,
): Promise<{ code: number; out: string; err: string }> {
  const r = await runCli(argv, { signal });
  return { code: r.code, out: r.stdout, err: r.stderr };
}

describe('flood CLI', () => {
  test('bad flags exit 2 with a message naming the problem', async () => {
    const cases: [string[], RegExp][] = [
      [['flood', '--count', '10'], /give --url/],
      [['flood', '--url', 'http://127.0.0.1:1/test/{id}'], /--count is required/],
      [['flood', '--url', 'http://x/{id}', '--count', '1', '--rate', '-1'], /--rate must be at least 0/],
      [['flood', '--url', 'https://127.0.0.1/{id}', '--count', '1'], /https:\/\/ is not supported/],
      [
        ['flood', '--url', 'http://127.0.0.1:1/{id}', '--count', '1', '--sources', '127.0.0.999'],
        /127\.0\.0\.999/,
      ],
      [
        ['flood', '--url', 'http://127.0.0.1:1/{id}', '--count', '40000', '--sources', '127.0.0.2'],
        /28,232 ports per source address/,
      ],
      [
        ['flood', '--url', 'http://127.0.0.1:1/{id}', '--count', '5', '--procs', '9'],
        /--procs 9 is more than --count 5/,
      ],
      [['flood', '--bogus'], /unknown option --bogus/],
    ];
    for (const [argv, pattern] of cases) {
      const r = await cli(argv);
      assert.equal(r.code, 2, `${argv.join(' ')}: ${r.err}`);
      assert.match(r.err, pattern);
    }
  });

  test('--json prints report lines and a summary line; nothing opened exits 1', async () => {
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as net.AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const r = await cli([
      'flood',
      '--url',
      `http://127.0.0.1:${port}/test/{id}`,
      '--count',
      '3',
      '--rate',
      '0',
      '--json',
    ]);
    assert.equal(r.code, 1);
    const lines = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; failed: number; errors: object });
    const last = lines.at(-1)!;
    assert.equal(last.type, 'summary');
    assert.equal(last.failed, 3);
    assert.deepEqual(last.errors, { ECONNREFUSED: 3 });
  });
});
