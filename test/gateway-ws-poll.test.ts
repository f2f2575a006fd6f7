/**
 * WebSocket (checked with the `ws` client), long-poll, and resume after reconnect on every
 * transport that has event ids.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { api, chunksOf, get, RawClient, startServer, type TestServer, until } from './support/server.js';

let s: TestServer;
before(async () => {
  s = await startServer({ pollTimeoutMs: 1000, heartbeatMs: 1000 });
});
after(() => s.stop());

interface WsClient {
  ws: WebSocket;
  frames: Record<string, unknown>[];
  closed: Promise<{ code: number; reason: string }>;
}

async function wsConnect(path: string): Promise<WsClient> {
  const ws = new WebSocket(`ws://127.0.0.1:${s.clientPort}${path}`);
  const frames: Record<string, unknown>[] = [];
  ws.on('message', (data) => frames.push(JSON.parse(String(data)) as Record<string, unknown>));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, frames, closed };
}

describe('WebSocket', () => {
  test('welcome, then one JSON frame per message; answers pings; closes cleanly', async () => {
    const c = await wsConnect('/feed/ws-1?also=ws-2');
    await until(() => c.frames.length === 1, 'welcome');
    assert.deepEqual(c.frames[0], { type: 'welcome', ids: ['ws-1', 'ws-2'] });
    const r = await api(s.apiUrl, '/api/send', { id: 'ws-2', msg: 'over websocket' });
    assert.deepEqual(r.body, { delivered: 1 });
    await until(() => c.frames.length === 2, 'message');
    const m = c.frames[1]!;
    assert.equal(m.data, 'over websocket');
    assert.equal(m.subject, 'ws-2');
    assert.match(String(m.id), /-\d+$/);
    assert.equal(typeof m.ts, 'number');

    const pong = new Promise<Buffer>((resolve) => c.ws.once('pong', resolve));
    c.ws.ping(Buffer.from('are you there'));
    assert.equal(String(await pong), 'are you there');

    c.ws.close(1000, 'done');
    assert.equal((await c.closed).code, 1000);
    await until(() => s.sb.gateway?.hub.count('ws-1') === 0, 'logout');
  });

  test('the server pings; a client that answers stays connected', async () => {
    const c = await wsConnect('/feed/ws-ping');
    const ping = new Promise<void>((resolve) => c.ws.once('ping', () => resolve()));
    await ping;
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    c.ws.close();
    await c.closed;
  });

  test('a frame over the size limit closes with 1009', async () => {
    const c = await wsConnect('/feed/ws-big');
    c.ws.send('x'.repeat(70 * 1024));
    const { code } = await c.closed;
    assert.equal(code, 1009);
  });

  test('bad handshakes are refused', async () => {
    const noKey = new RawClient(
      s.clientPort,
      get('/feed/ws-bad', { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13' }),
    );
    await noKey.waitClosed();
    assert.match(noKey.text, /^HTTP\/1\.1 400 [\s\S]*Sec-WebSocket-Key/);
    const oldVersion = new RawClient(
      s.clientPort,
      get('/feed/ws-bad', {
        Upgrade: 'websocket',
        Connection: 'Upgrade',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version': '8',
      }),
    );
    await oldVersion.waitClosed();
    assert.match(oldVersion.text, /^HTTP\/1\.1 426 [\s\S]*Sec-WebSocket-Version: 13/);
  });

  test('the handshake accept key is the RFC 6455 example value', async () => {
    const c = new RawClient(
      s.clientPort,
      get('/feed/ws-rfc', {
        Upgrade: 'websocket',
        Connection: 'Upgrade',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version': '13',
      }),
    );
    await c.waitFor('\r\n\r\n');
    assert.match(c.text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(c.text, /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/);
    c.close();
  });
});

async function poll(
  path: string,
): Promise<{ messages: { id: string; data: string }[]; last: string; gap?: string }> {
  const res = await fetch(`http://127.0.0.1:${s.clientPort}${path}`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  return (await res.json()) as { messages: { id: string; data: string }[]; last: string; gap?: string };
}

describe('long-poll', () => {
  test('waits for a message, answers with it and a cursor; the next poll resumes from the cursor', async () => {
    const pending = poll('/feed/lp-1?transport=poll');
    await until(() => s.sb.gateway?.hub.count('lp-1') === 1, 'poll logged in');
    await api(s.apiUrl, '/api/send', { id: 'lp-1', msg: 'first' });
    const first = await pending;
    assert.deepEqual(
      first.messages.map((m) => m.data),
      ['first'],
    );
    assert.equal(first.last, first.messages[0]!.id);
    // Between polls nobody is logged in: these two are only reachable through history.
    await api(s.apiUrl, '/api/send', { id: 'lp-1', msg: 'second' });
    await api(s.apiUrl, '/api/send', { id: 'lp-1', msg: 'third' });
    const next = await poll(`/feed/lp-1?transport=poll&last=${encodeURIComponent(first.last)}`);
    assert.deepEqual(
      next.messages.map((m) => m.data),
      ['second', 'third'],
    );
  });

  test('answers empty with a cursor after the poll timeout', async () => {
    const started = Date.now();
    const r = await poll('/feed/lp-quiet?transport=poll');
    assert.deepEqual(r.messages, []);
    assert.match(r.last, /-\d+$/);
    assert.ok(Date.now() - started >= 900, 'waited for the timeout');
  });

  test('a cursor from another server start is reported as a gap', async () => {
    const r = await poll('/feed/lp-2?transport=poll&last=someoneelse-7');
    assert.deepEqual(r.messages, []);
    assert.equal(r.gap, 'unknown');
  });
});

describe('resume', () => {
  test('SSE with Last-Event-ID replays what was missed, including messages to subscribed ids', async () => {
    await api(s.apiUrl, '/api/subscriptions', [{ subscriber: 'rs-1', subscribee: 'rs-star' }]);
    const c1 = new RawClient(s.clientPort, get('/feed/rs-1', { Accept: 'text/event-stream' }));
    await c1.waitFor('welcomes you');
    await api(s.apiUrl, '/api/send', { id: 'rs-1', msg: 'seen' });
    await c1.waitFor('data: seen');
    const lastId = /id: (\S+)\ndata: seen/.exec(c1.text)![1]!;
    c1.close();
    await until(() => s.sb.gateway?.hub.count('rs-1') === 0, 'logout');
    await api(s.apiUrl, '/api/send', { id: 'rs-1', msg: 'missed direct' });
    await api(s.apiUrl, '/api/send', { id: 'other', msg: 'not mine' });
    await api(s.apiUrl, '/api/send', { id: 'rs-star', msg: 'missed via subscription' });
    const c2 = new RawClient(
      s.clientPort,
      get('/feed/rs-1', { Accept: 'text/event-stream', 'Last-Event-ID': lastId }),
    );
    await c2.waitFor('data: missed via subscription');
    await api(s.apiUrl, '/api/send', { id: 'rs-1', msg: 'live again' });
    await c2.waitFor('data: live again');
    const data = chunksOf(c2.text)
      .flatMap((ch) => ch.split('\n'))
      .filter((l) => l.startsWith('data: '));
    assert.deepEqual(data, ['data: missed direct', 'data: missed via subscription', 'data: live again']);
    c2.close();
  });

  test('an unknown Last-Event-ID gets a gap event, then live messages', async () => {
    const c = new RawClient(
      s.clientPort,
      get('/feed/rs-2', { Accept: 'text/event-stream', 'Last-Event-ID': 'old-99' }),
    );
    await c.waitFor('event: gap');
    assert.match(c.text, /event: gap\ndata: \{"last":"old-99","reason":"unknown"\}/);
    await until(() => s.sb.gateway?.hub.count('rs-2') === 1, 'login');
    await api(s.apiUrl, '/api/send', { id: 'rs-2', msg: 'after gap' });
    await c.waitFor('data: after gap');
    c.close();
  });

  test('WebSocket resumes with ?last=', async () => {
    const c1 = await wsConnect('/feed/rw-1');
    await api(s.apiUrl, '/api/send', { id: 'rw-1', msg: 'w1' });
    await until(() => c1.frames.length === 2, 'w1');
    const last = String(c1.frames[1]!.id);
    c1.ws.close();
    await c1.closed;
    await until(() => s.sb.gateway?.hub.count('rw-1') === 0, 'logout');
    await api(s.apiUrl, '/api/send', { id: 'rw-1', msg: 'w2' });
    const c2 = await wsConnect(`/feed/rw-1?last=${encodeURIComponent(last)}`);
    await until(() => c2.frames.length === 2, 'replay');
    assert.equal(c2.frames[1]!.data, 'w2');
    c2.ws.close();
    await c2.closed;
  });
});
