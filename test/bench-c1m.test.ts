/**
 * `bench c1m`: the kernel checks and readers, the report's arithmetic on known samples, and the
 * whole scenario scaled down (a few thousand users, 2 gateways, the machine's NATS) as a child
 * process: exact counts, memory by role, the chart; a MemAvailable floor above the machine's
 * and a time limit stop the run by themselves with a partial report and nothing left running; kernel settings too
 * small for the run are refused with the commands that fix them.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import {
  checkKernel,
  kernelRequirements,
  parseKernelMemory,
  readSlabCaches,
  slabGrowth,
  tuneCommands,
} from '../src/bench/c1m/kernel.js';
import { type C1mSample, gatewaySpread, type Role, type RoleMemory } from '../src/bench/c1m/memory.js';
import { acceptWarning } from '../src/bench/c1m/options.js';
import { buildC1mReport, type C1mInput, type C1mReport, formatC1mSummary } from '../src/bench/c1m/report.js';
import { CliProcess, NATS_SERVER } from './support/processes.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'sb-c1m-test-'));
  dirs.push(d);
  return d;
}

const MEMINFO = 'MemTotal:       24683628 kB\nMemAvailable:   20000000 kB\nSlab:             145636 kB\n';
const SOCKSTAT = 'sockets: used 25\nTCP: inuse 11 orphan 0 tw 36 alloc 14 mem 3\nUDP: inuse 0 mem 0\n';

describe('bench c1m: kernel', () => {
  test('meminfo and sockstat are read into bytes', () => {
    assert.deepEqual(parseKernelMemory(MEMINFO, SOCKSTAT), {
      slabBytes: 145636 * 1024,
      tcpMemBytes: 3 * 4096,
      tcpSockets: 11,
      memAvailableBytes: 20000000 * 1024,
      memTotalBytes: 24683628 * 1024,
    });
  });

  test('a run past 200,000 connections on a Node without SO_REUSEPORT is warned about', () => {
    assert.equal(acceptWarning(1_000_000, true, '24.22.3'), undefined);
    assert.equal(acceptWarning(200_000, false, '20.20.2'), undefined);
    assert.match(
      acceptWarning(1_000_000, false, '20.20.2') ?? '',
      /^Node 20\.20\.2 cannot bind SO_REUSEPORT.*Node ≥ 22\.12/,
    );
  });

  test('what a run needs grows with its connections', () => {
    const small = kernelRequirements(5000).map((r) => r.key);
    assert.ok(small.includes('fs.file-max'));
    assert.ok(!small.includes('net.core.netdev_max_backlog'));
    const big = kernelRequirements(1_000_000);
    const need = (key: string): number | undefined => big.find((r) => r.key === key)?.atLeast;
    assert.equal(need('fs.file-max'), 2_065_536);
    assert.equal(need('net.core.somaxconn'), 4096);
    assert.equal(need('net.ipv4.tcp_max_syn_backlog'), 4096);
    assert.equal(need('net.core.netdev_max_backlog'), 100_000);
  });

  test('checks read this machine; the fix for a failed one is a sysctl -w line', () => {
    const [fileMax] = checkKernel([{ key: 'fs.file-max', atLeast: 1, why: 'files' }]);
    assert.ok(fileMax?.ok && fileMax.value !== null);
    const [absent] = checkKernel([{ key: 'no.such.setting', atLeast: 1, why: '' }]);
    assert.deepEqual([absent?.ok, absent?.value], [false, null]);
    const checks = [
      { key: 'net.core.somaxconn', atLeast: 4096, why: '', value: '128', ok: false },
      { key: 'fs.file-max', atLeast: 10, why: '', value: '99', ok: true },
    ];
    assert.deepEqual(tuneCommands(checks), ['sysctl -w net.core.somaxconn=4096']);
  });

  test('slab caches are read as bytes, and the largest growth comes first', () => {
    const head = 'slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> ...\n';
    const before = readSlabCaches(
      `${head}TCP 10 13 2368 13 8 : tunables 0 0 0 : slabdata 1 1 0\nfilp 5 10 256 16 1 : x\n`,
    );
    const afterText = `${head}TCP 1000 1300 2368 13 8 : t\nfilp 50 100 256 16 1 : x\ndentry 1 2 192 21 1 : x\n`;
    const grown = slabGrowth(before, readSlabCaches(afterText));
    assert.deepEqual(grown, [
      { cache: 'TCP', bytes: (1300 - 13) * 2368 },
      { cache: 'filp', bytes: 90 * 256 },
      { cache: 'dentry', bytes: 384 },
    ]);
  });
});

const MB = 1024 * 1024;
function role(pssMb: number, processes = 1, cpuSeconds = 0): RoleMemory {
  return { processes, pssBytes: pssMb * MB, privateBytes: pssMb * MB, rssBytes: 2 * pssMb * MB, cpuSeconds };
}
function sample(
  elapsedMs: number,
  roles: Record<Role, RoleMemory>,
  slabMb: number,
  connections: number,
): C1mSample {
  return {
    elapsedMs,
    phase: 'x',
    roles,
    kernel: {
      slabBytes: slabMb * MB,
      tcpMemBytes: 0,
      tcpSockets: 2 * connections,
      memAvailableBytes: 10_000 * MB,
      memTotalBytes: 24_000 * MB,
    },
    clientConnections: connections,
    serverConnections: connections,
    gatewaySpread: { gateways: 2, min: connections / 2, max: connections / 2 },
    received: 0,
    sent: 0,
    machineBusySeconds: elapsedMs / 1000,
    machineCpu: {
      user: elapsedMs / 2000,
      system: elapsedMs / 4000,
      irq: 0,
      steal: elapsedMs / 4000,
      idle: 0,
    },
    otherCpu: {
      '109@4': { name: '[kdamond.0]', seconds: elapsedMs / 5000 },
      '700@900': { name: 'this process', seconds: elapsedMs / 100_000 },
      '800@950': { name: 'sshd', seconds: 0 },
    },
  };
}

describe('bench c1m: report', () => {
  const empty = sample(
    0,
    { gateways: role(100, 4, 1), routers: role(40), primary: role(30), nats: role(20), flood: role(0, 0) },
    200,
    0,
  );
  /** The cluster full: 100,000 connections, `elapsedMs` into the run. */
  const fullAt = (elapsedMs: number): C1mSample =>
    sample(
      elapsedMs,
      {
        gateways: role(300, 4, 11),
        routers: role(50),
        primary: role(30),
        nats: role(120),
        flood: role(400, 4),
      },
      1200,
      100_000,
    );
  const full = fullAt(10_000);
  const base: C1mInput = {
    settings: { connections: 100_000, users: 100_000, m: 15, gateways: 4, routers: 1 },
    commandLine: 'switchboard bench c1m',
    startedAt: '2026-12-02T00:00:00.000Z',
    elapsedMs: 20_000,
    problems: [],
    abortedBy: null,
    marks: [
      { mark: 'empty', sample: empty },
      { mark: 'full', sample: full },
    ],
    samples: [empty, full],
    counts: { sent: 100, delivered: 3100, received: 3100, failed: 0 },
    latency: null,
    apiLatency: null,
    ramp: null,
    friends: null,
    kernelSettings: [],
    slabCaches: null,
    memAvailableStartBytes: 12_000 * MB,
    memAvailableMinBytes: 10_000 * MB,
    loadAverage: [1, 1, 1],
    files: { json: '/tmp/r.json', png: null },
  };

  test('per-connection figures and the server side per million users come from the growth since empty', () => {
    const r = buildC1mReport(base);
    assert.equal(r.ok, true);
    assert.equal(r.countsMatch, true);
    assert.equal(r.at, 'full');
    assert.equal(r.connections, 100_000);
    const per = (mb: number): number => Math.round((mb * MB) / 100_000);
    assert.equal(r.perConnection?.gatewayPssBytes, per(200));
    assert.equal(r.perConnection?.natsPssBytes, per(100));
    assert.equal(r.perConnection?.kernelBothEndsBytes, per(1000));
    assert.equal(r.perConnection?.floodPssBytes, per(400));
    // Server side: gateways +200, routers +10, NATS +100, and half the kernel's +1000.
    assert.equal(r.perConnection?.serverSideBytes, per(810));
    const serverEmpty = (100 + 40 + 30 + 20) * MB;
    assert.equal(r.serverSide?.measuredBytes, (300 + 50 + 30 + 120 + 500) * MB);
    assert.equal(
      r.serverSide?.perMillionUsersBytes,
      Math.round(serverEmpty + ((810 * MB) / 100_000) * 1_000_000),
    );
    assert.equal(r.serverSide?.extrapolated, true);
    assert.equal(r.memAvailableDropBytes, 2000 * MB);
    assert.deepEqual(r.cpuCores.ramp, null);
    assert.match(formatC1mSummary(r), /SERVER RAM .* per million users \(extrapolated/);
    assert.deepEqual(r.gatewaySpread, { gateways: 2, min: 50_000, max: 50_000 });
    assert.match(
      formatC1mSummary(r),
      /100,000 connections counted by the router, 50,000 to 50,000 on each of 2/,
    );
  });

  test('the cores of a phase: by role, the machine by kind, and the other processes that took them', () => {
    const done = fullAt(20_000);
    // Born in the phase (counted from 0), and a pid reused by a new process (likewise).
    const messages: C1mSample = {
      ...done,
      otherCpu: {
        ...done.otherCpu,
        '5000@2000': { name: 'newcomer', seconds: 2 },
        '800@1999': { name: 'newcomer', seconds: 1 },
      },
    };
    const r = buildC1mReport({
      ...base,
      marks: [...base.marks, { mark: 'messages', sample: messages }],
      samples: [empty, full, messages],
    });
    const c = r.cpuCores.messages;
    assert.ok(c !== null);
    assert.equal(c.machine, 1);
    assert.deepEqual(c.machineSplit, { user: 0.5, system: 0.25, irq: 0, steal: 0.25 });
    // kdamond 2 s in 10 s; a process born in the phase from 0; this one 0.1 s; sshd nothing.
    assert.deepEqual(c.others, [
      { name: 'newcomer', cores: 0.3 },
      { name: '[kdamond.0]', cores: 0.2 },
      { name: 'this process', cores: 0.01 },
    ]);
    assert.match(formatC1mSummary(r), /whole machine 1 \(user 0\.5, system 0\.25, irq 0, steal 0\.25\)/);
    assert.match(formatC1mSummary(r), /besides: newcomer 0\.3, \[kdamond\.0\] 0\.2, this process 0\.01/);
  });

  test("the gateways' spread is read from /api/stats' perGateway", () => {
    assert.equal(gatewaySpread(undefined), null);
    assert.equal(gatewaySpread({}), null);
    assert.deepEqual(
      gatewaySpread({ a: { connections: 18_563 }, b: { connections: 19_236 }, c: { connections: 19_000 } }),
      { gateways: 3, min: 18_563, max: 19_236 },
    );
  });

  test("the slab's /proc inodes are reported but left out of the sockets' kernel memory", () => {
    const r = buildC1mReport({ ...base, slabCaches: [{ cache: 'proc_inode_cache', bytes: 200 * MB }] });
    assert.equal(r.kernel?.slabGrowthBytes, 1000 * MB);
    assert.equal(r.kernel?.procInodeGrowthBytes, 200 * MB);
    assert.equal(r.kernel?.socketSlabGrowthBytes, 800 * MB);
    assert.equal(r.perConnection?.kernelBothEndsBytes, Math.round((800 * MB) / 100_000));
    assert.equal(r.serverSide?.measuredBytes, (300 + 50 + 30 + 120 + 400) * MB);
  });

  test('counts that disagree are a MISMATCH problem and the run is not ok', () => {
    const r = buildC1mReport({ ...base, counts: { sent: 100, delivered: 3100, received: 3099, failed: 0 } });
    assert.equal(r.ok, false);
    assert.match(r.problems[0] ?? '', /^MISMATCH: sent 100 .* delivered 3100 .* received 3099/);
    assert.match(formatC1mSummary(r), /COUNTS DIFFER/);
  });

  test('a run stopped before its messages says so, without claiming a count mismatch', () => {
    const r = buildC1mReport({ ...base, counts: null, abortedBy: 'MemAvailable fell (in ramp)' });
    assert.equal(r.ok, false);
    assert.ok(!r.problems.some((p) => p.startsWith('MISMATCH')));
    const text = formatC1mSummary(r);
    assert.match(text, /STOPPED EARLY: MemAvailable fell/);
    assert.doesNotMatch(text, /COUNTS DIFFER/);
  });
});

