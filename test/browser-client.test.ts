/**
 * The browser client (`GET /switchboard.js`, src/client/switchboard.ts) in headless Chromium
 * against a real server: resume after a server-side drop with nothing lost or doubled, a 35xx
 * reason stops it, 3005 fetches a fresh token and resumes, a WebSocket that cannot open falls back
 * to SSE keeping the last event id. In Node (no browser needed): the long-poll transport, and
 * the backoff's spread.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { backoffDelay, connect } from '../src/client/switchboard.js';
import { signToken } from '../src/gateway/token.js';
import { Browser, chromiumMissing, type Page, servePage } from './support/browser.js';
import { api, get, RawClient, startServer, type TestServer, until } from './support/server.js';

const SECRET = 'a-token-secret-for-the-client-test-32b';
/** Screenshots for people to look at (dist/ is the build's, not the repository's). */
const SHOTS = fileURLToPath(new URL('../screenshots', import.meta.url));

async function send(s: TestServer, id: string, msg: string): Promise<void> {
  const r = await api(s.apiUrl, '/api/send', { id, msg });
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

test('GET /switchboard.js serves the module, with CORS', async () => {
  const s = await startServer();
  try {
    const res = await fetch(`http://127.0.0.1:${s.clientPort}/switchboard.js`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    const code = await res.text();
    assert.match(code, /export function connect\(/);
    assert.doesNotMatch(code, /sourceMappingURL/);
  } finally {
    await s.stop();
  }
});

test('GET / is the demo page (off with --no-demo)', async () => {
  const on = await startServer();
  const off = await startServer({ demo: false });
  try {
    const page = await fetch(`http://127.0.0.1:${on.clientPort}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /import \{ connect \} from '\/switchboard\.js'/);
    assert.equal((await fetch(`http://127.0.0.1:${off.clientPort}/`)).status, 404);
  } finally {
    await Promise.all([on.stop(), off.stop()]);
  }
});

test('/dashboard and /api/stats/stream: the API key, from a header or ?key=; the stream ends when the server stops', async () => {
  const key = 'a-dashboard-key-that-is-32-bytes-long!';
  const k = await startServer({ apiKey: key });
  let stopped = false;
  try {
    assert.equal((await fetch(`${k.apiUrl}/dashboard`)).status, 401);
    const page = await fetch(`${k.apiUrl}/dashboard?key=${encodeURIComponent(key)}`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /EventSource\('\/api\/stats\/stream'/);
    assert.equal((await fetch(`${k.apiUrl}/api/stats/stream?key=wrong`)).status, 401);
    const stream = await fetch(`${k.apiUrl}/api/stats/stream?key=${encodeURIComponent(key)}`);
    assert.equal(stream.status, 200);
    const reader = stream.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /^data: \{.*"connections":\d+/);
    const t0 = Date.now();
    await k.stop();
    stopped = true;
    assert.ok(Date.now() - t0 < 3000, 'the open stream did not hold the shutdown');
    for (;;) if ((await reader.read()).done) break;
  } finally {
    if (!stopped) await k.stop();
  }
});

test('backoff: full jitter under a doubling cap, so many clients spread over the whole window', () => {
  const delays = Array.from({ length: 2000 }, () => backoffDelay(3, 500, 30_000, Math.random));
  assert.ok(delays.every((d) => d >= 0 && d < 4000));
  const deciles = new Array<number>(10).fill(0);
  for (const d of delays) deciles[Math.floor(d / 400)]!++;
  assert.ok(
    deciles.every((n) => n > 100),
    `every tenth of the window used: ${deciles}`,
  );
  assert.equal(
    backoffDelay(20, 500, 30_000, () => 0.999999),
    29_999,
    'capped',
  );
});

test('long-poll transport (in Node): messages in order, then a 3504 stops it', async () => {
  const s = await startServer({ pollTimeoutMs: 1000 });
  try {
    const sub = connect(`http://127.0.0.1:${s.clientPort}`, { ids: ['np-1'], transport: 'poll' });
    const got: string[] = [];
    const reasons: number[] = [];
    sub.on('message', (m) => got.push(m.data));
    sub.on('disconnect', (d) => reasons.push(d.code));
    await until(() => sub.status === 'open', 'the first poll answered', 5000);
    await until(() => s.sb.gateway?.hub.count('np-1') === 1, 'the poll waiting');
    await send(s, 'np-1', 'one');
    await send(s, 'np-1', 'two');
    await until(() => got.length === 2, 'two messages');
    assert.deepEqual(got, ['one', 'two']);
    await until(() => s.sb.gateway?.hub.count('np-1') === 1, 'the poll waiting again');
    await api(s.apiUrl, '/api/disconnect', { id: 'np-1', reconnect: false });
    await until(() => sub.status === 'closed', 'closed');
    assert.deepEqual(reasons, [3504]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(s.sb.gateway?.hub.count('np-1'), 0, 'no poll after a 35xx');
  } finally {
    await s.stop();
  }
});

const missing = chromiumMissing();

describe('the client in a real browser', { skip: missing }, () => {
  let s: TestServer;
  let browser: Browser;
  let pages: Awaited<ReturnType<typeof servePage>> | undefined;
  let pageOrigin = '';

  before(async () => {
    s = await startServer({ tokenSecret: SECRET, allowAnonymous: true, heartbeatMs: 1000 });
    const gw = `127.0.0.1:${s.clientPort}`;
    pages = await servePage(
      `<!doctype html><meta charset="utf-8"><script type="module">
import * as sb from 'http://${gw}/switchboard.js';
window.sb = sb; window.gw = 'http://${gw}'; window.ready = true;
</script>`,
    );
    pageOrigin = pages.origin;
    browser = await Browser.launch();
  });

  after(async () => {
    await browser?.close();
    pages?.close();
    await s?.stop();
  });

  /** A fresh page with the module loaded, and `window.start(options)` recording what happens. */
  async function page(): Promise<Page> {
    const p = await browser.open(`${pageOrigin}/`);
    await p.waitFor('window.ready', 'the module loaded');
    await p.evaluate(`window.start = (o) => {
      window.got = []; window.events = []; window.statuses = [];
      const sub = sb.connect(gw, { minDelayMs: 50, maxDelayMs: 200, ...o });
      sub.on('message', (m) => got.push(m.data));
      sub.on('gap', (g) => events.push('gap:' + g.reason));
      sub.on('disconnect', (d) => events.push('disconnect:' + d.code));
      sub.on('status', (x) => statuses.push(x.status + ':' + x.transport));
      window.sub = sub;
      return true;
    }`);
    return p;
  }

  test('resume after a server-side drop: nothing lost, nothing twice', async () => {
    const p = await page();
    await p.evaluate(`start({ ids: ['bc-1'], transport: 'ws' })`);
    await p.waitFor(`sub.status === 'open'`, 'open', 'statuses');
    await until(() => s.sb.gateway?.hub.count('bc-1') === 1, 'logged in');
    await send(s, 'bc-1', 'before');
    await p.waitFor('got.length === 1', 'the first message', 'got');
    // The server ends the stream (3006, reconnect); a message is sent while the client is away.
    await api(s.apiUrl, '/api/disconnect', { id: 'bc-1', reconnect: true });
    await send(s, 'bc-1', 'while away');
    await p.waitFor('got.length === 2', 'the missed message, replayed', 'got');
    await send(s, 'bc-1', 'after');
    await p.waitFor('got.length === 3', 'the live one', 'got');
    assert.deepEqual(await p.evaluate('got'), ['before', 'while away', 'after']);
    assert.deepEqual(await p.evaluate('events'), ['disconnect:3006']);
    await p.evaluate('sub.close()');
  });

  test('a resume the server cannot serve surfaces as a gap event, and the stream goes on', async () => {
    const p = await page();
    await p.evaluate(`start({ ids: ['bc-6'], transport: 'ws', lastEventId: 'someotherepoch-12' })`);
    await p.waitFor(`events.length === 1`, 'the gap', 'events');
    assert.deepEqual(await p.evaluate('events'), ['gap:unknown']);
    await until(() => s.sb.gateway?.hub.count('bc-6') === 1, 'logged in');
    await send(s, 'bc-6', 'after the gap');
    await p.waitFor('got.length === 1', 'a live message', 'got');
    await p.evaluate('sub.close()');
  });

  test('a 35xx reason stops reconnecting', async () => {
    const p = await page();
    await p.evaluate(`start({ ids: ['bc-2'], transport: 'sse' })`);
    await p.waitFor(`sub.status === 'open'`, 'open', 'statuses');
    await until(() => s.sb.gateway?.hub.count('bc-2') === 1, 'logged in');
    await api(s.apiUrl, '/api/disconnect', { id: 'bc-2', reconnect: false });
    await p.waitFor(`sub.status === 'closed'`, 'closed', 'statuses');
    assert.deepEqual(await p.evaluate('events'), ['disconnect:3504']);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(s.sb.gateway?.hub.count('bc-2'), 0, 'it did not come back');
  });

  test('3005 (token expired): getToken is called and the stream resumes', async () => {
    const p = await page();
    const short = signToken(SECRET, { sub: 'bc-3', ttlSeconds: 2 });
    const fresh = signToken(SECRET, { sub: 'bc-3', ttlSeconds: 3600 });
    await p.evaluate(`window.tokenCalls = 0; start({ ids: ['bc-3'], transport: 'ws', token: ${JSON.stringify(short)},
      getToken: async () => { tokenCalls++; return ${JSON.stringify(fresh)}; } })`);
    await p.waitFor(`sub.status === 'open'`, 'open', 'statuses');
    await p.waitFor(`events.includes('disconnect:3005')`, 'the token to expire', 'events', 8000);
    await p.waitFor(
      `tokenCalls === 1 && sub.status === 'open'`,
      'reconnected with a fresh token',
      'statuses',
    );
    await until(() => s.sb.gateway?.hub.count('bc-3') === 1, 'logged in again');
    await send(s, 'bc-3', 'with the new token');
    await p.waitFor('got.length === 1', 'a message', 'got');
    await p.evaluate('sub.close()');
  });

  test('pauseWhenHidden: the stream is dropped while the page is hidden and resumes from the last id', async () => {
    const p = await page();
    await p.evaluate(
      `window.vis = 'visible'; Object.defineProperty(document, 'visibilityState', { get: () => vis }); true`,
    );
    await p.evaluate(`start({ ids: ['bc-5'], transport: 'sse', pauseWhenHidden: true })`);
    await p.waitFor(`sub.status === 'open'`, 'open', 'statuses');
    await until(() => s.sb.gateway?.hub.count('bc-5') === 1, 'logged in');
    await send(s, 'bc-5', 'seen');
    await p.waitFor('got.length === 1', 'the first message', 'got');
    await p.evaluate(`vis = 'hidden'; document.dispatchEvent(new Event('visibilitychange')); true`);
    await p.waitFor(`sub.status === 'paused'`, 'paused', 'statuses');
    await until(() => s.sb.gateway?.hub.count('bc-5') === 0, 'the stream gone');
    await send(s, 'bc-5', 'while hidden');
    await p.evaluate(`vis = 'visible'; document.dispatchEvent(new Event('visibilitychange')); true`);
    await p.waitFor('got.length === 2', 'the message sent while hidden, replayed', 'got');
    assert.deepEqual(await p.evaluate('got'), ['seen', 'while hidden']);
    await p.evaluate('sub.close()');
  });

  test('the demo page at / receives a message published through the API (the DOM shows it)', async () => {
    const p = await browser.open(`http://127.0.0.1:${s.clientPort}/?id=demo-1`);
    await p.waitFor(
      `document.getElementById('status').textContent.startsWith('open over ws as demo-1')`,
      'connected',
      `document.getElementById('status').textContent`,
    );
    assert.match(
      await p.evaluate<string>(`document.getElementById('curl').textContent`),
      /"id":"demo-1".*\/api\/send$/,
    );
    await send(s, 'demo-1', 'Hello <b>World</b>');
    await p.waitFor(
      `document.querySelector('#log li.message')?.textContent.endsWith('Hello <b>World</b>')`,
      'the message in the list',
      `document.getElementById('log').innerHTML`,
    );
    assert.equal(
      await p.evaluate(`document.querySelectorAll('#log b').length`),
      0,
      'shown as text, not markup',
    );
    await p.screenshot(SHOTS + '/demo.png');
  });

  test('the dashboard shows the connection count change, live', async () => {
    const p = await browser.open(`${s.apiUrl}/dashboard`);
    await p.waitFor(
      `document.getElementById('state').textContent.startsWith('live:')`,
      'live',
      `document.getElementById('state').textContent`,
    );
    const count = (): Promise<number> =>
      p.evaluate<number>(`Number(document.getElementById('t-connections').textContent)`);
    await p.waitFor(`document.getElementById('t-connections').textContent !== '–'`, 'a first figure');
    const before = await count();
    const clients = Array.from({ length: 3 }, (_, i) => new RawClient(s.clientPort, get(`/test/dash-${i}`)));
    for (const c of clients) await c.waitFor('welcomes you');
    await p.waitFor(
      `Number(document.getElementById('t-connections').textContent) === ${before + 3}`,
      'three more connections',
      `document.getElementById('t-connections').textContent`,
      5000,
    );
    assert.match(
      await p.evaluate<string>(`document.getElementById('t-byTransport').textContent`),
      /test [1-9]/,
    );
    await p.screenshot(SHOTS + '/dashboard.png');
    for (const c of clients) c.close();
    await p.waitFor(
      `Number(document.getElementById('t-connections').textContent) === ${before}`,
      'back down',
      `document.getElementById('t-connections').textContent`,
      5000,
    );
  });

  test('a WebSocket that cannot open falls back to SSE with the same last event id', async () => {
    const p = await page();
    // A network that refuses WebSocket: every one closes before it opens.
    await p.evaluate(
      `window.WebSocket = class { constructor() { setTimeout(() => this.onclose?.({ code: 1006, reason: '' }), 10); } close() {} }; true`,
    );
    await send(s, 'bc-4', 'old');
    // The client last saw 'old'; 'missed' comes before it connects: the SSE stream it falls
    // back to must ask for what came after 'old', and get 'missed'.
    const cursor = s.sb.router.lastEid();
    await send(s, 'bc-4', 'missed');
    await p.evaluate(`start({ ids: ['bc-4'], lastEventId: ${JSON.stringify(cursor)} })`);
    await p.waitFor(`sub.status === 'open' && sub.transport === 'sse'`, 'SSE open', 'statuses');
    await p.waitFor('got.length === 1', 'the missed message', 'got');
    await send(s, 'bc-4', 'new');
    await p.waitFor('got.length === 2', 'the live message', 'got');
    assert.deepEqual(await p.evaluate('got'), ['missed', 'new']);
    assert.deepEqual(await p.evaluate('statuses'), ['connecting:ws', 'connecting:sse', 'open:sse']);
    await p.evaluate('sub.close()');
  });
});
