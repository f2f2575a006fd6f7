/**
 * The publish API cannot freeze the loop or lose what it accepted: a huge batch goes out in
 * slices (or is refused with 413 past the in-flight limit), sends while draining get 503 with
 * Retry-After, a deeply nested message is a 400, the size limit counts the message and not its
 * escaping, and without the key routes cannot be told apart.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { api, get, RawClient, startServer, until } from './support/server.js';

test('a 200,000-message batch is delivered in slices: the client port answers meanwhile', async () => {
  const s = await startServer({ maxInflight: 300_000 });
  try {
    // The stream that gets half the batch only counts what it reads (the test shares the loop).
    let received = 0;
    const c = net.connect(s.clientPort, '127.0.0.1', () => c.write(get('/test/big')));
    c.on('data', (d: Buffer) => {
      received += d.length;
    });
    await until(() => received > 0, 'the stream opened');
    const batch = JSON.stringify(
      Array.from({ length: 200_000 }, (_, i) => ({ id: i % 2 ? 'big' : `x${i}`, msg: 'm' })),
    );
    const sending = api(s.apiUrl, '/api/send/batch', batch, { raw: true });
    // While it runs, probes on the client port: answered while messages are in flight means the
    // batch gave the event loop turns (a batch sent in one go answers none of them). How long
    // they waited is a benchmark's business (bench/big-batch.ts), not this test's.
    let answeredDuring = 0;
    let done = false;
    void sending.then(() => {
      done = true;
    });
    while (!done) {
      const probe = new RawClient(s.clientPort, get('/healthz'));
      await probe.waitClosed(10_000);
      if (s.sb.api.load().inflight > 0) answeredDuring++;
    }
    const r = await sending;
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { messages: 200_000, delivered: 100_000 });
    assert.ok(answeredDuring >= 3, `${answeredDuring} probes answered while the batch was being sent`);
    c.destroy();
  } finally {
    await s.stop();
  }
});

test('a batch larger than the in-flight limit is refused with 413, nothing sent', async () => {
  const s = await startServer({ maxInflight: 100 });
  try {
    const batch = Array.from({ length: 101 }, () => ({ id: 'a', msg: 'm' }));
    const r = await api(s.apiUrl, '/api/send/batch', batch);
    assert.equal(r.status, 413);
    assert.match(JSON.stringify(r.body), /over the in-flight limit of 100/);
    const stats = (await api(s.apiUrl, '/api/stats')).body as { messagesIn: number };
    assert.equal(stats.messagesIn, 0);
  } finally {
    await s.stop();
  }
});

test('sends while the server drains get 503 with Retry-After, never {"delivered":0}', async () => {
  const s = await startServer({ shutdownTimeoutMs: 3000 });
  // A stream that never goes away keeps the gateway draining for a while.
  const c = new RawClient(s.clientPort, get('/test/stay'));
  await c.waitFor('Your Id: stay');
  const closing = s.sb.close();
  const r = await api(s.apiUrl, '/api/send', { id: 'stay', msg: 'late' });
  assert.equal(r.status, 503);
  assert.equal(r.headers.get('retry-after'), '1');
  assert.match(JSON.stringify(r.body), /shutting down/);
  c.close();
  await closing;
  await s.stop();
});

test('message checks: nesting, escaping, internal errors', async () => {
  const s = await startServer();
  try {
    const depth = 20_000;
    const deep = `{"id":"a","msg":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    const r1 = await api(s.apiUrl, '/api/send', deep, { raw: true });
    assert.equal(r1.status, 400, JSON.stringify(r1.body));
    // 64 KB of control characters is 384 KB of JSON: within --max-message, so accepted.
    const msg = '\u0001'.repeat(64 * 1024);
    const r2 = await api(s.apiUrl, '/api/send', { id: 'a', msg });
    assert.equal(r2.status, 200, JSON.stringify(r2.body));
    const r3 = await api(s.apiUrl, '/api/send', { id: 'a', msg: `${msg}x` });
    assert.equal(r3.status, 413);
  } finally {
    await s.stop();
  }
});

test('with an API key, unknown routes and wrong methods get 401 like the rest', async () => {
  const key = 'an-api-key-that-is-32-bytes-long!!';
  const s = await startServer({ apiKey: key });
  try {
    for (const [path, method] of [
      ['/api/nothing', 'GET'],
      ['/api/send', 'GET'],
      ['/api/send', 'POST'],
    ] as const) {
      const r = await api(s.apiUrl, path, undefined, { method });
      assert.equal(r.status, 401, `${method} ${path}`);
    }
    const auth = { Authorization: `Bearer ${key}` };
    assert.equal((await api(s.apiUrl, '/api/nothing', undefined, { headers: auth })).status, 404);
    const wrong = await api(s.apiUrl, '/api/send', undefined, { method: 'GET', headers: auth });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'POST');
    assert.equal((wrong.body as { error: { code: string } }).error.code, 'ERR_METHOD_NOT_ALLOWED');
    const short = await api(s.apiUrl, '/api/stats', undefined, { headers: { Authorization: 'Bearer an' } });
    assert.equal(short.status, 401);
  } finally {
    await s.stop();
  }
});
