/**
 * One options table: resolveOptions refuses unknown keys, wrong types and out-of-range values
 * naming the option; serve reads the same options from flags, SWITCHBOARD_* variables and a
 * config file, flags first; secrets come from the environment or a file; bad secrets and
 * contradictory settings exit 2.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseArgs } from '../src/args.js';
import { loadServerOptions, serverFlags } from '../src/cli/server-config.js';
import { ConfigError } from '../src/errors.js';
import { DEFAULTS, envOf, flagOf, OPTIONS, resolveOptions, type ServerOptionsInput } from '../src/options.js';
import { CliProcess } from './support/processes.js';

const KEY = 'k'.repeat(32);

describe('resolveOptions', () => {
  test('defaults come from the table', () => {
    const o = resolveOptions();
    for (const [name, row] of Object.entries(OPTIONS)) {
      if (name === 'data' || name === 'allowAnonymous') continue;
      assert.deepEqual(o[name as keyof typeof o], row.default, name);
    }
    assert.equal(o.allowAnonymous, true, 'anonymous when no token secret is set');
    assert.equal(DEFAULTS.port, 8000);
  });

  for (const [input, message] of [
    [{ headTimeot: 5000 }, /unknown option "headTimeot" \(did you mean headTimeoutMs\?\)/],
    [{ host: 8000 }, /option host must be a string, got number 8000/],
    [{ api: 'no' }, /option api must be true or false, got "no"/],
    [{ allowAnonymous: 'yes' }, /option allowAnonymous must be true or false/],
    [{ headTimeoutMs: 5 }, /option headTimeoutMs must be from 1000 to 600000 ms, got 5/],
    [{ port: 1.5 }, /option port must be a whole number, got number 1.5/],
    [{ role: 'boss' }, /option role must be one of all, gateway, router/],
    [{ busPrefix: 'a.b' }, /option busPrefix must be 1-64 letters/],
    [{ apiKey: 'short' }, /apiKey must be at least 32 bytes/],
    [{ tokenSecret: 'short' }, /tokenSecret must be at least 32 bytes/],
    [{ allowAnonymous: false }, /no client could log in/],
    [{ apiHost: '0.0.0.0' }, /not loopback: set an API key/],
    [{ maxMessageBytes: 4096, maxBodyBytes: 2048 }, /must not exceed maxBodyBytes/],
  ] as const) {
    test(`${JSON.stringify(input)} is refused naming the problem`, () => {
      assert.throws(
        () => resolveOptions(input as unknown as ServerOptionsInput),
        (err: unknown) => err instanceof ConfigError && message.test(err.message),
      );
    });
  }

  test('every option has its own flag and environment variable', () => {
    const names = Object.keys(OPTIONS) as (keyof typeof OPTIONS)[];
    const flags = names.map(flagOf);
    assert.deepEqual(
      flags.filter((f, i) => flags.indexOf(f) !== i),
      [],
      'flags used twice',
    );
    assert.equal(new Set(names.map(envOf)).size, names.length);
  });

  test('flag and environment names follow the table', () => {
    assert.equal(flagOf('headTimeoutMs'), 'head-timeout');
    assert.equal(flagOf('maxMessageBytes'), 'max-message');
    assert.equal(flagOf('historySize'), 'history');
    assert.equal(envOf('tokenSecret'), 'SWITCHBOARD_TOKEN_SECRET');
    assert.equal(envOf('apiKey'), 'SWITCHBOARD_API_KEY');
    assert.equal(envOf('allowAnonymous'), 'SWITCHBOARD_ANONYMOUS');
  });
});

describe('flags, environment and config file', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'sb-options-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const load = (argv: string[], env: NodeJS.ProcessEnv = {}): ServerOptionsInput =>
    loadServerOptions(parseArgs({ name: 'serve', summary: '', options: serverFlags() }, argv).values, env);

  test('precedence: flags over environment over file over defaults', () => {
    const file = path.join(dir, 'a.json');
    writeFileSync(
      file,
      JSON.stringify({ headTimeoutMs: 3000, pollTimeoutMs: '7s', maxQueueBytes: '1MB', port: 9 }),
    );
    const o = resolveOptions(
      load(['--config', file, '--port', '7'], { SWITCHBOARD_PORT: '8', SWITCHBOARD_POLL_TIMEOUT: '9s' }),
    );
    assert.equal(o.port, 7, 'flag');
    assert.equal(o.pollTimeoutMs, 9000, 'environment over file');
    assert.equal(o.headTimeoutMs, 3000, 'file');
    assert.equal(o.maxQueueBytes, 1024 * 1024, 'a size written with its unit');
    assert.equal(o.heartbeatMs, DEFAULTS.heartbeatMs, 'default');
    assert.equal(resolveOptions(load([], { SWITCHBOARD_CONFIG: file })).headTimeoutMs, 3000);
  });

  test('secrets from the environment or from files, never needing a flag', () => {
    const secretFile = path.join(dir, 'secret');
    writeFileSync(secretFile, `${'s'.repeat(40)}\n`);
    const keyFile = path.join(dir, 'key');
    writeFileSync(keyFile, KEY);
    const fromFiles = resolveOptions(
      load(['--token-secret-file', secretFile], { SWITCHBOARD_API_KEY_FILE: keyFile }),
    );
    assert.equal(fromFiles.tokenSecret, 's'.repeat(40), 'trailing newline dropped');
    assert.equal(fromFiles.apiKey, KEY);
    const cfg = path.join(dir, 'b.json');
    writeFileSync(cfg, JSON.stringify({ tokenSecretFile: secretFile }));
    assert.equal(resolveOptions(load(['--config', cfg])).tokenSecret, 's'.repeat(40));
    assert.equal(
      resolveOptions(load([], { SWITCHBOARD_TOKEN_SECRET: 't'.repeat(32) })).tokenSecret,
      't'.repeat(32),
    );
  });

  for (const [what, act, message] of [
    ['an unknown key in the file', { bogus: 1 }, /config file .*: unknown option "bogus"/],
    ['a wrong type in the file', { port: true }, /config file .*: port must be a whole number/],
    [
      'a duration without a unit in the file',
      { headTimeoutMs: '10' },
      /headTimeoutMs must be a duration with a unit/,
    ],
  ] as const) {
    test(`${what} is refused naming the file and key`, () => {
      const file = path.join(dir, `bad-${what.length}.json`);
      writeFileSync(file, JSON.stringify(act));
      assert.throws(() => resolveOptions(load(['--config', file])), message);
    });
  }

  test('a bad environment value names the variable', () => {
    assert.throws(
      () => load([], { SWITCHBOARD_HEAD_TIMEOUT: '10' }),
      /SWITCHBOARD_HEAD_TIMEOUT must be a duration with a unit/,
    );
    assert.throws(() => load([], { SWITCHBOARD_PORT: 'x' }), /SWITCHBOARD_PORT must be a whole number/);
  });
});

for (const [args, env, message] of [
  [['serve', '--api-key', 'short-key'], {}, /apiKey must be at least 32 bytes/],
  [['serve', '--no-anonymous'], {}, /no client could log in/],
  [['serve', '--head-timeout', '10'], {}, /--head-timeout must be a duration with a unit/],
  [['serve'], { SWITCHBOARD_PORT: 'eighty' }, /SWITCHBOARD_PORT must be a whole number/],
  [['serve', '--token-secret-file', '/nonexistent/secret'], {}, /cannot read \/nonexistent\/secret/],
] as const) {
  test(`${args.join(' ')} ${JSON.stringify(env)} exits 2 with a clear message`, async () => {
    const child = new CliProcess([...args, '--port', '0', '--api-port', '0'], { env });
    const { code } = await child.closed;
    assert.equal(code, 2, child.stderr);
    assert.match(child.stderr, message);
  });
}
