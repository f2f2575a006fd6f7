/**
 * `switchboard cluster`: gateways behind one client port and a router on the API port over the
 * machine's NATS (a unique subject prefix per run) and a shared SQLite file. Cross-gateway fan-out
 * with exact counts, a gateway SIGKILLed (its users stop counting within a bounded time, the
 * supervisor restarts it), and SIGTERM ending everything with exit code 0.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { deleteHistory } from './support/nats.js';
import { CliProcess } from './support/processes.js';
import { get, RawClient, until } from './support/server.js';

interface Ready {
  clients: string;
  api: string;
  gateways: number;
  routers: number;
  pids: Record<string, number>;
  metrics: Record<string, string>;
}

/** A port from which `n` ports in a row are free now. */
async function freeRun(n: number): Promise<number> {
  const net = await import('node:net');
  const free = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
  for (;;) {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    let ok = true;
    for (let p = base; ok && p < base + n; p++) ok = await free(p);
    if (ok) return base;
  }
}

let dir: string;
let cluster: CliProcess;
let ready: Ready;
let prefix = '';

async function stats(): Promise<{ cluster: { gateways: number; connections: number; ids: number } }> {
  return (await (await fetch(`${ready.api}/api/stats`)).json()) as {
    cluster: { gateways: number; connections: number; ids: number };
  };
}

async function send(id: string, msg: string): Promise<{ status: number; body: { delivered?: number } }> {
  const res = await fetch(`${ready.api}/api/send`, { method: 'POST', body: JSON.stringify({ id, msg }) });
  return { status: res.status, body: (await res.json()) as { delivered?: number } };
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sb-cluster-'));
  prefix = `sbtest_cluster_${process.pid}_${Date.now()}`;
  cluster = new CliProcess(
    ['cluster', '--gateways', '2', '--routers', '1', '--bus', 'nats://127.0.0.1:4222', '--bus-prefix', prefix]
      .concat(['--port', '0', '--api-port', '0', '--host', '127.0.0.1', '--data', dir, '--json'])
      .concat(['--metrics-port', String(await freeRun(3))])
      .concat(['--', '--heartbeat', '5s']),
    { cwd: dir },
  );
  ready = JSON.parse((await cluster.waitFor(/^\{.*\}$/m))[0]) as Ready;
});

after(async () => {
  if (cluster.running) await cluster.stop('SIGKILL');
  await deleteHistory(prefix);
  rmSync(dir, { recursive: true, force: true });
});

test('one client port and one API port for all processes, with distinct ports', () => {
  assert.equal(ready.gateways, 2);
  assert.equal(ready.routers, 1);
  assert.notEqual(ready.clients, ready.api);
  assert.equal(Object.keys(ready.pids).length, 3);
});

test('the store and bus URLs (which may hold passwords) reach the workers through their environment, not `ps`', async () => {
  const { readFileSync } = await import('node:fs');
  for (const [worker, pid] of Object.entries(ready.pids)) {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
    assert.ok(!argv.includes('--store') && !argv.includes('--bus'), `${worker}: ${argv.join(' ')}`);
    const env = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
    assert.ok(env.includes(`SWITCHBOARD_STORE=sqlite:${path.join(dir, 'switchboard.db')}`), worker);
    assert.ok(env.includes('SWITCHBOARD_BUS=nats://127.0.0.1:4222'), worker);
  }
});

test('every worker serves /metrics on a port of its own: the gateways their own connections', async () => {
  assert.deepEqual(Object.keys(ready.metrics).sort(), ['gateway-1', 'gateway-2', 'router-1']);
  const port = Number(new URL(ready.clients).port);
  const clients = Array.from({ length: 6 }, (_, i) => new RawClient(port, get(`/test/m${i}`)));
  for (const c of clients) await c.waitFor('welcomes you');
  const figure = async (url: string, name: string): Promise<number> => {
    const text = await (await fetch(url)).text();
    return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
  };
  await until(
    async () => (await figure(ready.metrics['router-1']!, 'switchboard_cluster_connections')) === 6,
    'the router counting 6 connections',
    10_000,
  );
  const perGateway = [
    await figure(ready.metrics['gateway-1']!, 'switchboard_connections'),
    await figure(ready.metrics['gateway-2']!, 'switchboard_connections'),
  ];
  assert.equal(perGateway[0]! + perGateway[1]!, 6, `per gateway: ${perGateway}`);
  // The router's stats (and so the dashboard) list each gateway's load as it announced it.
  await until(
    async () => {
      const st = (await (await fetch(`${ready.api}/api/stats`)).json()) as {
        cluster: { perGateway?: Record<string, { connections: number }> };
      };
      const loads = Object.values(st.cluster.perGateway ?? {}).map((l) => l.connections);
      return loads.length === 2 && loads.reduce((a, b) => a + b, 0) === 6;
    },
    'two gateways listed with 6 connections between them',
    10_000,
  );
  assert.match(await (await fetch(ready.metrics['gateway-1']!)).text(), /^process_cpu_seconds_total /m);
  assert.equal((await fetch(ready.metrics['gateway-1']!.replace('/metrics', '/api/stats'))).status, 404);
  for (const c of clients) c.close();
  await until(async () => (await stats()).cluster.connections === 0, 'the connections gone', 10_000);
});

