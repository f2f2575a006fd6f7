/**
 * A cluster's gateway opens the store at its first use (a resume reads subscriptions), not at
 * start: LazyStore on its own, then a gateway process on the machine's NATS (a prefix of its own).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ClosedError, ConfigError } from '../src/errors.js';
import { Switchboard } from '../src/server.js';
import { LazyStore } from '../src/store/lazy-store.js';
import { openStore, openStoreLazily } from '../src/store/open-store.js';
import type { SubscriptionStore } from '../src/store/store.js';
import { deleteHistory, NATS_URL } from './support/nats.js';

const NATS = NATS_URL;

test('LazyStore opens at the first call, once; a failed open is tried again; close before use opens nothing', async () => {
  let opens = 0;
  let fail = true;
  let closed = 0;
  const inner = await openStore('sqlite::memory:');
  const open = async (): Promise<SubscriptionStore> => {
    opens++;
    if (fail) throw new Error('not yet');
    return {
      ...inner,
      kind: inner.kind,
      location: inner.location,
      getSubscriptions: (u: string) => inner.getSubscriptions(u),
      addSubscriptions: (s) => inner.addSubscriptions(s),
      subscriberPages: (u: string, n: number) => inner.subscriberPages(u, n),
      close: async () => {
        closed++;
      },
    } as SubscriptionStore;
  };
  const lazy = new LazyStore('sqlite', ':memory:', open);
  assert.equal(lazy.opened, false);
  assert.equal(opens, 0);
  await assert.rejects(lazy.getSubscriptions('1'), /not yet/);
  assert.equal(lazy.opened, false, 'a failed open is forgotten');
  fail = false;
  assert.equal(await lazy.addSubscriptions([{ subscriber: '1', subscribee: '2' }]), 1);
  assert.deepEqual(await lazy.getSubscriptions('1'), ['2']);
  const pages: string[][] = [];
  for await (const p of lazy.subscriberPages('2', 10)) pages.push(p);
  assert.deepEqual(pages, [['1']]);
  assert.equal(opens, 2);
  assert.equal(lazy.opened, true);
  await lazy.close();
  assert.equal(closed, 1);
  await assert.rejects(lazy.getSubscriptions('1'), ClosedError);
  await inner.close();

  let never = 0;
  const unused = new LazyStore('sqlite', 'x', async () => {
    never++;
    return inner;
  });
  await unused.close();
  assert.equal(never, 0);
});

test('openStoreLazily checks the URL form at once and touches nothing', () => {
  assert.throws(() => openStoreLazily('mysql://x'), ConfigError);
  assert.throws(() => openStoreLazily('sqlite:'), ConfigError);
  const dir = mkdtempSync(path.join(tmpdir(), 'sb-lazy-'));
  try {
    const file = path.join(dir, 'sub', 'x.db');
    const s = openStoreLazily(`sqlite:${file}`);
    assert.equal(s.kind, 'sqlite');
    assert.equal(s.location, file);
    assert.equal(existsSync(path.dirname(file)), false);
    const pg = openStoreLazily('postgres://u:secret@127.0.0.1:5432/test');
    assert.equal(pg.kind, 'postgres');
    assert.doesNotMatch(pg.location, /secret/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a gateway with no API opens its SQLite store at the first resume, not at start', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sb-lazy-gw-'));
  const file = path.join(dir, 'store', 'subs.db');
  const prefix = `lazy${process.pid}`;
  const sb = await Switchboard.start({
    role: 'gateway',
    api: false,
    bus: NATS,
    busPrefix: prefix,
    store: `sqlite:${file}`,
    data: dir,
    port: 0,
    host: '127.0.0.1',
    logLevel: 'silent',
    gatewayHeartbeatMs: 200,
  });
  try {
    assert.ok(sb.store instanceof LazyStore);
    assert.equal(sb.store.opened, false);
    assert.equal(existsSync(file), false, 'no SQLite file at start');
    assert.equal((await sb.stats()).subscriptions, null, 'stats leave it closed');
    assert.equal(sb.store.opened, false);
    await sb.router.replay(['7'], sb.messageLog.current());
    assert.equal(sb.store.opened, true);
    assert.equal(existsSync(file), true, 'opened by the resume');
  } finally {
    await sb.close();
    await deleteHistory(prefix);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a process with an API opens its store at start', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sb-eager-'));
  const file = path.join(dir, 'subs.db');
  const sb = await Switchboard.start({
    store: `sqlite:${file}`,
    data: dir,
    port: 0,
    apiPort: 0,
    host: '127.0.0.1',
    apiHost: '127.0.0.1',
    logLevel: 'silent',
  });
  try {
    assert.equal(sb.store instanceof LazyStore, false);
    assert.equal(existsSync(file), true);
  } finally {
    await sb.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
