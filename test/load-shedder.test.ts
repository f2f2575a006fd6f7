/** Overload protection: publishes are refused with 503 (nothing sent) when the server is behind. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoadShedder } from '../src/api/load-shedder.js';
import { api, get, RawClient, startServer, until } from './support/server.js';

test('messages in flight: refused past the limit, admitted again once released', () => {
  const s = new LoadShedder({ maxInflight: 10, maxLagMs: 0 }, { lagMs: 0 });
  try {
    assert.equal(s.acquire(6), undefined);
    assert.match(s.acquire(5)?.reason ?? '', /6 messages in flight \(limit 10\)/);
    assert.equal(s.acquire(4), undefined);
    assert.equal(s.inflight, 10);
    s.release(6);
    assert.equal(s.acquire(5), undefined);
    assert.equal(s.shed, 5);
    s.release(4);
    s.release(5);
    // A batch bigger than the limit still goes through when nothing else is in flight.
    assert.equal(s.acquire(50), undefined);
    s.release(50);
  } finally {
    s.close();
  }
});

test('a late event loop makes publishes answer 503 with Retry-After; nothing is delivered; then it recovers', async () => {
  const t = await startServer({ maxLagMs: 300 });
  try {
    const c = new RawClient(t.clientPort, get('/test/busy'));
    await c.waitFor('welcomes you');
    const pending = api(t.apiUrl, '/api/send', { id: 'busy', msg: 'during overload' });
    // Block this process (the server's too) well past the limit: the server is "behind".
    const end = Date.now() + 800;
    while (Date.now() < end) {
      /* busy */
    }
    const refused = await pending;
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.match(
      (refused.body as { error: { message: string } }).error.message,
      /event loop \d+ ms late \(limit 300 ms\)/,
    );
    const stats = (await api(t.apiUrl, '/api/stats')).body as { api: { shed: number }; messagesIn: number };
    assert.equal(stats.api.shed, 1);
    assert.equal(stats.messagesIn, 0, 'the refused message was never sent');
    await until(
      async () => (await api(t.apiUrl, '/api/send', { id: 'busy', msg: 'after' })).status === 200,
      'recovers',
      5000,
    );
    await c.waitFor("'after'");
    assert.ok(!c.text.includes('during overload'));
    c.close();
  } finally {
    await t.stop();
  }
});