test('fan-out across gateways is exact; a SIGKILLed gateway stops counting and is restarted; SIGTERM exits 0', async () => {
  const port = Number(new URL(ready.clients).port);
  const clients = Array.from({ length: 10 }, (_, i) => new RawClient(port, get(`/test/c${i}`)));
  for (const c of clients) await c.waitFor('welcomes you');
  await until(async () => (await stats()).cluster.connections === 10, 'router sees 10 connections', 10_000);
  assert.equal((await stats()).cluster.gateways, 2);

  const subs = clients.map((_, i) => ({ subscriber: `c${i}`, subscribee: 'star' }));
  const added = await fetch(`${ready.api}/api/subscriptions`, { method: 'POST', body: JSON.stringify(subs) });
  assert.deepEqual(await added.json(), { added: 10 });
  const fan = await send('star', 'to every fan');
  assert.deepEqual(fan.body, { delivered: 10 });
  for (const c of clients) await c.waitFor("'to every fan'");
  // The router shows its bus figures: the send went out on NATS and was tallied.
  const busStats = (
    (await (await fetch(`${ready.api}/api/stats`)).json()) as { bus: Record<string, unknown> }
  ).bus;
  assert.equal(busStats.kind, 'nats');
  assert.ok((busStats.published as number) >= 10, `published ${busStats.published}`);
  assert.ok((busStats.tallyRounds as number) >= 1, `tally rounds ${busStats.tallyRounds}`);
  assert.equal(busStats.tallyTimeouts, 0);
  assert.match(await (await fetch(`${ready.api}/metrics`)).text(), /^switchboard_tally_rounds_total [1-9]/m);

  // SIGKILL gateway 1: its clients drop, and the router stops counting them within ~3 s.
  process.kill(ready.pids['gateway-1']!, 'SIGKILL');
  await until(() => clients.some((c) => c.closed), 'some clients dropped', 5000);
  await new Promise((r) => setTimeout(r, 200));
  const survivors = clients.filter((c) => !c.closed);
  assert.ok(
    survivors.length > 0 && survivors.length < 10,
    `round-robin spread: ${survivors.length} survived`,
  );
  await until(
    async () => (await stats()).cluster.connections === survivors.length,
    'dead gateway no longer counted',
    8000,
  );
  await cluster.waitFor(/gateway 1 exited \(SIGKILL\); restarting/);
  await cluster.waitFor(/gateway 1 ready[\s\S]*gateway 1 ready/, 15_000);
  await until(async () => (await stats()).cluster.gateways === 2, 'restarted gateway announced', 10_000);
  const again = await send('star', 'after the crash');
  assert.deepEqual(again.body, { delivered: survivors.length });

  // New streams land on both gateways again and are counted.
  const fresh = Array.from({ length: 4 }, (_, i) => new RawClient(port, get(`/test/n${i}`)));
  for (const c of fresh) await c.waitFor('welcomes you');
  // A login reaches the router's directory a network round trip after its welcome (README: a
  // send that close behind it may not count it): wait until the router knows each one.
  for (let i = 0; i < 4; i++) {
    await until(
      async () =>
        ((await (await fetch(`${ready.api}/api/presence/n${i}`)).json()) as { online: boolean }).online,
      `the router to know n${i}`,
      5000,
    );
  }
  for (let i = 0; i < 4; i++) assert.deepEqual((await send(`n${i}`, 'hi')).body, { delivered: 1 });

  const exit = await cluster.stop('SIGTERM');
  assert.equal(exit.code, 0);
  for (const c of [...survivors, ...fresh]) {
    await c.waitClosed();
    assert.ok(c.text.endsWith('0\r\n\r\n'), 'stream ended with the last chunk');
  }
});
