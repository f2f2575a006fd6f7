import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type CommandSpec, formatHelp, parseArgs, parseDuration, parseSize } from '../src/args.js';
import { UsageError } from '../src/errors.js';

const spec: CommandSpec = {
  name: 'demo',
  summary: 'A demo command.',
  options: {
    port: { type: 'int', description: 'Port', default: 8000, min: 0, max: 65535, short: 'p' },
    host: { type: 'string', description: 'Host', default: '0.0.0.0' },
    level: { type: 'string', description: 'Level', choices: ['info', 'debug'], default: 'info' },
    every: { type: 'duration', description: 'Every', default: 10_000 },
    max: { type: 'size', description: 'Max', default: 65536 },
    json: { type: 'boolean', description: 'JSON' },
    sources: { type: 'list', description: 'Sources' },
  },
  positionals: [{ name: 'file', description: 'A file' }],
};

describe('parseArgs', () => {
  test('applies defaults', () => {
    const { values, positionals } = parseArgs(spec, []);
    assert.deepEqual(values, { port: 8000, host: '0.0.0.0', level: 'info', every: 10_000, max: 65536 });
    assert.deepEqual(positionals, []);
  });

  test('reads every form of flag', () => {
    const { values, positionals } = parseArgs(spec, [
      '-p',
      '9000',
      '--host=127.0.0.1',
      '--every',
      '2s',
      '--max',
      '1MB',
      '--json',
      '--sources',
      'a,b',
      'f.txt',
    ]);
    assert.equal(values.port, 9000);
    assert.equal(values.host, '127.0.0.1');
    assert.equal(values.every, 2000);
    assert.equal(values.max, 1024 * 1024);
    assert.equal(values.json, true);
    assert.deepEqual(values.sources, ['a', 'b']);
    assert.deepEqual(positionals, ['f.txt']);
  });

  test('a value with spaces is a value even when it starts with --', () => {
    assert.equal(parseArgs(spec, ['--host', '--a --b']).values.host, '--a --b');
    assert.throws(() => parseArgs(spec, ['--host', '--json']), /--host needs a value/);
  });

  test('--no-flag turns a boolean off', () => {
    assert.equal(parseArgs(spec, ['--no-json']).values.json, false);
  });

  test('--help short-circuits validation', () => {
    assert.equal(parseArgs(spec, ['--port', 'nope', '--help']).help, true);
    assert.match(formatHelp(spec), /--port PORT|--port INT/);
    assert.match(formatHelp(spec), /\[0\.\.65535\] \(default: 8000\)/);
  });

  for (const [argv, message] of [
    [['--bogus'], /unknown option --bogus/],
    [['--port', 'x'], /--port must be a whole number, got "x"/],
    [['--port', '70000'], /--port must be at most 65535/],
    [['--level', 'loud'], /--level must be one of info, debug/],
    [['--every', 'soon'], /--every must be a duration/],
    [['--host'], /--host needs a value/],
    [['a', 'b'], /unexpected argument "b"/],
  ] as const) {
    test(`rejects ${argv.join(' ')}`, () => {
      assert.throws(
        () => parseArgs(spec, argv),
        (err: unknown) => {
          assert.ok(err instanceof UsageError);
          assert.match(err.message, message);
          return true;
        },
      );
    });
  }
});

test('parseDuration and parseSize', () => {
  assert.equal(parseDuration('250'), undefined, 'a bare number needs a unit');
  assert.equal(parseDuration('0'), 0);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('1d'), 86_400_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('x'), undefined);
  assert.equal(parseSize('64KB'), 65536);
  assert.equal(parseSize('2g'), 2 * 1024 ** 3);
  assert.equal(parseSize('-1'), undefined);
});
