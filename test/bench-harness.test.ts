/** The shared bench harness (src/bench/harness): the /proc readers, the CLI child and the server child. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CliProcess } from '../src/bench/harness/cli-process.js';
import { ServerProcess } from '../src/bench/harness/server-process.js';
import { ConfigError } from '../src/errors.js';
import {
  clockTicks,
  coresByName,
  cpuByProcess,
  machineCpu,
  machineCpuSplit,
  readCpuSeconds,
  readCpuTimes,
  readRssKb,
  sumCpuSeconds,
} from '../src/tools/proc.js';

/** A pid no process has (above the kernel's pid_max). */
const GONE = 2 ** 30;
/** bench/idle-memory.ts's reference server. */
const NAIVE_SERVER = fileURLToPath(new URL('../bench/naive-http-server.js', import.meta.url));

describe('/proc readers', () => {
  test('clock ticks come from getconf CLK_TCK', () => {
    assert.equal(clockTicks(), Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })));
  });

  test("this process's CPU time agrees with process.cpuUsage", () => {
    // Burn a little CPU so the tick-granular figure is above zero.
    const end = performance.now() + 50;
    while (performance.now() < end);
    const own = process.cpuUsage();
    const t = readCpuTimes(process.pid);
    assert.ok(t !== undefined);
    // /proc counts in whole ticks (10 ms at 100 Hz), cpuUsage in microseconds.
    const slack = 2 / clockTicks();
    assert.ok(Math.abs(t.user - own.user / 1e6) <= slack, `user ${t.user} vs ${own.user / 1e6}`);
    assert.ok(Math.abs(t.sys - own.system / 1e6) <= slack, `sys ${t.sys} vs ${own.system / 1e6}`);
    assert.ok(readCpuSeconds(process.pid)! >= t.user + t.sys);
    assert.ok(sumCpuSeconds([process.pid, GONE])! >= t.user + t.sys);
  });

  test('a process that is gone reads as undefined', () => {
    assert.equal(readCpuTimes(GONE), undefined);
    assert.equal(readCpuSeconds(GONE), undefined);
    assert.equal(sumCpuSeconds([GONE]), undefined);
    assert.equal(readRssKb(GONE), undefined);
  });

  test("this process's RSS is in /proc status", () => {
    const kb = readRssKb(process.pid);
    assert.ok(kb !== undefined && kb > 10_000, `a node process uses > 10 MB, got ${kb} KB`);
  });

  test('the machine has been busy for less time than it has been up', () => {
    const m = machineCpu();
    assert.ok(m.busy > 0 && m.busy < m.total, JSON.stringify(m));
  });

  test("the machine's CPU by kind adds up to its busy and total time", () => {
    const m = machineCpu();
    const s = machineCpuSplit();
    const busy = s.user + s.system + s.irq + s.steal;
    // Read a moment apart: within a second of each other (two cores, ticks of 10 ms).
    assert.ok(Math.abs(busy - m.busy) < 1, `${busy} vs ${m.busy}`);
    assert.ok(Math.abs(busy + s.idle - m.total) < 2, `${busy + s.idle} vs ${m.total}`);
    assert.ok(s.user > 0 && s.system > 0 && s.steal >= 0 && s.irq >= 0);
  });

  test("the other processes' CPU: keyed by pid and start time, kernel threads in brackets, this one named, an excluded pid left out", () => {
    const until = Date.now() + 50;
    while (Date.now() < until); // some CPU of our own
    const all = cpuByProcess(new Set());
    const own = Object.entries(all).find(([, p]) => p.name === 'this process');
    assert.ok(
      own !== undefined && own[1].seconds > 0 && own[0].startsWith(`${process.pid}@`),
      JSON.stringify(own),
    );
    if (existsSync('/proc/2/stat')) {
      // Where the kernel's threads are visible (not in a pid namespace of its own).
      assert.ok(
        Object.values(all).some((p) => /^\[[^/]+\]$/.test(p.name)),
        'kernel threads, without their /N',
      );
    }
    assert.ok(!Object.values(cpuByProcess(new Set([process.pid]))).some((p) => p.name === 'this process'));
  });

  test('cores by name between two readings: per process, summed by name, most first', () => {
    const from = {
      '1@1': { name: 'a', seconds: 10 },
      '2@1': { name: 'b', seconds: 5 },
      '3@1': { name: 'gone', seconds: 9 },
    };
    // 1 used 2 s, 2 used 1 s, 4 was born and used 1 s (also named b), 3 ended; 2 s apart.
    const to = {
      '1@1': { name: 'a', seconds: 12 },
      '2@1': { name: 'b', seconds: 6 },
      '4@7': { name: 'b', seconds: 1 },
    };
    assert.deepEqual(coresByName(from, to, 2), [
      { name: 'a', cores: 1 },
      { name: 'b', cores: 1 },
    ]);
    assert.deepEqual(coresByName(from, to, 2, 1.5), []);
  });
});

describe('CliProcess', () => {
  test('collects output from the start and finds a line in it', async () => {
    const child = new CliProcess(['--version']);
    const m = await child.waitFor(/^(\d+)\.\d+\.\d+$/m);
    assert.ok(Number(m[1]) >= 0);
    const exit = await child.closed;
    assert.deepEqual(exit, { code: 0, signal: null, killed: false });
    assert.equal(child.running, false);
    assert.match(child.tail(), /^\d+\.\d+\.\d+$/);
  });

  test('a process that ignores SIGTERM is killed after the stop timeout, and says so', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sb-harness-'));
    try {
      const script = path.join(dir, 'stubborn.mjs');
      writeFileSync(
        script,
        "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000); console.log('ready');",
      );
      const child = new CliProcess([], { script });
      await child.waitFor(/ready/);
      const exit = await child.stop('SIGTERM', 300);
      assert.deepEqual(exit, { code: null, signal: 'SIGKILL', killed: true });
      await assert.rejects(child.waitFor(/never/), /exited before/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ServerProcess', () => {
  test('starts serve on ports 0, reads both ports from its log, and stops it with SIGTERM (exit 0)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sb-harness-'));
    try {
      const server = await ServerProcess.start({ dataDir: dir, logFile: path.join(dir, 'server.log') });
      assert.ok(server.clientPort > 0 && server.apiPort > 0 && server.clientPort !== server.apiPort);
      assert.equal(server.clientUrl, `http://127.0.0.1:${server.clientPort}`);
      const stats = (await (await fetch(`${server.apiUrl}/api/stats`)).json()) as { connections: number };
      assert.equal(stats.connections, 0);
      assert.match(server.command, /main\.js serve --port 0 --api-port 0 --host 127\.0\.0\.1 --data /);
      assert.deepEqual(await server.stop(), { code: 0, signal: null, killed: false });
      assert.match(readFileSync(path.join(dir, 'server.log'), 'utf8'), /publish API: http:\/\/127\.0\.0\.1:/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a flag serve refuses is a ConfigError with its message', async () => {
    await assert.rejects(
      ServerProcess.start({ serverArgs: ['--log-level', 'loud'] }),
      (err: unknown) =>
        err instanceof ConfigError && /refused its flags \(exit 2\).*--log-level/s.test(err.message),
    );
  });

  test('runs a reference server script that logs its port the way serve does', async () => {
    const server = await ServerProcess.start({ script: NAIVE_SERVER });
    const res = await fetch(`${server.clientUrl}/test/7`);
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.match(Buffer.from(first.value!).toString(), /Your Id: 7/);
    await reader.cancel();
    assert.equal((await server.stop()).signal, 'SIGTERM', 'the naive server has no SIGTERM handler');
  });
});
