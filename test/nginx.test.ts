/**
 * The shipped nginx configuration (deploy/nginx/switchboard.conf), as is, in front of a real
 * Switchboard: Debian's nginx is started with that file (only its upstream address and listen line
 * changed to this run's ports) and every transport goes through it: the article's /test stream,
 * the plain chunked stream with its heartbeat, SSE, WebSocket and long-poll. Skipped, with the
 * install command as the reason, when nginx is missing.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { type Nginx, nginxMissing, startNginx } from '../src/bench/harness/peers.js';
import { freePort } from './support/processes.js';
import { api, chunksOf, get, RawClient, startServer, type TestServer, until } from './support/server.js';

const CONF = fileURLToPath(new URL('../../deploy/nginx/switchboard.conf', import.meta.url));
const missing = nginxMissing();

/** The shipped file with this run's upstream and listen port, inside a minimal main config. */
function config(dir: string, upstream: number, listen: number): string {
  const shipped = readFileSync(CONF, 'utf8');
  const ours = shipped
    .replace(/^(\s*server )127\.0\.0\.1:8000;$/m, `$1127.0.0.1:${upstream};`)
    .replace(/^(\s*listen )80;$/m, `$1127.0.0.1:${listen};`);
  assert.notEqual(
    ours.indexOf(`127.0.0.1:${upstream};`),
    -1,
    'the upstream line is where the test expects it',
  );
  assert.notEqual(
    ours.indexOf(`listen 127.0.0.1:${listen};`),
    -1,
    'the listen line is where the test expects it',
  );
  const tmp = (name: string): string => `${name}_temp_path ${path.join(dir, name)};`;
  return [
    'daemon off;',
    'master_process on;',
    'worker_processes 1;',
    `pid ${path.join(dir, 'nginx.pid')};`,
    `error_log ${path.join(dir, 'error.log')} warn;`,
    'events { worker_connections 1024; }',
    'http {',
    'access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(tmp),
    ours,
    '}',
  ].join('\n');
}

describe('behind nginx, with deploy/nginx/switchboard.conf', { skip: missing }, () => {
  let s: TestServer;
  let nginx: Nginx;
  let port: number;
  before(async () => {
    s = await startServer({ heartbeatMs: 1000, pollTimeoutMs: 5000 });
    port = await freePort();
    nginx = await startNginx((dir) => config(dir, s.clientPort, port), [port], 1);
  });
  after(async () => {
    await nginx?.stop();
    await s?.stop();
  });

  const send = async (id: string, msg: string): Promise<void> => {
    const r = await api(s.apiUrl, '/api/send', { id, msg });
    assert.deepEqual(r.body, { delivered: 1 }, nginx.errors());
  };

  test("the article's /test stream: each message arrives as it is sent", async () => {
    const c = new RawClient(port, get('/test/n1'));
    await c.waitFor('Mochiconntest welcomes you! Your Id: n1\n');
    assert.match(c.text, /^HTTP\/1\.1 200 /);
    await send('n1', 'through <nginx>');
    await c.waitFor("Recvd msg #1: 'through &lt;nginx&gt;'<br/>", 2000);
    c.close();
  });

  test('a plain stream: messages at once, and its heartbeat keeps coming', async () => {
    const c = new RawClient(port, get('/feed/n2'));
    await c.waitFor('Your Id: n2\n');
    await send('n2', 'plain one');
    await c.waitFor('plain one\n', 2000);
    const body = (): string => chunksOf(c.text).join('');
    // heartbeat 1 s: empty lines follow the message.
    await until(() => body().includes('plain one\n\n'), 'a heartbeat after the message', 3000);
    c.close();
  });

  test('SSE: events with ids, and the heartbeat comment', async () => {
    const c = new RawClient(port, get('/feed/n3', { Accept: 'text/event-stream' }));
    await c.waitFor('Your Id: n3');
    assert.match(c.text, /content-type: text\/event-stream/i);
    await send('n3', 'sse one');
    await c.waitFor(/id: [^\n]+\ndata: sse one\n\n/, 2000);
    await c.waitFor(':\n\n', 3000);
    c.close();
  });

  test('WebSocket: the upgrade goes through and messages arrive as frames', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/feed/n4`);
    const frames: Record<string, unknown>[] = [];
    ws.on('message', (d) => frames.push(JSON.parse(String(d)) as Record<string, unknown>));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    await until(() => frames.length === 1, 'the welcome frame');
    assert.deepEqual(frames[0], { type: 'welcome', ids: ['n4'] });
    assert.equal(s.sb.gateway?.openByKind().ws, 1, 'counted as a WebSocket, not a plain stream');
    await send('n4', 'ws one');
    await until(() => frames.length === 2, 'the message frame', 2000);
    assert.equal(frames[1]!.data, 'ws one');
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.close(1000);
    assert.equal(await closed, 1000);
  });

  test('long-poll: a waiting poll is answered when a message comes', async () => {
    const res = fetch(`http://127.0.0.1:${port}/feed/n5?transport=poll`);
    await until(() => s.sb.gateway?.hub.count('n5') === 1, 'the poll waiting');
    await send('n5', 'poll one');
    const r = await res;
    assert.equal(r.status, 200);
    const body = (await r.json()) as { messages: { data: string }[]; last: string };
    assert.deepEqual(
      body.messages.map((m) => m.data),
      ['poll one'],
    );
    assert.match(body.last, /-\d+$/);
  });
});
