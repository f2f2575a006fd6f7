/**
 * `bench c10k`, scaled down, against real server processes: the counts agree exactly, latency
 * and memory figures are there, the files are valid; SIGINT mid-run still writes the report; a
 * double delivery is caught as a MISMATCH (exit 1); bad flags exit 2.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { addPhaseBands, defaultC10kTitle } from '../src/bench/c10k/chart.js';
import type { C10kReport } from '../src/bench/c10k/report.js';
import { countMismatch } from '../src/bench/c10k/report.js';
import { splitArgs } from '../src/bench/harness/shell.js';
import { ConfigError } from '../src/errors.js';
import { renderSvg } from '../src/tools/memlog/chart.js';
import { parseMemlog, type Sample } from '../src/tools/memlog/memlog.js';
import { CliProcess } from './support/processes.js';
import { get, RawClient, startServer } from './support/server.js';

const dirs: string[] = [];

after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'sb-c10k-test-'));
  dirs.push(d);
  return d;
}

interface Run {
  readonly process: CliProcess;
  /** Once it has exited and all its output is read. */
  readonly done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** `switchboard bench c10k <args>` as a child process. */
function start(args: readonly string[]): Run {
  const child = new CliProcess(['bench', 'c10k', ...args]);
  const done = child.closed.then(({ code }) => ({ code, stdout: child.stdout, stderr: child.stderr }));
  return { process: child, done };
}

