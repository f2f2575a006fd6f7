import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runCli } from './support/cli.js';

interface Check {
  name: string;
  value: string;
  status: 'ok' | 'warn' | 'fail';
  advice: string;
}

async function doctor(...args: string[]): Promise<Check[]> {
  const run = await runCli(['doctor', '--json', ...args]);
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout) as Check[];
}

describe('switchboard doctor', () => {
  test('names the checks that break at scale, scaled to the connection target', async () => {
    const million = await doctor('--connections', '1000000');
    const names = million.map((c) => c.name);
    for (const want of [
      'node version',
      'open files per process (ulimit -n)',
      'net.ipv4.ip_local_port_range',
    ]) {
      assert.ok(names.includes(want), `missing check ${want}: ${names.join(', ')}`);
    }
    const files = million.find((c) => c.name.startsWith('open files'))!;
    // This machine's limit is 20,000 per process: a million needs many gateway processes.
    assert.match(files.advice, /switchboard cluster --gateways \d+/);
    const ports = million.find((c) => c.name === 'net.ipv4.ip_local_port_range')!;
    assert.equal(ports.status, 'warn');
    // 5,000 connections per source address at most: 200 addresses for a million.
    assert.match(ports.advice, /needs 200 source addresses.*--sources 127\.0\.0\.2-127\.0\.0\.201/);

    const small = await doctor('--connections', '1000');
    assert.equal(small.find((c) => c.name === 'net.ipv4.ip_local_port_range')!.status, 'ok');
    // The loopback packet queue matters only at scale (and only with the load generator here).
    const backlog = (checks: Check[]) => checks.find((c) => c.name.startsWith('net.core.netdev_max_backlog'));
    if (backlog(million) !== undefined) {
      assert.equal(backlog(small)!.status, 'ok');
      if (Number(backlog(million)!.value.replace(/,/g, '')) < 100_000) {
        assert.equal(backlog(million)!.status, 'warn');
        assert.match(backlog(million)!.advice, /sysctl -w net.core.netdev_max_backlog=100000/);
      }
    }
  });

  test('a bad flag exits 2 with the reason', async () => {
    const run = await runCli(['doctor', '--connections', '0']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--connections must be at least 1/);
  });
});
