/** A gateway's record of which routers have acked its interest deltas (src/bus/interest-acks.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InterestAcks } from '../src/bus/interest-acks.js';

const settled = async (p: Promise<void>): Promise<boolean> =>
  Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 20))]);

test('a wait ends when every router named has acked the seq; forget() makes a router ack again', async () => {
  const gaveUp: [readonly string[], number][] = [];
  const acks = new InterestAcks(60_000, (routers, seq) => gaveUp.push([routers, seq]));
  const w = acks.wait(2, ['r1', 'r2']);
  assert.equal(acks.waiting, 1);
  acks.heard('r1', 5);
  assert.equal(await settled(w), false, 'r2 has not acked');
  acks.heard('r2', 1);
  assert.equal(await settled(w), false, 'r2 acked an older seq');
  acks.heard('r2', 2);
  assert.equal(await settled(w), true);
  assert.equal(acks.waiting, 0);
  // Acked already: no wait. After forget(r1) (it asked for a snapshot), r1 must ack again.
  assert.equal(await settled(acks.wait(2, ['r1', 'r2'])), true);
  acks.forget('r1');
  const again = acks.wait(2, ['r1', 'r2']);
  assert.equal(await settled(again), false);
  acks.gone('r1');
  assert.equal(await settled(again), true, 'a router that left is not waited for');
  assert.deepEqual(gaveUp, []);
});

test('a router that never acks is given up after the timeout, and said so', async () => {
  const gaveUp: [readonly string[], number][] = [];
  const acks = new InterestAcks(30, (routers, seq) => gaveUp.push([routers, seq]));
  // The wait's timer is unref'd (it must not keep a process alive): something else must here.
  const alive = setInterval(() => undefined, 1000);
  await acks.wait(7, ['slow', 'fast']);
  clearInterval(alive);
  assert.deepEqual(gaveUp, [[['slow', 'fast'], 7]]);
  assert.equal(acks.timeouts, 1);
  assert.equal(await settled(acks.wait(0, ['slow'])), true, 'seq 0: nothing announced, nothing to wait for');
});
