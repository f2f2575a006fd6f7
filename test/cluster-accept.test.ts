/**
 * How `switchboard cluster` hands connections to its gateways (`--accept`): with `kernel` (the
 * default where Node has SO_REUSEPORT) every gateway binds the client port itself and the kernel
 * spreads connections over their accept queues; with `primary` one listening socket in the
 * supervisor hands each connection over IPC. Which one this Node runs depends on its version, so
 * both branches are here and CI runs the suite on Node 20 (primary only) and Node 24 (both).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { reusePortSupported } from '../src/limits.js';
import { deleteHistory } from './support/nats.js';
import { CliProcess } from './support/processes.js';
import { get, RawClient, until } from './support/server.js';

interface Ready {
  clients: string;
  api: string;
  accept: string;
  pids: Record<string, number>;
}

/** Listening sockets on `port` (IPv4), from /proc/net/tcp. */
function listeners(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .filter((l) => {
      const f = l.trim().split(/\s+/);
      return f[1]?.endsWith(`:${hex}`) === true && f[3] === '0A';
    }).length;
}

async function withCluster(
  extra: readonly string[],
  body: (ready: Ready, cluster: CliProcess) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sb-accept-'));
  const prefix = `sbtest_accept_${process.pid}_${Date.now()}`;
  const cluster = new CliProcess(
    ['cluster', '--gateways', '3', '--routers', '1', '--bus', 'nats://127.0.0.1:4222', '--bus-prefix', prefix]
      .concat(['--port', '0', '--api-port', '0', '--host', '127.0.0.1', '--data', dir, '--json', ...extra])
      .concat(['--', '--history', '0']),
    { cwd: dir },
  );
  try {
    const ready = JSON.parse((await cluster.waitFor(/^\{.*\}$/m, 60_000))[0]) as Ready;
    await body(ready, cluster);
    const exit = await cluster.stop('SIGTERM');
    assert.equal(exit.code, 0, cluster.tail());
  } finally {
    if (cluster.running) await cluster.stop('SIGKILL');
    await deleteHistory(prefix);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Opens `n` streams, waits until the router lists every gateway's load; returns the loads. */
async function spread(ready: Ready, n: number): Promise<number[]> {
  const port = Number(new URL(ready.clients).port);
  const clients = Array.from({ length: n }, (_, i) => new RawClient(port, get(`/test/a${i}`)));
  for (const c of clients) await c.waitFor('welcomes you');
  let loads: number[] = [];
  await until(
    async () => {
      const st = (await (await fetch(`${ready.api}/api/stats`)).json()) as {
        cluster: { perGateway?: Record<string, { connections: number }> };
      };
      loads = Object.values(st.cluster.perGateway ?? {}).map((l) => l.connections);
      return loads.length === 3 && loads.reduce((a, b) => a + b, 0) === n;
    },
    `3 gateways holding ${n} connections between them`,
    15_000,
  );
  for (const c of clients) c.close();
  return loads;
}

test('reusePortSupported: Linux with Node 22.12+, 23.1+, 24 and later', () => {
  assert.equal(reusePortSupported('20.20.2', 'linux'), false);
  assert.equal(reusePortSupported('22.11.0', 'linux'), false);
  assert.equal(reusePortSupported('22.12.0', 'linux'), true);
  assert.equal(reusePortSupported('23.0.0', 'linux'), false);
  assert.equal(reusePortSupported('23.1.0', 'linux'), true);
  assert.equal(reusePortSupported('24.22.3', 'linux'), true);
  assert.equal(reusePortSupported('24.22.3', 'darwin'), false);
});

test('--accept primary: one listening socket, in the supervisor; connections still reach every gateway', async () => {
  await withCluster(['--accept', 'primary'], async (ready, cluster) => {
    assert.equal(ready.accept, 'primary');
    assert.equal(listeners(Number(new URL(ready.clients).port)), 1);
    const loads = await spread(ready, 30);
    assert.ok(
      loads.every((l) => l > 0),
      `round-robin gives each gateway some: ${loads}`,
    );
    assert.ok(cluster.running);
  });
});

test('default accept where Node has SO_REUSEPORT: each gateway its own listening socket, the kernel spreads connections', {
  skip: !reusePortSupported() && 'this Node has no SO_REUSEPORT (CI runs this on Node 24)',
}, async () => {
  await withCluster([], async (ready) => {
    assert.equal(ready.accept, 'kernel');
    const port = Number(new URL(ready.clients).port);
    assert.equal(listeners(port), 3, 'three gateways, three listening sockets');
    // 60 connections from distinct source ports: the chance that the kernel's hash leaves a
    // gateway without one is 3 × (2/3)^60, about 1 in 10^10.
    const loads = await spread(ready, 60);
    assert.ok(
      loads.every((l) => l > 0),
      `every gateway got connections: ${loads}`,
    );
  });
});

test('--accept kernel on a Node without SO_REUSEPORT: exit 2, naming the version and --accept primary', {
  skip: reusePortSupported() && 'this Node has SO_REUSEPORT',
}, async () => {
  const p = new CliProcess([
    'cluster',
    '--bus',
    'nats://127.0.0.1:4222',
    '--accept',
    'kernel',
    '--port',
    '0',
  ]);
  const exit = await p.closed;
  assert.equal(exit.code, 2, p.tail());
  assert.match(p.stderr, /--accept kernel needs SO_REUSEPORT.*Node ≥ 22\.12.*use --accept primary/);
});
