/**
 * A server on PostgreSQL whose database becomes unreachable (a TCP proxy in front of the machine's
 * server is cut) and comes back: sends and subscription reads answer 503 while it is gone — never a
 * silent `{"delivered":0}` — and work again once it is back.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createLogger } from '../src/log.js';
import { adminConnection, TcpProxy } from './support/postgres.js';
import { api, get, RawClient, startServer, type TestServer, until } from './support/server.js';

const admin = await adminConnection();
const db = `sb_test_fault_${process.pid}_${randomBytes(3).toString('hex')}`;
const proxy = new TcpProxy();
let s: TestServer;
const logged: string[] = [];

before(async () => {
  await admin.sql.unsafe(`CREATE DATABASE ${db}`);
  await proxy.start();
  s = await startServer({
    store: `${admin.base.replace(/:\d+$/, `:${proxy.port}`)}/${db}`,
    logger: createLogger('info', { write: (l: string) => logged.push(l) }, '', 'json'),
  });
});

after(async () => {
  await s?.stop();
  await proxy.stop();
  await admin.sql.unsafe(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin.sql.end({ timeout: 5 });
});

test('store unreachable: sends and reads answer 503 naming the problem; back: they work again', async () => {
  const fan = new RawClient(s.clientPort, get('/test/pg-fan'));
  await fan.waitFor('welcomes you');
  assert.deepEqual(
    (await api(s.apiUrl, '/api/subscriptions', [{ subscriber: 'pg-fan', subscribee: 'pg-star' }])).body,
    {
      added: 1,
    },
  );
  assert.deepEqual((await api(s.apiUrl, '/api/send', { id: 'pg-star', msg: 'one' })).body, { delivered: 1 });

  await proxy.stop();
  const send = await api(s.apiUrl, '/api/send', { id: 'pg-star', msg: 'lost?' });
  assert.equal(send.status, 503, JSON.stringify(send.body));
  assert.equal((send.body as { error: { code: string } }).error.code, 'ERR_UNAVAILABLE');
  const read = await api(s.apiUrl, '/api/subscribers/pg-star');
  assert.equal(read.status, 503);
  const add = await api(s.apiUrl, '/api/subscriptions', [{ subscriber: 'x', subscribee: 'y' }]);
  assert.equal(add.status, 503);

  await proxy.start(proxy.port);
  await until(
    async () => (await api(s.apiUrl, '/api/send', { id: 'pg-star', msg: 'two' })).status === 200,
    'store back',
    15_000,
  );
  await fan.waitFor("'two'");
  // The outage is one warning (not one per refused call), the recovery one line at info.
  const store = logged
    .map((l) => JSON.parse(l) as { level: string; msg: string })
    .filter((r) => /^PostgreSQL (unavailable|reachable)/.test(r.msg));
  assert.deepEqual(
    store.map((r) => [r.level, r.msg]),
    [
      ['warn', 'PostgreSQL unavailable: calls get 503 until it is back'],
      ['info', 'PostgreSQL reachable again'],
    ],
  );
  assert.deepEqual((await api(s.apiUrl, '/api/subscribers/pg-star')).body, {
    id: 'pg-star',
    subscribers: ['pg-fan'],
  });
  fan.close();
});
