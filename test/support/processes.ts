/**
 * Test support for tests that start, kill and restart real processes: a free port, a private
 * nats-server, the switchboard CLI as a child (the bench harness's CliProcess), and SIGKILL by pid.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';

import { NATS_SERVER } from '../../src/bench/harness/services.js';

/** A `switchboard` CLI child with its stdout and stderr collected from the start. */
export { CLI_MAIN, CliProcess } from '../../src/bench/harness/cli-process.js';
export { NATS_SERVER };

/** A TCP port nobody listens on at 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const address = srv.address();
  assert.ok(address !== null && typeof address === 'object');
  srv.close();
  await once(srv, 'close');
  return address.port;
}

/** Starts a private nats-server on `port` (JetStream store in `dir`); resolves once it is ready. */
export async function startNatsServer(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      log += chunk.toString();
      if (log.includes('Server is ready')) {
        child.stderr?.off('data', onData);
        child.stderr?.resume();
        resolve();
      }
    };
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`nats-server exited with ${code} before ready:\n${log}`)));
  });
  return child;
}

/** SIGKILLs `child` (one this test started) and waits for it to be gone. */
export async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}
