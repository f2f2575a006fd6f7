/**
 * The SQLite store: the shared contract on a real file in a fresh temp folder, then what only
 * SQLite has — the schema it creates and migrates, in-memory databases, URLs, files from newer
 * builds, and the two bulk-load paths (sorted in memory, staged in SQLite), which must leave
 * exactly the same store.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { ConfigError, InvalidInputError, UnavailableError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import { defaultStoreUrl, openStore } from '../src/store/open-store.js';
import {
  isSymmetric,
  PairKeys,
  type SortedKeys,
  sameKeys,
  smallNumericId,
  transposeSorted,
} from '../src/store/sqlite-pair-keys.js';
import { SQLITE_SCHEMA_VERSION, SqliteStore, type SqliteStoreOptions } from '../src/store/sqlite-store.js';
import type { Subscription } from '../src/store/store.js';
import { Xoshiro128 } from '../src/tools/msggen/random.js';
import { storeContract } from './store-contract.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-store-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));

storeContract(
  'sqlite file',
  () => openStore(`sqlite:${path.join(dir, 'contract', 'subs.db')}`),
  async () => rmSync(path.join(dir, 'contract'), { recursive: true, force: true }),
);

describe('SQLite store specifics', () => {
  test('creates its schema itself, in WAL mode, and records the version', async () => {
    const file = path.join(dir, 'schema.db');
    const store = await openStore(`sqlite:${file}`);
    await store.addSubscriptions([{ subscriber: '7', subscribee: 'user:8' }]);
    await store.close();
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.pragma('user_version', { simple: true }), SQLITE_SCHEMA_VERSION);
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      const objects = db
        .prepare(`SELECT type || ' ' || name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY 1`)
        .pluck()
        .all();
      assert.deepEqual(objects, [
        'table counters',
        'table subscriptions',
        'table subscriptions_by_subscriber',
      ]);
      // A canonical number is stored as an INTEGER, anything else as TEXT, in both key orders.
      const row = db
        .prepare('SELECT typeof(subscriber) AS a, typeof(subscribee) AS b FROM subscriptions')
        .get();
      assert.deepEqual(row, { a: 'integer', b: 'text' });
      const rowEr = db
        .prepare('SELECT typeof(subscriber) AS a, typeof(subscribee) AS b FROM subscriptions_by_subscriber')
        .get();
      assert.deepEqual(rowEr, { a: 'integer', b: 'text' });
    } finally {
      db.close();
    }
  });

  test('refuses a file written by a newer schema version', async () => {
    const file = path.join(dir, 'newer.db');
    const db = new Database(file);
    db.pragma(`user_version = ${SQLITE_SCHEMA_VERSION + 1}`);
    db.close();
    await assert.rejects(openStore(`sqlite:${file}`), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(
        err.message,
        new RegExp(`schema version ${SQLITE_SCHEMA_VERSION + 1}, newer than this build knows`),
      );
      return true;
    });
  });

  test('two stores opening a new file at once both work', async () => {
    const file = path.join(dir, 'race.db');
    const [a, b] = await Promise.all([SqliteStore.open(file), SqliteStore.open(file)]);
    await a.addSubscriptions([{ subscriber: 'x', subscribee: 'y' }]);
    assert.deepEqual(await b.getSubscribers('y'), ['x']);
    await Promise.all([a.close(), b.close()]);
  });

  test("the subscriber cache: own changes show at once, another process's from the next event-loop turn", async () => {
    const file = path.join(dir, 'cache.db');
    const [a, b] = await Promise.all([SqliteStore.open(file), SqliteStore.open(file)]);
    const subscribers = async (s: SqliteStore, id: string): Promise<string[]> => {
      const out: string[] = [];
      for await (const page of s.subscriberPages(id, 100)) out.push(...page);
      return out.sort();
    };
    assert.deepEqual(await subscribers(a, 'star'), [], 'cached as having none');
    await a.addSubscriptions([{ subscriber: 'fan1', subscribee: 'star' }]);
    assert.deepEqual(await subscribers(a, 'star'), ['fan1'], 'own add: at once');
    await b.addSubscriptions([{ subscriber: 'fan2', subscribee: 'star' }]);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(await subscribers(a, 'star'), ['fan1', 'fan2'], 'another connection: next turn');
    await b.removeSubscriptions([{ subscriber: 'fan1', subscribee: 'star' }]);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(await subscribers(a, 'star'), ['fan2']);
    await a.removeSubscriptions([{ subscriber: 'fan2', subscribee: 'star' }]);
    assert.deepEqual(await subscribers(a, 'star'), []);
    // With the cache off every read goes to the file.
    const c = await SqliteStore.open(file, { subscriberCacheIds: 0 });
    await b.addSubscriptions([{ subscriber: 'fan3', subscribee: 'star' }]);
    assert.deepEqual(await subscribers(c, 'star'), ['fan3']);
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  test('subscribersNow: the whole list when it is shorter than a page, else undefined; a small cache evicts the oldest', async () => {
    const file = path.join(dir, 'now.db');
    const s = await SqliteStore.open(file, { subscriberCacheIds: 4 });
    await s.addSubscriptions([
      { subscriber: 'f1', subscribee: 'x' },
      { subscriber: 'f2', subscribee: 'x' },
      { subscriber: 'f1', subscribee: 'y' },
    ]);
    assert.deepEqual([...(s.subscribersNow('x', 3) ?? ['?'])].sort(), ['f1', 'f2']);
    assert.equal(s.subscribersNow('x', 2), undefined, 'a full page: the paged way');
    assert.deepEqual(s.subscribersNow('y', 3), ['f1']);
    assert.deepEqual(s.subscribersNow('nobody', 3), []);
    // x (3 slots) was evicted to make room for y (2) and nobody (1): still answered from the file.
    await s.addSubscriptions([{ subscriber: 'f3', subscribee: 'x' }]);
    assert.deepEqual([...(s.subscribersNow('x', 10) ?? ['?'])].sort(), ['f1', 'f2', 'f3']);
    assert.throws(() => s.subscribersNow('', 3), /id/i);
    await s.close();
  });

  test('opening while another connection holds a write lock on a new file waits for it, not fails at once', async () => {
    // Switching a rollback-journal file to WAL needs an exclusive lock; while another connection
    // holds RESERVED, SQLite returns SQLITE_BUSY at once (a deadlock its busy handler would not
    // break). Two processes opening one new file together (a cluster's first start) meet this.
    const file = path.join(dir, 'wal-race.db');
    const other = new Database(file);
    other.exec('CREATE TABLE t (x)');
    other.exec('BEGIN');
    other.exec('INSERT INTO t VALUES (1)');
    setTimeout(() => other.exec('COMMIT'), 150);
    const store = await SqliteStore.open(file, { busyTimeoutMs: 2000 });
    other.close();
    await store.close();
  });

  test('a file locked by another writer for too long is UnavailableError, and the call applies nothing', async () => {
    const file = path.join(dir, 'locked.db');
    const store = await SqliteStore.open(file, { busyTimeoutMs: 50 });
    const other = new Database(file);
    try {
      other.exec('BEGIN IMMEDIATE'); // holds the write lock
      await assert.rejects(store.addSubscriptions([{ subscriber: 'x', subscribee: 'y' }]), (err: unknown) => {
        assert.ok(err instanceof UnavailableError, String(err));
        assert.equal(err.status, 503);
        assert.equal((err.cause as { code?: string }).code, 'SQLITE_BUSY');
        return true;
      });
      // Readers are not blocked by a writer (WAL).
      assert.deepEqual(await store.getSubscribers('y'), []);
      other.exec('ROLLBACK');
      assert.equal(await store.addSubscriptions([{ subscriber: 'x', subscribee: 'y' }]), 1);
    } finally {
      other.close();
      await store.close();
    }
  });

  test('sqlite::memory: is a private, empty database per open', async () => {
    const a = await openStore('sqlite::memory:');
    const b = await openStore('sqlite::memory:');
    assert.equal(a.kind, 'sqlite');
    await a.addSubscriptions([{ subscriber: 'x', subscribee: 'y' }]);
    assert.deepEqual(await a.getSubscribers('y'), ['x']);
    assert.deepEqual(await b.getSubscribers('y'), []);
    await Promise.all([a.close(), b.close()]);
  });

  test('resolves relative paths against the working directory and creates parent folders', async () => {
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const store = await openStore('sqlite:nested/deeper/rel.db');
      assert.equal(store.location, path.join(dir, 'nested', 'deeper', 'rel.db'));
      await store.close();
      assert.ok(existsSync(path.join(dir, 'nested', 'deeper', 'rel.db')));
    } finally {
      process.chdir(cwd);
    }
  });

  test('sqlite:// URLs work too', async () => {
    const file = path.join(dir, 'slashes.db');
    const store = await openStore(`sqlite://${file}`);
    assert.equal(store.location, file);
    await store.close();
  });

  test('defaultStoreUrl names switchboard.db in the data folder', () => {
    assert.equal(defaultStoreUrl('/var/lib/sb'), 'sqlite:/var/lib/sb/switchboard.db');
  });

  test('an unknown URL form is a ConfigError naming the URL and the accepted forms', async () => {
    for (const url of ['mysql://localhost/db', 'subs.db', 'sqlite:']) {
      await assert.rejects(openStore(url), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.ok(err.message.includes(JSON.stringify(url)), err.message);
        assert.match(err.message, /sqlite:PATH.*postgres:\/\//);
        return true;
      });
    }
  });
});

async function* inBatches(subs: readonly Subscription[], size: number): AsyncGenerator<Subscription[]> {
  for (let i = 0; i < subs.length; i += size) yield subs.slice(i, i + size);
}

/** Seeded random floats in [0, 1) from the project's own PRNG, so failures repeat. */
function prng(seed: number): () => number {
  const rng = new Xoshiro128(seed);
  return () => rng.nextFloat();
}

