/** Slow consumers are cut off at a bounded queue; shutdown tells every client and drains. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { api, get, RawClient, startServer, until } from './support/server.js';

test('a client that stops reading is cut off at the queue limit, and others are unaffected', async () => {
  const s = await startServer({ maxQueueBytes: 64 * 1024 });
  try {
    const slow = new RawClient(s.clientPort, get('/feed/slow'));
    const fast = new RawClient(s.clientPort, get('/feed/fast'));
    await slow.waitFor('Your Id: slow');
    await fast.waitFor('Your Id: fast');
    slow.socket.pause(); // stop reading: kernel buffers fill, then the server's queue
    const big = 'x'.repeat(60 * 1024);
    let sent = 0;
    while (!slow.closed && sent < 2000) {
      await api(s.apiUrl, '/api/send/batch', [
        { id: 'slow', msg: big },
        { id: 'fast', msg: 'tick' },
      ]);
      sent++;
      if (s.sb.gateway!.stats.slowConsumers > 0) break;
    }
    assert.equal(s.sb.gateway!.stats.slowConsumers, 1, `cut after ${sent} rounds`);
    await until(() => s.sb.gateway?.hub.count('slow') === 0, 'slow consumer logged out');
    assert.equal(s.sb.gateway?.hub.count('fast'), 1);
    const r = await api(s.apiUrl, '/api/send', { id: 'fast', msg: 'still flowing' });
    assert.deepEqual(r.body, { delivered: 1 });
    await fast.waitFor('still flowing\n');
    fast.close();
    slow.close();
  } finally {
    await s.stop();
  }
});

test('shutdown tells SSE, WebSocket, chunked and long-poll clients, drains and stops accepting', async () => {
  const s = await startServer();
  const port = s.clientPort;
  const sse = new RawClient(port, get('/feed/sd-1', { Accept: 'text/event-stream' }));
  const chunked = new RawClient(port, get('/test/sd-2'));
  const poll = fetch(`http://127.0.0.1:${port}/feed/sd-3?transport=poll`).then((r) => r.json());
  const ws = new WebSocket(`ws://127.0.0.1:${port}/feed/sd-4`);
  const wsClosed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise((resolve) => ws.once('open', resolve));
  await sse.waitFor('welcomes you');
  await chunked.waitFor('welcomes you');
  await until(() => s.sb.gateway?.hub.count('sd-3') === 1, 'poll waiting');

  await s.stop();

  await sse.waitClosed();
  assert.match(
    sse.text,
    /event: disconnect\ndata: \{"code":3001,"reason":"shutdown","reconnect":true\}\n\n\r\n0\r\n\r\n$/,
  );
  await chunked.waitClosed();
  assert.ok(chunked.text.endsWith('\r\n0\r\n\r\n'), 'chunked body properly terminated');
  assert.equal(await wsClosed, 3001);
  const answer = (await poll) as { messages: unknown[]; disconnect: { code: number } };
  assert.deepEqual(answer.messages, []);
  assert.equal(answer.disconnect.code, 3001);
  const late = new RawClient(port, get('/test/late'));
  await late.waitClosed();
  assert.equal(late.text, '');
});
