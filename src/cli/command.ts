/**
 * The shape of a `switchboard` subcommand. Each command lives in its own file under `src/cli/`
 * and is loaded lazily by `main.ts`, so `switchboard serve` never loads the load-test tools.
 */
import type { CommandSpec, ParsedArgs } from '../args.js';

/** What a command may use besides its arguments (replaced in tests). */
export interface CommandContext {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /** Aborted on SIGINT/SIGTERM; long-running commands stop cleanly when it fires. */
  readonly signal: AbortSignal;
  /** True when stdout is a terminal (progress bars instead of plain lines). */
  readonly isTTY: boolean;
}

/** A subcommand: its spec (flags, help) and what it does. Resolves to the process exit code. */
export interface Command {
  readonly spec: CommandSpec;
  run(args: ParsedArgs, ctx: CommandContext): Promise<number>;
}
