/**
 * The NATS bus when the server dies: this file runs its own nats-server child on a free port,
 * SIGKILLs it and restarts it on the same port. While it is down the bus says so and refuses to
 * publish; after the restart every interest — taken before the crash or during the outage — is
 * live again without the gateways doing anything.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { NatsBus, type NatsBusOptions } from '../src/bus/nats-bus.js';
import * as codec from '../src/bus/nats-codec.js';
import { UnavailableError } from '../src/errors.js';
import { FakeConn, FakeRegistry, message } from './bus-contract.js';
import { freePort, kill, startNatsServer as startServer } from './support/processes.js';

async function until(what: string, check: () => boolean, limitMs = 15_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves the next time `bus` reports `up`. */
function status(bus: NatsBus, up: boolean): Promise<void> {
  return new Promise((resolve) => bus.onStatus((u) => u === up && resolve()));
}

describe('nats bus faults (own nats-server, killed and restarted)', () => {
  let port = 0;
  let dir = '';
  let server: ChildProcess | undefined;
  const buses: NatsBus[] = [];

  before(async () => {
    port = await freePort();
    dir = await mkdtemp(join(tmpdir(), 'switchboard-nats-'));
    server = await startServer(port, dir);
  });

  after(async () => {
    await Promise.all(buses.map((b) => b.abort()));
    if (server !== undefined) await kill(server);
    await rm(dir, { recursive: true, force: true });
  });

  test('down: not connected, publishes rejected; after restart every interest is live again', async () => {
    const url = `nats://127.0.0.1:${port}`;
    const prefix = `faults-${process.pid}`;
    const open = async (o: Partial<NatsBusOptions>): Promise<NatsBus> => {
      const b = await NatsBus.connect({ servers: url, prefix, reconnectTimeWaitMs: 100, ...o });
      buses.push(b);
      return b;
    };
    // The tally timeout is long so that only the disconnect can end the waiting publish below.
    const router = await open({ role: 'router', tallyTimeoutMs: 60_000 });
    const gwA = await open({ role: 'gateway' });
    const gwB = await open({ role: 'gateway' });
    const closedWhileDown = await open({});
    new FakeRegistry(closedWhileDown).login('dora', new FakeConn('dora'));
    const regA = new FakeRegistry(gwA);
    const regB = new FakeRegistry(gwB);
    const alice = new FakeConn('alice');
    const bob = new FakeConn('bob');
    const carol = new FakeConn('carol');
    regA.login('alice', alice);
    regB.login('bob', bob);
    const settle = async (): Promise<void> => {
      await Promise.all([gwA.flush(), gwB.flush()]);
      await until(
        'membership and interests',
        () =>
          router.liveGateways().includes(gwA.id) &&
          router.liveGateways().includes(gwB.id) &&
          router.holders('alice').includes(gwA.id) &&
          router.holders('bob').includes(gwB.id) &&
          (carol.ids === null || router.holders('carol').includes(gwA.id)),
      );
    };
    await settle();
    assert.equal((await router.publish(message('before'), ['alice', 'bob'])).delivered, 2);

    // A gateway that never answers keeps the next publish waiting for its count.
    const ghost = await connect({ servers: url, reconnect: false });
    ghost.publish(`${prefix}.gw.hb`, 'hb ghost');
    // It claims alice, so the router asks it (and waits) for alice's count.
    ghost.publish(`${prefix}.gw.int`, codec.encodeDelta('ghost', 1, ['alice'], []));
    await ghost.flush();
    await until(
      'the ghost gateway',
      () => router.liveGateways().includes('ghost') && router.holders('alice').includes('ghost'),
    );
    const waiting = router.publish(message('in flight'), ['alice']);
    waiting.catch(() => undefined);

    const down = [router, gwA, gwB, closedWhileDown].map((b) => status(b, false));
    assert.ok(server);
    await kill(server);
    await Promise.all(down);

    await assert.rejects(
      waiting,
      UnavailableError,
      'a publish waiting for its count is not reported as a success',
    );
    for (const b of [router, gwA, gwB]) assert.equal(b.connected, false);
    await assert.rejects(router.publish(message('while down'), ['alice']), (err: unknown) => {
      assert.ok(err instanceof UnavailableError);
      assert.equal(err.status, 503);
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      return true;
    });
    assert.equal(router.stats().pendingPublishes, 0);
    // Closing needs no server (a drain would wait for one forever).
    let guard: NodeJS.Timeout | undefined;
    await Promise.race([
      closedWhileDown.close(),
      new Promise((_, reject) => {
        guard = setTimeout(() => reject(new Error('close() hung while the server was down')), 20_000);
      }),
    ]);
    clearTimeout(guard);
    await assert.rejects(closedWhileDown.publish(message('x'), ['dora']), /closed/);
    // An interest taken during the outage must be live after it too.
    regA.login('carol', carol);

    const up = [router, gwA, gwB].map((b) => status(b, true));
    server = await startServer(port, dir);
    await Promise.all(up);
    for (const b of [router, gwA, gwB]) assert.equal(b.connected, true);
    await settle();
    assert.equal(
      router.liveGateways().includes('ghost'),
      false,
      'membership was relearned after reconnecting',
    );

    assert.equal((await router.publish(message('after'), ['alice', 'bob', 'carol'])).delivered, 3);
    assert.deepEqual(
      [alice, bob, carol].map((c) => c.got.map((m) => m.body)),
      [['before', 'after'], ['before', 'after'], ['after']],
    );
    assert.equal(router.stats().tallyTimeouts, 0);
    await ghost.close().catch(() => undefined);
  });
});
