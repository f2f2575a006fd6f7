/**
 * The contract every {@link Bus} passes, run against each implementation by
 * test/bus-local.test.ts and test/bus-nats.test.ts.
 *
 * The gateway side is the real connection index (gateway/hub.ts) with fake connections: a
 * connection may be logged in as several ids, an id may have several connections, the bus is told
 * `interest` on an id's first login and `disinterest` on its last logout, and a connection counts
 * a message once however many of its ids it was sent to — the semantics production has.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Bus, Deliverer, PresenceChange } from '../src/bus/bus.js';
import { ClosedError, Disconnect, type DisconnectReason } from '../src/errors.js';
import { Hub, type Receiver } from '../src/gateway/hub.js';
import { Message } from '../src/message.js';

/** A fake client connection: what it got, and why it was ended, if it was. */
export class FakeConn implements Receiver {
  readonly name: string;
  ids: string | string[] | null = null;
  readonly got: Message[] = [];
  ended: DisconnectReason | undefined = undefined;
  hub: Hub | undefined = undefined;

  constructor(name: string) {
    this.name = name;
  }

  push(msg: Message): boolean {
    if (this.ended !== undefined) return false;
    this.got.push(msg);
    return true;
  }

  disconnect(reason: DisconnectReason): void {
    this.ended = reason;
    this.hub?.logout(this);
  }
}

/** A gateway for the contract: the real hub, attached to one bus. */
export class FakeRegistry implements Deliverer {
  readonly bus: Bus;
  readonly hub: Hub;
  /** Sum of every `deliver()` return value. */
  returned = 0;
  calls = 0;

  constructor(bus: Bus) {
    this.bus = bus;
    this.hub = new Hub(bus);
    bus.attach(this);
  }

  login(id: string, conn: FakeConn): void {
    conn.hub = this.hub;
    this.hub.login(id, conn);
  }

  logout(_id: string, conn: FakeConn): void {
    this.hub.logout(conn);
  }

  load(): { connections: number; ids: number } {
    return { connections: this.hub.receivers, ids: this.hub.ids };
  }

  deliver(msg: Message, recipients: readonly string[]): number {
    this.calls++;
    const n = this.hub.deliver(msg, recipients);
    this.returned += n;
    return n;
  }

  count(id: string): number {
    return this.hub.count(id);
  }

  disconnect(id: string, reason: DisconnectReason): number {
    return this.hub.disconnect(id, reason);
  }

  heldIds(): Iterable<string> {
    return this.hub.heldIds();
  }
}

/** What a contract case runs against. */
export interface BusPair {
  /** Publishes. May be the same instance as `gateways[0]` (it is for the local bus). */
  readonly publisher: Bus;
  /** One or two gateway buses; cases that need two skip when there is one. */
  readonly gateways: readonly Bus[];
  /**
   * Resolves when interests taken so far are effective everywhere and the publisher knows every
   * gateway and what it holds (NATS: flush each gateway, wait for membership and the directory).
   * Immediate for the local bus.
   */
  settle(): Promise<void>;
  /** Resolves when the publisher reports presence changes (NATS: once it has learned the cluster). */
  ready?(): Promise<void>;
  close(): Promise<void>;
}

let nextEid = 0;

/** A message with a unique eid. */
export function message(body: string, subject = 'song:1'): Message {
  nextEid++;
  return new Message(`contract-${process.pid}-${nextEid}`, subject, body, 1_700_000_000_000 + nextEid);
}

async function withPair(
  makePair: () => Promise<BusPair>,
  fn: (pair: BusPair) => Promise<void>,
): Promise<void> {
  const pair = await makePair();
  try {
    await fn(pair);
  } finally {
    await pair.close();
  }
}

/** One registry per distinct gateway bus (the publisher's too, when it is one of them). */
function registries(pair: BusPair): FakeRegistry[] {
  return pair.gateways.map((bus) => new FakeRegistry(bus));
}

