/** Test support: runs a `switchboard` command in this process with its output captured. */
import { Writable } from 'node:stream';
import type { CommandContext } from '../../src/cli/command.js';
import { main } from '../../src/cli/dispatch.js';

/** What a command did: its exit code and everything it wrote. */
export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout as bytes, for binary output (`--out -`). */
  readonly stdoutBytes: Buffer;
}

/** Runs `switchboard <argv>` through the real dispatcher; `onStdout` sees output as it comes. */
export async function runCli(
  argv: readonly string[],
  opts: { signal?: AbortSignal; onStdout?: (text: string) => void } = {},
): Promise<CliRun> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const capture = (into: Buffer[], onText?: (text: string) => void): Writable =>
    new Writable({
      write(chunk: Buffer | string, _enc, cb) {
        const buf = Buffer.from(chunk);
        into.push(buf);
        onText?.(buf.toString());
        cb();
      },
    });
  const ctx: CommandContext = {
    stdout: capture(out, opts.onStdout),
    stderr: capture(err),
    signal: opts.signal ?? new AbortController().signal,
    isTTY: false,
  };
  const code = await main(argv, ctx);
  const stdoutBytes = Buffer.concat(out);
  return { code, stdout: stdoutBytes.toString(), stderr: Buffer.concat(err).toString(), stdoutBytes };
}
