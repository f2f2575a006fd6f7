/**
 * Subscription store benchmark: bulk-loads a power-law friends graph, then times getSubscribers.
 *
 *   node dist/bench/store.js [--store URL] [--users N] [--m M] [--file fakefriends.txt]
 *                            [--batch 10000] [--samples 10000] [--seed 1] [--reads-only]
 *
 * Without --file it generates a Barabási–Albert-like graph inline (each new user befriends `m`
 * users picked in proportion to their degree), like the article's `fakefriends.py`. Every
 * friendship is loaded both ways (2 subscriptions), as `friends load` does. The default store is a
 * fresh SQLite file in a temp folder, removed afterwards. Prints one JSON object to stdout.
 *
 * `--reads-only --store URL --users N` loads nothing and times reads of the store as it is (e.g.
 * after `switchboard friends load`), for random users 1..N.
 */
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { type BenchSpec, parseBenchArgs } from '../src/bench/harness/args.js';
import { UsageError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import { openStore } from '../src/store/open-store.js';
import type { Subscription } from '../src/store/store.js';

const spec = {
  name: 'bench/store.js',
  summary: 'Subscription store: bulk-load a power-law friends graph, then time getSubscribers; prints JSON.',
  options: {
    store: {
      type: 'string',
      description: 'Store URL (default: a fresh SQLite file, removed after)',
      placeholder: 'URL',
    },
    users: {
      type: 'int',
      description: 'Users of the generated graph (with --reads-only: ids read)',
      default: 170_000,
      min: 1,
    },
    m: { type: 'int', description: 'Friends each new user makes', default: 15, min: 1 },
    file: {
      type: 'string',
      description: 'Load this edge list instead of generating one',
      placeholder: 'FILE',
    },
    batch: { type: 'int', description: 'Subscriptions per bulk-load batch', default: 10_000, min: 1 },
    samples: { type: 'int', description: 'Reads timed per kind', default: 10_000, min: 1 },
    seed: { type: 'int', description: 'Seed of the graph and of the users read', default: 1, min: 0 },
    'reads-only': {
      type: 'boolean',
      description: 'Load nothing; time reads of --store as it is',
      default: false,
    },
  },
} as const satisfies BenchSpec;
const values = parseBenchArgs(spec, (v) => {
  if (v['reads-only'] && v.store === undefined)
    throw new UsageError(`${spec.name}: --reads-only needs --store URL (an existing store)`);
});
const readsOnly = values['reads-only'];

const { users, m, batch: batchSize, samples } = values;

/** A small seeded PRNG (mulberry32) so runs are repeatable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Friendships of a preferential-attachment graph on users 1..n, each once. */
function* generatedEdges(n: number, perUser: number, seed: number): Generator<[number, number]> {
  const rnd = prng(seed);
  // Every edge end, so picking uniformly from it picks users in proportion to their degree.
  const ends = new Int32Array(2 + 2 * perUser * n);
  let len = 0;
  ends[len++] = 1;
  ends[len++] = 2;
  yield [2, 1];
  const picked = new Set<number>();
  for (let v = 3; v <= n; v++) {
    const base = len;
    picked.clear();
    const want = Math.min(perUser, v - 1);
    while (picked.size < want) picked.add(ends[Math.floor(rnd() * base)]!);
    for (const t of picked) {
      ends[len++] = v;
      ends[len++] = t;
      yield [v, t];
    }
  }
}

/** Friendships from an edge-list file: two ids per line, separated by spaces or tabs. */
async function* fileEdges(file: string): AsyncGenerator<[string, string]> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    const [a, b] = line.trim().split(/\s+/);
    if (a !== undefined && b !== undefined && a !== b) yield [a, b];
  }
}

