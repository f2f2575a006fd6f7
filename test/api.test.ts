/** The publish/admin API: send, batch, subscriptions, stats, metrics, health, errors, API key. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { StatsSnapshot } from '../src/api/metrics.js';
import { api, get, RawClient, startServer, type TestServer } from './support/server.js';

let s: TestServer;
before(async () => {
  s = await startServer({ maxMessageBytes: 1024, maxBodyBytes: 64 * 1024 });
});
after(() => s.stop());

describe('POST /api/send', () => {
  test('accepts curl -d bodies (form content type) and answers delivered', async () => {
    const c = new RawClient(s.clientPort, get('/test/api-1'));
    await c.waitFor('Your Id: api-1');
    const r = await api(s.apiUrl, '/api/send', JSON.stringify({ id: 'api-1', msg: 'hey' }), {
      raw: true,
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { delivered: 1 });
    await c.waitFor("'hey'");
    c.close();
  });

  const bad: [string, unknown, number, RegExp][] = [
    ['malformed JSON', '{"id":', 400, /not valid JSON/],
    ['not an object', '[1,2]', 400, /must be a JSON object/],
    ['missing msg', '{"id":"x"}', 400, /msg is missing/],
    ['bad id', '{"id":"a b","msg":"m"}', 400, /id "a b" contains " "/],
    ['numeric id', '{"id":5,"msg":"m"}', 400, /id must be a string/],
    [
      'message over the limit',
      JSON.stringify({ id: 'x', msg: 'y'.repeat(1500) }),
      413,
      /1500 bytes, the limit is 1024/,
    ],
    [
      'body over the limit',
      JSON.stringify({ id: 'x', msg: 'y'.repeat(8000) }),
      413,
      /request body is .* the limit/,
    ],
    ['empty body', '', 400, /empty/],
  ];
  for (const [name, body, status, message] of bad) {
    test(`${name} → ${status} with a JSON error naming the problem`, async () => {
      const r = await api(s.apiUrl, '/api/send', body, { raw: true });
      assert.equal(r.status, status);
      const err = (r.body as { error: { code: string; message: string } }).error;
      assert.match(err.message, message);
      assert.match(err.code, /^ERR_/);
      const ok = await api(s.apiUrl, '/api/send', { id: 'after-error', msg: 'fine' });
      assert.equal(ok.status, 200);
    });
  }

  test('unknown paths 404, wrong methods 405 with Allow', async () => {
    const nf = await api(s.apiUrl, '/api/nope');
    assert.equal(nf.status, 404);
    const wm = await api(s.apiUrl, '/api/send', undefined, { method: 'GET' });
    assert.equal(wm.status, 405);
    assert.equal(wm.headers.get('allow'), 'POST');
  });
});

describe('POST /api/send/batch', () => {
  test('a JSON array and NDJSON lines are both accepted, in order', async () => {
    const c = new RawClient(s.clientPort, get('/feed/batch-1'));
    await c.waitFor('Your Id: batch-1');
    const a = await api(s.apiUrl, '/api/send/batch', [
      { id: 'batch-1', msg: 'a1' },
      { id: 'nobody', msg: 'a2' },
      { id: 'batch-1', msg: 'a3' },
    ]);
    assert.deepEqual(a.body, { messages: 3, delivered: 2 });
    const ndjson = '{"id":"batch-1","msg":"n1"}\n\n{"id":"batch-1","msg":"n2"}\n';
    const n = await api(s.apiUrl, '/api/send/batch', ndjson, {
      raw: true,
      headers: { 'Content-Type': 'application/x-ndjson' },
    });
    assert.deepEqual(n.body, { messages: 2, delivered: 2 });
    await c.waitFor('n2\n');
    assert.match(c.text, /a1\n[\s\S]*a3\n[\s\S]*n1\n[\s\S]*n2\n/);
    c.close();
  });

  test('one bad item rejects the whole batch, naming it, and nothing is sent', async () => {
    const c = new RawClient(s.clientPort, get('/feed/batch-2'));
    await c.waitFor('Your Id: batch-2');
    const before = (await s.sb.stats()).messagesIn;
    const r = await api(s.apiUrl, '/api/send/batch', [
      { id: 'batch-2', msg: 'would be first' },
      { id: 'batch-2', msg: 'fine' },
      { id: 'bad id', msg: 'x' },
    ]);
    assert.equal(r.status, 400);
    assert.match((r.body as { error: { message: string } }).error.message, /messages\[2\]\.id "bad id"/);
    const line = await api(s.apiUrl, '/api/send/batch', '{"id":"batch-2","msg":"ok"}\n{"id":\n', {
      raw: true,
    });
    assert.equal(line.status, 400);
    assert.match((line.body as { error: { message: string } }).error.message, /line 2 is not valid JSON/);
    assert.equal((await s.sb.stats()).messagesIn, before);
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(!c.text.includes('would be first'));
    c.close();
  });
});

describe('subscriptions', () => {
  test('add, list both ways, fan-out, remove', async () => {
    const add = await api(s.apiUrl, '/api/subscriptions', [
      { subscriber: 'alice', subscribee: 'rj' },
      { subscriber: 'bob', subscribee: 'rj' },
    ]);
    assert.deepEqual(add.body, { added: 2 });
    assert.deepEqual((await api(s.apiUrl, '/api/subscribers/rj')).body, {
      id: 'rj',
      subscribers: ['alice', 'bob'],
    });
    assert.deepEqual((await api(s.apiUrl, '/api/subscriptions/alice')).body, {
      id: 'alice',
      subscriptions: ['rj'],
    });
    const alice = new RawClient(s.clientPort, get('/test/alice'));
    await alice.waitFor('Your Id: alice');
    const r = await api(s.apiUrl, '/api/send', { id: 'rj', msg: 'RJ did something' });
    assert.deepEqual(r.body, { delivered: 1 }, 'alice is reached, bob is not logged in');
    await alice.waitFor("'RJ did something'");
    const rm = await api(s.apiUrl, '/api/subscriptions', [{ subscriber: 'bob', subscribee: 'rj' }], {
      method: 'DELETE',
    });
    assert.deepEqual(rm.body, { removed: 1 });
    assert.deepEqual((await api(s.apiUrl, '/api/subscribers/rj')).body, { id: 'rj', subscribers: ['alice'] });
    alice.close();
  });

  test('a bad pair is rejected naming its index, and nothing is applied', async () => {
    const r = await api(s.apiUrl, '/api/subscriptions', [
      { subscriber: 'x1', subscribee: 'y1' },
      { subscriber: 'x2', subscribee: 'bad id' },
    ]);
    assert.equal(r.status, 400);
    assert.match((r.body as { error: { message: string } }).error.message, /subscriptions\[1\]/);
    assert.deepEqual((await api(s.apiUrl, '/api/subscribers/y1')).body, { id: 'y1', subscribers: [] });
    const badId = await api(s.apiUrl, '/api/subscribers/a%20b');
    assert.equal(badId.status, 400);
  });

  test('lists page by page with limit= and the after= cursor', async () => {
    const fans = ['p1', 'p2', 'p3', 'p4', 'p5'].map((f) => ({ subscriber: f, subscribee: 'paged' }));
    assert.deepEqual((await api(s.apiUrl, '/api/subscriptions', fans)).body, { added: 5 });
    const got: string[] = [];
    let url = '/api/subscribers/paged?limit=2';
    for (let pages = 0; ; pages++) {
      assert.ok(pages < 4, 'three pages at most');
      const page = (await api(s.apiUrl, url)).body as {
        id: string;
        subscribers: string[];
        next: string | null;
      };
      assert.equal(page.id, 'paged');
      assert.ok(page.subscribers.length <= 2);
      got.push(...page.subscribers);
      if (page.next === null) break;
      url = `/api/subscribers/paged?limit=2&after=${encodeURIComponent(page.next)}`;
    }
    assert.deepEqual(got.sort(), ['p1', 'p2', 'p3', 'p4', 'p5']);
    const sub = (await api(s.apiUrl, '/api/subscriptions/p1?limit=10')).body;
    assert.deepEqual(sub, { id: 'p1', subscriptions: ['paged'], next: null });
    for (const bad of ['limit=0', 'limit=10001', 'limit=two', 'after=p1', 'limit=2&after=a%20b']) {
      const r = await api(s.apiUrl, `/api/subscribers/paged?${bad}`);
      assert.equal(r.status, 400, bad);
      assert.match((r.body as { error: { message: string } }).error.message, /limit|after/, bad);
    }
  });
});

describe('stats, metrics, health', () => {
  test('/api/stats counts connections, ids, messages in and out, bytes out', async () => {
    const c = new RawClient(s.clientPort, get('/test/stats-1'));
    await c.waitFor('Your Id: stats-1');
    const before = (await api(s.apiUrl, '/api/stats')).body as StatsSnapshot;
    await api(s.apiUrl, '/api/send', { id: 'stats-1', msg: 'count me' });
    await c.waitFor('count me');
    const st = (await api(s.apiUrl, '/api/stats')).body as StatsSnapshot;
    assert.ok(st.connections >= 1);
    assert.ok((st.streams.test ?? 0) >= 1);
    assert.ok(st.ids >= 1);
    assert.equal(st.messagesIn, before.messagesIn + 1);
    assert.equal(st.messagesOut, before.messagesOut + 1);
    assert.equal(st.delivered, before.delivered + 1);
    assert.equal(st.bytesOut - before.bytesOut, Buffer.byteLength("17\r\nRecvd msg #1: 'count me'<br/>\r\n"));
    c.close();
  });

  test('/metrics is Prometheus text and /healthz is ok', async () => {
    const m = await api(s.apiUrl, '/metrics');
    assert.equal(m.status, 200);
    assert.match(String(m.body), /^# HELP process_start_time_seconds/m);
    assert.match(String(m.body), /^switchboard_messages_in_total \d+$/m);
    assert.match(String(m.body), /^switchboard_streams\{transport="sse"\} \d+$/m);
    const h = await api(s.apiUrl, '/healthz');
    assert.equal(h.status, 200);
    assert.deepEqual(h.body, { status: 'ok', checks: { bus: true, accepting: true } });
  });
});

test('with an API key, every route but /healthz needs it', async () => {
  const k = await startServer({ apiKey: 'sekrit-key-that-is-at-least-32-bytes' });
  try {
    const no = await api(k.apiUrl, '/api/send', { id: 'a', msg: 'b' });
    assert.equal(no.status, 401);
    const wrong = await api(k.apiUrl, '/api/stats', undefined, { headers: { Authorization: 'Bearer nope' } });
    assert.equal(wrong.status, 401);
    const yes = await api(
      k.apiUrl,
      '/api/send',
      { id: 'a', msg: 'b' },
      { headers: { Authorization: 'Bearer sekrit-key-that-is-at-least-32-bytes' } },
    );
    assert.deepEqual(yes.body, { delivered: 0 });
    const alt = await api(k.apiUrl, '/api/stats', undefined, {
      headers: { 'X-Api-Key': 'sekrit-key-that-is-at-least-32-bytes' },
    });
    assert.equal(alt.status, 200);
    assert.equal((await api(k.apiUrl, '/healthz')).status, 200);
  } finally {
    await k.stop();
  }
});
