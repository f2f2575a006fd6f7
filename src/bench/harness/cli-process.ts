/**
 * The shared bench harness: what `bench c10k`, the scripts in bench/ and the tests that start real
 * processes use to run and measure them, so each is written once. This file runs a `switchboard`
 * command as a child process; `server-process.ts` starts the server under test, `proc.ts`
 * reads CPU and memory from `/proc`, `shell.ts` turns command lines into text and back, and
 * `args.ts` parses the bench scripts' flags with the CLI's checked parser.
 *
 * A {@link CliProcess} is `node [node flags] dist/src/cli/main.js <args>` with its stdout and
 * stderr collected from the first byte, so a line is found whichever chunk it came in, and
 * stopped by pid with a signal, then SIGKILL if it does not exit in time.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { shellJoin } from './shell.js';

/** The `switchboard` CLI's entry module in this build (dist/src/cli/main.js). */
export const CLI_MAIN = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

/** Default wait for a line in {@link CliProcess.waitFor}. */
export const DEFAULT_WAIT_MS = 20_000;
/** Default wait for the exit after the stop signal, before SIGKILL. */
export const DEFAULT_STOP_TIMEOUT_MS = 20_000;

/** How a child ended. */
export interface ProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when {@link CliProcess.stop} had to SIGKILL it after its timeout. */
  readonly killed: boolean;
}

/** How to start a {@link CliProcess}. */
export interface CliProcessOptions {
  /** Flags for node itself, before the script (`--max-semi-space-size=1`). */
  readonly nodeArgs?: readonly string[];
  /** The module to run instead of the CLI (a reference server that logs the way `serve` does). */
  readonly script?: string;
  readonly cwd?: string;
  /** Added to this process's environment. */
  readonly env?: NodeJS.ProcessEnv;
  /** stdout and stderr are also appended to this file, whole. */
  readonly logFile?: string;
  /**
   * Own process group: a Ctrl-C in the terminal then reaches only the parent, which stops its
   * children in its own order instead of all at once.
   */
  readonly detached?: boolean;
  /** Characters of each output kept in memory, the latest (default: all; a long run wants a bound). */
  readonly keepChars?: number;
  /**
   * A command that runs node, such as `ip netns exec <ns>` (netns.ts `wrap`); it must exec node in
   * its own place, so the pid is still node's.
   */
  readonly via?: readonly string[];
}

/** A running `switchboard` command (or {@link CliProcessOptions.script}). */
export class CliProcess {
  /** The node child process, for signals and for cleanup that tracks children. */
  readonly child: ChildProcess;
  /** Its pid; 0 when the spawn itself failed. */
  readonly pid: number;
  /** The full command, shell-quoted, for logs and reports. */
  readonly command: string;
  /** Everything it wrote to stdout (the last `keepChars` of it). */
  stdout = '';
  /** Everything it wrote to stderr (the last `keepChars` of it). */
  stderr = '';
  /** Resolves when it exits (or fails to start). */
  readonly exited: Promise<ProcessExit>;
  /** Resolves after the exit once its output is all read (stdout and stderr closed). */
  readonly closed: Promise<ProcessExit>;
  /** stdout and stderr interleaved as they came, for {@link tail}. */
  #output = '';
  readonly #keep: number;
  readonly #log: WriteStream | undefined;
  #exit: ProcessExit | undefined;
  #killed = false;
  #waiters: (() => void)[] = [];

  constructor(args: readonly string[], opts: CliProcessOptions = {}) {
    const via = opts.via ?? [];
    const argv = [
      ...via.slice(1),
      ...(via.length > 0 ? [process.execPath] : []),
      ...(opts.nodeArgs ?? []),
    ].concat(opts.script ?? CLI_MAIN, args);
    const command = via[0] ?? process.execPath;
    this.command = shellJoin([command, ...argv]);
    this.#keep = opts.keepChars ?? Number.POSITIVE_INFINITY;
    this.#log = opts.logFile === undefined ? undefined : createWriteStream(opts.logFile, { flags: 'a' });
    this.child = spawn(command, argv, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: opts.detached ?? false,
    });
    this.pid = this.child.pid ?? 0;
    this.child.stdout?.on('data', (d: Buffer) => {
      this.stdout = this.#kept(this.stdout + d.toString('utf8'));
      this.#take(d);
    });
    this.child.stderr?.on('data', (d: Buffer) => {
      this.stderr = this.#kept(this.stderr + d.toString('utf8'));
      this.#take(d);
    });
    this.exited = new Promise((resolve) => {
      const end = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (this.#exit !== undefined) return;
        this.#exit = { code, signal, killed: this.#killed };
        this.#wake();
        resolve(this.#exit);
      };
      this.child.once('exit', end);
      // Also after the exit: a failed kill() is reported as an 'error' too, and must not throw.
      this.child.on('error', () => end(null, null));
    });
    this.closed = new Promise((resolve) => {
      const done = (): void => void this.exited.then(resolve);
      this.child.once('close', done);
      this.child.once('error', done);
    });
  }

  #kept(text: string): string {
    return text.length > this.#keep ? text.slice(-this.#keep) : text;
  }

  #take(d: Buffer): void {
    if (this.#log !== undefined && !this.#log.writableEnded) this.#log.write(d);
    this.#output = this.#kept(this.#output + d.toString('utf8'));
    this.#wake();
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** False once it has exited. */
  get running(): boolean {
    return this.#exit === undefined;
  }

  /** How it ended, once it has. */
  get exit(): ProcessExit | undefined {
    return this.#exit;
  }

  /** The last `maxLines` lines it wrote, stdout and stderr interleaved. */
  tail(maxLines = 20): string {
    return this.#output.trimEnd().split('\n').slice(-maxLines).join('\n');
  }

  /**
   * Resolves with the first match of `pattern` in stdout, else in stderr; rejects if the process
   * exits first, after `ms`, or when `signal` aborts (see {@link exit} and `signal.aborted` for
   * which).
   */
  async waitFor(pattern: RegExp, ms = DEFAULT_WAIT_MS, signal?: AbortSignal): Promise<RegExpExecArray> {
    const deadline = performance.now() + ms;
    for (;;) {
      const m = pattern.exec(this.stdout) ?? pattern.exec(this.stderr);
      if (m) return m;
      if (signal?.aborted) throw new Error(`interrupted waiting for ${pattern}`);
      if (!this.running) throw new Error(`exited before ${pattern}:\n${this.stderr}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, left);
        signal?.addEventListener('abort', done, { once: true });
        this.#waiters.push(done);
      });
    }
  }

  /**
   * Sends `signal` (SIGTERM) and waits for the exit; SIGKILLs after `timeoutMs`, and then the
   * exit says `killed`. Closes the log file. Safe to call again or after it has exited.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<ProcessExit> {
    if (this.running) {
      this.child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), timeoutMs);
      });
      const first = await Promise.race([this.exited, late]);
      clearTimeout(timer);
      if (first === 'late' && this.running) {
        this.#killed = true;
        this.child.kill('SIGKILL');
      }
    }
    const e = await this.exited;
    if (this.#log !== undefined && !this.#log.writableEnded) {
      const log = this.#log;
      await new Promise<void>((resolve) => log.end(resolve));
    }
    return e;
  }

  /** SIGKILL at once, without waiting (the process exit path, where nothing can wait). */
  killNow(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