/** `edges` random friendships among users `base`..`base + users - 1`, both ways unless `oneWay`, some repeated. */
function graph(seed: number, users: number, edges: number, oneWay = false, base = 1): Subscription[] {
  const rnd = prng(seed);
  const out: Subscription[] = [];
  for (let i = 0; i < edges; i++) {
    const a = base + Math.floor(rnd() * users);
    const b = base + Math.floor(rnd() * users);
    if (a === b) continue;
    out.push({ subscriber: String(a), subscribee: String(b) });
    if (!oneWay) out.push({ subscriber: String(b), subscribee: String(a) });
    if (i % 10 === 0) out.push({ subscriber: String(a), subscribee: String(b) }); // a duplicate
  }
  return out;
}

const mutual = (pairs: [string, string][]): Subscription[] =>
  pairs.flatMap(([a, b]) => [
    { subscriber: a, subscribee: b },
    { subscriber: b, subscribee: a },
  ]);

/**
 * Every row of both tables, as `type:value` (INTEGER 42 and TEXT '42' differ), both listed in
 * (subscribee, subscriber) order so the two tables must come out equal; and the counter.
 */
function dump(file: string): { byEe: string[]; byEr: string[]; count: number } {
  const db = new Database(file, { readonly: true });
  try {
    const row = `typeof(subscribee) || ':' || subscribee || ' <- ' || typeof(subscriber) || ':' || subscriber`;
    const rows = (table: string): string[] =>
      db.prepare(`SELECT ${row} FROM ${table} ORDER BY subscribee, subscriber`).pluck().all() as string[];
    return {
      byEe: rows('subscriptions'),
      byEr: rows('subscriptions_by_subscriber'),
      count: Number(db.prepare(`SELECT value FROM counters WHERE name = 'subscriptions'`).pluck().get()),
    };
  } finally {
    db.close();
  }
}

