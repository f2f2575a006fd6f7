/**
 * One lifecycle with a deadline in every state: sockets whose final answer is written are
 * destroyed when the client never closes its side; the open count always equals the sum of the
 * per-state counts; heartbeats come once per period however few connections there are.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { api, get, RawClient, startServer, type TestServer, until } from './support/server.js';

/** A client that sends `request` (maybe nothing), reads everything and never closes its side. */
function lingerer(port: number, request: string): { socket: net.Socket; text: () => string } {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let text = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => {
    text += d;
  });
  socket.on('error', () => undefined);
  if (request) socket.on('connect', () => socket.write(request));
  return { socket, text: () => text };
}

function balanced(s: TestServer): void {
  const g = s.sb.gateway!;
  const parts = g.openByKind();
  const sum = Object.values(parts).reduce((a, b) => a + b, 0);
  assert.equal(sum, g.open, `open ${g.open} vs parts ${JSON.stringify(parts)}`);
}

describe('deadlines after the final answer', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ headTimeoutMs: 1000, lingerMs: 1000, maxConnections: 40 });
  });
  after(() => s.stop());

  test('40 clients that never close fill a 40-connection server only until their deadline', async () => {
    const bad = Array.from({ length: 40 }, (_, i) => lingerer(s.clientPort, i % 2 ? 'x\r\n\r\n' : ''));
    await until(() => s.sb.gateway!.open === 40, '40 connections held');
    balanced(s);
    // A legitimate client is turned away while they hold every slot...
    const refused = new RawClient(s.clientPort, get('/test/legit'));
    await refused.waitClosed(3000);
    assert.ok(!refused.text.includes('welcomes you'));
    // ...and gets in once their deadlines (head timeout, then linger) have passed.
    await until(() => s.sb.gateway!.open === 0, 'every held socket destroyed', 8000);
    balanced(s);
    const legit = new RawClient(s.clientPort, get('/test/legit'));
    await legit.waitFor('Your Id: legit');
    assert.equal(s.sb.gateway!.open, 1);
    legit.close();
    for (const b of bad) {
      assert.match(b.text(), /^HTTP\/1\.1 (400|408) /);
      b.socket.destroy();
    }
  });

  for (const [what, request] of [
    ['a 404', get('/nowhere')],
    ['GET /healthz', get('/healthz')],
    ['HEAD', get('/feed/h', {}, 'HEAD')],
    ['OPTIONS with Connection: close', 'OPTIONS / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
  ] as const) {
    test(`after ${what} the socket is destroyed within the linger time if the client never closes`, async () => {
      const c = lingerer(s.clientPort, request);
      await until(() => c.text().includes('\r\n\r\n'), 'answer');
      await until(() => s.sb.gateway!.openByKind().ending === 1, 'counted as ending');
      balanced(s);
      await until(() => s.sb.gateway!.open === 0, 'socket destroyed', 3000);
      c.socket.destroy();
    });
  }

  test('a WebSocket closed by the client is destroyed even if it never sends FIN', async () => {
    const key = Buffer.alloc(16, 1).toString('base64');
    const c = lingerer(
      s.clientPort,
      get('/feed/wsl', {
        Upgrade: 'websocket',
        Connection: 'Upgrade',
        'Sec-WebSocket-Key': key,
        'Sec-WebSocket-Version': '13',
      }),
    );
    await until(() => c.text().includes('welcome'), 'upgrade');
    // A masked close frame, code 1000.
    c.socket.write(Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]));
    await until(() => s.sb.gateway!.openByKind().ending === 1, 'counted as ending');
    await until(() => s.sb.gateway!.open === 0, 'socket destroyed', 3000);
    c.socket.destroy();
  });
});

