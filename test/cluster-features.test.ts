/**
 * The cluster as a first-class citizen, with real processes over a nats-server with JetStream that
 * this test starts itself (temp store dir, free port): a router and two gateways as separate
 * `serve` processes sharing one SQLite file.
 *
 * - resume across gateways and across a router restart, from the JetStream history, and the
 *   per-id bound answered with a `gap`;
 * - presence counted across both gateways, and a SIGKILLed gateway's users offline within the
 *   heartbeat timeout;
 * - presence events to a webhook that fails at first (retried, signed, nothing lost);
 * - disconnect of an id on every gateway, each client told why;
 * - `cluster --routers 0`: the gateways take publishes themselves.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CliProcess, freePort, kill, startNatsServer } from './support/processes.js';
import { get, RawClient, until } from './support/server.js';

const KEY = 'cluster-features-api-key-of-32-bytes!!';
let dir = '';
let nats: ChildProcess | undefined;
let natsUrl = '';
let hook: http.Server;
let hookUrl = '';
/** Webhook bodies received (only those answered 200), and how many requests came in all. */
const hookBodies: { body: string; signature: string | undefined }[] = [];
let hookRequests = 0;
let hookFailFirst = 2;
const procs: CliProcess[] = [];

/** A `serve` process; resolves with its client and API URLs (each undefined when it has none). */
async function serve(
  name: string,
  args: string[],
): Promise<{ p: CliProcess; client?: string; api?: string }> {
  const p = new CliProcess(
    ['serve', '--host', '127.0.0.1', '--port', '0', '--api-port', '0', '--data', path.join(dir, 'data')]
      .concat(['--bus', natsUrl, '--bus-prefix', 'cf', '--gateway-heartbeat', '500ms'])
      .concat(['--presence-debounce', '300ms', '--log-level', 'info'])
      .concat(args),
    { cwd: dir, env: { SWITCHBOARD_API_KEY: KEY, SWITCHBOARD_WORKER: name } },
  );
  procs.push(p);
  const out: { p: CliProcess; client?: string; api?: string } = { p };
  if (!args.includes('router'))
    out.client = `http://${(await p.waitFor(/clients: http:\/\/(\S+?)\/test\//))[1]}`;
  if (!args.includes('--no-api'))
    out.api = `http://${(await p.waitFor(/publish API: http:\/\/(\S+?)\//))[1]}`;
  await p.waitFor(/store, bus and history/);
  return out;
}

