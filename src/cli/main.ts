#!/usr/bin/env -S node --max-semi-space-size=1 --optimize-for-size
/**
 * `switchboard` executable: wires signals and stdio to {@link main}.
 *
 * The shebang's V8 flags keep idle connections lean: a 1 MB young generation and size-optimised
 * heap growth bring a gateway from about 3.9 KB to under 2 KB of RSS per idle connection, with no
 * loss of delivery throughput measured (BENCHMARKS.md). They must be given at process start:
 * set later with v8.setFlagsFromString they do not take (measured). `npm start` and the
 * cluster's gateway processes pass the same flags (`LEAN_NODE_ARGS` in src/options.ts).
 */
import { errorMessage } from '../errors.js';
import type { CommandContext } from './command.js';
import { main } from './dispatch.js';

function runFromProcess(): void {
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) process.exit(130);
    controller.abort(new Error(`received ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // `switchboard doctor | head -1`: the reader went away; stop quietly as other Unix tools do.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  const ctx: CommandContext = {
    stdout: process.stdout,
    stderr: process.stderr,
    signal: controller.signal,
    isTTY: process.stdout.isTTY === true,
  };
  main(process.argv.slice(2), ctx).then(
    (code) => {
      process.exitCode = code;
      // Long-running commands close their own handles; a straggler must not keep us alive.
      if (controller.signal.aborted) setTimeout(() => process.exit(code), 2000).unref();
    },
    (err: unknown) => {
      process.stderr.write(`switchboard: ${errorMessage(err)}\n`);
      process.exitCode = 1;
    },
  );
}

runFromProcess();
