/**
 * The SQLite store: the shared contract on a real file in a fresh temp folder, then what only
 * SQLite has — the schema it creates, in-memory databases, URLs, and files from newer builds.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { ConfigError, UnavailableError } from '../src/errors.js';
import { defaultStoreUrl, openStore } from '../src/store/open-store.js';
import { SQLITE_SCHEMA_VERSION, SqliteStore } from '../src/store/sqlite-store.js';
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
      const indexes = db
        .prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'subscriptions'`)
        .pluck()
        .all();
      assert.ok(indexes.includes('subscriptions_by_subscriber'), String(indexes));
      // A canonical number is stored as an INTEGER, anything else as TEXT.
      const row = db
        .prepare('SELECT typeof(subscriber) AS a, typeof(subscribee) AS b FROM subscriptions')
        .get();
      assert.deepEqual(row, { a: 'integer', b: 'text' });
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
      assert.match(err.message, /schema version 2, newer than this build knows/);
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
