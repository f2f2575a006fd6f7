/** The Node publisher (src/client/publisher.ts) against a real server, and its 503 retries. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { PublishError, Publisher } from '../src/client/publisher.js';
import { get, RawClient, startServer } from './support/server.js';

test('send, batch, subscriptions, presence, disconnect; errors carry the API code', async () => {
  const key = 'a-publisher-test-key-of-32-bytes-or-more';
  const s = await startServer({ apiKey: key });
  try {
    const pub = new Publisher(s.apiUrl, { apiKey: key });
    const c = new RawClient(s.clientPort, get('/test/p-fan'));
    await c.waitFor('welcomes you');
    assert.deepEqual(await pub.subscribe([{ subscriber: 'p-fan', subscribee: 'p-star' }]), { added: 1 });
    assert.deepEqual(await pub.send('p-star', 'one'), { delivered: 1 });
    assert.deepEqual(
      await pub.batch([
        { id: 'p-star', msg: 'two' },
        { id: 'p-fan', msg: { n: 3 } },
      ]),
      {
        messages: 2,
        delivered: 2,
      },
    );
    await c.waitFor(`Recvd msg #3: '{&quot;n&quot;:3}'`);
    assert.deepEqual(await pub.presence(['p-fan', 'p-none']), [
      { id: 'p-fan', online: true, connections: 1 },
      { id: 'p-none', online: false, connections: 0 },
    ]);
    assert.deepEqual(await pub.unsubscribe([{ subscriber: 'p-fan', subscribee: 'p-star' }]), { removed: 1 });
    await assert.rejects(pub.send('bad id!', 'x'), (e: unknown) => {
      assert.ok(e instanceof PublishError);
      assert.equal(e.status, 400);
      assert.equal(e.code, 'ERR_INVALID_ID');
      return true;
    });
    await assert.rejects(new Publisher(s.apiUrl).send('p-fan', 'x'), {
      status: 401,
      code: 'ERR_UNAUTHORIZED',
    });
    assert.deepEqual(await pub.disconnect('p-fan'), { disconnected: 1 });
    await c.waitClosed();
  } finally {
    await s.stop();
  }
});

test('a 503 is retried after Retry-After, up to `retries`; then it rejects with the 503', async () => {
  let calls = 0;
  let failFirst = 2;
  const server = http.createServer((req, res) => {
    calls++;
    req.resume();
    if (calls <= failFirst) {
      res.writeHead(503, { 'Content-Type': 'application/json', 'Retry-After': '0' });
      res.end('{"error":{"code":"ERR_UNAVAILABLE","message":"draining"}}');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"delivered":7}');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    assert.deepEqual(await new Publisher(url, { retries: 3 }).send('a', 'b'), { delivered: 7 });
    assert.equal(calls, 3, 'two 503s, then the answer');
    calls = 0;
    failFirst = 10;
    await assert.rejects(new Publisher(url, { retries: 2 }).send('a', 'b'), {
      name: 'PublishError',
      status: 503,
      code: 'ERR_UNAVAILABLE',
      message: 'draining',
    });
    assert.equal(calls, 3, 'the first try and two retries');
  } finally {
    server.closeAllConnections();
    server.close();
  }
});
