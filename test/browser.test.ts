/**
 * Issue 2: a browser's EventSource (and WebSocket) must work against the gateway. A real headless
 * Chromium loads a page from a second origin (a tiny static server on its own port), so every
 * stream is cross-origin and only works if the gateway's CORS headers are right. The test
 * publishes through the API and reads back what the page's event handlers recorded.
 *
 * Reconnects are the browser's own: the server ends the stream (socket dropped, or a graceful
 * `disconnect`), Chromium waits the `retry:` delay and reconnects with `Last-Event-ID`, and what
 * was published in between must be replayed from history, once.
 *
 * Without Chromium the suite is skipped with a message saying how to install it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Disconnect } from '../src/errors.js';
import { Connection, State } from '../src/gateway/connection.js';
import { Browser, chromiumMissing, type Page, servePage } from './support/browser.js';
import { api, startServer, type TestServer, until } from './support/server.js';

/** The browser's reconnect delay (SSE `retry:`): long enough to publish while it is away. */
const RETRY_MS = 1000;

/**
 * The page: opens an EventSource and a WebSocket to the gateway named in its query string and
 * records every event on `window`.
 */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Switchboard browser test</title>
<script>
  const q = new URLSearchParams(location.search);
  const gw = q.get('gw');
  window.sse = [];
  window.sseLog = [];
  window.wsMsgs = [];
  window.wsLog = [];
  if (q.get('sse')) {
    const es = new EventSource('http://' + gw + '/feed/' + q.get('sse'));
    window.es = es;
    es.onopen = () => sseLog.push('open');
    es.onerror = () => sseLog.push('error:' + es.readyState);
    es.onmessage = (e) => sse.push({ data: e.data, lastEventId: e.lastEventId, origin: e.origin });
    es.addEventListener('disconnect', (e) => sseLog.push('disconnect:' + e.data));
    es.addEventListener('gap', (e) => sseLog.push('gap:' + e.data));
  }
  if (q.get('ws')) {
    const ws = new WebSocket('ws://' + gw + '/feed/' + q.get('ws'));
    window.ws = ws;
    ws.onopen = () => wsLog.push('open');
    ws.onclose = (e) => wsLog.push('close:' + e.code);
    ws.onmessage = (e) => wsMsgs.push(JSON.parse(e.data));
  }
