/**
 * The contract every {@link SubscriptionStore} passes, run against each implementation by
 * test/store-sqlite.test.ts and test/store-postgres.test.ts. Written against the interface only.
 *
 * All cases share one location (a file, a database): `open()` opens it, and calling it again —
 * also after a close() — opens the same data, which is how durability is checked. Each case uses
 * ids no other case uses, so cases never see each other's rows; they run one after another, so
 * `stats()` deltas are exact.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ClosedError, InvalidInputError } from '../src/errors.js';
import type { Store, Subscription } from '../src/store/store.js';

const sorted = (xs: readonly string[]): string[] => [...xs].sort();

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function* inBatches(subs: readonly Subscription[], size: number): AsyncGenerator<Subscription[]> {
  for (let i = 0; i < subs.length; i += size) yield subs.slice(i, i + size);
}

/** `count` subscribers of `subscribee`, named `${prefix}${i}`. */
function fans(subscribee: string, prefix: string, count: number): Subscription[] {
  return Array.from({ length: count }, (_, i) => ({ subscriber: `${prefix}${i}`, subscribee }));
}

/**
 * Registers the contract suite.
 * @param open opens the suite's store location (the same data on every call)
 * @param cleanup removes that location; called once, after every case and after the stores closed
 */
export function storeContract(name: string, open: () => Promise<Store>, cleanup: () => Promise<void>): void {
  describe(`SubscriptionStore contract: ${name}`, () => {
    const run = randomBytes(4).toString('hex');
    let cases = 0;
    /** A prefix for ids that no other case (or run sharing the location) uses. */
    const fresh = (): string => `c${run}x${++cases}`;
    /** A numeric id base no other case uses: ids `String(base + k)` for small k. */
    const numericBase = (): number =>
      (Number.parseInt(run, 16) % 1_000_000) * 1_000_000_000 + ++cases * 100_000;

    let store: Store;
    const extra: Store[] = [];
    const openExtra = async (): Promise<Store> => {
      const s = await open();
      extra.push(s);
      return s;
    };

    before(async () => {
      store = await open();
    });
    after(async () => {
      await Promise.all([store, ...extra].map((s) => s?.close().catch(() => undefined)));
      await cleanup();
    });

    test('reports its kind and a location', () => {
      assert.ok(['sqlite', 'postgres'].includes(store.kind), store.kind);
      assert.equal(typeof store.location, 'string');
      assert.ok(store.location.length > 0);
    });

    test('adds subscriptions and reads them both ways', async () => {
      const p = fresh();
      const [rj, alice, bob] = [`${p}rj`, `${p}alice`, `${p}bob`];
      const added = await store.addSubscriptions([
        { subscriber: alice, subscribee: rj },
        { subscriber: bob, subscribee: rj },
        { subscriber: alice, subscribee: bob },
      ]);
      assert.equal(added, 3);
      assert.deepEqual(sorted(await store.getSubscribers(rj)), sorted([alice, bob]));
      assert.deepEqual(await store.getSubscribers(bob), [alice]);
      assert.deepEqual(await store.getSubscribers(alice), []);
      assert.deepEqual(sorted(await store.getSubscriptions(alice)), sorted([rj, bob]));
      assert.deepEqual(await store.getSubscriptions(bob), [rj]);
      assert.deepEqual(await store.getSubscriptions(rj), []);
    });

    test('has set semantics: a pair is stored once however often it is added', async () => {
      const p = fresh();
      const pair = { subscriber: `${p}a`, subscribee: `${p}b` };
      const before = (await store.stats()).subscriptions;
      assert.equal(await store.addSubscriptions([pair, { ...pair }, pair]), 1);
      assert.equal(await store.addSubscriptions([pair]), 0);
      assert.equal(
        await store.addSubscriptions([pair, { subscriber: `${p}c`, subscribee: `${p}b` }]),
        1,
        'only the new pair counts',
      );
      assert.deepEqual(sorted(await store.getSubscribers(`${p}b`)), [`${p}a`, `${p}c`]);
      assert.equal((await store.stats()).subscriptions - before, 2);
      assert.equal(await store.addSubscriptions([]), 0);
    });

    test('removes subscriptions, ignoring absent pairs and counting each removal once', async () => {
      const p = fresh();
      const subs = fans(`${p}star`, `${p}f`, 5);
      await store.addSubscriptions(subs);
      const before = (await store.stats()).subscriptions;
      const removed = await store.removeSubscriptions([
        subs[1]!,
        subs[1]!,
        subs[3]!,
        { subscriber: `${p}nobody`, subscribee: `${p}star` },
      ]);
      assert.equal(removed, 2);
      assert.deepEqual(
        sorted(await store.getSubscribers(`${p}star`)),
        sorted([`${p}f0`, `${p}f2`, `${p}f4`]),
      );
      assert.deepEqual(await store.getSubscriptions(`${p}f1`), []);
      assert.equal((await store.stats()).subscriptions - before, -2);
      assert.equal(await store.removeSubscriptions(subs.slice(1, 2)), 0, 'already gone');
      assert.equal(await store.removeSubscriptions([]), 0);
    });

    test('accepts string ids of any kind and keeps look-alikes apart', async () => {
      const p = fresh();
      const n = numericBase();
      const subject = String(n);
      const kinds = [
        String(n + 1), // a plain number
        `0${n + 1}`, // same digits with a leading zero: a different id
        `user:${n}`,
        `photo:${n + 789}`,
        `${p}.a_b-c:d`,
        `-${n + 1}`,
        `${n + 1}e3`,
        '123456789012345678901234567890', // longer than any integer type
        `${p}${'z'.repeat(128 - p.length)}`, // the longest allowed
      ];
      const added = await store.addSubscriptions(
        kinds.map((subscriber) => ({ subscriber, subscribee: subject })),
      );
      assert.equal(added, kinds.length);
      assert.deepEqual(sorted(await store.getSubscribers(subject)), sorted(kinds));
      assert.deepEqual(await store.getSubscriptions(`0${n + 1}`), [subject]);
      assert.deepEqual(await store.getSubscribers(`user:${n}`), []);
      // Non-numeric subscribees work the same way.
      await store.addSubscriptions([{ subscriber: String(n + 2), subscribee: `photo:${n + 789}` }]);
      assert.deepEqual(await store.getSubscribers(`photo:${n + 789}`), [String(n + 2)]);
      assert.deepEqual(sorted(await store.getSubscriptions(String(n + 2))), [`photo:${n + 789}`]);
    });

    test('rejects a bad pair naming its index, and applies nothing of that call', async () => {
      const p = fresh();
      const good = fans(`${p}s`, `${p}g`, 3);
      const bad: unknown[] = [...good, { subscriber: `${p}x`, subscribee: 'a b' }];
      const before = (await store.stats()).subscriptions;
      await assert.rejects(
        store.addSubscriptions(bad as Subscription[]),
        (err: unknown) =>
          err instanceof InvalidInputError &&
          /subscriptions\[3\]\.subscribee "a b" contains " "/.test(err.message),
      );
      assert.deepEqual(await store.getSubscribers(`${p}s`), [], 'the valid pairs before it were not added');
      assert.equal((await store.stats()).subscriptions, before);

      const cases: [unknown, RegExp][] = [
        [{ subscriber: '', subscribee: `${p}s` }, /subscriptions\[3\]\.subscriber "" must not be empty/],
        [{ subscriber: 42, subscribee: `${p}s` }, /subscriptions\[3\]\.subscriber must be a string/],
        [
          { subscriber: `${p}s`, subscribee: 'x'.repeat(129) },
          /subscriptions\[3\]\.subscribee .*129 characters/,
        ],
        [{ subscriber: `${p}s`, subscribee: `${p}s` }, /subscriptions\[3\].*cannot subscribe to itself/],
        [null, /subscriptions\[3\] must be an object/],
      ];
      for (const [entry, message] of cases) {
        await assert.rejects(store.addSubscriptions([...good, entry] as Subscription[]), (err: unknown) => {
          assert.ok(err instanceof InvalidInputError, String(err));
          assert.match(err.message, message);
          return true;
        });
      }
      assert.deepEqual(await store.getSubscribers(`${p}s`), []);

      // Removal validates the same way and removes nothing when one pair is bad.
      await store.addSubscriptions(good);
      await assert.rejects(store.removeSubscriptions(bad as Subscription[]), InvalidInputError);
      assert.equal((await store.getSubscribers(`${p}s`)).length, 3);
    });

    test('rejects a bad user id on reads', async () => {
      await assert.rejects(store.getSubscribers('no spaces'), InvalidInputError);
      await assert.rejects(store.getSubscriptions(''), InvalidInputError);
      await assert.rejects(collect(store.subscriberPages('a/b', 10)), InvalidInputError);
      await assert.rejects(collect(store.subscriberPages('fine', 0)), InvalidInputError);
    });

    test('pages subscribers: disjoint pages whose union is everyone, each at most pageSize', async () => {
      const p = fresh();
      const n = numericBase();
      const star = `${p}star`;
      // Numeric and other ids mixed: every kind of id must page in one consistent order.
      const subs = fans(star, `${p}f`, 2503).map((s, i) =>
        i % 2 === 0 ? { ...s, subscriber: String(n + i) } : s,
      );
      assert.equal(await store.addSubscriptions(subs), 2503);
      const pages = await collect(store.subscriberPages(star, 100));
      assert.equal(pages.length, 26);
      for (const page of pages) assert.ok(page.length >= 1 && page.length <= 100, `page of ${page.length}`);
      const all = pages.flat();
      assert.equal(new Set(all).size, all.length, 'pages are disjoint');
      assert.deepEqual(sorted(all), sorted(subs.map((s) => s.subscriber)));
      assert.deepEqual(sorted(await store.getSubscribers(star)), sorted(all));
      assert.deepEqual(await collect(store.subscriberPages(`${p}nobody`, 100)), []);
      const single = await collect(store.subscriberPages(star, 5000));
      assert.equal(single.length, 1);
      assert.equal(single[0]!.length, 2503);
    });

    test('reads many users at once where it can: fewer than pageSize each, the rest left out', async (t) => {
      if (store.subscribersOfMany === undefined) {
        t.skip(`${store.kind} answers one user at a time`);
        return;
      }
      const p = fresh();
      const n = numericBase();
      await store.addSubscriptions([
        ...fans(`${p}few`, `${p}f`, 3),
        ...fans(`${p}edge`, `${p}e`, 9),
        ...fans(`${p}many`, `${p}m`, 10),
        { subscriber: `${p}few`, subscribee: String(n) },
      ]);
      const got = await store.subscribersOfMany(
        [`${p}few`, `${p}nobody`, `${p}edge`, `${p}many`, String(n), `${p}few`],
        10,
      );
      assert.deepEqual([...got.keys()].sort(), [`${p}edge`, `${p}few`, `${p}nobody`, String(n)].sort());
      for (const [id, list] of got) assert.deepEqual(sorted(list), sorted(await store.getSubscribers(id)));
      assert.deepEqual(got.get(`${p}nobody`), []);
      assert.deepEqual(await store.subscribersOfMany([], 10), new Map());
      await assert.rejects(store.subscribersOfMany(['a/b'], 10), InvalidInputError);
      // As fresh as a read: a removal shows at once.
      await store.removeSubscriptions([{ subscriber: `${p}f0`, subscribee: `${p}few` }]);
      assert.deepEqual(sorted((await store.subscribersOfMany([`${p}few`], 10)).get(`${p}few`)!), [
        `${p}f1`,
        `${p}f2`,
      ]);
    });

    test('lists a page at a time with a cursor, both ways, numeric and other ids mixed', async () => {
      const p = fresh();
      const n = numericBase();
      const star = `${p}star`;
      const subs = fans(star, `${p}f`, 25).map((s, i) =>
        i % 3 === 0 ? { ...s, subscriber: String(n + i) } : s,
      );
      await store.addSubscriptions(subs);
      const seen: string[] = [];
      let after: string | undefined;
      const sizes: number[] = [];
      for (;;) {
        const page = await store.listPage('subscribers', star, after, 10);
        sizes.push(page.ids.length);
        seen.push(...page.ids);
        if (page.next === null) break;
        assert.equal(page.next, page.ids.at(-1), 'the cursor is the last id of the page');
        after = page.next;
      }
      assert.deepEqual(sizes, [10, 10, 5]);
      assert.equal(new Set(seen).size, 25, 'pages are disjoint');
      assert.deepEqual(sorted(seen), sorted(subs.map((x) => x.subscriber)));
      // A page that ends exactly at the end still says next; the page after it is empty and final.
      const exact = await store.listPage('subscribers', star, undefined, 25);
      assert.equal(exact.ids.length, 25);
      assert.deepEqual(await store.listPage('subscribers', star, exact.next!, 25), { ids: [], next: null });
      // The other way: one fan's subscriptions.
      const fan = subs[0]!.subscriber;
      await store.addSubscriptions([{ subscriber: fan, subscribee: `${p}other` }]);
      const mine = await store.listPage('subscriptions', fan, undefined, 1);
      const rest = await store.listPage('subscriptions', fan, mine.next!, 1);
      assert.deepEqual(sorted([...mine.ids, ...rest.ids]), sorted([star, `${p}other`]));
      assert.deepEqual(await store.listPage('subscriptions', fan, rest.next!, 1), { ids: [], next: null });
      await assert.rejects(store.listPage('subscribers', star, undefined, 0), InvalidInputError);
      await assert.rejects(store.listPage('subscribers', star, 'a b', 10), InvalidInputError);
    });

    test('reads a large fan-out completely, letting the event loop run meanwhile', async () => {
      const p = fresh();
      const star = `${p}big`;
      const subs = fans(star, `${p}f`, 12_345);
      await store.bulkLoad(inBatches(subs, 5000));
      let turned = false;
      setImmediate(() => {
        turned = true;
      });
      const got = await store.getSubscribers(star);
      assert.equal(turned, true, 'other callbacks ran while the subscribers were read');
      assert.equal(got.length, 12_345);
      assert.equal(new Set(got).size, 12_345);
    });

    test('bulk loads with set semantics, idempotently', async () => {
      const p = fresh();
      const subs: Subscription[] = [];
      for (let a = 0; a < 60; a++) {
        for (let b = 0; b < 60; b += 7)
          if (a !== b) subs.push({ subscriber: `${p}u${a}`, subscribee: `${p}u${b}` });
      }
      await store.addSubscriptions(subs.slice(0, 10)); // some pairs already there
      const withDuplicates = [...subs, ...subs.slice(0, 50)];
      const before = (await store.stats()).subscriptions;
      const first = await store.bulkLoad(inBatches(withDuplicates, 97));
      assert.deepEqual(first, { added: subs.length - 10, seen: withDuplicates.length });
      assert.equal((await store.stats()).subscriptions - before, subs.length - 10);
      const second = await store.bulkLoad(inBatches(withDuplicates, 1000));
      assert.deepEqual(second, { added: 0, seen: withDuplicates.length });
      assert.deepEqual(
        sorted(await store.getSubscribers(`${p}u7`)),
        sorted(subs.filter((s) => s.subscribee === `${p}u7`).map((s) => s.subscriber)),
      );
      assert.deepEqual(await store.bulkLoad(inBatches([], 10)), { added: 0, seen: 0 });
    });

    test('bulk loads numeric ids, mutual and one-way, readable both ways', async () => {
      const n = numericBase();
      const id = (k: number): string => String(n + k);
      // A ring of 40 mutual friendships, then one-way fans onto user 0.
      const mutual: Subscription[] = [];
      for (let k = 0; k < 40; k++) {
        mutual.push({ subscriber: id(k), subscribee: id((k + 1) % 40) });
        mutual.push({ subscriber: id((k + 1) % 40), subscribee: id(k) });
      }
      assert.deepEqual(await store.bulkLoad(inBatches(mutual, 7)), { added: 80, seen: 80 });
      const fans = Array.from({ length: 30 }, (_, k) => ({ subscriber: id(100 + k), subscribee: id(0) }));
      assert.deepEqual(await store.bulkLoad(inBatches([...fans, ...mutual.slice(0, 5)], 9)), {
        added: 30,
        seen: 35,
      });
      assert.deepEqual(sorted(await store.getSubscribers(id(5))), sorted([id(4), id(6)]));
      assert.deepEqual(sorted(await store.getSubscriptions(id(5))), sorted([id(4), id(6)]));
      assert.deepEqual(
        sorted(await store.getSubscribers(id(0))),
        sorted([id(1), id(39), ...fans.map((f) => f.subscriber)]),
      );
      assert.deepEqual(await store.getSubscriptions(id(107)), [id(0)]);
      assert.deepEqual(await store.getSubscribers(id(107)), []);
    });

    test('a bulk load with a bad pair, or whose source fails, applies nothing', async () => {
      const p = fresh();
      const good = fans(`${p}s`, `${p}f`, 250);
      const bad = [...good, { subscriber: `${p}x`, subscribee: 'bad id' }];
      await assert.rejects(store.bulkLoad(inBatches(bad, 100)), (err: unknown) => {
        assert.ok(err instanceof InvalidInputError, String(err));
        assert.match(err.message, /batch 2.*\[50\]\.subscribee "bad id"/);
        return true;
      });
      assert.deepEqual(await store.getSubscribers(`${p}s`), []);

      async function* failing(): AsyncGenerator<Subscription[]> {
        yield good.slice(0, 100);
        throw new Error('source broke');
      }
      await assert.rejects(store.bulkLoad(failing()), /source broke/);
      assert.deepEqual(await store.getSubscribers(`${p}s`), []);
      // The store still works afterwards.
      assert.deepEqual(await store.bulkLoad(inBatches(good, 100)), { added: 250, seen: 250 });
    });

    test('concurrent adds count every new pair exactly once', async () => {
      const p = fresh();
      const subs = fans(`${p}s`, `${p}f`, 200);
      const before = (await store.stats()).subscriptions;
      // 20 overlapping calls: call k adds pairs k*5 .. k*5+49.
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, k) => store.addSubscriptions(subs.slice(k * 5, k * 5 + 50))),
      );
      const distinct = Math.min(200, 19 * 5 + 50);
      assert.equal(
        results.reduce((a, b) => a + b, 0),
        distinct,
      );
      assert.equal((await store.stats()).subscriptions - before, distinct);
      assert.equal((await store.getSubscribers(`${p}s`)).length, distinct);
    });

    test('writes are durable across close and reopen, and visible to another open store', async () => {
      const p = fresh();
      const writer = await openExtra();
      const reader = await openExtra();
      await writer.addSubscriptions([{ subscriber: `${p}a`, subscribee: `${p}b` }]);
      assert.deepEqual(await reader.getSubscribers(`${p}b`), [`${p}a`], 'another open store sees it');
      await writer.bulkLoad(inBatches(fans(`${p}b`, `${p}bulk`, 30), 7));
      const count = (await writer.stats()).subscriptions;
      assert.equal((await reader.stats()).subscriptions, count, 'the count is shared, not per process');
      await writer.close();
      await reader.close();

      const again = await openExtra();
      assert.equal((await again.getSubscribers(`${p}b`)).length, 31);
      assert.deepEqual(await again.getSubscriptions(`${p}a`), [`${p}b`]);
      assert.equal((await again.stats()).subscriptions, count);
      await again.removeSubscriptions([{ subscriber: `${p}a`, subscribee: `${p}b` }]);
      await again.close();
      const third = await openExtra();
      assert.equal((await third.getSubscribers(`${p}b`)).length, 30);
      await third.close();
    });

    test('after close() every call rejects with ClosedError', async () => {
      const s = await openExtra();
      await s.close();
      await s.close(); // closing twice is fine
      const pair = [{ subscriber: 'a', subscribee: 'b' }];
      await assert.rejects(s.addSubscriptions(pair), ClosedError);
      await assert.rejects(s.removeSubscriptions(pair), ClosedError);
      await assert.rejects(s.getSubscribers('b'), ClosedError);
      await assert.rejects(s.getSubscriptions('a'), ClosedError);
      await assert.rejects(collect(s.subscriberPages('b', 10)), ClosedError);
      await assert.rejects(s.bulkLoad(inBatches(pair, 1)), ClosedError);
      await assert.rejects(s.stats(), ClosedError);
    });

    test('a close() during a bulk load fails the load with ClosedError', async () => {
      const p = fresh();
      const s = await openExtra();
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      async function* slow(): AsyncGenerator<Subscription[]> {
        yield fans(`${p}s`, `${p}f`, 10);
        await gate;
        yield fans(`${p}s`, `${p}g`, 10);
      }
      const loading = s.bulkLoad(slow());
      await new Promise((r) => setTimeout(r, 50));
      await s.close();
      release();
      await assert.rejects(loading, ClosedError);
      assert.deepEqual(await store.getSubscribers(`${p}s`), []);
    });
  });
}
