/**
 * `switchboard friends load FILE` — bulk-loads a friends edge list (from `friends generate` or
 * igraph's `write_edgelist`) into the subscription store, like the article's readfriends.erl
 * + `subsmanager:add_subscriptions/1`. See src/tools/friends/load.ts for what a bad line leaves
 * behind (nothing with SQLite, which loads all or nothing; the load is idempotent either way, so
 * re-running after a fix is safe).
 */
import { stat } from 'node:fs/promises';
import { bool, num, str } from '../args.js';
import { createLogger } from '../log.js';
import { defaultStoreUrl, openStore } from '../store/open-store.js';
import type { Store } from '../store/store.js';
import { DEFAULT_BATCH_EDGES, openEdgeListFile } from '../tools/friends/edge-list.js';
import { loadFriends } from '../tools/friends/load.js';
import type { Command } from './command.js';
import { Progress } from './progress.js';

/** Exit code when SIGINT/SIGTERM stopped the run (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;

export const command: Command = {
  spec: {
    name: 'friends load',
    summary: 'Bulk-load a friends edge list ("a b" per line) into the subscription store.',
    positionals: [{ name: 'file', description: 'Edge list file, - for stdin', required: true }],
    options: {
      store: {
        type: 'string',
        description: 'Store URL (default: sqlite:<data>/switchboard.db)',
        placeholder: 'URL',
      },
      data: {
        type: 'string',
        description: 'Data folder for the default SQLite store',
        default: './data',
        placeholder: 'DIR',
      },
      'one-way': {
        type: 'boolean',
        description: 'Only "a subscribes to b" per line, as readfriends.erl (default: friendship is mutual)',
      },
      batch: {
        type: 'int',
        description: 'Edges per transaction (a mutual batch holds twice as many subscriptions)',
        default: DEFAULT_BATCH_EDGES,
        min: 1,
        max: 1_000_000,
        placeholder: 'N',
      },
      'dry-run': { type: 'boolean', description: 'Check the whole file and count edges; write nothing' },
      json: { type: 'boolean', description: 'Print the result as one JSON object on stdout' },
    },
    epilog: [
      'Each line "a b" adds the subscriptions a→b and b→a (a receives what is sent to b, and b what',
      'is sent to a); with --one-way only a→b. Blank lines and lines starting with # are skipped.',
      'A malformed line stops the load with exit code 1, naming the file, line number and line. The',
      'SQLite store loads all or nothing (after an error it is as it was); a store that commits per',
      'batch keeps the batches before the bad line, and the message says which happened. The store',
      'keeps each pair once, so running the same load again (after fixing the file) is always safe.',
      'Use --dry-run to check a whole file without writing anything.',
      '',
      'Example: switchboard friends load /tmp/fakefriends.txt --data ./data',
    ].join('\n'),
  },

  async run(args, ctx) {
    const file = args.positionals[0] ?? '-';
    const dataDir = str(args.values, 'data') ?? './data';
    const url = str(args.values, 'store') ?? defaultStoreUrl(dataDir);
    const oneWay = bool(args.values, 'one-way');
    const dryRun = bool(args.values, 'dry-run');
    const batchEdges = num(args.values, 'batch') ?? DEFAULT_BATCH_EDGES;
    const fromStdin = file === '-';
    const name = fromStdin ? 'stdin' : file;
    const total = fromStdin ? undefined : (await stat(file)).size;

    const store: Store | undefined = dryRun
      ? undefined
      : await openStore(url, { dataDir, logger: createLogger('warn', ctx.stderr) });
    const progress = new Progress({
      label: dryRun ? `check ${name}` : `load ${name}`,
      stream: ctx.stderr,
      isTTY: (ctx.stderr as { isTTY?: boolean }).isTTY === true,
      total,
      unit: 'B',
    });
    let stored: number | undefined;
    let inputSeconds: number | undefined;
    let result: Awaited<ReturnType<typeof loadFriends>>;
    try {
      result = await loadFriends({
        store,
        input: fromStdin ? process.stdin : openEdgeListFile(file),
        name,
        oneWay,
        batchEdges,
        dryRun,
        signal: ctx.signal,
        onProgress: (bytes) => progress.update(bytes),
        onInputDone: () => {
          if (store === undefined) return;
          inputSeconds = progress.elapsed;
          progress.done(
            `friends load: read ${name} in ${inputSeconds.toFixed(2)}s; the store is committing the load…`,
          );
        },
      });
      if (store !== undefined) stored = (await store.stats()).subscriptions;
    } catch (err) {
      progress.done();
      throw err;
    } finally {
      await store?.close();
    }
    const seconds = progress.elapsed;
    const rate = seconds > 0 ? Math.round(result.subscriptions / seconds) : 0;
    const loops = result.selfLoops > 0 ? `, ${result.selfLoops} self-loop lines skipped` : '';
    const what = `${result.edges} edges → ${result.subscriptions} ${oneWay ? 'one-way ' : ''}subscriptions${loops}`;
    if (!result.complete) {
      // After done(), Progress writes nothing more: print straight to the stream.
      progress.done();
      ctx.stderr.write(
        `friends load: interrupted after ${result.lines} lines; ${result.added} new subscriptions were kept ` +
          '(the store keeps each pair once: run the same command again to load everything)\n',
      );
      return EXIT_INTERRUPTED;
    }
    const summary = dryRun
      ? `friends load: ${name} is well formed: ${what} on ${result.lines} lines (dry run, nothing written) in ${seconds.toFixed(2)}s`
      : `friends load: ${what} (${result.added} new) from ${name} into ${store?.location ?? url} in ` +
        `${seconds.toFixed(2)}s (${rate}/s${inputSeconds === undefined ? '' : `, input read in ${inputSeconds.toFixed(2)}s`}); ` +
        `the store holds ${stored ?? '?'} subscriptions`;
    progress.done();
    ctx.stderr.write(`${summary}\n`);
    if (bool(args.values, 'json')) {
      const report = {
        file: name,
        store: store?.location ?? null,
        oneWay,
        dryRun,
        edges: result.edges,
        lines: result.lines,
        bytes: result.bytes,
        subscriptions: result.subscriptions,
        added: result.added,
        selfLoops: result.selfLoops,
        stored: stored ?? null,
        seconds: Number(seconds.toFixed(3)),
        inputSeconds: inputSeconds === undefined ? null : Number(inputSeconds.toFixed(3)),
      };
      ctx.stdout.write(`${JSON.stringify(report)}\n`);
    }
    return 0;
  },
};
