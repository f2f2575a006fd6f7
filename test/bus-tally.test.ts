import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep, setImmediate as turn } from 'node:timers/promises';
import {
  GATEWAYS_PER_GAP,
  type PublishResult,
  ROUND_GAP_MS,
  roundGapMs,
  TallyRounds,
} from '../src/bus/tally.js';

/**
 * A router's tally rounds against two fake gateways, both holding every recipient unless a test
 * says otherwise; `sent` records every round sent (once), `requests` each request per gateway.
 */
function rounds(timeoutMs = 10_000) {
  const sent: { round: number; seqs: readonly number[] }[] = [];
  const requests: { round: number; gateway: string; seqs: readonly number[] }[] = [];
  const timedOut: { round: number; missing: readonly string[] }[] = [];
  const gateways = ['g1', 'g2'];
  const live = new Set(gateways);
  const tally = new TallyRounds({ has: (id) => live.has(id) }, timeoutMs, {
    send: (round, gateway, seqs) => {
      requests.push({ round, gateway, seqs: [...seqs] });
      if (sent.at(-1)?.round !== round) sent.push({ round, seqs: [...seqs] });
    },
    timedOut: (round, missing) => timedOut.push({ round, missing }),
  });
  tally.release();
  const t = {
    add: (seq: number, candidates: readonly string[] = gateways) => tally.add(seq, candidates),
    get pending() {
      return tally.pending;
    },
    get roundsSent() {
      return tally.roundsSent;
    },
    failAll: (err: unknown) => tally.failAll(err),
    onReply: (r: Parameters<TallyRounds['onReply']>[0]) => tally.onReply(r),
    gatewayGone: (id: string, expired: boolean) => tally.gatewayGone(id, expired),
  };
  /** Both gateways answer round `i` of `sent`, each reporting `n` connections for every publish. */
  const answer = (i: number, n: number, only = gateways): void => {
    const r = sent[i]!;
    for (const gatewayId of only)
      t.onReply({ round: r.round, gatewayId, pairs: r.seqs.flatMap((_, index) => [index, n]) });
  };
  return { t, sent, requests, timedOut, answer, live };
}

