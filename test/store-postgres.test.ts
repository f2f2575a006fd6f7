/**
 * The PostgreSQL store against the machine's server (127.0.0.1:5432, trust auth, user root or
 * postgres; SB_TEST_PG_URL overrides the admin URL): the shared contract in a fresh database made
 * for this run, then what only a networked store has — migrations racing, and outages, which must
 * reject with UnavailableError and never look like "no subscribers".
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import { ConfigError, UnavailableError } from '../src/errors.js';
import { openStore } from '../src/store/open-store.js';
import { POSTGRES_SCHEMA_VERSION } from '../src/store/postgres-schema.js';
import { PostgresStore } from '../src/store/postgres-store.js';
import type { Subscription } from '../src/store/store.js';
import { storeContract } from './store-contract.js';
import { adminConnection, TcpProxy } from './support/postgres.js';
import { freePort } from './support/processes.js';
import { routerOn } from './support/router.js';

const admin = await adminConnection();
const RUN = `sb_test_${process.pid}_${randomBytes(3).toString('hex')}`;
const databases: string[] = [];

async function createDatabase(suffix: string): Promise<string> {
  const name = `${RUN}_${suffix}`;
  await admin.sql.unsafe(`CREATE DATABASE ${name}`);
  databases.push(name);
  return name;
}
const urlOf = (db: string, host = admin.base): string => `${host}/${db}`;

after(async () => {
  for (const db of databases) await admin.sql.unsafe(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin.sql.end({ timeout: 5 });
});

const contractDb = await createDatabase('contract');
storeContract(
  'postgres',
  () => openStore(urlOf(contractDb)),
  async () => {},
);

const pair = (subscriber: string, subscribee: string): Subscription => ({ subscriber, subscribee });

function assertUnavailable(err: unknown): true {
  assert.ok(err instanceof UnavailableError, `expected UnavailableError, got ${String(err)}`);
  assert.equal(err.status, 503);
  assert.ok(err.cause !== undefined, 'the underlying error is kept');
  return true;
}

describe('PostgreSQL store specifics', () => {
  let db: string;
  before(async () => {
    db = await createDatabase('specifics');
  });

  test('several processes opening a fresh database at once migrate it once', async () => {
    const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresStore.open(urlOf(db))));
    const [row] = await admin.sql`SELECT 1`;
    assert.ok(row);
    const check = postgres(urlOf(db), { max: 1, onnotice: () => {} });
    try {
      const versions = await check`SELECT version FROM switchboard_schema`;
      assert.deepEqual(
        versions.map((r) => r.version),
        [POSTGRES_SCHEMA_VERSION],
      );
    } finally {
      await check.end();
    }
    await stores[0]!.addSubscriptions([pair('a', 'b')]);
    assert.deepEqual(await stores[3]!.getSubscribers('b'), ['a']);
    await Promise.all(stores.map((s) => s.close()));
  });

  test('refuses a database written by a newer schema version', async () => {
    const newer = await createDatabase('newer');
    const sql = postgres(urlOf(newer), { max: 1, onnotice: () => {} });
    await sql`CREATE TABLE switchboard_schema (version integer NOT NULL)`;
    await sql`INSERT INTO switchboard_schema VALUES (${POSTGRES_SCHEMA_VERSION + 1})`;
    await sql.end();
    await assert.rejects(PostgresStore.open(urlOf(newer)), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, /schema version 2, newer than this build knows/);
      return true;
    });
  });

  test('a database that does not exist is a ConfigError, not an outage', async () => {
    await assert.rejects(PostgresStore.open(urlOf(`${RUN}_missing`)), ConfigError);
  });

  test('a bulk load into an empty table rebuilds both indexes and keeps set semantics', async () => {
    const empty = await createDatabase('emptyload');
    const store = await PostgresStore.open(urlOf(empty));
    try {
      const subs = [pair('a', 'b'), pair('c', 'b'), pair('a', 'b'), pair('b', 'a')];
      const result = await store.bulkLoad(
        (async function* () {
          yield subs.slice(0, 2);
          yield subs.slice(2);
        })(),
      );
      assert.deepEqual(result, { added: 3, seen: 4 });
      assert.equal((await store.stats()).subscriptions, 3);
      assert.deepEqual((await store.getSubscribers('b')).sort(), ['a', 'c']);
      assert.deepEqual(await store.getSubscriptions('b'), ['a']);
      assert.equal(await store.addSubscriptions([pair('c', 'b')]), 0, 'the primary key is back');
      const sql = postgres(urlOf(empty), { max: 1, onnotice: () => {} });
      try {
        const indexes = await sql`
          SELECT indexname FROM pg_indexes WHERE tablename = 'switchboard_subscriptions' ORDER BY 1`;
        assert.deepEqual(
          indexes.map((r) => r.indexname),
          ['switchboard_subscriptions_by_subscriber', 'switchboard_subscriptions_pkey'],
        );
      } finally {
        await sql.end();
      }
    } finally {
      await store.close();
    }
  });

  test('the location never shows the password', async () => {
    const url = urlOf(db).replace(`${admin.user}@`, `${admin.user}:s3cret@`);
    const store = await openStore(url);
    assert.equal(store.kind, 'postgres');
    assert.ok(!store.location.includes('s3cret'), store.location);
    assert.ok(store.location.includes(db));
    await store.close();
  });

  test("a router's batch reads subscribers a chunk at a time: in order, big fan-outs paged, a removal seen", async () => {
    const store = await openStore(urlOf(db));
    try {
      const { router, registry: hub, ids } = routerOn(store, { pageSize: 4, maxMessages: 10_000 });
      await store.addSubscriptions([
        ...['carol', 'f1', 'f2', 'f3', 'f4', 'f5'].map((subscriber) => pair(subscriber, 'rbig')),
        pair('carol', 'rsmall'),
      ]);
      const got: string[] = [];
      const seqs: number[] = [];
      hub.login('carol', {
        ids: null,
        disconnect: () => undefined,
        push(m) {
          got.push(m.body);
          seqs.push(ids.seqOf(m.eid) ?? -1);
          return true;
        },
      });
      // 600 messages (more than one chunk), to a big fan-out (paged), a small one and nobody.
      const to = Array.from({ length: 600 }, (_, i) =>
        i === 10 || i === 300 ? 'rbig' : i % 2 === 0 ? 'rsmall' : 'rnobody',
      );
      const batch = await router.sendAll(to.map((id, i) => router.prepare(id, `m${i}`)));
      const expected = to.flatMap((id, i) => (id === 'rnobody' ? [] : [`m${i}`]));
      assert.deepEqual(batch, { delivered: expected.length, complete: true });
      assert.deepEqual(got, expected);
      assert.deepEqual(
        [...seqs].sort((a, b) => a - b),
        seqs,
        'event ids in delivery order',
      );
      // The next batch reads again: carol's removal from rsmall shows at once.
      await store.removeSubscriptions([pair('carol', 'rsmall')]);
      const again = await router.sendAll(['rsmall', 'rbig'].map((id) => router.prepare(id, `again ${id}`)));
      assert.equal(again.delivered, 1);
      assert.deepEqual(got.slice(expected.length), ['again rbig']);
    } finally {
      await store.close();
    }
  });
});

describe('PostgreSQL outages surface as UnavailableError', () => {
  let db: string;
  before(async () => {
    db = await createDatabase('faults');
  });

  test('opening a closed port rejects with UnavailableError', async () => {
    const port = await freePort();
    await assert.rejects(
      PostgresStore.open(`postgres://${admin.user}@127.0.0.1:${port}/${db}`, { connectTimeoutMs: 2000 }),
      (err: unknown) => assertUnavailable(err) && /ECONNREFUSED/.test(String((err as Error).message)),
    );
  });

  test('a server that accepts but never answers fails by the connect timeout', async () => {
    const silent = net.createServer(() => {});
    const held: net.Socket[] = [];
    silent.on('connection', (s) => held.push(s));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const { port } = silent.address() as net.AddressInfo;
    try {
      await assert.rejects(
        PostgresStore.open(`postgres://${admin.user}@127.0.0.1:${port}/${db}`, { connectTimeoutMs: 300 }),
        (err: unknown) =>
          assertUnavailable(err) && (err as { cause: { code: string } }).cause.code === 'CONNECT_TIMEOUT',
      );
    } finally {
      for (const s of held) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  test('when the database goes away reads and writes reject (never []), and recover when it is back', async () => {
    const proxy = new TcpProxy();
    await proxy.start();
    const store = await PostgresStore.open(`postgres://${admin.user}@127.0.0.1:${proxy.port}/${db}`, {
      connectTimeoutMs: 1000,
    });
    try {
      await store.addSubscriptions([pair('fan1', 'idol'), pair('fan2', 'idol')]);
      assert.equal((await store.getSubscribers('idol')).length, 2);

      await proxy.stop();
      await assert.rejects(store.getSubscribers('idol'), assertUnavailable);
      await assert.rejects(store.getSubscriptions('fan1'), assertUnavailable);
      await assert.rejects(store.stats(), assertUnavailable);
      await assert.rejects(store.addSubscriptions([pair('fan3', 'idol')]), assertUnavailable);

      const back = new TcpProxy();
      await back.start(proxy.port);
      try {
        assert.deepEqual((await store.getSubscribers('idol')).sort(), ['fan1', 'fan2']);
      } finally {
        await store.close();
        await back.stop();
      }
    } finally {
      await store.close();
    }
  });

  test('terminated backends and a database closed to connections reject with UnavailableError', async () => {
    const store = await PostgresStore.open(urlOf(db), { connectTimeoutMs: 2000 });
    try {
      await store.addSubscriptions([pair('t1', 'star')]);
      await admin.sql.unsafe(`ALTER DATABASE ${db} ALLOW_CONNECTIONS false`);
      await admin.sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${db}`;
      await assert.rejects(store.getSubscribers('star'), assertUnavailable);
      await admin.sql.unsafe(`ALTER DATABASE ${db} ALLOW_CONNECTIONS true`);
      assert.deepEqual(await store.getSubscribers('star'), ['t1']);
    } finally {
      await admin.sql.unsafe(`ALTER DATABASE ${db} ALLOW_CONNECTIONS true`);
      await store.close();
    }
  });

  test('a bulk load whose connection is terminated mid-COPY rejects and applies nothing', async () => {
    const store = await PostgresStore.open(urlOf(db), { connectTimeoutMs: 2000 });
    try {
      let release: () => void = () => {};
      const gate = new Promise<void>((r) => {
        release = r;
      });
      async function* source(): AsyncGenerator<Subscription[]> {
        yield Array.from({ length: 500 }, (_, i) => pair(`b${i}`, 'bulkstar'));
        await gate;
        yield Array.from({ length: 500 }, (_, i) => pair(`c${i}`, 'bulkstar'));
      }
      const loading = store.bulkLoad(source());
      // Wait until the COPY is running, then kill the backend doing it.
      for (let i = 0; i < 200; i++) {
        const rows = await admin.sql`
          SELECT pid FROM pg_stat_activity WHERE datname = ${db} AND query LIKE 'COPY switchboard_bulk_stage%'`;
        if (rows.length > 0) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      const killed = await admin.sql`
        SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
        WHERE datname = ${db} AND query LIKE 'COPY switchboard_bulk_stage%'`;
      assert.equal(killed.length, 1, 'found the COPY backend');
      release();
      await assert.rejects(loading, assertUnavailable);
      assert.deepEqual(await store.getSubscribers('bulkstar'), [], 'nothing half-loaded');
      assert.deepEqual(
        await store.bulkLoad(
          (async function* () {
            yield [pair('ok1', 'bulkstar')];
          })(),
        ),
        { added: 1, seen: 1 },
        'the store works again',
      );
    } finally {
      await store.close();
    }
  });
});
