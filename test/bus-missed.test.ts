/**
 * A gateway that may have lost messages says so: NATS keeps nothing for a client that is away, so
 * when the gateway's NATS connection drops, when a router's numbered heartbeats arrive with a hole
 * (a route between NATS nodes was down, or NATS cut this client off as slow), or when a router goes
 * silent without a bye, every connection that can resume is ended with 3007 ("insufficient
 * state") and comes back with its last event id. The article's `/test` stream has no event ids
 * and is left open. Own nats-server on a free port (it is killed here).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort, kill, startNatsServer } from './support/processes.js';
import { get, RawClient, startServer, type TestServer, until } from './support/server.js';

const PREFIX = `miss${process.pid}`;
const HEARTBEAT_MS = 200;

describe('a gateway that may have lost messages tells its clients to resume', () => {
  let port = 0;
  let dir = '';
  let nats: ChildProcess | undefined;
  let server: TestServer;
  let nc: NatsConnection;

  before(async () => {
    port = await freePort();
    dir = await mkdtemp(join(tmpdir(), 'switchboard-missed-'));
    nats = await startNatsServer(port, dir);
    server = await startServer({
      bus: `nats://127.0.0.1:${port}`,
      busPrefix: PREFIX,
      role: 'gateway',
      historySize: 0,
      gatewayHeartbeatMs: HEARTBEAT_MS,
    });
    nc = await connect({
      servers: `nats://127.0.0.1:${port}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
  });
  after(async () => {
    await nc?.close().catch(() => undefined);
    await server?.stop();
    if (nats !== undefined) await kill(nats);
    await rm(dir, { recursive: true, force: true });
  });

  /** An SSE stream and the article's `/test` stream of id 7, both open. */
  async function streams(): Promise<{ sse: RawClient; test: RawClient }> {
    const sse = new RawClient(server.clientPort, get('/feed/7', { Accept: 'text/event-stream' }));
    const t = new RawClient(server.clientPort, get('/test/7'));
    await sse.waitFor('welcomes you');
    await t.waitFor('welcomes you');
    return { sse, test: t };
  }

  const beat = (router: string, n: number): void => nc.publish(`${PREFIX}.rt.hb`, `hb ${router} 0 0 1 ${n}`);
  const told = (): number => server.sb.gateway!.stats.insufficientState;

  test('heartbeats of a router in order: nothing happens; a hole in them: 3007', async () => {
    const { sse, test: t } = await streams();
    try {
      for (let n = 1; n <= 3; n++) beat('r-hole', n);
      await nc.flush();
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(sse.closed, false);
      beat('r-hole', 6);
      await sse.waitClosed();
      assert.match(
        sse.text,
        /event: disconnect\ndata: \{"code":3007,"reason":"insufficient state","reconnect":true\}/,
      );
      assert.equal(t.closed, false);
      assert.equal(told(), 1);
      // It leaves on purpose, or its expiry three beats from now would end the next test's streams.
      nc.publish(`${PREFIX}.rt.hb`, 'bye r-hole');
      await nc.flush();
    } finally {
      sse.close();
      t.close();
    }
  });

  test('a router silent for three heartbeat periods without a bye: 3007', async () => {
    await new Promise((r) => setTimeout(r, 2 * HEARTBEAT_MS)); // past the once-a-period limit
    const { sse, test: t } = await streams();
    try {
      const before = told();
      beat('r-silent', 1);
      await nc.flush();
      await sse.waitClosed(10 * HEARTBEAT_MS);
      assert.match(sse.text, /"code":3007/);
      assert.equal(t.closed, false);
      assert.equal(told(), before + 1);
      // A router that says bye left on purpose: nothing to resume.
      await new Promise((r) => setTimeout(r, 2 * HEARTBEAT_MS));
      const again = await streams();
      beat('r-bye', 1);
      nc.publish(`${PREFIX}.rt.hb`, 'bye r-bye');
      await nc.flush();
      await new Promise((r) => setTimeout(r, 5 * HEARTBEAT_MS));
      assert.equal(again.sse.closed, false);
      again.sse.close();
      again.test.close();
    } finally {
      sse.close();
      t.close();
    }
  });

  test("the gateway's NATS connection drops: 3007 at once, /test stays", async () => {
    await new Promise((r) => setTimeout(r, 2 * HEARTBEAT_MS));
    const { sse, test: t } = await streams();
    try {
      await kill(nats!);
      nats = undefined;
      await sse.waitClosed();
      assert.match(sse.text, /"code":3007/);
      assert.equal(t.closed, false);
      nats = await startNatsServer(port, dir);
      await until(() => server.sb.bus.connected, 'the bus back', 10_000);
    } finally {
      sse.close();
      t.close();
    }
  });
});
