/** The logger's two formats, and `serve --log-format json` as an operator's log shipper reads it. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { CliProcess } from '../src/bench/harness/cli-process.js';
import { UnavailableError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import { api, get, RawClient, startServer, until } from './support/server.js';

function capture(): { lines: string[]; write(line: string): void } {
  const lines: string[] = [];
  return { lines, write: (line) => lines.push(line) };
}

test('text: time, level, component, message and the fields as JSON', () => {
  const sink = capture();
  createLogger('info', sink, 'gw').child('store').warn('slow', { ms: 12 });
  assert.match(sink.lines[0]!, /^\d{4}-\d\d-\d\dT\S+Z warn {2}gw\.store: slow \{"ms":12\}\n$/);
});

test('json: one object a line; fields cannot overwrite the fixed keys; errors become their message', () => {
  const sink = capture();
  const log = createLogger('debug', sink, 'router', 'json');
  log.error('send failed', { err: new UnavailableError('bus down'), level: 'info', msg: 'forged', id: '42' });
  log.debug('noted');
  const [a, b] = sink.lines.map((l) => {
    assert.ok(l.endsWith('\n') && !l.slice(0, -1).includes('\n'), 'one line');
    return JSON.parse(l) as Record<string, unknown>;
  });
  assert.equal(a!.level, 'error');
  assert.equal(a!.msg, 'send failed');
  assert.equal(a!.component, 'router');
  assert.equal(a!.id, '42');
  assert.equal(a!.err, 'bus down (ERR_UNAVAILABLE)');
  assert.ok(!Number.isNaN(Date.parse(String(a!.time))));
  assert.equal(b!.level, 'debug');
  createLogger('warn', sink, '', 'json').info('not written');
  assert.equal(sink.lines.length, 2);
});

test('serve --log-format json: every line it writes is a JSON object', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sb-log-'));
  const server = new CliProcess(
    ['serve', '--port', '0', '--api-port', '0', '--host', '127.0.0.1', '--log-format', 'json'],
    { cwd: dir },
  );
  try {
    await server.waitFor(/publish API: http:\/\/127\.0\.0\.1:\d+/);
    const exit = await server.stop('SIGTERM');
    assert.equal(exit.code, 0);
    const lines = server
      .tail(100)
      .split('\n')
      .filter((l) => l !== '');
    assert.ok(lines.length >= 3, server.tail());
    for (const l of lines) {
      const r = JSON.parse(l) as Record<string, unknown>;
      assert.equal(typeof r.msg, 'string', l);
      assert.match(String(r.level), /^(error|warn|info|debug)$/, l);
    }
    assert.ok(lines.some((l) => (JSON.parse(l) as { msg: string }).msg === 'shutting down'));
  } finally {
    server.killNow();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--access-log: one line when a stream opens and one when it closes, with transport, ids and address', async () => {
  const sink = capture();
  const s = await startServer({ accessLog: true, logger: createLogger('info', sink, '', 'json') });
  try {
    const c = new RawClient(s.clientPort, get('/feed/al-1?also=al-2', { Accept: 'text/event-stream' }));
    await c.waitFor('welcomes you');
    await api(s.apiUrl, '/api/send', { id: 'al-2', msg: 'one' });
    await c.waitFor('data: one');
    c.close();
    const access = (): Record<string, unknown>[] =>
      sink.lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((r) => r.component === 'gateway.access');
    await until(() => access().length === 2, 'the close line');
    const [open, close] = access();
    assert.deepEqual(
      { msg: open!.msg, transport: open!.transport, ids: open!.ids, remote: open!.remote },
      { msg: 'open', transport: 'sse', ids: ['al-1', 'al-2'], remote: '127.0.0.1' },
    );
    assert.equal(close!.msg, 'close');
    assert.equal(close!.transport, 'sse');
    assert.deepEqual(close!.ids, ['al-1', 'al-2']);
    assert.equal(close!.messages, 1);
    assert.equal(typeof close!.seconds, 'number');
  } finally {
    await s.stop();
  }
  // Off by default: nothing from gateway.access.
  const quiet = capture();
  const q = await startServer({ logger: createLogger('info', quiet, '', 'json') });
  try {
    const c = new RawClient(q.clientPort, get('/test/al-3'));
    await c.waitFor('welcomes you');
    c.close();
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(!quiet.lines.some((l) => l.includes('gateway.access')));
  } finally {
    await q.stop();
  }
});