describe('heartbeats', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ heartbeatMs: 2000 });
  });
  after(() => s.stop());

  test('one SSE client gets one heartbeat per period, not one per tick', async () => {
    const c = new RawClient(s.clientPort, get('/feed/hb', { Accept: 'text/event-stream' }));
    await c.waitFor('welcomes you');
    await new Promise((r) => setTimeout(r, 6500));
    const beats = c.text.split('\r\n:\n\n').length - 1;
    // 6.5 s at one beat per 2 s: 3 (or 4 with the wheel's phase); one per 1 s tick would be 6.
    assert.ok(beats >= 2 && beats <= 4, `${beats} heartbeats`);
    c.close();
  });

  test("a plain stream gets an empty line per period; the article's /test stream stays byte-exact, no heartbeat", async () => {
    const plain = new RawClient(s.clientPort, get('/feed/hbp'));
    const article = new RawClient(s.clientPort, get('/test/hbt'));
    await plain.waitFor('welcomes you');
    await article.waitFor('welcomes you');
    await new Promise((r) => setTimeout(r, 4500));
    const beats = plain.text.split('\r\n1\r\n\n\r\n').length - 1;
    assert.ok(beats >= 1 && beats <= 3, `${beats} heartbeats`);
    assert.ok(
      article.text.endsWith('Mochiconntest welcomes you! Your Id: hbt\n\r\n'),
      JSON.stringify(article.text),
    );
    for (const c of [plain, article]) {
      assert.match(c.text, /\r\nX-Accel-Buffering: no\r\n/, 'nginx passes every chunk on at once');
      c.close();
    }
  });
});

describe('strict request heads', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(() => s.stop());

  for (const [what, request, reason] of [
    [
      'a bare LF inside a header line',
      'GET /feed/a HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n',
      /bare CR or LF/,
    ],
    ['a bare CR', 'GET /feed/a HTTP/1.1\r\nHost: x\rX: y\r\n\r\n', /bare CR or LF/],
    ['NUL in a value', 'GET /feed/a HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n', /control character/],
    ['0x01 in a value', 'GET /feed/a HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n', /control character/],
    ['DEL in a value', 'GET /feed/a HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n', /control character/],
    ['a tab in the request line', 'GET\t/feed/a HTTP/1.1\r\nHost: x\r\n\r\n', /control character/],
  ] as const) {
    test(`${what} gets 400`, async () => {
      const c = new RawClient(s.clientPort, request);
      await c.waitClosed();
      assert.match(c.text, /^HTTP\/1\.1 400 /);
      assert.match(c.text, reason);
    });
  }

  test('a head using bare LF only is refused at once, not at the head timeout', async () => {
    const t0 = Date.now();
    const c = new RawClient(s.clientPort, 'GET /feed/a HTTP/1.1\nHost: x\n');
    await c.waitClosed();
    assert.match(c.text, /^HTTP\/1\.1 400 [\s\S]*bare LF/);
    assert.ok(Date.now() - t0 < 2000);
  });

  test('a tab inside a header value is allowed', async () => {
    const c = new RawClient(s.clientPort, get('/test/tab', { 'X-Note': 'a\tb' }));
    await c.waitFor('Your Id: tab');
    c.close();
  });

  test('an absolute-form target is accepted (RFC 9112 §3.2.2)', async () => {
    const c = new RawClient(
      s.clientPort,
      'GET http://example.test/test/abs HTTP/1.1\r\nHost: example.test\r\n\r\n',
    );
    await c.waitFor('Your Id: abs');
    c.close();
  });

  test('a head trickled one byte per write is parsed (and costs no quadratic copying)', async () => {
    const c = new RawClient(s.clientPort);
    for (const ch of get('/test/trickle')) {
      c.socket.write(ch);
      await new Promise((r) => setImmediate(r));
    }
    await c.waitFor('Your Id: trickle');
    c.close();
  });

  test('requests keep being served after all of the above', async () => {
    const c = new RawClient(s.clientPort, get('/test/after'));
    await c.waitFor('Your Id: after');
    await api(s.apiUrl, '/api/send', { id: 'after', msg: 'ok' });
    await c.waitFor("'ok'");
    c.close();
  });
});
