/** `switchboard serve` as a user runs it: help, bad flags, the README session, SIGTERM. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { CLI_MAIN, CliProcess } from './support/processes.js';
import { get, RawClient } from './support/server.js';

async function run(
  args: string[],
  opts: { cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = new CliProcess(args, opts);
  const { code } = await child.closed;
  return { code, stdout: child.stdout, stderr: child.stderr };
}

test('serve --help lists the flags; switchboard --help lists the commands', async () => {
  const r = await run(['serve', '--help']);
  assert.equal(r.code, 0);
  for (const flag of ['--port', '--host', '--api-port', '--api-host', '--data', '--log-level', '--ticker']) {
    assert.ok(r.stdout.includes(flag), `${flag} in help`);
  }
  const top = await run(['--help']);
  assert.equal(top.code, 0);
  assert.match(top.stdout, /serve\s+Run the comet server/);
  const helpServe = await run(['help', 'serve']);
  assert.equal(helpServe.code, 0);
  assert.equal(helpServe.stdout, r.stdout, "'help serve' is 'serve --help'");
  const helpGroup = await run(['help', 'friends', 'load']);
  assert.equal(helpGroup.code, 0);
  assert.match(helpGroup.stdout, /friends load/);
  const helpNone = await run(['help', 'nosuch']);
  assert.equal(helpNone.code, 2);
  assert.match(helpNone.stderr, /unknown command 'nosuch'/);
});

for (const [args, message] of [
  [['serve', '--bogus'], /unknown option --bogus/],
  [['serve', '--port', 'eighty'], /--port must be a whole number/],
  [['serve', '--port', '99999'], /--port must be at most 65535/],
  [['serve', '--log-level', 'loud'], /--log-level must be one of/],
  [['serve', '--api-host', '0.0.0.0'], /not loopback: set an API key/],
  [['nosuchcommand'], /unknown command 'nosuchcommand'/],
] as const) {
  test(`${args.join(' ')} exits 2 with a clear message`, async () => {
    const r = await run([...args]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, message);
  });
}

test('the README session: serve, curl a stream, publish, SIGTERM ends streams and exits 0', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sb-cli-'));
  const server = new CliProcess(['serve', '--port', '0', '--api-port', '0', '--host', '127.0.0.1'], {
    cwd: dir,
  });
  try {
    const clientPort = Number((await server.waitFor(/clients: http:\/\/127\.0\.0\.1:(\d+)/))[1]);
    const apiPort = Number((await server.waitFor(/publish API: http:\/\/127\.0\.0\.1:(\d+)/))[1]);
    const c = new RawClient(clientPort, get('/test/123'));
    await c.waitFor('Your Id: 123');
    const res = await fetch(`http://127.0.0.1:${apiPort}/api/send`, {
      method: 'POST',
      body: '{"id":"123","msg":"Hello World"}',
    });
    assert.deepEqual(await res.json(), { delivered: 1 });
    await c.waitFor("Recvd msg #1: 'Hello World'<br/>");
    const stopped = server.stop('SIGTERM');
    await c.waitClosed();
    assert.ok(c.text.endsWith('0\r\n\r\n'), 'stream ended with the last chunk');
    assert.equal((await stopped).code, 0);
  } finally {
    server.killNow();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('serve --data under /proc is refused at once (exit 2), not a spin at 100% CPU', async () => {
  const r = await run(['serve', '--data', '/proc/sys/sbtest', '--port', '0', '--api-port', '0']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /cannot keep data under \/proc\/sys\/sbtest/);
});

test('a corrupt database file is named in the error', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sb-corrupt-'));
  try {
    writeFileSync(path.join(dir, 'switchboard.db'), randomBytes(8192));
    const r = await run(['serve', '--data', dir, '--port', '0', '--api-port', '0']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /switchboard\.db is not a sound SQLite database \(SQLITE_NOTADB/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('switchboard doctor | head -1 ends quietly when the reader goes away', async () => {
  const { spawn } = await import('node:child_process');
  const child = spawn('sh', [
    '-c',
    `node ${JSON.stringify(CLI_MAIN)} doctor | head -c 10 >/dev/null; echo "\${PIPESTATUS:-}"`,
  ]);
  let err = '';
  child.stderr.on('data', (d: Buffer) => {
    err += d;
  });
  await new Promise((resolve) => child.on('close', resolve));
  assert.doesNotMatch(err, /EPIPE|Error/, err);
});