/** Width and height from a PNG's IHDR, after checking the signature and the chunk's CRC. */
function pngSize(file: string): { width: number; height: number } {
  const b = readFileSync(file);
  assert.deepEqual([...b.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(b.readUInt32BE(8), 13, 'IHDR length');
  assert.equal(b.subarray(12, 16).toString('latin1'), 'IHDR');
  assert.equal(b.readUInt32BE(29), crc32(b.subarray(12, 29)), 'IHDR CRC');
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

function readReport(file: string): C10kReport {
  return JSON.parse(readFileSync(file, 'utf8')) as C10kReport;
}

describe('bench c10k against a real server process', () => {
  test('200 connections, 50 msg/s for 3 s: counts match, figures and files are there', async () => {
    const out = tempDir();
    const r = await start([
      '--connections',
      '200',
      '--rate',
      '50',
      '--duration',
      '3s',
      '--sample-every',
      '500ms',
      '--hold',
      '500ms',
      '--seed',
      '7',
      '--out-dir',
      out,
      '--json',
    ]).done;
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as C10kReport;
    assert.deepEqual(readReport(path.join(out, 'c10k.json')), report, 'the file holds the printed report');
    assert.deepEqual(report.problems, []);
    assert.equal(report.ok, true);
    assert.equal(report.interrupted, false);

    // Every message: accepted once, delivered once, received once.
    const m = report.messages;
    assert.equal(m.planned, 150);
    assert.equal(m.sent, 150);
    assert.equal(m.delivered, 150);
    assert.equal(m.chunks, 150);
    assert.equal(m.failed, 0);
    assert.equal(m.match, true);
    assert.ok(m.achievedRate > 0 && m.achievedRate <= 60, `rate ${m.achievedRate}`);
    assert.deepEqual(
      {
        opened: report.connections.opened,
        failed: report.connections.failed,
        closed: report.connections.closed,
      },
      { opened: 200, failed: 0, closed: 0 },
    );

    const l = report.latency;
    assert.ok(l !== null);
    assert.equal(l.count, 150, 'every message carried a stamp');
    assert.ok(l.p50 > 0 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, JSON.stringify(l));

    // Memory: the empty server, then full connections, in the report and in the raw memlog.
    const mem = report.memory;
    assert.ok(mem.emptyRssKb !== null && mem.emptyRssKb > 10_000, `empty ${mem.emptyRssKb}`);
    assert.ok(mem.fullRssKb !== null && mem.peakRssKb !== null && mem.peakRssKb >= mem.fullRssKb);
    assert.equal(mem.perConnectionFull?.connections, 200);
    const marks = Object.fromEntries(report.marks.map((k) => [k.mark, k.connections]));
    assert.deepEqual(
      { empty: marks.empty, full: marks.full, drained: marks.drained },
      { empty: 0, full: 200, drained: 200 },
    );
    const samples = parseMemlog(readFileSync(path.join(out, 'memlog.log'), 'utf8'));
    assert.equal(samples.length, mem.samples);
    assert.ok(samples.length >= 8, `${samples.length} samples`);
    assert.equal(samples[0]?.connections, 0, 'first sample: empty server');
    assert.equal(Math.max(...samples.map((s) => s.connections)), 200);

    // The server was ours, stopped with SIGTERM, exit 0; CPU read from /proc.
    assert.equal(report.server.spawned, true);
    assert.equal(report.server.exitCode, 0);
    assert.ok((report.server.cpuSeconds.total ?? 0) > 0);
    assert.match(
      readFileSync(path.join(out, 'server.log'), 'utf8'),
      /publish API: http:\/\/127\.0\.0\.1:\d+/,
    );

    assert.deepEqual(pngSize(path.join(out, 'c10k.png')), { width: 900, height: 500 });
    const svg = readFileSync(path.join(out, 'c10k.svg'), 'utf8');
    assert.ok(svg.startsWith('<svg') && svg.includes('Mem usage with 200 active connections, 50 msg/sec'));
    assert.match(svg, /<g class="phases">[\s\S]*>messages, 50\/s<\/text>/, 'the message phase is drawn in');
    assert.deepEqual(
      report.phases.map((p) => p.phase),
      ['server', 'baseline', 'ramp', 'hold', 'messages', 'drain', 'stop'],
    );
    assert.equal(samples.at(-1)?.connections, 0, 'the last sample is after flood disconnected');
    assert.match(report.commandLine, /bench c10k --connections 200 --rate 50/);
    assert.match(r.stderr, /\bramp: 200 open, 0 failed/);
  });

  test('SIGINT while sending stops cleanly: report written, marked interrupted, counts still agree', async () => {
    const out = tempDir();
    const run = start([
      '--connections',
      '50',
      '--rate',
      '100',
      '--duration',
      '60s',
      '--sample-every',
      '250ms',
      '--hold',
      '0',
      '--out-dir',
      out,
    ]);
    await run.process.waitFor(/messages .*sent [1-9]/, 120_000);
    run.process.child.kill('SIGINT');
    const r = await run.done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /INTERRUPTED during messages/);
    const report = readReport(path.join(out, 'c10k.json'));
    assert.equal(report.interrupted, true);
    assert.equal(report.interruptedIn, 'messages');
    assert.ok(report.messages.sent > 0 && report.messages.sent < 6000, `sent ${report.messages.sent}`);
    assert.equal(report.messages.delivered, report.messages.sent);
    assert.equal(report.messages.chunks, report.messages.sent);
    assert.equal(report.server.exitCode, 0);
    assert.ok(existsSync(path.join(out, 'c10k.png')));
  });

  test('a message delivered twice is a MISMATCH: exit 1 (external server via --server-url)', async () => {
    const server = await startServer();
    // A second stream on every id the bench uses: each message reaches two connections.
    const extra = [1, 2, 3].map((id) => new RawClient(server.clientPort, get(`/test/${id}`)));
    try {
      await Promise.all(extra.map((c) => c.waitFor('Your Id')));
      const out = tempDir();
      const r = await start([
        '--server-url',
        `http://127.0.0.1:${server.clientPort}`,
        '--api-url',
        server.apiUrl,
        '--server-pid',
        String(process.pid),
        '--connections',
        '3',
        '--rate',
        '10',
        '--duration',
        '1s',
        '--sample-every',
        '200ms',
        '--hold',
        '0',
        '--drain',
        '2s',
        '--out-dir',
        out,
      ]).done;
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /MISMATCH: sent 10, delivered 20 \(API\), received 10/);
      const report = readReport(path.join(out, 'c10k.json'));
      assert.equal(report.ok, false);
      assert.equal(report.messages.match, false);
      assert.equal(report.server.spawned, false);
      assert.deepEqual(report.server.pids, [process.pid]);
      assert.equal(report.files.serverLog, null);
    } finally {
      for (const c of extra) c.close();
      await server.stop();
    }
  });
});

describe('bench c10k flags', () => {
  for (const [args, message] of [
    [['--connections', '0'], /--connections must be at least 1/],
    [['--rate', 'fast'], /--rate must be a number/],
    [['--duration', '10 parsecs'], /--duration must be a duration/],
    [['--sample-every', '10ms'], /--sample-every must be at least 100/],
    [['--bogus'], /unknown option --bogus/],
    [['--server-url', 'http://127.0.0.1:8000'], /--server-url and --api-url go together/],
    [['--server-pid', '1'], /--server-pid is for a server given by --server-url/],
    [['--node-args', '"--unterminated'], /--node-args: unterminated " quote/],
    [['--rate', '0.01', '--duration', '1s'], /sends no message/],
    [['--connections', '50000'], /more than one server process can hold here/],
    // Refused by the server and by node, after the bench started them.
    [
      ['--server-args=--history lots', '--out-dir', '{tmp}'],
      /the server refused its flags \(exit 2\).*--history/s,
    ],
    [['--node-args=--no-such-node-flag', '--out-dir', '{tmp}'], /the server refused its flags \(exit 9\)/],
  ] as const) {
    test(`${args.join(' ')} exits 2 with a clear message`, async () => {
      const r = await start(args.map((a) => (a === '{tmp}' ? tempDir() : a))).done;
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    });
  }
});

describe('bench c10k pieces', () => {
  test('splitArgs splits like a shell', () => {
    assert.deepEqual(splitArgs('  --max-semi-space-size=1   --optimize-for-size ', 'x'), [
      '--max-semi-space-size=1',
      '--optimize-for-size',
    ]);
    assert.deepEqual(splitArgs(`--title 'a b' --x "c \\"d\\"" e\\ f ""`, 'x'), [
      '--title',
      'a b',
      '--x',
      'c "d"',
      'e f',
      '',
    ]);
    assert.throws(() => splitArgs("--a 'b", '--server-args'), ConfigError);
  });

  test('countMismatch: exact runs need sent == delivered == received; others delivered == received', () => {
    assert.equal(countMismatch({ sent: 5, delivered: 5, chunks: 5, exact: true }), undefined);
    assert.match(countMismatch({ sent: 5, delivered: 5, chunks: 4, exact: true }) ?? '', /^MISMATCH: sent 5/);
    assert.match(countMismatch({ sent: 5, delivered: 4, chunks: 4, exact: true }) ?? '', /MISMATCH/);
    assert.equal(countMismatch({ sent: 5, delivered: 4, chunks: 4, exact: false }), undefined);
    assert.match(
      countMismatch({ sent: 5, delivered: 4, chunks: 3, exact: false }) ?? '',
      /delivered == received/,
    );
  });

  test('phase bands land at their times on the chart, or are left out when the layout is unknown', () => {
    const samples: Sample[] = Array.from({ length: 11 }, (_, i) => ({
      date: '',
      time: 1000 + i * 10,
      rssKb: 50_000 + i * 100,
      connections: i === 0 ? 0 : 100,
      processes: 1,
    }));
    const svg = renderSvg(samples, { title: 't' });
    const spans = [
      { label: 'connect', from: 1000, to: 1050, shade: false },
      { label: 'messages', from: 1050, to: 1100, shade: true },
    ];
    const out = addPhaseBands(svg, 1000, spans);
    const frame = /<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"[^>]*fill="none"/.exec(svg);
    assert.ok(frame);
    const [left, width] = [Number(frame[1]), Number(frame[2])];
    // 100 s of samples on a 0–100 s axis: 50 s is the middle of the plot.
    const band = /<g class="phases">[\s\S]*?<rect x="([\d.]+)"[^>]*width="([\d.]+)"/.exec(out);
    assert.ok(band, out);
    assert.ok(Math.abs(Number(band[1]) - (left + width / 2)) < 0.2, `band at ${band[1]}`);
    assert.ok(Math.abs(Number(band[2]) - width / 2) < 0.2, `band width ${band[2]}`);
    assert.match(out, />messages<\/text>/);
    assert.ok(out.indexOf('class="phases"') < out.indexOf('class="series'), 'drawn under the lines');
    assert.equal(addPhaseBands('<svg></svg>', 0, spans), '<svg></svg>');
  });

  test("default title is the article's", () => {
    assert.equal(defaultC10kTitle(10_000, 1000, []), 'Mem usage with 10k active connections, 1000 msg/sec');
    assert.equal(
      defaultC10kTitle(200, 50, ['--optimize-for-size']),
      'Mem usage with 200 active connections, 50 msg/sec (node --optimize-for-size)',
    );
  });
});
