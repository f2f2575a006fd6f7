/**
 * The bench scripts' flags go through the CLI's checked parser (src/bench/harness/args.ts):
 * `--help` lists them, a bad value exits 2 naming the flag. No benchmark is run here: each script
 * parses its flags before it starts anything.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type BenchSpec, benchHelp, numberList } from '../src/bench/harness/args.js';
import { UsageError } from '../src/errors.js';
import { CliProcess } from './support/processes.js';

const BENCH_DIR = fileURLToPath(new URL('../bench/', import.meta.url));
/** Every script in dist/bench but the shared module. */
const SCRIPTS = readdirSync(BENCH_DIR)
  .filter((f) => f.endsWith('.js') && f !== 'support.js')
  .sort();

/** Runs `node dist/bench/<script> <args>` to its end. */
async function bench(script: string, args: readonly string[]) {
  const child = new CliProcess(args, { script: `${BENCH_DIR}${script}` });
  const { code } = await child.closed;
  return { code, stdout: child.stdout, stderr: child.stderr };
}

describe('bench scripts', () => {
  test('there are bench scripts to check', () => {
    assert.ok(SCRIPTS.includes('scale-out.js') && SCRIPTS.length >= 10, SCRIPTS.join(' '));
  });

  for (const script of SCRIPTS) {
    test(`${script} --help prints its flags and exits 0`, async () => {
      const r = await bench(script, ['--help']);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.startsWith(`Usage: node [node flags] dist/bench/${script} [options]\n`), r.stdout);
      assert.match(r.stdout, /^ {2}--\S+/m);
      assert.match(r.stdout, /-h, --help/);
    });
  }

  test('scale-out.js --help keeps the flags and defaults BENCHMARKS.md relies on', async () => {
    const r = await bench('scale-out.js', ['--help']);
    for (const [flag, shown] of [
      ['connections', '100000'],
      ['gateways', '7'],
      ['routers', '1'],
      ['rate', '1000'],
      ['duration', '1m'],
      ['ramp-rate', '1000'],
      ['sample-every', '10s'],
      ['warmup-messages', '20000'],
      ['bus', 'nats://127.0.0.1:4222'],
    ])
      assert.match(r.stdout, new RegExp(`--${flag} .*\\(default: ${shown}\\)`), flag);
    assert.match(r.stdout, /--out-dir DIR/);
  });

  for (const [script, args, message] of [
    [
      'scale-out.js',
      ['--connections', '10k'],
      /bench\/scale-out\.js: --connections must be a whole number, got "10k"/,
    ],
    ['scale-out.js', ['--gateways', '0'], /--gateways must be at least 1, got "0"/],
    ['scale-out.js', ['--duration', '60x'], /--duration must be a duration/],
    ['bus.js', ['--seconds', 'ten'], /bench\/bus\.js: --seconds must be a number, got "ten"/],
    ['bus.js', ['--parts', 'load,speed'], /--parts must list some of load, codec, heap, got "load,speed"/],
    ['fanout.js', ['--batch', 'lots'], /--batch must be auto or a whole number up to 10000, got "lots"/],
    [
      'fanout-stall.js',
      ['--page-sizes', '100,1k'],
      /--page-sizes must be a comma-separated list of whole numbers/,
    ],
    ['idle-memory.js', ['--server', 'nginx'], /--server must be one of switchboard, naive-http, got "nginx"/],
    ['store.js', ['--reads-only'], /--reads-only needs --store URL/],
    [
      'disconnect-storm.js',
      ['--conections', '5'],
      /unknown option --conections \(did you mean --connections\?\)/,
    ],
  ] as const) {
    test(`${script} ${args.join(' ')} exits 2 naming the flag`, async () => {
      const r = await bench(script, args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.match(r.stderr, new RegExp(`Run 'node dist/bench/${script.replace('.', '\\.')} --help'`));
      assert.equal(r.stdout, '', 'nothing ran');
    });
  }
});

describe('bench args helpers', () => {
  const spec = {
    name: 'bench/x.js',
    summary: 'x',
    options: { sizes: { type: 'list', description: 'sizes' } },
  } as const satisfies BenchSpec;

  test('numberList reads numbers and names the flag for a bad one', () => {
    assert.deepEqual(numberList(spec, 'sizes', ['1', '2.5'], { min: 1 }), [1, 2.5]);
    assert.throws(
      () => numberList(spec, 'sizes', ['1', '2.5'], { min: 1, int: true }),
      (err: unknown) =>
        err instanceof UsageError && /^bench\/x\.js: --sizes must be .*whole numbers/.test(err.message),
    );
    assert.throws(() => numberList(spec, 'sizes', ['0'], { min: 1 }), UsageError);
    assert.throws(() => numberList(spec, 'sizes', [], { min: 1 }), UsageError);
  });

  test('the help names the script, not `switchboard`', () => {
    assert.match(benchHelp(spec), /^Usage: node \[node flags\] dist\/bench\/x\.js \[options\]\n/);
  });
});
