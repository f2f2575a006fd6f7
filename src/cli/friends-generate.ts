/**
 * `switchboard friends generate` — the article's `fakefriends.py`: a seeded Barabási–Albert
 * friends graph as an edge list (see src/tools/friends/generate.ts for the exact model).
 *
 * The file is written under a temporary name next to `--out` and renamed when complete, so
 * `--out` is either the whole graph or untouched (an interrupted run leaves no half file).
 * Progress and the summary go to stderr; stdout carries only data (`--out -`, or `--json`).
 */
import { createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { bool, num, str } from '../args.js';
import { errorMessage, SwitchboardError, UsageError } from '../errors.js';
import { type DegreeStats, degreeStats, degreesFromEndpoints } from '../tools/friends/degree-stats.js';
import { baEdgeCount, baOptionsProblem, writeFriendsGraph } from '../tools/friends/generate.js';
import type { Command } from './command.js';
import { formatCount, Progress } from './progress.js';

/** Exit code when SIGINT/SIGTERM stopped the run (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;

/** One line describing the degree distribution, for humans. */
export function formatDegreeStats(s: DegreeStats): string {
  return (
    `degrees: min ${s.minDegree}, max ${s.maxDegree}, mean ${s.meanDegree.toFixed(2)}; ` +
    `power-law exponent ${s.exponent.toFixed(3)} ± ${s.exponentError.toFixed(3)} ` +
    `(discrete MLE, k_min = ${s.kMin}, ${formatCount(s.tailNodes)} nodes)`
  );
}

export const command: Command = {
  spec: {
    name: 'friends generate',
    summary:
      'Generate a Barabási–Albert friends graph (like igraph.Graph.Barabasi) as an edge list: ' +
      'one "a b" line per friendship, ids 1..users.',
    options: {
      users: {
        type: 'int',
        description: 'Number of users (nodes)',
        default: 1_000_000,
        min: 2,
        placeholder: 'N',
      },
      m: {
        type: 'int',
        description: 'Friendships each new user makes (BA m)',
        default: 15,
        min: 1,
        placeholder: 'M',
      },
      seed: {
        type: 'int',
        description: 'Random seed; the same seed gives the same file',
        default: 1,
        min: 0,
        max: Number.MAX_SAFE_INTEGER,
      },
      out: {
        type: 'string',
        short: 'o',
        description: 'Output file, - for stdout',
        default: 'fakefriends.txt',
        placeholder: 'FILE',
      },
      stats: {
        type: 'boolean',
        description: 'Also print degree statistics and the fitted power-law exponent',
      },
      json: { type: 'boolean', description: 'Print the result as one JSON object on stdout' },
    },
    epilog: [
      'The first m+1 users form a clique; each later user befriends m distinct earlier users chosen',
      'with probability proportional to their friend count. Edges: m*users - m*(m+1)/2',
      '(14,999,880 for the defaults, as in the article). The exponent is fitted from k_min = m',
      '(every user); Barabási–Albert tends to 3.',
      '',
      'Example: switchboard friends generate --users 1000000 --m 15 --seed 1 --out /tmp/fakefriends.txt',
    ].join('\n'),
  },

  async run(args, ctx) {
    const users = num(args.values, 'users') ?? 1_000_000;
    const m = num(args.values, 'm') ?? 15;
    const seed = num(args.values, 'seed') ?? 1;
    const out = str(args.values, 'out') ?? 'fakefriends.txt';
    const json = bool(args.values, 'json');
    const wantStats = bool(args.values, 'stats');
    const problem = baOptionsProblem({ users, m, seed });
    if (problem !== undefined) throw new UsageError(`friends generate: ${problem}`);
    if (out === '') throw new UsageError('friends generate: --out must name a file, or - for stdout');
    if (json && out === '-') throw new UsageError('friends generate: --json and --out - both want stdout');

    const toStdout = out === '-';
    const tmp = toStdout ? '' : path.join(path.dirname(out), `.${path.basename(out)}.${process.pid}.partial`);
    const file = toStdout ? undefined : createWriteStream(tmp);
    let fileError: Error | undefined;
    file?.on('error', (err) => {
      fileError = err;
    });
    const sink = file ?? ctx.stdout;
    // A reader that goes away (`| head`) makes stdout emit 'error'; without a listener that is a crash.
    const onStdoutError = (): void => {};
    if (toStdout) ctx.stdout.on('error', onStdoutError);
    const progress = new Progress({
      label: 'generate',
      stream: ctx.stderr,
      isTTY: (ctx.stderr as { isTTY?: boolean }).isTTY === true,
      total: baEdgeCount(users, m),
      unit: 'edges',
    });

    // Resolves once the file is flushed and closed ('close' also follows an error).
    const closeFile = (): Promise<void> =>
      new Promise((resolve) => {
        if (file === undefined || file.closed) return resolve();
        file.once('close', () => resolve());
        file.end();
      });
    let result: Awaited<ReturnType<typeof writeFriendsGraph>>;
    try {
      result = await writeFriendsGraph({
        users,
        m,
        seed,
        out: sink,
        signal: ctx.signal,
        onProgress: (edges) => progress.update(edges),
      });
      await closeFile();
      if (fileError !== undefined) throw fileError;
      if (file !== undefined && result.complete) await rename(tmp, out);
    } catch (err) {
      progress.done();
      file?.destroy();
      if (file !== undefined) await unlink(tmp).catch(() => {});
      if ((err as NodeJS.ErrnoException).code === 'EPIPE') {
        throw new SwitchboardError('ERR_CLOSED', 'stdout was closed by the reader (EPIPE) before the end', {
          cause: err,
        });
      }
      const code = (err as NodeJS.ErrnoException).code;
      if (file !== undefined && code !== undefined) {
        throw new SwitchboardError(
          'ERR_UNAVAILABLE',
          `cannot write ${out}: ${errorMessage(err).replace(tmp, out)}`,
          {
            cause: err,
          },
        );
      }
      throw err;
    } finally {
      if (toStdout) ctx.stdout.removeListener('error', onStdoutError);
    }
    const seconds = progress.elapsed;
    if (!result.complete) {
      if (file !== undefined) await unlink(tmp).catch(() => {});
      progress.done(
        `friends generate: interrupted after ${result.edges} of ${result.graph.edgeCount} edges` +
          (file !== undefined ? `; ${out} was not written` : ''),
      );
      return EXIT_INTERRUPTED;
    }

    const degree = degreesFromEndpoints(result.graph.endpoints, result.edges, users);
    const stats = degreeStats(degree, result.edges, m);
    progress.done(
      `friends generate: ${result.edges} edges, ${users} users, m=${m}, seed ${seed} → ` +
        `${toStdout ? 'stdout' : out} (${result.bytes} bytes) in ${seconds.toFixed(2)}s; max degree ${stats.maxDegree}`,
    );
    if (wantStats) ctx.stderr.write(`${formatDegreeStats(stats)}\n`);
    if (json) {
      const report = {
        users,
        m,
        seed,
        out,
        edges: result.edges,
        bytes: result.bytes,
        seconds: Number(seconds.toFixed(3)),
        maxDegree: stats.maxDegree,
        ...(wantStats ? { stats } : {}),
      };
      ctx.stdout.write(`${JSON.stringify(report)}\n`);
    }
    return 0;
  },
};
