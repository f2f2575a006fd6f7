/**
 * `GET /feed/<id>`: Server-Sent Events checked with a spec-following EventSource client, the
 * plain chunked stream, several connections per id, several ids per connection, and the ticker.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EventSource } from 'eventsource';
import { api, chunksOf, get, RawClient, startServer, type TestServer, until } from './support/server.js';

let s: TestServer;
before(async () => {
  s = await startServer({ heartbeatMs: 1000 });
});
after(() => s.stop());

/** Opens an EventSource and collects its message events. */
function eventSource(url: string): { es: EventSource; events: MessageEvent[]; opened: Promise<void> } {
  const es = new EventSource(url);
  const events: MessageEvent[] = [];
  es.onmessage = (e) => events.push(e);
  const opened = new Promise<void>((resolve, reject) => {
    es.onopen = () => resolve();
    es.onerror = (e) =>
      reject(new Error(`EventSource error: ${String((e as { message?: string }).message)}`));
  });
  return { es, events, opened };
}

describe('Server-Sent Events', () => {
  test('an EventSource receives each message with its id and multi-line data intact', async () => {
    const { es, events, opened } = eventSource(`http://127.0.0.1:${s.clientPort}/feed/sse-1`);
    await opened;
    await until(() => s.sb.gateway?.hub.count('sse-1') === 1, 'login');
    const r = await api(s.apiUrl, '/api/send', { id: 'sse-1', msg: 'first line\nsecond line' });
    assert.deepEqual(r.body, { delivered: 1 });
    await api(s.apiUrl, '/api/send', { id: 'sse-1', msg: { kind: 'json', n: 2 } });
    await until(() => events.length === 2, 'two events');
    es.close();
    assert.equal(events[0]!.data, 'first line\nsecond line');
    assert.equal(events[1]!.data, '{"kind":"json","n":2}');
    assert.match(events[0]!.lastEventId, /^[\w-]+-\d+$/);
    assert.notEqual(events[0]!.lastEventId, events[1]!.lastEventId);
  });

  test('the raw SSE stream has the right headers, retry, welcome comment and heartbeat comments', async () => {
    const c = new RawClient(s.clientPort, get('/feed/sse-raw', { Accept: 'text/event-stream' }));
    await c.waitFor(': Switchboard welcomes you! Your Id: sse-raw');
    assert.match(c.text, /Content-Type: text\/event-stream; charset=utf-8\r\n/);
    assert.match(c.text, /Cache-Control: no-cache\r\n/);
    assert.match(c.text, /Transfer-Encoding: chunked\r\n/);
    assert.ok(chunksOf(c.text)[0]!.startsWith('retry: 2000\n'));
    // Heartbeat is spread over the interval (1 s here): one arrives within two intervals.
    await c.waitFor(/\r\n:\n\n\r\n/, 3000);
    c.close();
  });
});

describe('plain chunked stream', () => {
  test('without Accept: text/event-stream, each message is one chunk: body and newline', async () => {
    const c = new RawClient(s.clientPort, get('/feed/plain-1'));
    await c.waitFor('Your Id: plain-1');
    assert.match(c.text, /Content-Type: text\/plain; charset=utf-8\r\n/);
    await api(s.apiUrl, '/api/send', { id: 'plain-1', msg: 'one' });
    await api(s.apiUrl, '/api/send', { id: 'plain-1', msg: 'two' });
    await c.waitFor('two\n');
    assert.deepEqual(chunksOf(c.text).slice(1), ['one\n', 'two\n']);
    c.close();
  });

  test('an HTTP/1.0 client gets the stream without chunk framing, ended by close', async () => {
    const c = new RawClient(s.clientPort, 'GET /feed/old-1 HTTP/1.0\r\n\r\n');
    await c.waitFor('Your Id: old-1\n');
    assert.doesNotMatch(c.text, /Transfer-Encoding/);
    await api(s.apiUrl, '/api/send', { id: 'old-1', msg: 'hello 1.0' });
    await c.waitFor('hello 1.0\n');
    assert.ok(
      c.text.endsWith('\r\n\r\nSwitchboard welcomes you! Your Id: old-1\nhello 1.0\n'),
      JSON.stringify(c.text),
    );
    c.close();
  });
});

describe('connections and ids', () => {
  test('one id with several connections: each gets each message once, delivered counts them', async () => {
    const clients = [1, 2, 3].map(() => new RawClient(s.clientPort, get('/test/many')));
    for (const c of clients) await c.waitFor('Your Id: many');
    const r = await api(s.apiUrl, '/api/send', { id: 'many', msg: 'to all three' });
    assert.deepEqual(r.body, { delivered: 3 });
    for (const c of clients) {
      await c.waitFor("'to all three'");
      assert.equal(c.text.split('to all three').length - 1, 1);
      c.close();
    }
  });

  test('one connection with several ids gets a message to any of them, once', async () => {
    const c = new RawClient(s.clientPort, get('/feed/multi-a?also=multi-b,multi-c'));
    await c.waitFor('Your Id: multi-a, multi-b, multi-c');
    for (const id of ['multi-a', 'multi-b', 'multi-c']) {
      const r = await api(s.apiUrl, '/api/send', { id, msg: `to ${id}` });
      assert.deepEqual(r.body, { delivered: 1 });
    }
    await c.waitFor('to multi-c\n');
    assert.deepEqual(chunksOf(c.text).slice(1), ['to multi-a\n', 'to multi-b\n', 'to multi-c\n']);
    c.close();
  });

  test('a connection logged in as a subject and a subscriber of it gets the message once', async () => {
    await api(s.apiUrl, '/api/subscriptions', [{ subscriber: 'fan-1', subscribee: 'star-1' }]);
    const c = new RawClient(s.clientPort, get('/feed/star-1?also=fan-1'));
    await c.waitFor('Your Id: star-1, fan-1');
    const r = await api(s.apiUrl, '/api/send', { id: 'star-1', msg: 'once only' });
    assert.deepEqual(r.body, { delivered: 1 });
    await c.waitFor('once only\n');
    await api(s.apiUrl, '/api/send', { id: 'fan-1', msg: 'marker' });
    await c.waitFor('marker\n');
    assert.equal(c.text.split('once only').length - 1, 1);
    c.close();
  });

  test('router state is empty after all clients leave', async () => {
    const clients = [
      new RawClient(s.clientPort, get('/test/bye-1')),
      new RawClient(s.clientPort, get('/feed/bye-2?also=bye-3', { Accept: 'text/event-stream' })),
      new RawClient(s.clientPort, get('/feed/bye-1')),
    ];
    for (const c of clients) await c.waitFor('welcomes you');
    assert.equal(s.sb.gateway?.hub.count('bye-1'), 2);
    for (const c of clients) c.close();
    await until(
      () => ['bye-1', 'bye-2', 'bye-3'].every((id) => s.sb.gateway?.hub.count(id) === 0),
      'all logged out',
    );
    await until(() => s.sb.gateway?.open === 0, 'no open connections');
    assert.equal(s.sb.gateway?.hub.ids, 0);
    assert.equal(s.sb.gateway?.hub.logins, 0);
  });
});

test('serve --ticker: every stream gets "Chunk N for id X" from one timer', async () => {
  const t = await startServer({ tickerMs: 200 });
  try {
    const c = new RawClient(t.clientPort, get('/test/tick-1'));
    await c.waitFor('Chunk 2 for id tick-1\n');
    assert.deepEqual(chunksOf(c.text).slice(1, 3), ['Chunk 1 for id tick-1\n', 'Chunk 2 for id tick-1\n']);
    c.close();
  } finally {
    await t.stop();
  }
});
