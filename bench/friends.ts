/**
 * Benchmark: the article's friends data set end to end.
 *
 *   1. `switchboard friends generate --users 1000000 --m 15 --seed 1 --out /tmp/fakefriends.txt --stats`
 *   2. `switchboard friends load /tmp/fakefriends.txt --data <fresh temp dir>` (SQLite by default)
 *
 * Each step runs as its own process (the real CLI, as a user runs it) under `/usr/bin/time`, so its
 * peak RSS is its own. Prints one JSON object on stdout: seconds, peak RSS, edges, degree stats,
 * subscriptions loaded and the database size on disk.
 *
 * Usage (after `npx tsc -p .`):
 *   node dist/bench/friends.js [--users 1000000] [--m 15] [--seed 1] [--file /tmp/fakefriends.txt]
 *                              [--store URL] [--batch N] [--one-way]
 *                              [--skip-generate]
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type BenchSpec, parseBenchArgs } from '../src/bench/harness/args.js';
import { CLI_MAIN } from '../src/bench/harness/cli-process.js';

const TIME = '/usr/bin/time';

interface Step {
  readonly report: Record<string, unknown>;
  readonly wallSeconds: number;
  readonly maxRssMB: number | null;
}

/** Runs the CLI with `args` (plus `--json`), under /usr/bin/time when present; progress goes to our stderr. */
async function step(args: string[]): Promise<Step> {
  const timeFile = path.join(await mkdtemp(path.join(tmpdir(), 'sb-bench-time-')), 'time');
  const timed = existsSync(TIME);
  const [cmd, argv] = timed
    ? [TIME, ['-f', '%e %M', '-o', timeFile, process.execPath, CLI_MAIN, ...args, '--json']]
    : [process.execPath, [CLI_MAIN, ...args, '--json']];
  const started = performance.now();
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const wall = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`switchboard ${args.join(' ')} exited with ${code}`);
  let maxRssMB: number | null = null;
  if (timed) {
    const [, kb] = (await readFile(timeFile, 'utf8')).trim().split(/\s+/);
    maxRssMB = Math.round(Number(kb) / 102.4) / 10;
  }
  await rm(path.dirname(timeFile), { recursive: true, force: true });
  return {
    report: JSON.parse(out) as Record<string, unknown>,
    wallSeconds: Number(wall.toFixed(2)),
    maxRssMB,
  };
}

async function sizeOf(file: string): Promise<number> {
  let total = 0;
  for (const suffix of ['', '-wal', '-shm']) {
    try {
      total += (await stat(file + suffix)).size;
    } catch {
      // absent: adds nothing
    }
  }
  return total;
}

const spec = {
  name: 'bench/friends.js',
  summary:
    "The article's friends data set end to end: friends generate, then friends load, each timed; prints JSON.",
  options: {
    users: { type: 'int', description: 'Users in the graph', default: 1_000_000, min: 1 },
    m: { type: 'int', description: 'Friends each new user makes', default: 15, min: 1 },
    seed: { type: 'int', description: 'Seed of the graph', default: 1, min: 0 },
    file: {
      type: 'string',
      description: 'The edge list written, then loaded',
      default: '/tmp/fakefriends.txt',
    },
    store: {
      type: 'string',
      description: 'Store URL to load into (default: a fresh SQLite file)',
      placeholder: 'URL',
    },
    batch: { type: 'int', description: 'friends load --batch', min: 1, max: 1_000_000, placeholder: 'N' },
    'one-way': { type: 'boolean', description: 'friends load --one-way', default: false },
    'skip-generate': { type: 'boolean', description: 'Load --file as it is', default: false },
  },
} as const satisfies BenchSpec;

async function run(): Promise<void> {
  const values = parseBenchArgs(spec);
  const result: Record<string, unknown> = {
    bench: 'friends',
    node: process.version,
    users: values.users,
    m: values.m,
    seed: values.seed,
  };

  if (!values['skip-generate']) {
    const gen = await step([
      'friends',
      'generate',
      '--users',
      String(values.users),
      '--m',
      String(values.m),
      '--seed',
      String(values.seed),
      '--out',
      values.file,
      '--stats',
    ]);
    const stats = gen.report.stats as {
      maxDegree: number;
      meanDegree: number;
      exponent: number;
      exponentError: number;
    };
    result.generate = {
      seconds: gen.report.seconds,
      wallSeconds: gen.wallSeconds,
      maxRssMB: gen.maxRssMB,
      edges: gen.report.edges,
      fileBytes: gen.report.bytes,
      maxDegree: stats.maxDegree,
      meanDegree: stats.meanDegree,
      exponent: Number(stats.exponent.toFixed(4)),
      exponentError: Number(stats.exponentError.toFixed(4)),
    };
  }

  // The default store is a fresh SQLite file in a temp folder (removed afterwards), so "added" and
  // the file size mean the same thing every run. A --store URL is used as it is, not emptied.
  let dbFile: string | undefined;
  let scratch: string | undefined;
  const loadArgs = ['friends', 'load', values.file];
  if (values.store !== undefined) {
    loadArgs.push('--store', values.store);
    if (values.store.startsWith('sqlite:')) dbFile = path.resolve(values.store.slice('sqlite:'.length));
  } else {
    scratch = await mkdtemp(path.join(tmpdir(), 'sb-bench-friends-'));
    loadArgs.push('--data', scratch);
    dbFile = path.join(scratch, 'switchboard.db');
  }
  if (values.batch !== undefined) loadArgs.push('--batch', String(values.batch));
  if (values['one-way']) loadArgs.push('--one-way');
  const load = await step(loadArgs);
  const seconds = Number(load.report.seconds);
  const subscriptions = Number(load.report.subscriptions);
  result.load = {
    store: load.report.store,
    oneWay: values['one-way'],
    seconds,
    wallSeconds: load.wallSeconds,
    maxRssMB: load.maxRssMB,
    edges: load.report.edges,
    subscriptions,
    added: load.report.added,
    stored: load.report.stored,
    subscriptionsPerSecond: Math.round(subscriptions / seconds),
    dbBytes: dbFile === undefined ? null : await sizeOf(dbFile),
  };
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

run().catch((err: unknown) => {
  process.stderr.write(`bench friends: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