let maxUser = users;
async function* batches(): AsyncGenerator<Subscription[]> {
  let batch: Subscription[] = [];
  const edges = values.file === undefined ? generatedEdges(users, m, values.seed) : fileEdges(values.file);
  for await (const [a, b] of edges) {
    const x = String(a);
    const y = String(b);
    batch.push({ subscriber: x, subscribee: y }, { subscriber: y, subscribee: x });
    if (values.file !== undefined) maxUser = Math.max(maxUser, Number(a) || 0, Number(b) || 0);
    if (batch.length >= batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}
const ms = (x: number): number => Math.round(x * 1000) / 1000;

const tmp = values.store === undefined ? mkdtempSync(path.join(os.tmpdir(), 'sb-bench-store-')) : undefined;
const url = values.store ?? `sqlite:${path.join(tmp!, 'bench.db')}`;
// Phase timings (stage, merge, checkpoint) go to stderr as log lines.
const store = await openStore(url, { logger: createLogger('info') });
try {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const { added, seen } = readsOnly ? { added: 0, seen: 0 } : await store.bulkLoad(batches());
  const loadMs = performance.now() - t0;
  // This box is shared: CPU time shows the cost even when wall time includes waiting for a core.
  const loadCpu = process.cpuUsage(cpu0);

  let fileBytes: number | undefined;
  if (store.kind === 'sqlite') {
    fileBytes = 0;
    for (const suffix of ['', '-wal']) {
      try {
        fileBytes += statSync(store.location + suffix).size;
      } catch {}
    }
  }

  /** Times `read` for `samples` random users 1..maxUser (the same users for every read kind). */
  const timeReads = async (read: (user: string) => Promise<string[]>) => {
    const rnd = prng(values.seed + 1);
    const lat: number[] = [];
    let total = 0;
    for (let i = 0; i < samples; i++) {
      const user = String(1 + Math.floor(rnd() * maxUser));
      const s = performance.now();
      total += (await read(user)).length;
      lat.push(performance.now() - s);
    }
    lat.sort((a, b) => a - b);
    return {
      samples,
      avgRows: Math.round((total / samples) * 10) / 10,
      p50Ms: ms(quantile(lat, 0.5)),
      p99Ms: ms(quantile(lat, 0.99)),
      maxMs: ms(lat[lat.length - 1] ?? Number.NaN),
    };
  };
  const getSubscribers = await timeReads((u) => store.getSubscribers(u));
  const getSubscriptions = await timeReads((u) => store.getSubscriptions(u));

  // The most-followed user (in a BA graph, one of the first): its read is paged, so the longest
  // event-loop stall stays far below the whole read time.
  let top = { user: '', subscribers: 0, ms: 0, eventLoopMaxMs: 0 };
  for (let u = 1; u <= Math.min(20, maxUser); u++) {
    const hist = monitorEventLoopDelay({ resolution: 1 });
    hist.enable();
    const s = performance.now();
    const n = (await store.getSubscribers(String(u))).length;
    const took = performance.now() - s;
    hist.disable();
    if (n > top.subscribers) {
      top = { user: String(u), subscribers: n, ms: ms(took), eventLoopMaxMs: ms(hist.max / 1e6) };
    }
  }

  const stats = await store.stats();
  process.stdout.write(
    `${JSON.stringify({
      store: store.kind,
      url: values.store === undefined ? 'sqlite:<tmp>/bench.db' : store.location,
      users: maxUser,
      m: values.file === undefined ? m : undefined,
      file: values.file,
      seen,
      added,
      subscriptions: stats.subscriptions,
      loadMs: readsOnly ? undefined : Math.round(loadMs),
      loadRowsPerSec: readsOnly ? undefined : Math.round((seen / loadMs) * 1000),
      loadCpuMs: readsOnly ? undefined : Math.round((loadCpu.user + loadCpu.system) / 1000),
      fileBytes,
      // Bytes per subscription is also MB per million subscriptions.
      bytesPerSubscription:
        fileBytes === undefined ? undefined : Math.round((fileBytes / stats.subscriptions) * 10) / 10,
      getSubscribers,
      getSubscriptions,
      top,
      loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    })}\n`,
  );
} finally {
  await store.close();
  if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
}
