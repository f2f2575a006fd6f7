#!/usr/bin/env node
/** `switchboard` executable: wires signals and stdio to {@link main}. */
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