/** A logger that keeps the fields of every `bulk load done` line. */
function bulkLog(): { logger: ReturnType<typeof createLogger>; loads: Record<string, unknown>[] } {
  const loads: Record<string, unknown>[] = [];
  const logger = createLogger('info', {
    write: (line: string) => {
      if (line.includes('bulk load done')) loads.push(JSON.parse(line.slice(line.indexOf('{'))));
    },
  });
  return { logger, loads };
}

interface Scenario {
  readonly name: string;
  /** Added with addSubscriptions before the loads. */
  readonly before?: readonly Subscription[];
  /** Each is one bulkLoad, in batches of 997. */
  readonly loads: readonly (readonly Subscription[])[];
  /** Options of the store whose loads may sort in memory. */
  readonly options?: SqliteStoreOptions;
  /** What the in-memory store's log says about each load. */
  readonly expect: readonly Record<string, unknown>[];
}

describe('SQLite bulk load: sorted in memory and staged give the same store', () => {
  let seq = 0;
  const run = async (scenario: Scenario, options: SqliteStoreOptions) => {
    const file = path.join(dir, `paths-${++seq}.db`);
    const { logger, loads } = bulkLog();
    const store = await SqliteStore.open(file, { ...options, logger });
    try {
      if (scenario.before !== undefined) await store.addSubscriptions(scenario.before);
      const results = [];
      for (const load of scenario.loads) results.push(await store.bulkLoad(inBatches(load, 997)));
      const reads = await Promise.all(['1', '2', '3', '77'].map((u) => store.getSubscriptions(u)));
      return { results, reads: reads.map((r) => r.sort()), stats: await store.stats(), loads, file };
    } finally {
      await store.close();
    }
  };

  const scenarios: Scenario[] = [
    {
      name: 'a mutual numeric load into an empty store (by-subscriber rows copied)',
      loads: [graph(1, 300, 4000)],
      expect: [{ path: 'sorted', symmetric: true, copied: true }],
    },
    {
      name: 'a one-way numeric load',
      loads: [graph(2, 300, 4000, true)],
      expect: [{ path: 'sorted', symmetric: false, copied: false }],
    },
    {
      name: 'a mutual numeric load into a store that has rows already',
      before: [
        ...graph(3, 300, 500).slice(0, 400),
        { subscriber: 'user:1', subscribee: '2' },
        { subscriber: '3', subscribee: '03' },
        { subscriber: '1', subscribee: 'photo:9' },
      ],
      loads: [graph(3, 300, 4000)],
      expect: [{ path: 'sorted', symmetric: true, copied: false }],
    },
    {
      name: 'two loads, the second overlapping the first',
      loads: [graph(4, 200, 3000), [...graph(4, 200, 3000).slice(1000), ...graph(5, 400, 2000, true)]],
      expect: [
        { path: 'sorted', copied: true },
        { path: 'sorted', copied: false },
      ],
    },
    {
      name: 'ids at the ends of 32 bits',
      loads: [
        mutual([
          ['0', '4294967295'],
          ['0', '1'],
          ['4294967294', '4294967295'],
          ['77', '4294967295'],
        ]),
      ],
      expect: [{ path: 'sorted', symmetric: true }],
    },
    {
      name: 'a load that meets a text id part way (moves what it sorted so far to the stage)',
      loads: [
        [
          ...graph(6, 300, 2500),
          { subscriber: 'user:5', subscribee: '7' },
          { subscriber: '0042', subscribee: '1' },
          ...graph(7, 300, 500),
        ],
      ],
      expect: [{ path: 'staged' }],
    },
    {
      name: 'numeric ids too wide for 32 bits',
      loads: [
        [
          ...graph(8, 100, 300),
          ...mutual([
            ['4294967296', '1'],
            ['999999999999999', '2'],
          ]),
        ],
      ],
      expect: [{ path: 'staged' }],
    },
    {
      name: 'a load bigger than bulkSortPairs',
      options: { bulkSortPairs: 1500 },
      loads: [graph(9, 300, 2000)],
      expect: [{ path: 'staged' }],
    },
  ];

  for (const scenario of scenarios) {
    test(scenario.name, async () => {
      const sorted = await run(scenario, scenario.options ?? {});
      const staged = await run(scenario, { bulkSortPairs: 0 });
      assert.equal(sorted.loads.length, scenario.expect.length);
      scenario.expect.forEach((want, i) => {
        for (const [key, value] of Object.entries(want)) assert.equal(sorted.loads[i]![key], value, key);
      });
      for (const load of staged.loads) assert.equal(load.path, 'staged');

      assert.deepEqual(sorted.results, staged.results);
      assert.deepEqual(sorted.stats, staged.stats);
      assert.deepEqual(sorted.reads, staged.reads);
      const a = dump(sorted.file);
      const b = dump(staged.file);
      assert.deepEqual(a, b);
      assert.ok(a.byEe.length > 0);
      assert.deepEqual(a.byEr, a.byEe, 'both key orders hold the same pairs');
      assert.equal(a.count, a.byEe.length, 'the counter is exact');
      assert.equal(sorted.stats.subscriptions, a.count);
      // Nothing but integers were stored for numeric ids.
      if (scenario.expect.every((e) => e.path === 'sorted') && scenario.before === undefined) {
        assert.ok(
          a.byEe.every((r) => /^integer:\d+ <- integer:\d+$/.test(r)),
          a.byEe[0],
        );
      }
    });
  }

  test('an in-memory load counts only new pairs and keeps set semantics', async () => {
    const pairs = graph(10, 100, 1000);
    const unique = new Set(pairs.map((p) => `${p.subscribee}>${p.subscriber}`)).size;
    const store = await SqliteStore.open(path.join(dir, 'set.db'));
    try {
      assert.deepEqual(await store.bulkLoad(inBatches(pairs, 100)), { added: unique, seen: pairs.length });
      assert.deepEqual(await store.bulkLoad(inBatches(pairs, 333)), { added: 0, seen: pairs.length });
      assert.equal((await store.stats()).subscriptions, unique);
    } finally {
      await store.close();
    }
  });

  test('an in-memory load with a bad pair names its batch and index, and applies nothing', async () => {
    const file = path.join(dir, 'bad-numeric.db');
    const store = await SqliteStore.open(file);
    try {
      const good = graph(11, 50, 300, true).slice(0, 250);
      assert.equal(good.length, 250);
      const cases: [Subscription, RegExp][] = [
        [{ subscriber: '7', subscribee: 'bad id' }, /batch 2.*\[50\]\.subscribee "bad id"/],
        [{ subscriber: '5', subscribee: '5' }, /batch 2.*\[50\].*cannot subscribe to itself/],
        [{ subscriber: '', subscribee: '5' }, /batch 2.*\[50\]\.subscriber "" must not be empty/],
      ];
      for (const [bad, message] of cases) {
        await assert.rejects(store.bulkLoad(inBatches([...good, bad], 100)), (err: unknown) => {
          assert.ok(err instanceof InvalidInputError, String(err));
          assert.match(err.message, message);
          return true;
        });
      }
      async function* failing(): AsyncGenerator<Subscription[]> {
        yield good.slice(0, 100);
        yield good.slice(100, 200);
        throw new Error('source broke');
      }
      await assert.rejects(store.bulkLoad(failing()), /source broke/);
      assert.equal((await store.stats()).subscriptions, 0);
      assert.deepEqual(dump(file), { byEe: [], byEr: [], count: 0 });
    } finally {
      await store.close();
    }
  });

  test('other connections read the old rows until the load commits', async () => {
    const file = path.join(dir, 'snapshot.db');
    const store = await SqliteStore.open(file);
    const reader = new Database(file, { readonly: true });
    try {
      await store.addSubscriptions([{ subscriber: '1', subscribee: '2' }]);
      reader.exec('BEGIN');
      const count = reader.prepare('SELECT count(*) FROM subscriptions_by_subscriber').pluck();
      assert.equal(count.get(), 1);
      const added = (await store.bulkLoad(inBatches(graph(12, 100, 500), 100))).added;
      assert.ok(added > 400);
      assert.equal(count.get(), 1, 'a read transaction keeps its snapshot');
      reader.exec('COMMIT');
      assert.equal(count.get(), added + 1);
    } finally {
      reader.close();
      await store.close();
    }
  });
});