/** `switchboard bench c1m <args>` to its end. */
async function c1m(
  args: readonly string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = new CliProcess(['bench', 'c1m', ...args], { keepChars: 1 << 20 });
  const exit = await p.closed;
  return { code: exit.code, stdout: p.stdout, stderr: p.stderr };
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The cluster's `workers` worker pids, from its ready line in the run's cluster.log, are all gone. */
function assertWorkersStopped(out: string, workers: number): void {
  const log = readFileSync(path.join(out, 'cluster.log'), 'utf8');
  const pids = [...log.matchAll(/"(?:gateway|router)-\d+":(\d+)/g)].map((m) => Number(m[1]));
  assert.equal(pids.length, workers);
  for (const pid of pids) assert.ok(!alive(pid), `worker ${pid} was stopped`);
}

describe('bench c1m: scaled down, for real', () => {
  test('3,000 users with friends, 2 gateways: every delivery counted exactly, memory by role, a chart', async () => {
    const out = tempDir();
    const run = await c1m(
      [
        '--users',
        '3000',
        '--gateways',
        '2',
        '--msg-rate',
        '100',
        '--duration',
        '3s',
        '--hold',
        '500ms',
      ].concat(['--sample-every', '500ms', '--ramp-rate', '3000', '--out-dir', out]),
    );
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr.slice(-3000)}`);
    const r = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as C1mReport;
    assert.equal(r.connections, 3000);
    assert.equal(r.serverConnections, 3000);
    // The flood's ids are spread over the 2 gateways; each holds some, and together all.
    const g = r.gatewaySpread;
    assert.ok(
      g !== null && g.gateways === 2 && g.min > 0 && g.min <= g.max && g.min + g.max === 3000,
      JSON.stringify(g),
    );
    assert.ok(r.countsMatch);
    assert.ok(r.sent >= 290 && r.sent <= 300, `sent ${r.sent}`);
    // Every user of a Barabási–Albert graph with m = 15 has at least 15 friends, all online.
    assert.ok(r.delivered >= 16 * r.sent, `delivered ${r.delivered} for ${r.sent}`);
    assert.equal(r.received, r.delivered);
    assert.ok(r.latencyMs !== null && r.latencyMs.count === r.received);
    const roles = r.roles;
    assert.ok(roles !== null);
    assert.deepEqual(
      [roles.gateways.processes, roles.routers.processes, roles.primary.processes, roles.flood.processes],
      [2, 1, 1, 1],
    );
    for (const name of ['gateways', 'routers', 'primary', 'flood'] as const) {
      const m = roles[name];
      assert.ok(m.pssBytes > 0 && m.privateBytes > 0 && m.privateBytes <= m.rssBytes, name);
      assert.ok(m.pssBytes <= m.rssBytes, `${name}: PSS ≤ RSS`);
    }
    assert.ok(r.kernel !== null && r.kernel.slabBytes > 0 && r.kernel.tcpSockets >= 6000);
    assert.ok(r.serverSide !== null && r.serverSide.measuredBytes > 0);
    assert.ok(r.cpuCores.messages !== null && r.cpuCores.messages.gateways > 0);
    assert.ok(existsSync(path.join(out, 'c1m.png')) && existsSync(path.join(out, 'c1m.svg')));
    assert.match(run.stdout, /counts exact/);
    assert.match(run.stdout, /SERVER RAM/);
    assertWorkersStopped(out, 3);
  });

  test('--nats-server: the run starts a NATS of its own (JetStream in a temp folder) and stops it', async () => {
    const out = tempDir();
    const run = await c1m(
      [
        '--users',
        '1500',
        '--gateways',
        '1',
        '--msg-rate',
        '50',
        '--duration',
        '1s',
        '--hold',
        '200ms',
        // One node flag alone: the cluster once took it for a flag of its own (exit 2).
        '--node-args=--max-semi-space-size=2',
      ].concat(['--sample-every', '500ms', '--nats-server', NATS_SERVER, '--out-dir', out]),
    );
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr.slice(-3000)}`);
    const r = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as C1mReport;
    const bus = String(r.settings.busUrl);
    assert.match(bus, /^nats:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(bus, 'nats://127.0.0.1:4222');
    assert.equal(r.roles?.nats.processes, 1);
    assert.ok(r.countsMatch);
    assert.match(run.stderr, /nats: starting .*nats-server on 127\.0\.0\.1:\d+/);
  });

  test('a MemAvailable floor above the machine stops the run at its first sample, with a report', async () => {
    const out = tempDir();
    const run = await c1m(
      ['--users', '2000', '--gateways', '1', '--min-available', '100000G', '--sample-every', '300ms'].concat([
        '--out-dir',
        out,
      ]),
    );
    assert.equal(run.code, 1, run.stderr.slice(-2000));
    const r = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as C1mReport;
    assert.match(r.abortedBy ?? '', /MemAvailable fell to .* under the floor/);
    assert.match(run.stdout, /STOPPED EARLY/);
  });

  test('the time limit stops a run mid-hold: partial report, the cluster and the flood stopped', async () => {
    const out = tempDir();
    const run = await c1m(
      [
        '--users',
        '2000',
        '--gateways',
        '2',
        '--hold',
        '10m',
        '--time-limit',
        '15s',
        '--sample-every',
        '500ms',
      ].concat(['--out-dir', out]),
    );
    assert.equal(run.code, 1, run.stderr.slice(-2000));
    const r = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as C1mReport;
    assert.match(r.abortedBy ?? '', /time limit of 15000 ms reached \(in hold\)/);
    assert.equal(r.lastConnections, 2000);
    assert.deepEqual([r.sent, r.countsMatch], [0, false]);
    assert.match(run.stdout, /messages {5}none: the run stopped first/);
    assertWorkersStopped(out, 3);
  });

  test('kernel settings too small for the run are refused (exit 2) with the commands that fix them', async (t) => {
    if (checkKernel(kernelRequirements(60_000)).every((c) => c.ok)) {
      t.skip('this machine is already tuned for 60,000 connections');
      return;
    }
    const run = await c1m(['--users', '60000', '--gateways', '4', '--out-dir', tempDir()]);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /too small for 60000 connections/);
    assert.match(run.stderr, /--tune/);
    assert.match(run.stderr, /sysctl -w net\.core\.netdev_max_backlog=100000/);
  });
});
