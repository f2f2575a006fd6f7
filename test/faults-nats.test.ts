/**
 * A cluster whose NATS server dies and comes back (this file's own nats-server, SIGKILLed and
 * restarted on the same port): while it is down publishes get 503 and health says so; after it
 * returns, gateways and routers reconnect and re-take every interest, and users who stayed
 * connected receive again without reconnecting.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CliProcess, freePort, kill, startNatsServer } from './support/processes.js';
import { get, RawClient, until } from './support/server.js';

let dir: string;
let natsPort: number;
let nats: ChildProcess;
let cluster: CliProcess;
let api: string;
let clientPort: number;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sb-faults-'));
  natsPort = await freePort();
  nats = await startNatsServer(natsPort, path.join(dir, 'nats'));
  cluster = new CliProcess(
    ['cluster', '--gateways', '2', '--routers', '1', '--bus', `nats://127.0.0.1:${natsPort}`].concat([
      '--port',
      '0',
      '--api-port',
      '0',
      '--host',
      '127.0.0.1',
      '--data',
      path.join(dir, 'data'),
      '--json',
    ]),
    { cwd: dir },
  );
  const ready = JSON.parse((await cluster.waitFor(/^\{.*\}$/m))[0]) as { clients: string; api: string };
  api = ready.api;
  clientPort = Number(new URL(ready.clients).port);
});

after(async () => {
  await cluster.stop('SIGKILL');
  await kill(nats);
  rmSync(dir, { recursive: true, force: true });
});

async function send(id: string, msg: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${api}/api/send`, { method: 'POST', body: JSON.stringify({ id, msg }) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const health = async (): Promise<number> => (await fetch(`${api}/healthz`)).status;

test('NATS dies: publishes get 503; NATS returns: every user receives again without reconnecting', async () => {
  const clients = Array.from({ length: 6 }, (_, i) => new RawClient(clientPort, get(`/test/f${i}`)));
  for (const c of clients) await c.waitFor('welcomes you');
  await until(
    async () => {
      const s = (await (await fetch(`${api}/api/stats`)).json()) as { cluster: { connections: number } };
      return s.cluster.connections === 6;
    },
    'router sees all 6',
    10_000,
  );
  for (let i = 0; i < 6; i++) assert.deepEqual((await send(`f${i}`, 'before')).body, { delivered: 1 });

  await kill(nats);
  await until(async () => (await health()) === 503, 'health reports the bus down', 10_000);
  const down = await send('f0', 'while down');
  assert.equal(down.status, 503);
  assert.equal((down.body.error as { code: string }).code, 'ERR_UNAVAILABLE');
  assert.match((down.body.error as { message: string }).message, /disconnected/);

  nats = await startNatsServer(natsPort, path.join(dir, 'nats'));
  await until(async () => (await health()) === 200, 'health back after reconnect', 20_000);
  // Gateways re-announce on reconnect; wait until the router knows both again.
  await until(
    async () => {
      const s = (await (await fetch(`${api}/api/stats`)).json()) as {
        cluster: { gateways: number; connections: number };
      };
      return s.cluster.gateways === 2 && s.cluster.connections === 6;
    },
    'both gateways known again',
    15_000,
  );
  for (let i = 0; i < 6; i++) assert.deepEqual((await send(`f${i}`, 'after')).body, { delivered: 1 });
  for (const c of clients) {
    await c.waitFor("'after'");
    assert.equal(c.closed, false, 'the client never had to reconnect');
    assert.ok(!c.text.includes('while down'), 'a refused message is not delivered later');
  }
  for (const c of clients) c.close();
});
