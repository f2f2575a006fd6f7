/**
 * The NATS bus against the machine's nats-server (127.0.0.1:4222, or NATS_URL), each case under
 * its own subject prefix: the shared contract three ways, then what only a distributed bus has —
 * the NATS ordering it relies on, several gateways and publishers, gateways leaving and dying.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import type { Bus } from '../src/bus/bus.js';
import { Membership } from '../src/bus/membership.js';
import { NatsBus, type NatsBusOptions } from '../src/bus/nats-bus.js';
import * as codec from '../src/bus/nats-codec.js';
import { openBus } from '../src/bus/open-bus.js';
import { DeliveryCounts } from '../src/bus/tally.js';
import { ConfigError, UnavailableError } from '../src/errors.js';
import { silentLogger } from '../src/log.js';
import { Message } from '../src/message.js';
import { type BusPair, busContract, FakeConn, FakeRegistry, message } from './bus-contract.js';

const SERVER = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const RUN = `sbtest-${process.pid}-${Date.now().toString(36)}`;
let prefixes = 0;
/** A subject prefix no other test run uses. */
function freshPrefix(): string {
  prefixes++;
  return `${RUN}.${prefixes}`;
}

const opened: NatsBus[] = [];
after(async () => {
  await Promise.all(opened.map((b) => b.close().catch(() => undefined)));
});

async function bus(prefix: string, options: Partial<NatsBusOptions> = {}): Promise<NatsBus> {
  const b = await NatsBus.connect({ servers: SERVER, prefix, ...options });
  opened.push(b);
  return b;
}

