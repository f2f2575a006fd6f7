/**
 * The router's send path: recipients are the id and its subscribers, each connection is reached
 * once, and a send that the store or the bus refuses leaves no trace (no event id, nothing in the
 * resume history) so a retried publish is not delivered twice.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { LocalBus } from '../src/bus/local-bus.js';
import { UnavailableError } from '../src/errors.js';
import { Hub } from '../src/gateway/hub.js';
import { EventIds, Message } from '../src/message.js';
import { History } from '../src/router/history.js';
import { openStore } from '../src/store/open-store.js';
import type { SubscriptionStore } from '../src/store/store.js';
import { receiver, routerOn } from './support/router.js';

let store: SubscriptionStore;
before(async () => {
  store = await openStore('sqlite::memory:');
});
after(() => store.close());

test("send reaches the id and its subscribers, each connection once (router.erl.2's semantics)", async () => {
  await store.addSubscriptions([
    { subscriber: 'alice', subscribee: 'rj' },
    { subscriber: 'bob', subscribee: 'rj' },
  ]);
  const { router, registry } = routerOn(store);
  assert.equal(await router.send('rj', 'RJ did something'), 0, 'nobody logged in');
  const alice = receiver();
  const both = receiver();
  registry.login('alice', alice);
  registry.login('rj', both);
  registry.login('bob', both);
  assert.equal(await router.send('rj', 'again'), 2);
  assert.deepEqual(
    alice.got.map((m) => m.body),
    ['again'],
  );
  assert.equal(both.got.length, 1, 'logged in as rj and bob, reached once');
  registry.logout(both);
  assert.equal(registry.logins, 1);
  assert.equal(await router.send('bob', 'to bob'), 0);
});

test('a send the store refuses gets 503 and leaves nothing to replay', async () => {
  const failing: SubscriptionStore = Object.create(store, {
    subscriberPages: {
      value: () => ({
        [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(new UnavailableError('database gone')) }),
      }),
    },
    subscribersNow: {
      value: () => {
        throw new UnavailableError('database gone');
      },
    },
  });
  const { router, ids, history } = routerOn(failing);
  const before = ids.current();
  await assert.rejects(router.send('rj', 'never sent'), UnavailableError);
  assert.equal(ids.current(), before, 'no event id was used');
  assert.equal(history.size, 0);
  assert.equal(router.stats().messagesIn, 0);
});

test('a send while the bus is down gets 503 and leaves nothing to replay', async () => {
  const { router, bus, ids, history } = routerOn(store);
  await bus.close();
  const before = ids.current();
  await assert.rejects(router.send('rj', 'bus gone'), UnavailableError);
  assert.equal(ids.current(), before);
  assert.equal(history.size, 0);
});

test('a message over the size limit is refused before anything happens', async () => {
  const { router } = routerOn(store);
  await assert.rejects(router.send('rj', 'x'.repeat(2000)), /2000 bytes, the limit is 1024/);
  await assert.rejects(router.send('bad id', 'x'), /id "bad id" contains " "/);
});

test('event ids parse strictly: only decimal digits after the epoch', () => {
  const ids = new EventIds('ep');
  assert.equal(ids.seqOf('ep-1'), 1);
  assert.equal(ids.seqOf('ep-0'), 0);
  for (const bad of [
    'ep-1e0',
    'ep-0x1',
    'ep- 1',
    'ep-1.0',
    'ep--1',
    'ep-',
    'ep-9999999999999999',
    'other-1',
  ]) {
    assert.equal(ids.seqOf(bad), undefined, bad);
  }
});

test('history: a quiet client older than the ring resumes, unless one of its subjects lost a message or it is too old', async () => {
  const ids = new EventIds('h');
  const h = new History(ids, { maxMessages: 10, maxBytes: 1 << 20, ttlMs: 60_000 });
  const t0 = 1_000_000;
  const quiet = await h.append('quiet', 'q1', t0);
  for (let i = 0; i < 100; i++) await h.append(`busy${i % 3}`, `b${i}`, t0 + i);
  const later = await h.append('quiet', 'q2', t0 + 200);
  // The ring holds 10 messages; quiet's last id is 101 messages back, but quiet lost nothing.
  const r = h.replay(quiet.eid, new Set(['quiet']), t0 + 300);
  assert.deepEqual(r.ok ? r.messages.map((m) => m.body) : r, ['q2']);
  // busy0 lost messages after that id: its client is told.
  assert.deepEqual(h.replay(quiet.eid, new Set(['quiet', 'busy0']), t0 + 300), {
    ok: false,
    reason: 'expired',
  });
  // Older than the age bound: expired however quiet.
  assert.deepEqual(h.replay(quiet.eid, new Set(['quiet']), t0 + 61_000), { ok: false, reason: 'expired' });
  assert.equal(h.replay(later.eid, new Set(['quiet']), t0 + 300).ok, true);
  assert.deepEqual(h.replay('other-1', new Set(['quiet'])), { ok: false, reason: 'unknown' });
});

test('history: a replay gives back each message as it was sent, and ages out by time as well as by count', async () => {
  const ids = new EventIds('r');
  const h = new History(ids, { maxMessages: 4, maxBytes: 1 << 20, ttlMs: 1_000 });
  const t0 = 5_000_000;
  const sent = [];
  for (let i = 0; i < 6; i++) sent.push(await h.append(i % 2 === 0 ? 'a' : 'b', `m${i}`, t0 + i));
  const from = sent[0]!;
  // m0 and m1 pushed out by the count. From m0 on, 'a' lost nothing (m0 is the cursor itself)…
  const r = h.replay(from.eid, new Set(['a']), t0 + 10);
  assert.ok(r.ok);
  assert.deepEqual(
    r.messages.map((m) => [m.eid, m.subject, m.body, m.ts]),
    [sent[2]!, sent[4]!].map((m) => [m.eid, m.subject, m.body, m.ts]),
  );
  // … but 'b' lost m1.
  assert.deepEqual(h.replay(from.eid, new Set(['b']), t0 + 10), { ok: false, reason: 'expired' });
  // A second later than m5 every entry has aged out: a resume from m5 is still ok, and empty.
  assert.deepEqual(h.replay(sent[5]!.eid, new Set(['a', 'b']), t0 + 1_006), { ok: true, messages: [] });
  assert.equal(h.size, 0);
  assert.deepEqual(h.replay(from.eid, new Set(['a']), t0 + 1_006), { ok: false, reason: 'expired' });
});

test('history: what subjects lost to the ring is forgotten once older than the age bound', () => {
  const h = new History(new EventIds('s'), { maxMessages: 4, maxBytes: 1 << 20, ttlMs: 1_000 });
  const t0 = 9_000_000;
  for (let i = 0; i < 10_000; i++) h.appendNow(`x${i}`, 'old', t0);
  assert.equal(h.lostSubjects, 9_996);
  // Two seconds on, ten subjects take turns: the old losses go at a sweep, the new ones stay.
  for (let i = 0; i < 10_000; i++) h.appendNow(`y${i % 10}`, 'new', t0 + 2_000);
  assert.ok(h.lostSubjects >= 10 && h.lostSubjects < 300, `${h.lostSubjects} subjects kept`);
  const r = h.replay(h.current(), new Set(['y1']), t0 + 2_000);
  assert.deepEqual(r, { ok: true, messages: [] });
});

test('a send that takes the at-once path never overtakes one started before it that went the paged way', async () => {
  // `big` has more subscribers than a page (the paged, asynchronous path); `small` has one (the
  // embedded at-once path). carol follows both: she must get them in the order they were sent.
  await store.addSubscriptions([
    { subscriber: 'carol', subscribee: 'big' },
    { subscriber: 'dave', subscribee: 'big' },
    { subscriber: 'erin', subscribee: 'big' },
    { subscriber: 'carol', subscribee: 'small' },
  ]);
  const { router, registry, ids } = routerOn(store, { pageSize: 2 });
  const carol = receiver();
  registry.login('carol', carol);
  const sends = [router.send('big', 'one'), router.send('small', 'two'), router.send('big', 'three')];
  sends.push(router.send('small', 'four'));
  assert.deepEqual(await Promise.all(sends), [1, 1, 1, 1]);
  const batch = await router.sendAll(
    ['big', 'small', 'small', 'big', 'small'].map((id, i) => router.prepare(id, `b${i}`)),
  );
  assert.equal(batch.delivered, 5);
  assert.deepEqual(
    carol.got.map((m) => m.body),
    ['one', 'two', 'three', 'four', 'b0', 'b1', 'b2', 'b3', 'b4'],
  );
  const seqs = carol.got.map((m) => ids.seqOf(m.eid) ?? -1);
  assert.deepEqual(
    [...seqs].sort((a, b) => a - b),
    seqs,
    'event ids in delivery order',
  );
});

test('a receiver logged in as two ids gets a message once, however many messages come between its two copies', () => {
  // Over NATS each recipient id is a message of its own; other sends interleave between them.
  const hub = new Hub(new LocalBus());
  const both = receiver();
  const other = receiver();
  hub.login('a', both);
  hub.login('b', both);
  hub.login('c', other);
  const m = new Message('e-1', 'a', 'the one', 0);
  assert.equal(hub.deliver(m, ['a']), 1);
  for (let i = 0; i < 50; i++) hub.deliver(new Message(`e-x${i}`, 'a', `between ${i}`, 0), ['a']);
  assert.equal(hub.deliver(m, ['b', 'c']), 1, 'only the other receiver is new');
  assert.equal(both.got.filter((x) => x === m).length, 1);
});