describe('tally rounds (router side)', () => {
  test('the publishes of one turn share a round, sent in the next turn when none is out', async () => {
    const { t, sent, answer } = rounds();
    const a = t.add(1);
    const b = t.add(2);
    assert.equal(sent.length, 0);
    await turn();
    assert.deepEqual(
      sent.map((r) => r.seqs),
      [[1, 2]],
    );
    answer(0, 3);
    const results: PublishResult[] = await Promise.all([a, b]);
    for (const r of results) assert.deepEqual(r, { delivered: 6, complete: true, missing: [] });
    assert.equal(t.pending, 0);
  });

  test('while a round is out, new publishes gather and go as one round when it ends', async () => {
    const { t, sent, answer } = rounds();
    const first = t.add(1);
    await turn();
    assert.equal(sent.length, 1);
    const later = [t.add(2), t.add(3)];
    await turn();
    const more = t.add(4);
    await turn();
    assert.equal(sent.length, 1, 'nothing sent while round 1 is out (within the gap)');
    answer(0, 1);
    assert.deepEqual(await first, { delivered: 2, complete: true, missing: [] });
    await turn();
    assert.deepEqual(
      sent.map((r) => r.seqs),
      [[1], [2, 3, 4]],
    );
    answer(1, 5);
    for (const r of await Promise.all([...later, more])) assert.equal(r.delivered, 10);
    assert.equal(t.roundsSent, 2);
  });

  test('a publisher that waits for each answer gets a round of its own each time, at once', async () => {
    const { t, sent, answer } = rounds();
    for (let seq = 1; seq <= 5; seq++) {
      const p = t.add(seq);
      await turn();
      assert.equal(sent.length, seq, `round for publish ${seq} sent in the next turn`);
      answer(seq - 1, 1);
      assert.equal((await p).delivered, 2);
    }
  });

  test('a round held up by a slow gateway delays the next one by the gap only', async () => {
    const { t, sent, answer } = rounds();
    const slow = t.add(1);
    await turn();
    const next = t.add(2);
    await sleep(ROUND_GAP_MS * 4);
    assert.deepEqual(
      sent.map((r) => r.seqs),
      [[1], [2]],
    );
    // Round 2 completes first; round 1 still waits for g2.
    answer(1, 1);
    assert.equal((await next).delivered, 2);
    answer(0, 1, ['g1']);
    answer(0, 1, ['g2']);
    assert.deepEqual(await slow, { delivered: 2, complete: true, missing: [] });
  });

  test('rounds that ask many gateways are spaced out in proportion, even for a publisher that waits', async () => {
    assert.equal(roundGapMs(2), ROUND_GAP_MS);
    assert.equal(roundGapMs(GATEWAYS_PER_GAP), ROUND_GAP_MS);
    assert.equal(roundGapMs(56), ROUND_GAP_MS * 7);
    const many = Array.from({ length: 40 }, (_, i) => `g${i}`);
    const at: number[] = [];
    const tally = new TallyRounds({ has: () => true }, 10_000, {
      send: (round, gateway, seqs) => {
        if (gateway === 'g0') at.push(performance.now());
        // Every gateway answers at once: no round is ever out when the next publish comes.
        queueMicrotask(() =>
          tally.onReply({ round, gatewayId: gateway, pairs: seqs.flatMap((_, i) => [i, 1]) }),
        );
      },
      timedOut: () => undefined,
    });
    tally.release();
    for (let seq = 1; seq <= 4; seq++) {
      tally.willAdd();
      assert.equal((await tally.add(seq, many)).delivered, 40);
    }
    assert.equal(at.length, 4);
    for (let i = 1; i < at.length; i++) {
      assert.ok(
        at[i]! - at[i - 1]! >= roundGapMs(40) - 1,
        `rounds ${i} and ${i + 1}: ${at[i]! - at[i - 1]!} ms apart`,
      );
    }
  });

  test('a round no gateway finishes ends at the time-out with a partial count', async () => {
    const { t, sent, timedOut, answer } = rounds(50);
    const p = t.add(7);
    await turn();
    answer(0, 4, ['g1']);
    assert.deepEqual(await p, { delivered: 4, complete: false, missing: ['g2'] });
    assert.deepEqual(timedOut, [{ round: sent[0]!.round, missing: ['g2'] }]);
  });

  test('a round asks only the gateways holding a recipient, each for its own publishes', async () => {
    const { t, requests } = rounds();
    const a = t.add(1, ['g1']);
    const b = t.add(2, ['g2']);
    const c = t.add(3, ['g1', 'g2']);
    await turn();
    assert.deepEqual(
      requests.map((r) => [r.gateway, r.seqs]),
      [
        ['g1', [1, 3]],
        ['g2', [2, 3]],
      ],
    );
    const round = requests[0]!.round;
    t.onReply({ round, gatewayId: 'g1', pairs: [0, 5, 1, 1] });
    t.onReply({ round, gatewayId: 'g2', pairs: [0, 2, 1, 4] });
    assert.deepEqual(
      (await Promise.all([a, b, c])).map((r) => r.delivered),
      [5, 2, 5],
    );
  });

  test('a publish no gateway holds a recipient of is settled at once, with no round', async () => {
    const { t, requests } = rounds();
    assert.deepEqual(await t.add(1, []), { delivered: 0, complete: true, missing: [] });
    await turn();
    assert.equal(requests.length, 0);
  });

  test('a gateway gone while a round waits: bye leaves the count exact, expiry makes it partial', async () => {
    const { t, requests } = rounds();
    const byeing = t.add(1);
    await turn();
    t.onReply({ round: requests[0]!.round, gatewayId: 'g1', pairs: [0, 2] });
    t.gatewayGone('g2', false);
    assert.deepEqual(await byeing, { delivered: 2, complete: true, missing: [] });
    const expiring = t.add(2);
    await turn();
    t.onReply({ round: requests.at(-1)!.round, gatewayId: 'g1', pairs: [0, 1] });
    t.gatewayGone('g2', true);
    // g2 may have delivered it and not said: a lower bound, naming g2.
    assert.deepEqual(await expiring, { delivered: 1, complete: false, missing: ['g2'] });
  });

  test('a candidate that expires before the round is sent makes the publish partial; one that says bye does not', async () => {
    const { t, requests, live } = rounds();
    const both = t.add(1, ['g1', 'g2', 'g3']);
    const alone = t.add(2, ['g3']);
    live.delete('g2');
    t.gatewayGone('g2', false);
    t.gatewayGone('g3', true); // g3 was never in `live`: as membership sees it once expired
    await turn();
    assert.deepEqual(
      requests.map((r) => [r.gateway, r.seqs]),
      [['g1', [1]]],
    );
    t.onReply({ round: requests[0]!.round, gatewayId: 'g1', pairs: [0, 1] });
    // g3 may have delivered both before it expired: lower bounds, naming g3 (and not g2).
    assert.deepEqual(await both, { delivered: 1, complete: false, missing: ['g3'] });
    assert.deepEqual(await alone, { delivered: 0, complete: false, missing: ['g3'] });
  });

  test('a candidate that has gone is not waited for', async () => {
    const { t, requests, live } = rounds();
    live.delete('g2');
    const p = t.add(1, ['g1', 'g2']);
    await turn();
    assert.deepEqual(
      requests.map((r) => r.gateway),
      ['g1'],
    );
    t.onReply({ round: requests[0]!.round, gatewayId: 'g1', pairs: [0, 1] });
    assert.deepEqual(await p, { delivered: 1, complete: true, missing: [] });
  });

  test('a lost connection rejects publishes waiting for a round as well as those in one', async () => {
    const { t, sent } = rounds();
    const out = t.add(1);
    await turn();
    const waiting = t.add(2);
    await turn();
    assert.equal(sent.length, 1);
    const err = new Error('connection lost');
    t.failAll(err);
    await assert.rejects(out, /connection lost/);
    await assert.rejects(waiting, /connection lost/);
    await sleep(ROUND_GAP_MS * 2);
    assert.equal(sent.length, 1, 'nothing is sent for the failed publishes');
    assert.equal(t.pending, 0);
  });
});