describe('SQLite schema migration', () => {
  /** The version 1 schema, as builds before the by-subscriber table created it. */
  const V1 = `CREATE TABLE subscriptions (
       subscribee ANY NOT NULL,
       subscriber ANY NOT NULL,
       PRIMARY KEY (subscribee, subscriber)
     ) STRICT, WITHOUT ROWID;
     CREATE INDEX subscriptions_by_subscriber ON subscriptions (subscriber);
     CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT, WITHOUT ROWID;
     INSERT INTO counters (name, value) VALUES ('subscriptions', 0);`;

  test('upgrades a version 1 file in place, keeping every subscription readable both ways', async () => {
    const file = path.join(dir, 'v1.db');
    const old = new Database(file);
    old.pragma('journal_mode = WAL');
    old.exec(V1);
    const insert = old.prepare('INSERT INTO subscriptions (subscribee, subscriber) VALUES (?, ?)');
    const rows: [number | string, number | string][] = [
      [1, 2],
      [2, 1],
      [1, 'user:3'],
      ['photo:9', 2],
      ['007', 7],
    ];
    for (let i = 100; i < 1100; i++) rows.push([5, i]);
    old.transaction(() => {
      // BigInts bind as INTEGERs, as version 1 stored numeric ids.
      const bound = (id: number | string): bigint | string => (typeof id === 'number' ? BigInt(id) : id);
      for (const [ee, er] of rows) insert.run(bound(ee), bound(er));
      old.prepare(`UPDATE counters SET value = ? WHERE name = 'subscriptions'`).run(rows.length);
    })();
    old.pragma('user_version = 1');
    assert.equal(old.prepare('SELECT count(*) FROM subscriptions').pluck().get(), rows.length);
    old.close();

    const store = await SqliteStore.open(file);
    try {
      assert.deepEqual((await store.getSubscriptions('2')).sort(), ['1', 'photo:9']);
      assert.deepEqual(await store.getSubscriptions('user:3'), ['1']);
      assert.deepEqual(await store.getSubscriptions('7'), ['007']);
      assert.equal((await store.getSubscribers('5')).length, 1000);
      assert.equal((await store.stats()).subscriptions, rows.length);
      // Writes after the upgrade go to both key orders.
      assert.equal(await store.addSubscriptions([{ subscriber: '2', subscribee: '5' }]), 1);
      assert.equal(await store.removeSubscriptions([{ subscriber: '1', subscribee: '2' }]), 1);
    } finally {
      await store.close();
    }
    const after = dump(file);
    assert.deepEqual(after.byEr, after.byEe);
    assert.equal(after.count, rows.length);
    assert.equal(after.byEe.length, rows.length);
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.pragma('user_version', { simple: true }), SQLITE_SCHEMA_VERSION);
      assert.deepEqual(
        db.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'`).all(),
        [],
      );
    } finally {
      db.close();
    }
  });

  test('adds and removes keep both key orders in step', async () => {
    const file = path.join(dir, 'in-step.db');
    const store = await SqliteStore.open(file);
    try {
      const subs = graph(13, 40, 300, true);
      await store.addSubscriptions(subs);
      await store.removeSubscriptions(subs.filter((_, i) => i % 3 === 0));
      await store.addSubscriptions([{ subscriber: 'user:a', subscribee: '0042' }]);
    } finally {
      await store.close();
    }
    const { byEe, byEr, count } = dump(file);
    assert.deepEqual(byEr, byEe);
    assert.equal(count, byEe.length);
    assert.ok(byEe.includes('text:0042 <- text:user:a'));
  });
});

