/**
 * msggen: messages to ids that each hold one flood connection must all be delivered and all
 * arrive (counts checked at msggen, at the server and at flood, with stamped latency); errors
 * are counted by status; ids, bodies and request shapes are checked on a recording API.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { runFlood } from '../src/tools/flood/flood.js';
import type { FloodReport, FloodSummary } from '../src/tools/flood/report.js';
import { runMsggen } from '../src/tools/msggen/msggen.js';
import { runCli } from './support/cli.js';
import { startServer, type TestServer, until } from './support/server.js';

describe('msggen against Switchboard', () => {
  let s: TestServer;
  let last: FloodReport | undefined;
  let flood: Promise<FloodSummary>;
  const ac = new AbortController();
  before(async () => {
    s = await startServer();
    // One stream per id 1..50: a message to any of them is delivered exactly once.
    flood = runFlood(
      { url: `http://127.0.0.1:${s.clientPort}/test/{id}`, count: 50, rate: 0 },
      { signal: ac.signal, onProgress: (r) => (last = r) },
    );
    await until(
      async () => last?.open === 50 && (await s.sb.stats()).connections === 50,
      '50 streams',
      15_000,
    );
  });
  after(async () => {
    ac.abort();
    await flood;
    await s.stop();
  });

  test('closed loop: N messages sent, N delivered, N chunks at flood, latency from the stamps', async () => {
    const before = await s.sb.stats();
    const r = await runMsggen({
      api: s.apiUrl,
      count: 20,
      interval: 1,
      maxId: 50,
      generators: 5,
      stamp: true,
      seed: 42,
    });
    assert.equal(r.mode, 'closed');
    assert.deepEqual([r.planned, r.sent, r.failed, r.requests, r.delivered], [100, 100, 0, 100, 100]);
    assert.deepEqual(r.errors, {});
    assert.equal(r.stoppedBy, 'done');
    const after = await s.sb.stats();
    assert.equal(after.messagesIn - before.messagesIn, 100);
    assert.equal(after.messagesOut - before.messagesOut, 100);
    await until(
      () => last?.chunks === 100 && last.latency.count === 100,
      'flood got 100 stamped chunks',
      10_000,
    );
    const lat = last!.latency;
    assert.ok(lat.p50 > 0 && lat.p50 <= lat.p99 && lat.p99 <= lat.max, JSON.stringify(lat));
  });

  test('open loop in batches: one request per batch, every message delivered', async () => {
    const chunks = last!.chunks;
    const r = await runMsggen({ api: s.apiUrl, count: 100, maxId: 50, rate: 2000, batch: 10, seed: 1 });
    assert.equal(r.mode, 'open');
    assert.deepEqual([r.sent, r.failed, r.requests, r.delivered, r.targetRate], [100, 0, 10, 100, 2000]);
    await until(() => last?.chunks === chunks + 100, 'flood got the batch messages', 10_000);
  });

  test('messages to ids nobody holds are sent but not delivered', async () => {
    const r = await runMsggen({ api: s.apiUrl, count: 10, interval: 0, minId: 1000, maxId: 2000 });
    assert.deepEqual([r.sent, r.failed, r.delivered], [10, 0, 0]);
  });
});

describe('msggen errors', () => {
  test('an API key refusal is counted per message by status, never dropped', async () => {
    const s = await startServer({ apiKey: 'sekrit-key-that-is-at-least-32-bytes' });
    try {
      const refused = await runMsggen({ api: s.apiUrl, count: 4, interval: 0, maxId: 10, generators: 3 });
      assert.deepEqual([refused.sent, refused.failed, refused.requests], [0, 12, 12]);
      assert.deepEqual(refused.errors, { 'HTTP_401 ERR_UNAUTHORIZED': 12 });
      const batched = await runMsggen({ api: s.apiUrl, count: 9, interval: 0, maxId: 10, batch: 4 });
      assert.deepEqual([batched.failed, batched.requests], [9, 3]);
      const ok = await runMsggen({
        api: s.apiUrl,
        apiKey: 'sekrit-key-that-is-at-least-32-bytes',
        count: 4,
        interval: 0,
        maxId: 10,
      });
      assert.deepEqual([ok.sent, ok.failed], [4, 0]);
    } finally {
      await s.stop();
    }
  });

  test('a dead API port counts every message as ECONNREFUSED', async () => {
    const { url, close } = await recordingApi();
    await close();
    const r = await runMsggen({ api: url, count: 5, interval: 0, maxId: 10 });
    assert.deepEqual([r.sent, r.failed, r.errors], [0, 5, { ECONNREFUSED: 5 }]);
  });
});

interface Recorded {
  readonly path: string;
  readonly body: unknown;
}

/** An API that records what it is sent and answers like Switchboard (delivered = 1 per message). */
async function recordingApi(): Promise<{ url: string; seen: Recorded[]; close: () => Promise<void> }> {
  const seen: Recorded[] = [];
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(parts).toString()) as unknown;
      seen.push({ path: req.url ?? '', body });
      const n = Array.isArray(body) ? body.length : 1;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(Array.isArray(body) ? { messages: n, delivered: n } : { delivered: 1 }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

describe('msggen requests', () => {
  test('bodies follow msggen.erl, ids are seeded and in range, stamps are epoch ms', async () => {
    const api = await recordingApi();
    try {
      await runMsggen({ api: api.url, count: 5, interval: 0, minId: 3, maxId: 9, seed: 7, stamp: true });
      await runMsggen({ api: api.url, count: 5, interval: 0, minId: 3, maxId: 9, seed: 7 });
      await runMsggen({ api: api.url, count: 5, interval: 0, minId: 3, maxId: 9, seed: 8 });
      const sends = api.seen.map((r) => r.body as { id: string; msg: string });
      assert.ok(api.seen.every((r) => r.path === '/api/send'));
      const ids = (k: number): string[] => sends.slice(k * 5, k * 5 + 5).map((b) => b.id);
      assert.deepEqual(ids(0), ids(1), 'same seed, same ids');
      assert.notDeepEqual(ids(0), ids(2), 'another seed, other ids');
      assert.ok(sends.every((b) => Number(b.id) >= 3 && Number(b.id) <= 9));
      // Num counts down per generator, as msggen:start(Num - 1, …) does.
      assert.deepEqual(
        sends.slice(5, 10).map((b) => b.msg),
        [5, 4, 3, 2, 1].map((n) => `Fake message Num = ${n}`),
      );
      for (const b of sends.slice(0, 5)) {
        const m = /^Fake message Num = \d t=(\d{13}\.\d{3})$/.exec(b.msg);
        assert.ok(m, b.msg);
        assert.ok(Math.abs(Number(m[1]) - Date.now()) < 60_000, 'stamp is epoch milliseconds');
      }
    } finally {
      await api.close();
    }
  });

  test('--batch posts JSON arrays to /api/send/batch and sums their delivered counts', async () => {
    const api = await recordingApi();
    try {
      const r = await runMsggen({ api: api.url, count: 25, interval: 0, maxId: 5, batch: 10, generators: 2 });
      assert.deepEqual([r.sent, r.requests, r.delivered], [50, 6, 50]);
      assert.ok(api.seen.every((x) => x.path === '/api/send/batch' && Array.isArray(x.body)));
      assert.deepEqual(
        api.seen.map((x) => (x.body as unknown[]).length).sort(),
        [10, 10, 10, 10, 5, 5].sort(),
      );
    } finally {
      await api.close();
    }
  });

  test('an abort stops the generators; what was sent is in the summary', async () => {
    const api = await recordingApi();
    try {
      const ac = new AbortController();
      const run = runMsggen(
        { api: api.url, count: 1_000_000, interval: 5, maxId: 5, generators: 3 },
        { signal: ac.signal },
      );
      await until(() => api.seen.length >= 10, '10 requests');
      ac.abort();
      const r = await run;
      assert.equal(r.stoppedBy, 'signal');
      assert.ok(r.sent >= 10 && r.sent < r.planned);
      assert.equal(r.sent, api.seen.length, 'every request answered is counted');
      assert.equal(r.inFlight, 0);
    } finally {
      await api.close();
    }
  });
});

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await runCli(argv);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

describe('msggen CLI', () => {
  test('bad flags exit 2 with a message naming the problem', async () => {
    const cases: [string[], RegExp][] = [
      [['msggen', '--max-id', '10'], /--count is required/],
      [['msggen', '--count', '10'], /--max-id is required/],
      [['msggen', '--count', '1', '--max-id', '10', '--batch', '0'], /--batch must be at least 1/],
      [['msggen', '--count', '1', '--max-id', '10', '--api', 'ftp://x'], /--api must be an http:\/\/ URL/],
      [['msggen', '--count', '1', '--max-id', '5', '--min-id', '9'], /--min-id must be between 0 and 5/],
      [['msggen', '--count', 'many', '--max-id', '5'], /--count must be a whole number/],
    ];
    for (const [argv, pattern] of cases) {
      const r = await cli(argv);
      assert.equal(r.code, 2, `${argv.join(' ')}: ${r.err}`);
      assert.match(r.err, pattern);
    }
  });

  test('--json prints a summary line; exit 0 when every message was sent', async () => {
    const api = await recordingApi();
    try {
      const r = await cli([
        'msggen',
        '--api',
        api.url,
        '--count',
        '3',
        '--interval',
        '0',
        '--max-id',
        '4',
        '-g',
        '2',
        '--json',
      ]);
      assert.equal(r.code, 0, r.err);
      const summary = JSON.parse(r.out.trim().split('\n').at(-1)!) as {
        type: string;
        sent: number;
        delivered: number;
      };
      assert.deepEqual([summary.type, summary.sent, summary.delivered], ['summary', 6, 6]);
    } finally {
      await api.close();
    }
  });
});