/** Registers the shared cases for `name`; `makePair` is called once per case. */
export function busContract(name: string, makePair: () => Promise<BusPair>): void {
  describe(`bus contract: ${name}`, () => {
    test('publish to an id with interest reaches the deliverer with the same eid, subject, body, ts', async () => {
      await withPair(makePair, async (pair) => {
        const [reg] = registries(pair);
        assert.ok(reg);
        const conn = new FakeConn('c1');
        reg.login('user:1.a', conn);
        await pair.settle();
        const msg = message('héllo wörld ✓ "quoted" <b>');
        const delivered = (await pair.publisher.publish(msg, ['user:1.a'])).delivered;
        assert.equal(delivered, 1);
        assert.equal(conn.got.length, 1);
        const got = conn.got[0];
        assert.ok(got);
        assert.equal(got.eid, msg.eid);
        assert.equal(got.subject, msg.subject);
        assert.equal(got.body, msg.body);
        assert.equal(got.ts, msg.ts);
      });
    });

    test('publish to an id without interest delivers nothing and resolves 0', async () => {
      await withPair(makePair, async (pair) => {
        const [reg] = registries(pair);
        assert.ok(reg);
        const conn = new FakeConn('c1');
        reg.login('someone', conn);
        await pair.settle();
        assert.equal((await pair.publisher.publish(message('x'), ['nobody'])).delivered, 0);
        assert.equal((await pair.publisher.publish(message('y'), [])).delivered, 0);
        assert.equal(conn.got.length, 0);
        assert.equal(reg.returned, 0);
      });
    });

    test('delivered count equals the sum of what the deliverers returned', async () => {
      await withPair(makePair, async (pair) => {
        const [reg] = registries(pair);
        assert.ok(reg);
        const a1 = new FakeConn('a1');
        const a2 = new FakeConn('a2');
        const b1 = new FakeConn('b1');
        reg.login('a', a1);
        reg.login('a', a2);
        reg.login('b', b1);
        await pair.settle();
        const results = await Promise.all([
          pair.publisher.publish(message('m1'), ['a', 'b', 'c']),
          pair.publisher.publish(message('m2'), ['b']),
          pair.publisher.publish(message('m3'), ['c', 'a']),
        ]);
        assert.deepEqual(
          results.map((r) => r.delivered),
          [3, 1, 2],
        );
        assert.equal(reg.returned, 6);
        assert.deepEqual(
          [a1, a2, b1].map((c) => c.got.map((m) => m.body)),
          [
            ['m1', 'm3'],
            ['m1', 'm3'],
            ['m1', 'm2'],
          ],
        );
      });
    });

    test('disinterest stops delivery', async () => {
      await withPair(makePair, async (pair) => {
        const [reg] = registries(pair);
        assert.ok(reg);
        const conn = new FakeConn('c1');
        reg.login('leaver', conn);
        await pair.settle();
        assert.equal((await pair.publisher.publish(message('before'), ['leaver'])).delivered, 1);
        reg.logout('leaver', conn);
        await pair.settle();
        assert.equal((await pair.publisher.publish(message('after'), ['leaver'])).delivered, 0);
        assert.deepEqual(
          conn.got.map((m) => m.body),
          ['before'],
        );
      });
    });

    test('a connection logged in as two recipients counts once', async () => {
      await withPair(makePair, async (pair) => {
        const [reg] = registries(pair);
        assert.ok(reg);
        const both = new FakeConn('both');
        const onlyB = new FakeConn('onlyB');
        reg.login('x', both);
        reg.login('y', both);
        reg.login('y', onlyB);
        await pair.settle();
        assert.equal((await pair.publisher.publish(message('once'), ['x', 'y'])).delivered, 2);
        assert.equal(both.got.length, 1);
        assert.equal(onlyB.got.length, 1);
        assert.equal(reg.returned, 2);
      });
    });

    test('recipients on two gateways: each gets it and the count is the sum', async (t) => {
      await withPair(makePair, async (pair) => {
        if (pair.gateways.length < 2) {
          t.skip('this bus has a single gateway (router and gateway share one process)');
          return;
        }
        const [r1, r2] = registries(pair);
        assert.ok(r1 && r2);
        const alice = new FakeConn('alice');
        const bob = new FakeConn('bob');
        const bob2 = new FakeConn('bob on gw1');
        r1.login('alice', alice);
        r2.login('bob', bob);
        r1.login('bob', bob2);
        await pair.settle();
        assert.equal((await pair.publisher.publish(message('both'), ['alice', 'bob'])).delivered, 3);
        assert.deepEqual(
          [alice, bob, bob2].map((c) => c.got.length),
          [1, 1, 1],
        );
        assert.equal(r1.returned + r2.returned, 3);
        assert.equal((await pair.publisher.publish(message('gw2 only'), ['bob', 'carol'])).delivered, 2);
      });
    });

    test('stats().cluster sums what every live gateway holds; a publish says its count is complete', async () => {
      await withPair(makePair, async (pair) => {
        const regs = registries(pair);
        const conns = [new FakeConn('c1'), new FakeConn('c2'), new FakeConn('c3')];
        regs[0]!.login('p', conns[0]!);
        regs[0]!.login('q', conns[0]!);
        regs[0]!.login('p', conns[1]!);
        regs.at(-1)!.login('r', conns[2]!);
        await pair.settle();
        const expected = regs.reduce(
          (acc, r) => ({ connections: acc.connections + r.load().connections, ids: acc.ids + r.load().ids }),
          { connections: 0, ids: 0 },
        );
        // Loads travel with heartbeats (NATS: every heartbeat period); wait for the next one.
        const deadline = Date.now() + 5000;
        while (
          JSON.stringify(pair.publisher.stats().cluster) !== JSON.stringify(expected) &&
          Date.now() < deadline
        ) {
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.deepEqual(pair.publisher.stats().cluster, expected);
        const outcome = await pair.publisher.publish(message('detailed'), ['p', 'r']);
        assert.equal(outcome.complete, true);
        assert.equal(outcome.delivered, 3);
        assert.equal(pair.publisher.stats().partialPublishes, 0);
      });
    });

    test('presence counts connections across gateways; offline ids count 0', async () => {
      await withPair(makePair, async (pair) => {
        const regs = registries(pair);
        const first = regs[0]!;
        const last = regs.at(-1)!;
        first.login('pres', new FakeConn('p1'));
        first.login('pres', new FakeConn('p2'));
        last.login('pres', new FakeConn('p3'));
        last.login('solo', new FakeConn('s1'));
        await pair.settle();
        const p = await pair.publisher.presence(['pres', 'solo', 'nobody']);
        assert.equal(p.complete, true);
        assert.deepEqual(Object.fromEntries(p.counts), { pres: 3, solo: 1, nobody: 0 });
      });
    });

    test('disconnect ends every connection of an id on every gateway, telling each why', async () => {
      await withPair(makePair, async (pair) => {
        const regs = registries(pair);
        const conns = [new FakeConn('d1'), new FakeConn('d2'), new FakeConn('d3')];
        regs[0]!.login('gone', conns[0]!);
        regs.at(-1)!.login('gone', conns[1]!);
        regs[0]!.login('stays', conns[2]!);
        await pair.settle();
        const r = await pair.publisher.disconnect('gone', Disconnect.ForceDisconnect);
        assert.deepEqual(r, { disconnected: 2, complete: true });
        assert.deepEqual(
          conns.map((c) => c.ended?.code),
          [3504, 3504, undefined],
        );
        await pair.settle();
        assert.equal((await pair.publisher.publish(message('after'), ['gone', 'stays'])).delivered, 1);
      });
    });

    test('presence changes: first login anywhere is online, last logout everywhere is offline', async () => {
      await withPair(makePair, async (pair) => {
        const regs = registries(pair);
        // Every process that could report listens; exactly one (the lowest router id) does.
        const changes: PresenceChange[] = [];
        const buses = [pair.publisher, ...pair.gateways].filter((b, i, all) => all.indexOf(b) === i);
        for (const b of buses) b.onPresence((c) => changes.push(...c));
        await pair.settle();
        await pair.ready?.();
        const a = new FakeConn('a');
        const b = new FakeConn('b');
        regs[0]!.login('pc', a);
        regs.at(-1)!.login('pc', b);
        await pair.settle();
        regs[0]!.logout('pc', a);
        await pair.settle();
        const seen = (): string[] =>
          changes.filter((c) => c.id === 'pc').map((c) => (c.online ? 'on' : 'off'));
        assert.deepEqual(seen(), ['on']);
        regs.at(-1)!.logout('pc', b);
        await pair.settle();
        const deadline = Date.now() + 5000;
        while (seen().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        assert.deepEqual(seen(), ['on', 'off']);
      });
    });

    test('publish after close rejects with ClosedError', async () => {
      const pair = await makePair();
      await pair.close();
      await assert.rejects(pair.publisher.publish(message('late'), ['a']), ClosedError);
      assert.equal(pair.publisher.connected, false);
    });
  });
}