describe('sorting subscription pairs in memory (sqlite-pair-keys)', () => {
  /** The reference: sorted unique `(hi, lo)` keys, as BigInts. */
  const reference = (pairs: [number, number][]): bigint[] =>
    [...new Set(pairs.map(([hi, lo]) => (BigInt(hi) << 32n) | BigInt(lo)))].sort((a, b) =>
      a < b ? -1 : a > b ? 1 : 0,
    );
  const asBigInts = (keys: SortedKeys): bigint[] =>
    Array.from(
      { length: keys.count },
      (_, i) => (BigInt(keys.words[2 * i + 1]!) << 32n) | BigInt(keys.words[2 * i]!),
    );
  const collect = (pairs: [number, number][], batch = 64): PairKeys => {
    const keys = new PairKeys(1e9);
    for (let i = 0; i < pairs.length; i += batch) {
      const subs = pairs
        .slice(i, i + batch)
        .map(([ee, er]) => ({ subscribee: String(ee), subscriber: String(er) }));
      assert.equal(keys.add(subs, 'test'), true);
    }
    return keys;
  };

  for (const [name, maxId] of [
    ['small ids (one counting pass)', 1000],
    ['ids up to 2^20 (two-level counting)', 2 ** 20],
    ['ids up to 2^32 (bucket sort)', 2 ** 32 - 1],
  ] as const) {
    test(`sorts, deduplicates and transposes: ${name}`, () => {
      const rnd = prng(maxId);
      const pairs: [number, number][] = [];
      for (let i = 0; i < 20_000; i++) {
        const ee = Math.floor(rnd() * (maxId + 1));
        let er = Math.floor(rnd() * (maxId + 1));
        if (er === ee) er = ee === 0 ? 1 : ee - 1;
        pairs.push([ee, er]);
        if (i % 7 === 0) pairs.push([ee, er]);
      }
      pairs.push([maxId, 0], [0, maxId]);
      const keys = collect(pairs);
      assert.equal(keys.size, pairs.length);
      const byEe = keys.sortUnique();
      assert.equal(keys.size, 0, 'sorting empties the collector');
      assert.deepEqual(asBigInts(byEe), reference(pairs));
      const byEr = transposeSorted(byEe);
      assert.deepEqual(asBigInts(byEr), reference(pairs.map(([ee, er]) => [er, ee])));
      assert.equal(sameKeys(byEe, byEr), false);
      assert.equal(isSymmetric(byEe), false);
      const both = [...pairs, ...pairs.map(([ee, er]): [number, number] => [er, ee])];
      const symmetric = collect(both).sortUnique();
      assert.equal(sameKeys(symmetric, transposeSorted(symmetric)), true);
      assert.equal(isSymmetric(symmetric), true);
      // One mirror missing anywhere (here: in the last group compared) is noticed.
      const [ee, er] = both.reduce((a, b) => (b[0] > a[0] || (b[0] === a[0] && b[1] > a[1]) ? b : a));
      const lopsided = collect(both.filter(([x, y]) => !(x === ee && y === er))).sortUnique();
      assert.equal(isSymmetric(lopsided), false);
    });
  }

  test('refuses (adding nothing) a batch with a non-small id or past the limit; drains in arrival order', () => {
    const keys = new PairKeys(5);
    assert.equal(keys.add([{ subscribee: '1', subscriber: '2' }], 'b0'), true);
    assert.equal(
      keys.add(
        [
          { subscribee: '3', subscriber: '4' },
          { subscribee: 'user:1', subscriber: '4' },
        ],
        'b1',
      ),
      false,
    );
    assert.equal(keys.add([{ subscribee: '3', subscriber: '4294967296' }], 'b2'), false);
    assert.equal(keys.size, 1);
    assert.equal(keys.add(graph(1, 10, 3, true).slice(0, 3), 'b3'), true);
    assert.equal(
      keys.add(
        [
          { subscribee: '8', subscriber: '9' },
          { subscribee: '9', subscriber: '8' },
        ],
        'b4',
      ),
      false,
    );
    assert.equal(keys.size, 4);
    assert.throws(
      () => keys.add([{ subscribee: '8', subscriber: 'a b' }], 'batch 9'),
      /batch 9\[0\]\.subscriber/,
    );
    const drained = [...keys.drain()].flatMap((w) => Array.from(w));
    assert.deepEqual(drained.slice(0, 2), [2, 1]);
    assert.equal(drained.length, 8);
    assert.equal(keys.size, 0);
  });

  test('smallNumericId accepts exactly the canonical decimals below 2^32', () => {
    const cases: [unknown, number][] = [
      ['0', 0],
      ['7', 7],
      ['4294967295', 4294967295],
      ['4294967296', -1],
      ['12345678901', -1],
      ['007', -1],
      ['00', -1],
      ['-1', -1],
      ['1e3', -1],
      ['1.5', -1],
      ['', -1],
      [' 1', -1],
      ['user:1', -1],
      [7, -1],
    ];
    for (const [id, want] of cases) assert.equal(smallNumericId(id), want, String(id));
  });
});