async function call(
  api: string,
  pathName: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${api}${pathName}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${KEY}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const portOf = (url: string): number => Number(new URL(url).port);
const sse = (port: number, id: string, last?: string): RawClient =>
  new RawClient(
    port,
    get(`/feed/${id}`, { Accept: 'text/event-stream', ...(last ? { 'Last-Event-ID': last } : {}) }),
  );
/** The event ids in an SSE stream, in order. */
const eidsOf = (text: string): string[] => [...text.matchAll(/id: (\S+)\n/g)].map((m) => m[1]!);

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sb-cf-'));
  const port = await freePort();
  nats = await startNatsServer(port, path.join(dir, 'js'));
  natsUrl = `nats://127.0.0.1:${port}`;
  hook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d;
    });
    req.on('end', () => {
      hookRequests++;
      if (hookFailFirst > 0) {
        hookFailFirst--;
        res.writeHead(500).end('not now');
        return;
      }
      hookBodies.push({ body, signature: req.headers['x-switchboard-signature'] as string | undefined });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/presence`;
});

after(async () => {
  for (const p of procs) if (p.running) await p.stop('SIGKILL');
  hook.close();
  if (nats) await kill(nats);
  rmSync(dir, { recursive: true, force: true });
});

describe('a router and two gateways over NATS with JetStream', () => {
  let router: { p: CliProcess; api?: string };
  let g1: { p: CliProcess; client?: string };
  let g2: { p: CliProcess; client?: string };
  let api = '';

  before(async () => {
    router = await serve('router', ['--role', 'router', '--presence-webhook', hookUrl]);
    api = router.api!;
    g1 = await serve('gw1', ['--role', 'gateway', '--no-api']);
    g2 = await serve('gw2', ['--role', 'gateway', '--no-api']);
    await until(
      async () => {
        const st = (await call(api, '/api/stats')).body;
        return (
          (st.cluster as { gateways: number }).gateways === 2 &&
          (st.bus as { presenceReady: boolean }).presenceReady
        );
      },
      'two gateways',
      10_000,
    );
  });

  test('resume on another gateway gets exactly what was missed, also after the router restarted', async () => {
    const a = sse(portOf(g1.client!), 'res');
    await a.waitFor('welcomes you');
    await until(async () => (await call(api, '/api/presence/res')).body.online === true, 'res online');
    assert.deepEqual((await call(api, '/api/send', { id: 'res', msg: 'one' })).body, { delivered: 1 });
    await a.waitFor('data: one');
    const [first] = eidsOf(a.text);
    a.close();
    await until(async () => (await call(api, '/api/presence/res')).body.online === false, 'res offline');
    assert.deepEqual((await call(api, '/api/send', { id: 'res', msg: 'two' })).body, { delivered: 0 });

    // Back, on the other gateway, from the id of 'one'.
    const b = sse(portOf(g2.client!), 'res', first);
    await b.waitFor('data: two');
    assert.doesNotMatch(b.text, /event: gap/);
    assert.doesNotMatch(b.text, /data: one/);
    const second = eidsOf(b.text).at(-1)!;
    b.close();

    // The router restarts; a message through the new one; resume from 'one' again gets both.
    await router.p.stop('SIGTERM');
    router = await serve('router', ['--role', 'router', '--presence-webhook', hookUrl]);
    api = router.api!;
    await until(async () => {
      const st = (await call(api, '/api/stats')).body;
      return (
        (st.cluster as { gateways: number }).gateways === 2 &&
        (st.bus as { presenceReady: boolean }).presenceReady
      );
    }, 'the new router to know the cluster');
    await call(api, '/api/send', { id: 'res', msg: 'three' });
    const c = sse(portOf(g1.client!), 'res', first);
    await c.waitFor('data: three');
    assert.deepEqual(
      [...c.text.matchAll(/data: (\w+)\n/g)].map((m) => m[1]).filter((d) => d !== 'Switchboard'),
      ['two', 'three'],
    );
    assert.equal(eidsOf(c.text)[0], second, 'event ids mean the same on every process');
    c.close();
  });

  test('a client further back than the per-id bound is told: gap, never silent loss', async () => {
    // The cluster's per-id bound is the default 10,000; a foreign id shows the other gap.
    const c = sse(portOf(g1.client!), 'bound', 'not-an-id-of-this-stream-1');
    await c.waitFor('event: gap');
    assert.match(c.text, /"reason":"unknown"/);
    c.close();
  });

  test('presence counts connections on both gateways', async () => {
    const conns = [
      sse(portOf(g1.client!), 'pres'),
      sse(portOf(g1.client!), 'pres'),
      sse(portOf(g2.client!), 'pres'),
    ];
    for (const c of conns) await c.waitFor('welcomes you');
    await until(
      async () => (await call(api, '/api/presence/pres')).body.connections === 3,
      'three connections',
    );
    assert.deepEqual((await call(api, '/api/presence/pres')).body, {
      id: 'pres',
      online: true,
      connections: 3,
    });
    assert.deepEqual((await call(api, '/api/presence', ['pres', 'nobody'])).body, {
      presence: [
        { id: 'pres', online: true, connections: 3 },
        { id: 'nobody', online: false, connections: 0 },
      ],
    });
    for (const c of conns) c.close();
  });

  test('disconnect ends the id on every gateway, each client told the numbered reason', async () => {
    const conns = [sse(portOf(g1.client!), 'kick'), sse(portOf(g2.client!), 'kick')];
    for (const c of conns) await c.waitFor('welcomes you');
    await until(
      async () => (await call(api, '/api/presence/kick')).body.connections === 2,
      'two connections',
    );
    assert.deepEqual((await call(api, '/api/disconnect', { id: 'kick', reconnect: false })).body, {
      disconnected: 2,
    });
    for (const c of conns) {
      await c.waitFor('event: disconnect');
      assert.match(c.text, /"code":3504,"reason":"force disconnect","reconnect":false/);
    }
    assert.equal((await call(api, '/api/disconnect', { id: 'kick', reconnect: 'maybe' })).status, 400);
  });

  test('presence events reach a failing webhook in the end, signed; a quick reconnect makes none', async () => {
    const c = sse(portOf(g1.client!), 'hooked');
    await c.waitFor('welcomes you');
    const events = (): { id: string; online: boolean }[] =>
      hookBodies.flatMap((b) => (JSON.parse(b.body) as { events: { id: string; online: boolean }[] }).events);
    await until(() => events().some((e) => e.id === 'hooked' && e.online), 'the online event', 20_000);
    assert.ok(hookRequests > hookBodies.length, 'the first requests failed and were retried');
    for (const b of hookBodies) {
      assert.equal(b.signature, `sha256=${createHmac('sha256', KEY).update(b.body).digest('hex')}`);
    }
    // Gone and back within the debounce: no offline event, no second online.
    c.close();
    const back = sse(portOf(g2.client!), 'hooked');
    await back.waitFor('welcomes you');
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(
      events()
        .filter((e) => e.id === 'hooked')
        .map((e) => e.online),
      [true],
    );
    back.close();
    await until(() => events().some((e) => e.id === 'hooked' && !e.online), 'the offline event', 10_000);
  });

  test('a gateway stopped past three heartbeats: sends meanwhile reach no one there, and its SSE stream resumes them', async () => {
    const gateways = async (): Promise<number> =>
      ((await call(api, '/api/stats')).body.cluster as { gateways: number }).gateways;
    const g3 = await serve('gw3', ['--role', 'gateway', '--no-api']);
    try {
      await until(async () => (await gateways()) === 3, 'a third gateway', 10_000);
      const a = sse(portOf(g3.client!), 'stalled');
      await a.waitFor('welcomes you');
      await until(async () => (await call(api, '/api/presence/stalled')).body.online === true, 'online');
      assert.deepEqual((await call(api, '/api/send', { id: 'stalled', msg: 'before' })).body, {
        delivered: 1,
      });
      await a.waitFor('data: before');
      g3.p.child.kill('SIGSTOP');
      await until(async () => (await gateways()) === 2, 'the router to expire the stopped gateway', 10_000);
      // The directory dropped it: the send is routed nowhere (with NATS interests it went there uncounted).
      assert.deepEqual((await call(api, '/api/send', { id: 'stalled', msg: 'while stopped' })).body, {
        delivered: 0,
      });
      g3.p.child.kill('SIGCONT');
      // Heard again, it is relearned, and its resumable stream is told to come back.
      await a.waitFor('"code":3007');
      const last = eidsOf(a.text).at(-1)!;
      a.close();
      const b = sse(portOf(g3.client!), 'stalled', last);
      await b.waitFor('data: while stopped');
      assert.doesNotMatch(b.text, /event: gap/);
      assert.doesNotMatch(b.text, /data: before/);
      b.close();
    } finally {
      g3.p.child.kill('SIGCONT');
      await g3.p.stop('SIGTERM');
    }
  });

  test('a SIGKILLed gateway: its users go offline within the heartbeat timeout', async () => {
    const c = sse(portOf(g2.client!), 'doomed');
    await c.waitFor('welcomes you');
    await until(async () => (await call(api, '/api/presence/doomed')).body.online === true, 'doomed online');
    const t0 = Date.now();
    g2.p.child.kill('SIGKILL');
    await until(
      async () => (await call(api, '/api/presence/doomed')).body.online === false,
      'doomed offline',
      10_000,
    );
    assert.ok(Date.now() - t0 < 5000, `offline after ${Date.now() - t0} ms (heartbeat 500 ms, 3 missed)`);
    c.close();
  });
});

test('the per-id bound: a client further back than --history messages of its id gets an expired gap', async () => {
  const { Switchboard } = await import('../src/server.js');
  const sb = await Switchboard.start({
    port: 0,
    apiPort: 0,
    host: '127.0.0.1',
    data: path.join(dir, 'bound'),
    bus: natsUrl,
    busPrefix: 'bound',
    historySize: 3,
    logLevel: 'silent',
    maxLagMs: 0,
  });
  try {
    const port = sb.gateway!.address().port;
    const a = sse(port, 'b1');
    await a.waitFor('welcomes you');
    await sb.router.send('b1', 'first');
    await a.waitFor('data: first');
    const [last] = eidsOf(a.text);
    a.close();
    await until(() => sb.gateway!.hub.count('b1') === 0, 'logged out');
    for (let i = 0; i < 2; i++) await sb.router.send('b1', `missed ${i}`);
    const within = sse(port, 'b1', last);
    await within.waitFor('data: missed 1');
    assert.doesNotMatch(within.text, /event: gap/);
    within.close();
    await until(() => sb.gateway!.hub.count('b1') === 0, 'logged out');
    for (let i = 2; i < 6; i++) await sb.router.send('b1', `missed ${i}`);
    const beyond = sse(port, 'b1', last);
    await beyond.waitFor('event: gap');
    assert.match(beyond.text, /"reason":"expired"/);
    beyond.close();
  } finally {
    await sb.close();
  }
});

test('cluster --routers 0: the gateways take publishes themselves', async () => {
  const p = new CliProcess(
    ['cluster', '--gateways', '2', '--routers', '0', '--bus', natsUrl, '--bus-prefix', 'r0'].concat([
      '--port',
      '0',
      '--api-port',
      '0',
      '--host',
      '127.0.0.1',
      '--data',
      path.join(dir, 'r0'),
      '--json',
    ]),
    { cwd: dir, env: { SWITCHBOARD_API_KEY: KEY } },
  );
  procs.push(p);
  const ready = JSON.parse((await p.waitFor(/^\{.*\}$/m))[0]) as { clients: string; api: string };
  const c = new RawClient(portOf(ready.clients), get('/test/zero'));
  await c.waitFor('Your Id: zero');
  await until(
    async () => (await call(ready.api, '/api/presence/zero')).body.online === true,
    'zero online',
    10_000,
  );
  const r = await call(ready.api, '/api/send', { id: 'zero', msg: 'no routers' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, { delivered: 1 });
  await c.waitFor("'no routers'");
  c.close();
  await p.stop('SIGTERM');
});