/** Polls `check` every 10 ms; fails the test after `limitMs` rather than hanging it. */
async function until(what: string, check: () => boolean, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Calls `each` for every message on `subject`, for as long as `nc` is open. */
function onEach(nc: NatsConnection, subject: string, each: (m: Msg) => void): void {
  const sub = nc.subscribe(subject);
  void (async () => {
    for await (const m of sub) each(m);
  })();
}

/** True for a router's `who <router>` to every gateway (not one addressed to a gateway). */
const whoToAll = (m: Msg): boolean => m.string().split(' ').length === 2;

/** Flushes the gateways and waits until `router` knows all of them and every id they hold. */
async function settle(router: NatsBus, gateways: readonly NatsBus[]): Promise<void> {
  const distinct = gateways.filter((g, i) => gateways.indexOf(g) === i);
  await Promise.all(distinct.map((g) => g.flush()));
  await until('the router to know every gateway and its ids', () => {
    const live = new Set(router.liveGateways());
    const held = distinct.reduce((n, g) => n + g.stats().interests, 0);
    return distinct.every((g) => live.has(g.id)) && router.stats().directory.pairs === held;
  });
}

function pair(publisher: NatsBus, gateways: NatsBus[]): BusPair {
  const distinct = [publisher, ...gateways].filter((b, i, all) => all.indexOf(b) === i);
  return {
    publisher,
    gateways,
    settle: () => settle(publisher, gateways),
    // Every router has learned the cluster, and each has heard the others say so: exactly one
    // leads (until then two can each think they do, and both report a change).
    ready: () =>
      until(
        'every router to have learned the cluster, and one to lead presence',
        () =>
          distinct.every((b) => b.role === 'gateway' || b.reportingPresence) &&
          distinct.filter((b) => b.leadsPresence).length === 1,
      ),
    close: async () => {
      await Promise.all(distinct.map((b) => b.close()));
    },
  };
}

busContract('nats, a router and two gateways', async () => {
  const p = freshPrefix();
  const router = await bus(p, { role: 'router' });
  const gws = [await bus(p, { role: 'gateway' }), await bus(p, { role: 'gateway' })];
  return pair(router, gws);
});

busContract('nats, the publisher is also a gateway', async () => {
  const p = freshPrefix();
  const both = await bus(p);
  return pair(both, [both, await bus(p, { role: 'gateway' })]);
});

describe('nats bus', () => {
  test('NATS keeps one publisher’s order across subjects (the tally relies on it)', async () => {
    const p = freshPrefix();
    const pub = await connect({ servers: SERVER });
    const sub = await connect({ servers: SERVER });
    try {
      const seen: number[] = [];
      for (let s = 0; s < 64; s++) {
        sub.subscribe(`${p}.ord.${s}`, {
          callback: (_err, m) => {
            seen.push(Number(m.string()));
          },
        });
      }
      await sub.flush();
      const total = 20_000;
      let x = 12345;
      for (let i = 0; i < total; i++) {
        x = (x * 1103515245 + 12345) & 0x7fffffff;
        pub.publish(`${p}.ord.${x % 64}`, String(i));
      }
      await pub.flush();
      await until('every message', () => seen.length >= total);
      assert.equal(seen.length, total);
      const firstOutOfOrder = seen.findIndex((v, i) => v !== i);
      assert.equal(firstOutOfOrder, -1, `message ${firstOutOfOrder} arrived out of order`);
    } finally {
      await pub.close();
      await sub.close();
    }
  });

  test('cross-gateway delivery: A on gateway 1, B on gateway 2, one send reaches both', async () => {
    const p = freshPrefix();
    const router = await bus(p, { role: 'router' });
    const gw1 = await bus(p, { role: 'gateway' });
    const gw2 = await bus(p, { role: 'gateway' });
    const a = new FakeConn('A');
    const b = new FakeConn('B');
    new FakeRegistry(gw1).login('A', a);
    new FakeRegistry(gw2).login('B', b);
    await settle(router, [gw1, gw2]);
    const msg = message('to both');
    assert.deepEqual(await router.publish(msg, ['A', 'B']), {
      delivered: 2,
      complete: true,
      missing: [],
    });
    assert.deepEqual(
      [a, b].map((c) => c.got.map((m) => m.eid)),
      [[msg.eid], [msg.eid]],
    );
    assert.deepEqual([gw1.stats().received, gw2.stats().received], [1, 1]);
    assert.equal(router.stats().published, 2);
    assert.equal(router.stats().gateways, 2);
  });

  test('every id character survives the subject encoding', async () => {
    const p = freshPrefix();
    const router = await bus(p, { role: 'router' });
    const gw = await bus(p, { role: 'gateway' });
    const reg = new FakeRegistry(gw);
    const ids = ['a.b', '.lead.trail.', 'user:1_x-Y', '...', 'Z'.repeat(128), 'a-b.c:d_e'];
    const conns = ids.map((id) => {
      const c = new FakeConn(id);
      reg.login(id, c);
      return c;
    });
    for (const id of ids) assert.equal(codec.tokenToId(codec.idToToken(id)), id);
    assert.ok(ids.every((id) => !codec.idToToken(id).includes('.')));
    await settle(router, [gw]);
    assert.equal((await router.publish(message('all'), ids)).delivered, ids.length);
    assert.deepEqual(
      conns.map((c) => c.got.length),
      ids.map(() => 1),
    );
    assert.equal((await router.publish(message('not a.b'), ['a_b', 'a-b'])).delivered, 0);
    await assert.rejects(router.publish(message('bad'), ['ok', 'a~b']), /recipients\[1\] "a~b"/);
  });

  test('no message reaches a gateway for an id it dropped', async () => {
    const p = freshPrefix();
    const router = await bus(p, { role: 'router' });
    const gw = await bus(p, { role: 'gateway' });
    const reg = new FakeRegistry(gw);
    const c = new FakeConn('c');
    reg.login('gone', c);
    await settle(router, [gw]);
    assert.equal((await router.publish(message('1'), ['gone'])).delivered, 1);
    reg.logout('gone', c);
    await gw.flush();
    const received = gw.stats().received;
    assert.equal((await router.publish(message('2'), ['gone'])).delivered, 0);
    assert.equal(gw.stats().received, received);
    assert.equal(reg.calls, 1);
    assert.equal(gw.stats().interests, 0);
  });

  test('publishes made in one event-loop turn share one tally round', async () => {
    const p = freshPrefix();
    const router = await bus(p, { role: 'router' });
    const gw = await bus(p, { role: 'gateway' });
    const reg = new FakeRegistry(gw);
    reg.login('u1', new FakeConn('1'));
    reg.login('u2', new FakeConn('2'));
    await settle(router, [gw]);
    const before = router.stats().tallyRounds;
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => router.publish(message(`b${i}`), ['u1', 'u2', 'u3'])),
    );
    assert.deepEqual(
      results.map((r) => r.delivered),
      Array(100).fill(2),
    );
    assert.equal(router.stats().tallyRounds - before, 1);
    assert.equal(gw.stats().heldCounts, 0, 'the gateway forgot the counts once tallied');
  });

  test('two publishers share the load; every count is exact', async () => {
    const p = freshPrefix();
    const routers = [await bus(p, { role: 'router' }), await bus(p, { role: 'router' })];
    const gws = [await bus(p, { role: 'gateway' }), await bus(p, { role: 'gateway' })];
    const regs = gws.map((g) => new FakeRegistry(g));
    // The model: which connections each id reaches.
    const connsOf = new Map<string, FakeConn[]>();
    const login = (gw: number, id: string, conn: FakeConn): void => {
      regs[gw]?.login(id, conn);
      connsOf.set(id, [...(connsOf.get(id) ?? []), conn]);
    };
    for (let i = 0; i < 300; i++) {
      const conn = new FakeConn(`c${i}`);
      login(i % 2, `user:${i}`, conn);
      if (i % 7 === 0) login(i % 2, `user:${i + 1000}`, conn); // one connection, two ids
      if (i % 5 === 0) login((i + 1) % 2, `user:${i}`, new FakeConn(`c${i}b`)); // one id, two gateways
    }
    for (const r of routers) await settle(r, gws);
    let x = 99;
    const rand = (n: number): number => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % n;
    };
    const sends = Array.from({ length: 200 }, () => {
      const ids = new Set<string>();
      while (ids.size < 30) ids.add(`user:${rand(3) === 0 ? 1000 + rand(300) : rand(400)}`);
      return [...ids];
    });
    const expected = sends.map((ids) => new Set(ids.flatMap((id) => connsOf.get(id) ?? [])).size);
    const results = await Promise.all(sends.map((ids, i) => routers[i % 2]?.publish(message(`s${i}`), ids)));
    assert.deepEqual(
      results.map((r) => r?.delivered),
      expected,
    );
    const total = expected.reduce((a, b) => a + b, 0);
    assert.equal((regs[0]?.returned ?? 0) + (regs[1]?.returned ?? 0), total);
    assert.ok(total > 1000, `the load reached many connections (${total})`);
    for (const r of routers) assert.equal(r.stats().tallyTimeouts, 0);
  });

  test('a gateway that says bye is not waited for', async () => {
    const p = freshPrefix();
    // Expiry would take 3 minutes: only the bye can explain the gateway leaving.
    const router = await bus(p, { role: 'router', gatewayHeartbeatMs: 60_000 });
    const stay = await bus(p, { role: 'gateway' });
    const leave = await bus(p, { role: 'gateway' });
    new FakeRegistry(stay).login('s', new FakeConn('s'));
    new FakeRegistry(leave).login('l', new FakeConn('l'));
    await settle(router, [stay, leave]);
    assert.equal((await router.publish(message('1'), ['s', 'l'])).delivered, 2);
    await leave.close();
    await until('the bye', () => !router.liveGateways().includes(leave.id));
    const r = await router.publish(message('2'), ['s', 'l']);
    assert.deepEqual(r, { delivered: 1, complete: true, missing: [] });
    assert.equal(router.stats().tallyTimeouts, 0);
    assert.equal(router.stats().gateways, 1);
  });

  test('a gateway killed without bye makes counts partial, then expires and is not waited for', async () => {
    const p = freshPrefix();
    const router = await bus(p, { role: 'router', tallyTimeoutMs: 300 });
    const gw = await bus(p, { role: 'gateway' });
    new FakeRegistry(gw).login('alive', new FakeConn('a'));
    const modulePath = new URL('../src/bus/nats-bus.js', import.meta.url).pathname;
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { NatsBus } = await import(process.argv[1]);
         const bus = await NatsBus.connect({ servers: process.argv[2], prefix: process.argv[3], role: 'gateway' });
         bus.attach({ deliver: (_m, ids) => ids.length, load: () => ({ connections: 1, ids: 1 }), count: () => 1, disconnect: () => 0, heldIds: () => ['doomed'] });
         bus.interest('doomed');
         await bus.flush();
         process.stdout.write(JSON.stringify({ id: bus.id }) + '\\n');
         setInterval(() => {}, 1 << 30);`,
        modulePath,
        SERVER,
        p,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const [line] = (await once(child.stdout, 'data')) as [Buffer];
      const { id: childId } = JSON.parse(line.toString()) as { id: string };
      await gw.flush();
      await until(
        'the router to know both gateways and their ids',
        () => router.holders('doomed').includes(childId) && router.holders('alive').includes(gw.id),
      );
      assert.deepEqual(await router.publish(message('1'), ['doomed', 'alive']), {
        delivered: 2,
        complete: true,
        missing: [],
      });

      child.kill('SIGKILL');
      await once(child, 'exit');
      const partial = await router.publish(message('2'), ['doomed', 'alive']);
      assert.deepEqual(partial, { delivered: 1, complete: false, missing: [childId] });
      assert.equal(router.stats().tallyTimeouts, 1);
      assert.equal(router.stats().partialPublishes, 1);

      await until('the dead gateway to expire', () => !router.liveGateways().includes(childId));
      assert.deepEqual(await router.publish(message('3'), ['doomed', 'alive']), {
        delivered: 1,
        complete: true,
        missing: [],
      });
      assert.equal(router.stats().tallyTimeouts, 1);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  test('roles: a router cannot attach, a gateway cannot publish', async () => {
    const p = freshPrefix();
    const router = await bus(p, { role: 'router' });
    const gw = await bus(p, { role: 'gateway' });
    assert.throws(() => router.attach(new FakeRegistry(gw)), ConfigError);
    await assert.rejects(gw.publish(message('x'), ['a']), ConfigError);
  });

  test('bad options are refused, naming the option', async () => {
    await assert.rejects(NatsBus.connect({ servers: SERVER, prefix: 'has space' }), /prefix "has space"/);
    await assert.rejects(NatsBus.connect({ servers: SERVER, prefix: 'a..b' }), ConfigError);
    await assert.rejects(NatsBus.connect({ servers: SERVER, tallyTimeoutMs: 0 }), /tallyTimeoutMs/);
    await assert.rejects(NatsBus.connect({ servers: [] }), /servers/);
  });

  test('openBus: nats URLs connect, unreachable ones are unavailable, others are refused', async () => {
    const b: Bus = await openBus(SERVER, { prefix: freshPrefix() });
    try {
      assert.equal(b.kind, 'nats');
      assert.equal(b.connected, true);
    } finally {
      await b.close();
    }
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    await assert.rejects(openBus('nats://127.0.0.1:1'), (err: unknown) => {
      assert.ok(err instanceof UnavailableError);
      assert.match(err.message, /nats:\/\/127\.0\.0\.1:1/);
      return true;
    });
    await assert.rejects(openBus('redis://127.0.0.1:6379'), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /redis:\/\/127\.0\.0\.1:6379/);
      assert.match(err.message, /local/);
      return true;
    });
    await assert.rejects(openBus('nats://127.0.0.1:4222,http://x'), /server 2 "http:\/\/x"/);
  });
});

describe('nats codec and counts', () => {
  test('a delivery batch round-trips its sends in order, and grows past its first buffer', () => {
    const msg = new Message('ep0ch-42', 'photo:789', 'ünïcødé ✓ '.repeat(50), 1_700_000_123_456);
    const empty = new Message('e', 's', '', 0);
    const batch = new codec.DeliveryBatch('pub-1', 16);
    const many = Array.from({ length: 3000 }, (_, i) => `user:${i}`);
    batch.add(codec.encodeSendRecord(7, msg), ['a', 'b.c']);
    batch.add(codec.encodeSendRecord(8, empty), many);
    assert.equal(batch.records, 2);
    const size = batch.size;
    const data = batch.take();
    assert.equal(data.length, size);
    assert.equal(batch.records, 0);
    const got: [string, number, unknown, readonly string[]][] = [];
    const n = codec.decodeDeliveries(data, (pub, seq, m, ids) => got.push([pub, seq, m.toJSON(), ids]));
    assert.equal(n, 2);
    assert.deepEqual(got, [
      ['pub-1', 7, msg.toJSON(), ['a', 'b.c']],
      ['pub-1', 8, empty.toJSON(), many],
    ]);
    // The builder starts over: a new batch holds only what is added after take().
    batch.add(codec.encodeSendRecord(9, empty), ['x']);
    assert.equal(
      codec.decodeDeliveries(batch.take(), () => {}),
      1,
    );
    assert.throws(() => codec.decodeDeliveries(Buffer.from('{"json":1}'), () => {}), codec.WireFormatError);
    assert.throws(() => codec.decodeDeliveries(data.subarray(0, 30), () => {}), codec.WireFormatError);
    assert.deepEqual(codec.decodeInterestAck(Buffer.from(codec.encodeInterestAck('r1', 12))), {
      routerId: 'r1',
      seq: 12,
    });
    assert.throws(() => codec.decodeInterestAck(Buffer.from('ia r1 -1')), codec.WireFormatError);
  });

  test('tally requests and replies round-trip', () => {
    const req = codec.decodeTallyRequest(codec.encodeTallyRequest(4_000_000_000, 'r1', [1, 2, 2 ** 40]));
    assert.deepEqual(req, { round: 4_000_000_000, pubId: 'r1', seqs: [1, 2, 2 ** 40] });
    const rep = codec.decodeTallyReply(codec.encodeTallyReply(9, 'gw', [0, 3, 2, 70_000]));
    assert.deepEqual(rep, { round: 9, gatewayId: 'gw', pairs: [0, 3, 2, 70_000] });
    assert.deepEqual(codec.decodeAnnouncement(Buffer.from(codec.encodeAnnouncement('bye', 'g1'))), {
      kind: 'bye',
      gatewayId: 'g1',
      connections: 0,
      ids: 0,
      seq: 0,
      beat: -1,
    });
    const hb = codec.encodeAnnouncement('hb', 'g2', { connections: 15_000, ids: 12_345 }, 7);
    assert.equal(hb, 'hb g2 15000 12345 7');
    assert.deepEqual(codec.decodeAnnouncement(Buffer.from(hb)), {
      kind: 'hb',
      gatewayId: 'g2',
      connections: 15_000,
      ids: 12_345,
      seq: 7,
      beat: -1,
    });
    // A router numbers its heartbeats.
    const rhb = codec.encodeAnnouncement('hb', 'r1', { connections: 0, ids: 0 }, 1, 42);
    assert.equal(rhb, 'hb r1 0 0 1 42');
    assert.equal(codec.decodeAnnouncement(Buffer.from(rhb)).beat, 42);
    assert.deepEqual(codec.decodeAnnouncement(Buffer.from('hb g3')), {
      kind: 'hb',
      gatewayId: 'g3',
      connections: 0,
      ids: 0,
      seq: 0,
      beat: -1,
    });
    const delta = codec.decodeDelta(codec.encodeDelta('g4', 3, ['a', 'b.c'], ['d']));
    assert.deepEqual(delta, { gatewayId: 'g4', seq: 3, adds: ['a', 'b.c'], removes: ['d'] });
    const snap = codec.decodeSnapshot(codec.encodeSnapshot('g5', 9, 2, true, ['x', 'y']));
    assert.deepEqual(snap, { gatewayId: 'g5', seq: 9, part: 2, last: true, ids: ['x', 'y'] });
    assert.throws(() => codec.decodeDelta(Buffer.from([4, 200])), codec.WireFormatError);
    for (const bad of [
      'hb',
      'hb g1 x 1',
      'hb g1 1 2 3 4 5',
      'hb g1 1 2 3 -2',
      'hb g1 -1 2',
      'hb g1 1 2 x',
      'hi g1',
    ]) {
      assert.throws(() => codec.decodeAnnouncement(Buffer.from(bad)), /not a gateway announcement/);
    }
  });

  test('delivery counts are held only until tallied, and never without bound', () => {
    const counts = new DeliveryCounts(30_000, 100, 0);
    counts.add('r', 1, 2);
    counts.add('r', 2, 1);
    counts.add('r', 2, 1);
    counts.add('r', 5, 4);
    counts.add('s', 1, 9);
    // Seq 1's tally was lost; the tally for 2 and 5 drops it too.
    assert.deepEqual(counts.take('r', [2, 3, 5]), [0, 2, 2, 4]);
    assert.equal(counts.size, 1);
    assert.equal(counts.dropped, 1);
    assert.deepEqual(counts.take('r', [6]), []);
    // Publisher s never tallies: dropped once idle.
    counts.sweep(10_000);
    assert.equal(counts.size, 1);
    counts.sweep(40_001);
    assert.equal(counts.size, 0);
    for (let i = 0; i < 250; i++) counts.add('flood', i, 1);
    assert.equal(counts.size, 100);
    assert.deepEqual(counts.take('flood', [249]), [0, 1]);
    assert.equal(counts.size, 0);
  });

  test('membership: bye and silence remove a gateway, our own stall is forgiven', async () => {
    const gone: string[] = [];
    const m = new Membership(3000, silentLogger, (id) => gone.push(id));
    const now = Date.now();
    m.hear(Buffer.from('hb g1'), now);
    m.hear(Buffer.from('hb g2'), now - 5000);
    m.hear(Buffer.from('hb g3'), now - 5000);
    m.hear(Buffer.from('hb g4'), now);
    m.hear(Buffer.from('bye g4'), now);
    assert.deepEqual(gone, ['g4']);
    assert.throws(() => m.hear(Buffer.from('hello'), now), codec.WireFormatError);
    // This process was blocked for 4 s: g2 and g3 were silent for 5 s of which 4 s do not count.
    m.sweep(4000, () => false);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual([...m.ids()].sort(), ['g1', 'g2', 'g3']);
    m.seen('g5', Date.now() - 3500);
    m.sweep(0, () => false);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual([...m.ids()].sort(), ['g1', 'g2', 'g3']);
    assert.deepEqual(gone, ['g4', 'g5']);
  });
});

describe('routing by the interest directory', () => {
  /** A deliverer that also records when it is told messages may have been missed. */
  class MissRegistry extends FakeRegistry {
    missed = 0;
    missedMessages(): number {
      this.missed++;
      return 0;
    }
  }

  test('a resume waits for every live router to ack its interests; one that never acks is given up', async () => {
    const p = freshPrefix();
    const HB = 100;
    const gw = await bus(p, { role: 'gateway', gatewayHeartbeatMs: HB });
    const reg = new FakeRegistry(gw);
    const nc = await connect({ servers: SERVER });
    try {
      nc.publish(`${p}.rt.hb`, 'hb fake-router 0 0 1 1');
      await nc.flush();
      await until('the gateway hears the router', () => gw.stats().routers === 1);
      reg.login('alice', new FakeConn('alice'));
      let settled = false;
      const first = gw.settled().then(() => {
        settled = true;
      });
      // Past the wait for routers to be heard from (1.5 heartbeats), still no ack: still waiting.
      await new Promise((r) => setTimeout(r, 2 * HB));
      assert.equal(settled, false);
      assert.equal(gw.stats().ackWaits, 1);
      nc.publish(`${p}.ia.${gw.id}`, codec.encodeInterestAck('fake-router', 1));
      await first;
      assert.equal(gw.stats().ackTimeouts, 0);
      // Already acked: no wait.
      await gw.settled();
      // A new interest the router never acks: given up after 3 heartbeat periods, and counted.
      reg.login('bob', new FakeConn('bob'));
      nc.publish(`${p}.rt.hb`, 'hb fake-router 0 0 1 2');
      const t0 = Date.now();
      await gw.settled();
      assert.ok(Date.now() - t0 >= 2 * HB, 'waited for the ack');
      assert.equal(gw.stats().ackTimeouts, 1);
      // A router that says bye is waited for no more.
      reg.login('carol', new FakeConn('carol'));
      const third = gw.settled();
      nc.publish(`${p}.rt.hb`, 'bye fake-router');
      await nc.flush();
      await third;
      assert.equal(gw.stats().ackTimeouts, 1);
    } finally {
      await nc.close();
    }
  });

  test('after settled() a send from a router in another process reaches the new interest at once', async () => {
    const p = freshPrefix();
    const router = await bus(p, { role: 'router', gatewayHeartbeatMs: 100, discoveryMs: 50 });
    const gw = await bus(p, { role: 'gateway', gatewayHeartbeatMs: 100 });
    const reg = new FakeRegistry(gw);
    await until('the router knows the gateway', () => router.liveGateways().includes(gw.id));
    await until('the gateway knows the router', () => gw.stats().routers >= 1);
    for (let i = 0; i < 20; i++) {
      const conn = new FakeConn(`u${i}`);
      reg.login(`u${i}`, conn);
      await gw.settled();
      // No polling of the directory: settled() is the guarantee.
      const r = await router.publish(message(`to u${i}`), [`u${i}`]);
      assert.equal(r.delivered, 1, `send ${i}`);
      assert.deepEqual(
        conn.got.map((m) => m.body),
        [`to u${i}`],
      );
    }
  });

  test('a router still learning the cluster holds its sends and routes them once it has', async () => {
    const p = freshPrefix();
    const gw = await bus(p, { role: 'gateway', gatewayHeartbeatMs: 100 });
    const reg = new FakeRegistry(gw);
    const alice = new FakeConn('alice');
    reg.login('alice', alice);
    await gw.flush();
    const router = await bus(p, { role: 'router', gatewayHeartbeatMs: 100, discoveryMs: 300 });
    // Made at once, before the router has heard the gateway's snapshot.
    const r = await router.publish(message('early'), ['alice']);
    assert.deepEqual(r, { delivered: 1, complete: true, missing: [] });
    assert.deepEqual(
      alice.got.map((m) => m.body),
      ['early'],
    );
  });

  test('a router acks nothing while learning: its held sends reach the gateway before a resume reads the history', async () => {
    const p = freshPrefix();
    // Heartbeats of 300 ms: a gateway waits 900 ms for a router's ack, longer than its discovery.
    const gw = await bus(p, { role: 'gateway', gatewayHeartbeatMs: 300 });
    const reg = new FakeRegistry(gw);
    await gw.flush();
    // Past the gateway's first 1.5 heartbeats, in which settled() waits in any case.
    await new Promise((r) => setTimeout(r, 500));
    const router = await bus(p, { role: 'router', gatewayHeartbeatMs: 300, discoveryMs: 500 });
    // Sent (and so in the history) while the router learns; held by it.
    const sent = router.publish(message('early'), ['alice']);
    // The gateway waits for the acks of the routers it has heard of.
    await until('the gateway hears the router', () => gw.stats().routers === 1);
    assert.equal(router.learning, true, 'still learning (discoveryMs 500)');
    const alice = new FakeConn('alice');
    reg.login('alice', alice);
    await gw.settled();
    // A resume would read the history now, and hold live sends until its replay is written: the
    // held send must be here already, or it would come after the replay, a second time.
    assert.deepEqual(
      alice.got.map((m) => m.body),
      ['early'],
    );
    assert.deepEqual(await sent, { delivered: 1, complete: true, missing: [] });
  });

  test('discovery waits past discoveryMs for the snapshot of every gateway that answered', async () => {
    const p = freshPrefix();
    const nc = await connect({ servers: SERVER });
    try {
      let batchAt = 0;
      let snapshotAt = 0;
      onEach(nc, `${p}.dl.slow`, () => {
        batchAt ||= Date.now();
      });
      // A gateway that answers a router's `who` at once, and sends its snapshot 400 ms later.
      onEach(nc, `${p}.gw.who`, (m) => {
        if (!whoToAll(m)) return;
        const [, router] = m.string().split(' ');
        nc.publish(`${p}.gw.hb`, 'hb slow 1 1 1');
        setTimeout(() => {
          snapshotAt = Date.now();
          nc.publish(`${p}.snap.${router}`, codec.encodeSnapshot('slow', 1, 0, true, ['alice']));
        }, 400);
      });
      await nc.flush();
      const router = await bus(p, {
        role: 'router',
        gatewayHeartbeatMs: 1000,
        discoveryMs: 50,
        tallyTimeoutMs: 200,
      });
      const sent = router.publish(message('early'), ['alice']);
      await until('the send reaches the slow gateway', () => batchAt > 0, 5000);
      assert.ok(snapshotAt > 0 && batchAt >= snapshotAt, 'routed once the snapshot was in');
      // The fake gateway answers no tally: the count is partial, and says so.
      assert.equal((await sent).complete, false);
    } finally {
      await nc.close();
    }
  });

  test('a gateway that never held an id (heartbeat seq 0) is known at once: discovery does not wait for it', async () => {
    const p = freshPrefix();
    const nc = await connect({ servers: SERVER });
    try {
      onEach(nc, `${p}.gw.who`, () => {
        nc.publish(`${p}.gw.hb`, 'hb empty 0 0 0');
      });
      await nc.flush();
      // A cap of 2.45 s past discoveryMs: waiting for a snapshot would still be learning at 500 ms.
      const router = await bus(p, { role: 'router', gatewayHeartbeatMs: 1000, discoveryMs: 50 });
      await until('the router hears the gateway', () => router.liveGateways().includes('empty'));
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(router.learning, false);
      nc.publish(`${p}.gw.int`, codec.encodeDelta('empty', 1, ['alice'], []));
      await until('its first delta applies in order', () => router.holders('alice').length === 1);
    } finally {
      await nc.close();
    }
  });

  test('a gateway known only by a delta is waited for; at the cap it is asked again with `lost`', async (t) => {
    const p = freshPrefix();
    const nc = await connect({ servers: SERVER });
    try {
      const asked: string[] = [];
      onEach(nc, `${p}.gw.who`, (m) => {
        asked.push(m.string());
        if (!whoToAll(m)) return;
        // Busy: it heartbeats, a delta of its goes out, and its snapshot never comes.
        nc.publish(`${p}.gw.hb`, 'hb busy 5 57 57');
        nc.publish(`${p}.gw.int`, codec.encodeDelta('busy', 58, ['bob'], []));
      });
      // Alive all along (a silent one would expire, and discovery would stop waiting for it).
      const beat = setInterval(() => nc.publish(`${p}.gw.hb`, 'hb busy 5 57 58'), 100);
      t.after(() => clearInterval(beat));
      await nc.flush();
      // Heartbeats of 1 s: the cap is 2.5 × 1000 − 50 = 2,450 ms past discoveryMs.
      const router = await bus(p, { role: 'router', gatewayHeartbeatMs: 1000, discoveryMs: 50 });
      await until('the delta applied', () => router.holders('bob').length === 1);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(router.learning, true, 'past discoveryMs: one delta is not all of its ids');
      await until('learned at the cap', () => !router.learning, 6000);
      await until('asked again, lost', () => asked.includes(`who ${router.id} busy lost`), 3000);
      // Its delta came before any part of its snapshot, within discoveryMs: not asked for a
      // second snapshot then (its answer to the `who` to all was still due).
      assert.deepEqual(
        asked.filter((a) => a.startsWith(`who ${router.id} busy`)),
        [`who ${router.id} busy lost`],
      );
    } finally {
      await nc.close();
    }
  });

  test('a gateway that leaves ends the discovery that waited for it, and the held sends are not routed to it', async () => {
    const p = freshPrefix();
    const nc = await connect({ servers: SERVER });
    try {
      const batches: string[] = [];
      onEach(nc, `${p}.dl.leaving`, (m) => {
        batches.push(m.subject);
      });
      onEach(nc, `${p}.gw.who`, (m) => {
        if (!whoToAll(m)) return;
        nc.publish(`${p}.gw.hb`, 'hb leaving 1 5 5');
        nc.publish(`${p}.gw.int`, codec.encodeDelta('leaving', 6, ['carol'], []));
      });
      await nc.flush();
      const router = await bus(p, { role: 'router', gatewayHeartbeatMs: 1000, discoveryMs: 50 });
      await until('its delta applied', () => router.holders('carol').length === 1);
      const sent = router.publish(message('held'), ['carol']);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(router.learning, true, 'past discoveryMs, waiting for its ids');
      nc.publish(`${p}.gw.hb`, 'bye leaving');
      // Routed on the directory without it: no gateway holds carol, and no count is waited for.
      assert.deepEqual(await sent, { delivered: 0, complete: true, missing: [] });
      assert.equal(router.learning, false);
      await router.flush();
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(batches, [], 'no batch to a gateway gone');
    } finally {
      await nc.close();
    }
  });

  test('a gateway whose load cannot be read still heartbeats its delta seq, with the last load it read', async () => {
    const p = freshPrefix();
    class Failing extends FakeRegistry {
      fail = false;
      override load(): { connections: number; ids: number } {
        if (this.fail) throw new Error('load source down');
        return super.load();
      }
    }
    const nc = await connect({ servers: SERVER });
    try {
      const beats: string[] = [];
      onEach(nc, `${p}.gw.hb`, (m) => {
        beats.push(m.string());
      });
      await nc.flush();
      const gw = await bus(p, { role: 'gateway', gatewayHeartbeatMs: 100 });
      const reg = new Failing(gw);
      reg.login('alice', new FakeConn('alice'));
      await gw.flush();
      await until('a heartbeat with the load', () => beats.includes(`hb ${gw.id} 1 1 1`));
      reg.fail = true;
      const from = beats.length;
      await until('heartbeats while the load fails', () => beats.length >= from + 2);
      // Not a bare `hb <id>`: a router would read it as seq 0, a gateway that never held an id.
      assert.deepEqual(beats.slice(from, from + 2), [`hb ${gw.id} 1 1 1`, `hb ${gw.id} 1 1 1`]);
    } finally {
      await nc.close();
    }
  });

  test('a wide send goes in several batches and reaches every connection once', async () => {
    const p = freshPrefix();
    const router = await bus(p, { role: 'router', gatewayHeartbeatMs: 100, discoveryMs: 50 });
    const gw = await bus(p, { role: 'gateway', gatewayHeartbeatMs: 100 });
    const reg = new FakeRegistry(gw);
    const ids = Array.from({ length: 30_000 }, (_, i) => `user:${i}`);
    const conns = ids.map((id) => {
      const c = new FakeConn(id);
      reg.login(id, c);
      return c;
    });
    // One connection on two of the ids, in different batches.
    const both = new FakeConn('both');
    reg.login('user:1', both);
    reg.login('user:29999', both);
    await gw.settled();
    await until('the router holds every id', () => router.stats().directory.ids === ids.length);
    const before = router.stats().batchesSent;
    const r = await router.publish(message('wide'), ids);
    assert.equal(r.delivered, ids.length + 1);
    assert.ok(router.stats().batchesSent - before >= 3, 'a 30,000-id send is more than one 64 KB batch');
    assert.equal(conns.filter((c) => c.got.length === 1).length, ids.length);
    assert.equal(both.got.length, 1);
  });

  test('a router does not ack deltas it may have missed some of, asks with `lost`, and acks after the snapshot', async () => {
    const p = freshPrefix();
    const router = await bus(p, { role: 'router', gatewayHeartbeatMs: 100, discoveryMs: 50 });
    const nc = await connect({ servers: SERVER });
    try {
      const heard: string[] = [];
      onEach(nc, `${p}.ia.ghost`, (m) => heard.push(m.string()));
      const asked: string[] = [];
      onEach(nc, `${p}.gw.who`, (m) => asked.push(m.string()));
      await nc.flush();
      // Past the router's discovery (50 ms): it routes, so a loss is news for the gateway.
      await new Promise((r) => setTimeout(r, 150));
      nc.publish(`${p}.gw.int`, codec.encodeDelta('ghost', 1, ['alice'], []));
      await until('delta 1 acked', () => heard.includes(`ia ${router.id} 1`));
      // Delta 2 is lost: 3 arrives out of order.
      nc.publish(`${p}.gw.int`, codec.encodeDelta('ghost', 3, ['carol'], []));
      await until('a snapshot asked for', () => asked.includes(`who ${router.id} ghost lost`));
      nc.publish(`${p}.gw.hb`, 'hb ghost 2 3 3');
      nc.publish(`${p}.gw.int`, codec.encodeDelta('ghost', 4, ['dave'], []));
      await nc.flush();
      await new Promise((r) => setTimeout(r, 150));
      assert.deepEqual(heard, [`ia ${router.id} 1`], 'nothing acked while the router is unsure');
      nc.publish(
        `${p}.snap.${router.id}`,
        codec.encodeSnapshot('ghost', 4, 0, true, ['alice', 'bob', 'carol', 'dave']),
      );
      await until('acked after the snapshot', () => heard.includes(`ia ${router.id} 4`));
      assert.deepEqual(router.holders('bob'), ['ghost']);
      // Asked again while still unsure, `lost` was said only once.
      assert.equal(asked.filter((a) => a.endsWith(' lost')).length, 1);
    } finally {
      await nc.close();
    }
  });

  test('a gateway heard only through its deltas expires like a silent one, and its ids go with it', async () => {
    const p = freshPrefix();
    const router = await bus(p, { role: 'router', gatewayHeartbeatMs: 100, discoveryMs: 50 });
    const nc = await connect({ servers: SERVER });
    try {
      await new Promise((r) => setTimeout(r, 150));
      // No heartbeat ever: its heartbeats were lost, or this is a late delta after its bye.
      nc.publish(`${p}.gw.int`, codec.encodeDelta('mute', 1, ['alice', 'bob'], []));
      nc.publish(`${p}.gw.hb`, 'bye late');
      nc.publish(`${p}.gw.int`, codec.encodeDelta('late', 7, ['carol'], []));
      // Both deltas are signs of life (the second, out of order, adds nothing).
      await until('both deltas heard', () => router.stats().gateways === 2);
      assert.deepEqual(router.holders('alice'), ['mute']);
      await until('both expired', () => router.stats().gateways === 0, 3000);
      assert.deepEqual(router.holders('alice'), []);
      assert.deepEqual(router.stats().directory, { ids: 0, pairs: 0 });
    } finally {
      await nc.close();
    }
  });

  test('a router that lost track of a gateway asks it again with `lost`: its clients are told to resume', async () => {
    const p = freshPrefix();
    const gw = await bus(p, { role: 'gateway', gatewayHeartbeatMs: 100 });
    const reg = new MissRegistry(gw);
    reg.login('alice', new FakeConn('alice'));
    await gw.flush();
    const nc = await connect({ servers: SERVER });
    try {
      const snapshots = nc.subscribe(`${p}.snap.r-lost`, { max: 2 });
      nc.publish(`${p}.gw.who`, `who r-lost ${gw.id}`);
      nc.publish(`${p}.gw.who`, `who r-lost ${gw.id} lost`);
      const got: codec.InterestSnapshot[] = [];
      for await (const m of snapshots) got.push(codec.decodeSnapshot(m.data));
      assert.deepEqual(
        got.map((s) => s.ids),
        [['alice'], ['alice']],
      );
      assert.equal(reg.missed, 1, 'only the request that says lost');
    } finally {
      await nc.close();
    }
  });
});
