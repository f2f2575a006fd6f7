/**
 * Pipelined requests in one write never stop the process: 2,000 and 20,000 `OPTIONS`, `HEAD`,
 * `GET /healthz` and long-poll requests, each in a single write, against one server and against a
 * `cluster` (its gateways are separate processes). After each, every process is up and a stream
 * opened before the attack still gets its messages.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { deleteHistory } from './support/nats.js';
import { CliProcess } from './support/processes.js';
import { api, get, RawClient, startServer, type TestServer } from './support/server.js';

const KINDS = {
  OPTIONS: 'OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n',
  HEAD: 'HEAD /feed/p HTTP/1.1\r\nHost: x\r\n\r\n',
  healthz: 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n',
  poll: 'GET /feed/pp?transport=poll HTTP/1.1\r\nHost: x\r\n\r\n',
} as const;

/**
 * Writes `count` copies of `request` in one write, reads every answer and resolves when the server
 * closes or `quietMs` pass without bytes. Returns how many responses came back.
 */
function pipeline(port: number, request: string, count: number, quietMs = 1500): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(request.repeat(count)));
    let text = '';
    let timer = setTimeout(done, quietMs * 4);
    function done(): void {
      clearTimeout(timer);
      s.destroy();
      resolve(text.split('HTTP/1.1 ').length - 1);
    }
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      text += d;
      clearTimeout(timer);
      timer = setTimeout(done, quietMs);
    });
    s.on('error', () => undefined);
    s.on('close', done);
  });
}

describe('one server', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ headTimeoutMs: 2000 });
  });
  after(() => s.stop());

  for (const count of [2000, 20_000]) {
    test(`${count} pipelined OPTIONS in one write are all answered, and the process serves on`, async () => {
      const watcher = new RawClient(s.clientPort, get('/test/watcher'));
      await watcher.waitFor('Your Id: watcher');
      const answers = await pipeline(s.clientPort, KINDS.OPTIONS, count);
      assert.equal(answers, count);
      await api(s.apiUrl, '/api/send', { id: 'watcher', msg: `after ${count}` });
      await watcher.waitFor(`after ${count}`);
      watcher.close();
    });

    for (const kind of ['HEAD', 'healthz', 'poll'] as const) {
      test(`${count} pipelined ${kind} requests in one write leave the process serving`, async () => {
        const watcher = new RawClient(s.clientPort, get('/test/watcher2'));
        await watcher.waitFor('Your Id: watcher2');
        const answers = pipeline(s.clientPort, KINDS[kind], count, 300);
        if (kind === 'poll') {
          // Wake the first poll; the requests behind it are over the head limit and get a 431.
          await new Promise((r) => setTimeout(r, 200));
          await api(s.apiUrl, '/api/send', { id: 'pp', msg: 'wake' });
        }
        assert.ok((await answers) >= 1);
        await api(s.apiUrl, '/api/send', { id: 'watcher2', msg: `after ${kind}` });
        await watcher.waitFor(`after ${kind}`);
        watcher.close();
      });
    }
  }

  test('requests pipelined behind a long-poll are answered after it', async () => {
    const c = new RawClient(
      s.clientPort,
      `GET /feed/lp?transport=poll HTTP/1.1\r\nHost: x\r\n\r\n${KINDS.OPTIONS.repeat(3)}`,
    );
    await new Promise((r) => setTimeout(r, 100));
    await api(s.apiUrl, '/api/send', { id: 'lp', msg: 'first' });
    await c.waitFor(/(HTTP\/1\.1 204[\s\S]*){3}/);
    assert.match(c.text, /^HTTP\/1\.1 200 OK[\s\S]*"first"/);
    c.close();
  });
});

describe('a client that pipelines and never reads', () => {
  test('is paused, then cut at its head deadline, with the server RSS bounded', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sb-noread-'));
    const server = new CliProcess(
      [
        'serve',
        '--port',
        '0',
        '--api-port',
        '0',
        '--host',
        '127.0.0.1',
        '--data',
        dir,
        '--head-timeout',
        '2s',
      ],
      { cwd: dir },
    );
    try {
      const port = Number((await server.waitFor(/clients: http:\/\/127\.0\.0\.1:(\d+)/))[1]);
      const rss = (): number =>
        Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))![1]) * 1024;
      const before = rss();
      const s = net.connect(port, '127.0.0.1');
      s.pause();
      s.on('error', () => undefined);
      const burst = Buffer.from(KINDS.OPTIONS.repeat(1000));
      let sent = 0;
      // About 9 MB of requests in bursts, never reading a byte of the answers.
      for (let i = 0; i < 200; i++) {
        if (s.writableLength < 8 * 1024 * 1024) {
          s.write(burst);
          sent += burst.length;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      const during = rss();
      const closed = new Promise((resolve) => s.on('close', resolve));
      s.resume(); // let the close be seen
      await closed;
      assert.ok(sent > 4 * 1024 * 1024, `sent ${sent}`);
      assert.ok(
        during - before < 40 * 1024 * 1024,
        `server RSS grew ${Math.round((during - before) / 1e6)} MB`,
      );
    } finally {
      await server.stop('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a cluster', () => {
  let dir: string;
  let cluster: CliProcess;
  let ready: { clients: string; api: string; pids: Record<string, number> };
  let prefix = '';

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sb-pipe-'));
    prefix = `sbtest_pipe_${process.pid}_${Date.now()}`;
    cluster = new CliProcess(
      ['cluster', '--gateways', '2', '--routers', '1', '--bus', 'nats://127.0.0.1:4222']
        .concat(['--bus-prefix', prefix, '--port', '0', '--api-port', '0', '--host', '127.0.0.1'])
        .concat(['--data', dir, '--json']),
      { cwd: dir },
    );
    ready = JSON.parse((await cluster.waitFor(/^\{.*\}$/m))[0]);
  });
  after(async () => {
    if (cluster.running) await cluster.stop('SIGKILL');
    await deleteHistory(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  test('2,000 and 20,000 pipelined OPTIONS, HEAD, healthz and polls: every gateway stays up, streams keep flowing', async () => {
    const port = Number(new URL(ready.clients).port);
    const watchers = Array.from({ length: 6 }, (_, i) => new RawClient(port, get(`/test/w${i}`)));
    for (const w of watchers) await w.waitFor('welcomes you');
    for (const count of [2000, 20_000]) {
      // Several connections of each, so the cluster's port hands them to both gateways.
      const answers = await Promise.all(
        Array.from({ length: 4 }, () => pipeline(port, KINDS.OPTIONS, count)).concat(
          (['HEAD', 'healthz', 'poll'] as const).flatMap((kind) => [
            pipeline(port, KINDS[kind], count, 300),
            pipeline(port, KINDS[kind], count, 300),
          ]),
        ),
      );
      assert.deepEqual(answers.slice(0, 4), [count, count, count, count]);
    }
    for (const pid of Object.values(ready.pids)) process.kill(pid, 0); // throws if a process is gone
    for (let i = 0; i < watchers.length; i++) {
      const res = await fetch(`${ready.api}/api/send`, {
        method: 'POST',
        body: JSON.stringify({ id: `w${i}`, msg: 'still here' }),
      });
      assert.deepEqual(await res.json(), { delivered: 1 });
      await watchers[i]!.waitFor('still here');
    }
    assert.ok(cluster.running);
    for (const w of watchers) w.close();
  });
});
