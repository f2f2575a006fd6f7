/**
 * deploy/systemd/switchboard.service passes `systemd-analyze verify` (unknown keys and values it
 * cannot parse are reported there), and the flags its ExecStart gives `serve` are flags serve
 * takes. Skipped where systemd's tools are missing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runCli } from './support/cli.js';

const UNIT = fileURLToPath(new URL('../../deploy/systemd/switchboard.service', import.meta.url));
const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));

test('systemd-analyze verify finds nothing in the unit', {
  skip: analyze === undefined && 'systemd-analyze is not installed: apt-get install -y systemd',
}, () => {
  const r = spawnSync(analyze!, ['verify', UNIT], { encoding: 'utf8' });
  assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'no complaint');
  assert.equal(r.status, 0);
});

test("the unit's serve flags are serve's", async () => {
  const exec = /^ExecStart=.*main\.js serve (.*)$/m.exec(readFileSync(UNIT, 'utf8'));
  assert.ok(exec !== null, 'an ExecStart running serve');
  const flags = exec[1]!.split(/\s+/).filter((a) => a.startsWith('--'));
  const help = (await runCli(['serve', '--help'])).stdout;
  for (const f of flags) assert.ok(help.includes(`${f} `), `serve takes ${f}`);
  assert.match(readFileSync(UNIT, 'utf8'), /^LimitNOFILE=\d+$/m);
});