</script>
`;

const missing = chromiumMissing();
let s: TestServer;
let pages: Awaited<ReturnType<typeof servePage>> | undefined;
let pageOrigin = '';
let browser: Browser;
/** Every connection the gateway logged in, by id, and the request head each sent (see {@link spy}). */
const logins = new Map<string, Connection[]>();
const heads = new WeakMap<Connection, string>();

/**
 * Records the request head of each gateway connection and each connection the hub logs
 * in, so a test can see what the browser sent and end a stream from the server side the way the
 * gateway itself would (drop the socket, or `disconnect()` it).
 */
function spy(t: TestServer): void {
  const gateway = t.sb.gateway;
  const registry = t.sb.gateway?.hub;
  assert.ok(gateway !== undefined && registry !== undefined);
  const data = gateway.data.bind(gateway);
  gateway.data = (conn, bytes) => {
    if (conn.state === State.Head) heads.set(conn, (heads.get(conn) ?? '') + bytes.toString('latin1'));
    data(conn, bytes);
  };
  const login = registry.login.bind(registry);
  registry.login = (id, r) => {
    if (r instanceof Connection) logins.set(id, [...(logins.get(id) ?? []), r]);
    login(id, r);
  };
}

/** The request head of the `i`th connection logged in as `id`. */
function headOf(id: string, i: number): string {
  const conn = logins.get(id)?.[i];
  assert.ok(conn !== undefined, `connection ${i} of ${id} seen`);
  return heads.get(conn) ?? '';
}

/** Opens the test page for `params` (gateway `gw` host:port, `sse` id, `ws` id). */
function openPage(params: Record<string, string>): Promise<Page> {
  return browser.open(`${pageOrigin}/?${new URLSearchParams(params)}`);
}

async function send(id: string, msg: unknown): Promise<number> {
  const r = await api(s.apiUrl, '/api/send', { id, msg });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return (r.body as { delivered: number }).delivered;
}

interface SseEvent {
  data: string;
  lastEventId: string;
  origin: string;
}

interface WsMessage {
  type?: string;
  id?: string;
  subject?: string;
  data?: string;
}

/** The numeric part of an event id `<epoch>-<seq>`. */
function seqOf(eid: string): number {
  const m = /^[\w-]+-(\d+)$/.exec(eid);
  assert.ok(m !== null, `event id ${JSON.stringify(eid)} is not <epoch>-<seq>`);
  return Number(m[1]);
}

/** Message bodies that test SSE framing in a real parser: lines, blanks, spaces, non-ASCII. */
const BODIES = [
  'first line\nsecond line',
  'blank\n\nline between',
  'ends with a newline\n',
  ' leading space kept',
  'data: id: retry: looks like fields',
  'héllo wörld ✓ 日本語 🎉',
  { kind: 'json', n: 7 },
];
const EXPECTED = BODIES.map((b) => (typeof b === 'string' ? b : JSON.stringify(b)));

describe('a real browser (headless Chromium) against the gateway', () => {
  before(async () => {
    if (missing !== undefined) return;
    s = await startServer({ sseRetryMs: RETRY_MS });
    spy(s);
    pages = await servePage(PAGE);
    pageOrigin = pages.origin;
    browser = await Browser.launch();
  });

  after(async () => {
    await browser?.close();
    pages?.close();
    await s?.stop();
  });

  test('a cross-origin EventSource and WebSocket get every message once, in order, intact', {
    skip: missing,
  }, async () => {
    const gw = `127.0.0.1:${s.clientPort}`;
    const page = await openPage({ gw, sse: 'b-sse-1', ws: 'b-ws-1' });
    await page.waitFor(`sseLog.includes('open') && wsLog.includes('open')`, 'both open', '[sseLog, wsLog]');
    await until(() => s.sb.gateway?.hub.count('b-sse-1') === 1, 'SSE login');
    await until(() => s.sb.gateway?.hub.count('b-ws-1') === 1, 'WebSocket login');
    // Both requests came from the page's origin, not the gateway's: CORS is in play.
    for (const id of ['b-sse-1', 'b-ws-1']) {
      const head = headOf(id, 0);
      assert.ok(head.includes(`\r\nOrigin: ${pageOrigin}\r\n`), head);
    }

    for (const body of BODIES) {
      assert.equal(await send('b-sse-1', body), 1);
      assert.equal(await send('b-ws-1', body), 1);
    }
    await page.waitFor(`sse.length >= ${BODIES.length}`, 'SSE messages', 'sse');
    await page.waitFor(`wsMsgs.length >= ${BODIES.length + 1}`, 'WebSocket messages', 'wsMsgs');

    const sse = await page.evaluate<SseEvent[]>('sse');
    assert.deepEqual(
      sse.map((e) => e.data),
      EXPECTED,
    );
    const seqs = sse.map((e) => seqOf(e.lastEventId));
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, `ids increase: ${seqs}`);
    assert.ok(sse.every((e) => e.origin === `http://${gw}`));

    const ws = await page.evaluate<WsMessage[]>('wsMsgs');
    assert.equal(ws[0]!.type, 'welcome');
    const wsData = ws.slice(1);
    assert.deepEqual(
      wsData.map((m) => m.data),
      EXPECTED,
    );
    assert.ok(wsData.every((m) => m.subject === 'b-ws-1' && typeof m.id === 'string'));
    // SSE and WebSocket messages were sent alternately: their event ids interleave.
    assert.ok(seqOf(wsData[0]!.id!) === seqs[0]! + 1, `${wsData[0]!.id} follows ${sse[0]!.lastEventId}`);

    assert.deepEqual(await page.evaluate<string[]>('sseLog'), ['open']);
    assert.deepEqual(await page.evaluate<string[]>('wsLog'), ['open']);
    assert.deepEqual(page.console, []);
    await page.evaluate('es.close(), ws.close(), true');
    await until(() => s.sb.gateway?.hub.count('b-sse-1') === 0, 'SSE logout');
    await until(() => s.sb.gateway?.hub.count('b-ws-1') === 0, 'WebSocket logout');
  });

  for (const how of ['drops the socket', 'sends a disconnect event and ends the stream'] as const) {
    test(`when the server ${how}, the browser reconnects with Last-Event-ID and gets what it missed, once`, {
      skip: missing,
    }, async () => {
      const id = how === 'drops the socket' ? 'b-drop-1' : 'b-bye-1';
      const page = await openPage({ gw: `127.0.0.1:${s.clientPort}`, sse: id });
      await page.waitFor(`sseLog.includes('open')`, 'SSE open', 'sseLog');
      await until(() => s.sb.gateway?.hub.count(id) === 1, 'SSE login');
      assert.equal(await send(id, 'before 1'), 1);
      assert.equal(await send(id, 'before 2\nsecond line'), 1);
      await page.waitFor('sse.length >= 2', 'two messages', 'sse');

      const stats = s.sb.gateway!.stats;
      const resumed = stats.resumed;
      const gaps = stats.gaps;
      const conn = logins.get(id)?.at(-1);
      assert.ok(conn !== undefined, `connection of ${id} seen`);
      if (how === 'drops the socket') conn.socket.destroy();
      else conn.disconnect(Disconnect.ForceReconnect);
      await until(() => s.sb.gateway?.hub.count(id) === 0, 'logged out');

      // The browser is waiting RETRY_MS before it reconnects: these reach no connection live.
      assert.equal(await send(id, 'missed 1'), 0, 'sent while the browser was away');
      assert.equal(await send(id, 'missed 2\nwith two lines'), 0, 'sent while the browser was away');

      await page.waitFor('sse.length >= 4', 'the replay', 'sse');
      await until(() => s.sb.gateway?.hub.count(id) === 1, 'logged in again');
      assert.equal(stats.resumed, resumed + 1, 'the reconnect resumed from history');
      assert.equal(stats.gaps, gaps);
      const conns = logins.get(id) ?? [];
      assert.equal(conns.length, 2, 'one reconnect');
      const seen = await page.evaluate<SseEvent[]>('sse');
      assert.doesNotMatch(headOf(id, 0), /last-event-id/i);
      assert.match(headOf(id, 1), new RegExp(`\\r\\nLast-Event-ID: ${seen[1]!.lastEventId}\\r\\n`, 'i'));
      assert.equal(await send(id, 'live again'), 1);
      await page.waitFor('sse.length >= 5', 'the live message', 'sse');

      const sse = await page.evaluate<SseEvent[]>('sse');
      assert.deepEqual(
        sse.map((e) => e.data),
        ['before 1', 'before 2\nsecond line', 'missed 1', 'missed 2\nwith two lines', 'live again'],
      );
      const seqs = sse.map((e) => seqOf(e.lastEventId));
      assert.deepEqual(
        seqs.slice(1).map((n, i) => n - seqs[i]!),
        [1, 1, 1, 1],
        `event ids run on: ${sse.map((e) => e.lastEventId)}`,
      );
      const log = await page.evaluate<string[]>('sseLog');
      const expectedLog =
        how === 'drops the socket'
          ? ['open', 'error:0', 'open']
          : [
              'open',
              `disconnect:${JSON.stringify({ code: 3006, reason: 'force reconnect', reconnect: true })}`,
              'error:0',
              'open',
            ];
      assert.deepEqual(log, expectedLog);
      await page.evaluate('es.close(), true');
      await until(() => s.sb.gateway?.hub.count(id) === 0, 'logout');
    });
  }

  test('without Access-Control-Allow-Origin the browser refuses the cross-origin stream', {
    skip: missing,
  }, async () => {
    // Chromium keeps a refused stream's socket open for a while (it drains the body), so do not
    // wait the default 5 s for it at shutdown.
    const closed = await startServer({ allowOrigin: '', shutdownTimeoutMs: 200 });
    spy(closed);
    try {
      const page = await openPage({ gw: `127.0.0.1:${closed.clientPort}`, sse: 'b-cors-1' });
      // A CORS failure is fatal for EventSource: readyState CLOSED (2), no reconnect.
      await page.waitFor(`sseLog.includes('error:2')`, 'the CORS failure', 'sseLog');
      assert.deepEqual(await page.evaluate<string[]>('sseLog'), ['error:2']);
      assert.deepEqual(await page.evaluate<SseEvent[]>('sse'), []);
      // The gateway did serve the stream: the refusal is the browser's, for the missing header.
      const conns = logins.get('b-cors-1') ?? [];
      assert.equal(conns.length, 1);
      assert.ok(headOf('b-cors-1', 0).includes(`\r\nOrigin: ${pageOrigin}\r\n`));
    } finally {
      await closed.stop();
    }
  });
});
