/**
 * The article's route `GET /test/<id>` byte for byte, and every bad-input case on the client
 * port, each followed by a check that the server still serves.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { api, chunksOf, get, RawClient, startServer, type TestServer, until } from './support/server.js';

let s: TestServer;
before(async () => {
  s = await startServer({ headTimeoutMs: 1000 });
});
after(() => s.stop());

/** Proves the server still answers: a fresh stream gets its welcome. */
async function stillServing(): Promise<void> {
  const c = new RawClient(s.clientPort, get('/test/alive'));
  await c.waitFor('Your Id: alive');
  c.close();
}

describe('GET /test/<id>', () => {
  test('answers 200 chunked text/html with the welcome chunk, then one chunk per message', async () => {
    const c = new RawClient(s.clientPort, get('/test/123'));
    await c.waitFor('Your Id: 123\n\r\n');
    const head = c.text.slice(0, c.text.indexOf('\r\n\r\n'));
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(head, /\r\nTransfer-Encoding: chunked(\r\n|$)/);
    assert.match(head, /\r\nContent-Type: text\/html; charset=utf-8(\r\n|$)/);
    const welcome = 'Mochiconntest welcomes you! Your Id: 123\n';
    assert.ok(
      c.text.endsWith(`\r\n\r\n${welcome.length.toString(16)}\r\n${welcome}\r\n`),
      JSON.stringify(c.text),
    );

    const r1 = await api(s.apiUrl, '/api/send', { id: '123', msg: 'Hello World' });
    assert.deepEqual(r1.body, { delivered: 1 });
    await api(s.apiUrl, '/api/send', { id: '123', msg: 'Why not open another browser window too?' });
    await c.waitFor('#2');
    assert.deepEqual(chunksOf(c.text), [
      welcome,
      "Recvd msg #1: 'Hello World'<br/>",
      "Recvd msg #2: 'Why not open another browser window too?'<br/>",
    ]);
    c.close();
  });

  test('a message for another id goes into the void', async () => {
    const c = new RawClient(s.clientPort, get('/test/void-a'));
    await c.waitFor('Your Id: void-a');
    const r = await api(s.apiUrl, '/api/send', { id: 'void-b', msg: 'not for you' });
    assert.deepEqual(r.body, { delivered: 0 });
    await api(s.apiUrl, '/api/send', { id: 'void-a', msg: 'for you' });
    await c.waitFor("Recvd msg #1: 'for you'");
    assert.ok(!c.text.includes('not for you'));
    c.close();
  });

  test('message text is HTML-escaped on the text/html route', async () => {
    const c = new RawClient(s.clientPort, get('/test/esc'));
    await c.waitFor('Your Id: esc');
    await api(s.apiUrl, '/api/send', { id: 'esc', msg: `<script>alert("x")</script> & 'q'` });
    await c.waitFor('<br/>');
    assert.ok(
      c.text.includes(
        "Recvd msg #1: '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;'<br/>",
      ),
    );
    c.close();
  });

  test('HEAD answers the headers only and closes', async () => {
    const c = new RawClient(s.clientPort, get('/test/123', {}, 'HEAD'));
    await c.waitClosed();
    assert.match(c.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(c.text, /Content-Type: text\/html; charset=utf-8/);
    assert.ok(c.text.endsWith('\r\n\r\n'), 'no body after the head');
  });

  test('a disconnect logs the connection out at once', async () => {
    const c = new RawClient(s.clientPort, get('/test/leaver'));
    await c.waitFor('Your Id: leaver');
    assert.equal(s.sb.gateway?.hub.count('leaver'), 1);
    c.close();
    await until(() => s.sb.gateway?.hub.count('leaver') === 0, 'logout after close');
    const r = await api(s.apiUrl, '/api/send', { id: 'leaver', msg: 'gone' });
    assert.deepEqual(r.body, { delivered: 0 });
  });
});

describe('bad input on the client port', () => {
  const cases: [string, string, RegExp][] = [
    ['unknown path', get('/nowhere'), /^HTTP\/1\.1 404 Not Found[\s\S]*no route for \/nowhere/],
    [
      'wrong method',
      get('/test/1', {}, 'POST'),
      /^HTTP\/1\.1 405 Method Not Allowed\r\n[\s\S]*Allow: GET, HEAD, OPTIONS\r\n/,
    ],
    ['id with a space', get('/test/a%20b'), /^HTTP\/1\.1 400 Bad Request[\s\S]*id "a b" contains " "/],
    ['id with a slash', get('/test/a/b'), /^HTTP\/1\.1 400 Bad Request[\s\S]*contains "\/"/],
    ['empty id', get('/test/'), /^HTTP\/1\.1 400 Bad Request[\s\S]*must not be empty/],
    [
      'id too long',
      get(`/test/${'x'.repeat(129)}`),
      /^HTTP\/1\.1 400 Bad Request[\s\S]*129 characters long, the limit is 128/,
    ],
    ['bad also id', get('/feed/a?also=b,c!'), /^HTTP\/1\.1 400 Bad Request[\s\S]*also id "c!" contains "!"/],
    ['malformed request line', 'GARBAGE\r\n\r\n', /^HTTP\/1\.1 400 Bad Request[\s\S]*malformed request line/],
    ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\n', /^HTTP\/1\.1 (400|505)/],
    ['missing Host', 'GET /test/1 HTTP/1.1\r\n\r\n', /^HTTP\/1\.1 400 Bad Request[\s\S]*missing Host/],
    [
      'a body on GET',
      get('/test/1', { 'Content-Length': '5' }),
      /^HTTP\/1\.1 400 Bad Request[\s\S]*must not have a body/,
    ],
    [
      'unknown transport',
      get('/feed/1?transport=pigeon'),
      /^HTTP\/1\.1 400 Bad Request[\s\S]*unknown transport "pigeon"/,
    ],
  ];
  for (const [name, request, expected] of cases) {
    test(`${name} is answered with the right status and the server keeps serving`, async () => {
      const c = new RawClient(s.clientPort, request);
      await c.waitClosed();
      assert.match(c.text, expected);
      await stillServing();
    });
  }

  test('a request head over 16 KB gets 431', async () => {
    const c = new RawClient(s.clientPort, get('/test/1', { 'X-Filler': 'y'.repeat(17 * 1024) }));
    await c.waitClosed();
    assert.match(c.text, /^HTTP\/1\.1 431 Request Header Fields Too Large/);
    await stillServing();
  });

  test('a head that never ends is cut at 16 KB even without a blank line', async () => {
    const c = new RawClient(s.clientPort, `GET /test/1 HTTP/1.1\r\nX: ${'z'.repeat(20 * 1024)}`);
    await c.waitClosed();
    assert.match(c.text, /^HTTP\/1\.1 431/);
  });

  test('a client that never finishes its request head is closed after the head timeout', async () => {
    const before = s.sb.gateway!.stats.headTimeouts;
    const c = new RawClient(s.clientPort, 'GET /test/slow HTTP/1.1\r\nHost: x\r\n');
    await c.waitClosed(4000);
    assert.match(c.text, /^HTTP\/1\.1 408 Request Timeout/);
    assert.equal(s.sb.gateway!.stats.headTimeouts, before + 1);
  });

  test('an established stream is never timed out', async () => {
    const c = new RawClient(s.clientPort, get('/test/patient'));
    await c.waitFor('Your Id: patient');
    await new Promise((r) => setTimeout(r, 2600));
    assert.equal(c.closed, false);
    await api(s.apiUrl, '/api/send', { id: 'patient', msg: 'still here' });
    await c.waitFor("'still here'");
    c.close();
  });

  test('a request head split over many packets is still parsed', async () => {
    const c = new RawClient(s.clientPort);
    const req = get('/test/split');
    for (let i = 0; i < req.length; i += 3) {
      c.socket.write(req.slice(i, i + 3));
      await new Promise((r) => setImmediate(r));
    }
    await c.waitFor('Your Id: split');
    c.close();
  });
});

test('GET /healthz on the client port answers 200', async () => {
  const c = new RawClient(s.clientPort, get('/healthz'));
  await c.waitClosed();
  assert.match(c.text, /^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nok\n$/);
});

test('OPTIONS answers a CORS preflight', async () => {
  const c = new RawClient(s.clientPort, get('/feed/1', { Origin: 'http://example.test' }, 'OPTIONS'));
  await c.waitFor('\r\n\r\n');
  assert.match(c.text, /^HTTP\/1\.1 204 No Content/);
  assert.match(c.text, /Access-Control-Allow-Origin: \*/);
  assert.match(c.text, /Access-Control-Allow-Headers: [^\r]*Last-Event-ID/);
  c.close();
});
