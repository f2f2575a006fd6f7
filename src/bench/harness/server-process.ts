/**
 * The server under test as a child process, for `bench c10k` and the scripts in bench/: started
 * the way an operator starts it (`node [node flags] main.js serve …` on ports 0), its ports read
 * from its own log lines, and stopped with SIGTERM, after which it must exit 0.
 *
 * A separate process, not an in-process `Switchboard`, because what is measured is the server's
 * RSS: a load generator or a test runner in the same process would be counted with it.
 */
import { ConfigError } from '../../errors.js';
import { CliProcess, DEFAULT_STOP_TIMEOUT_MS, type ProcessExit } from './cli-process.js';

/** Default wait for the server's "clients:" and "publish API:" log lines. */
export const DEFAULT_START_TIMEOUT_MS = 20_000;
/** Server output shown in error messages at most (the whole log goes to the log file). */
const TAIL_CHARS = 8192;

const CLIENTS_LINE = /clients: http:\/\/(\S+?)\/test\//;
const API_LINE = /publish API: http:\/\/(\S+?)\//;

/** How to start the server. */
export interface ServerProcessOptions {
  /** Flags for node itself, before the script (`--max-semi-space-size=1`). */
  readonly nodeArgs?: readonly string[];
  /** Extra `serve` flags, after ours (so they may override them). */
  readonly serverArgs?: readonly string[];
  /** `--data` folder (a fresh temp dir); without it, serve's default (`./data`) or serverArgs'. */
  readonly dataDir?: string;
  /** The server's stdout and stderr are appended here. */
  readonly logFile?: string;
  /** Own process group (see `CliProcessOptions.detached`); bench c10k asks for it. */
  readonly detached?: boolean;
  /**
   * A module to run instead of `main.js serve --port 0 …`, with `serverArgs` as its arguments:
   * a reference server that logs its "clients:" and "publish API:" lines the way serve does.
   */
  readonly script?: string;
  readonly startTimeoutMs?: number;
  /** Aborting while starting kills the server and rejects. */
  readonly signal?: AbortSignal;
}

/** A running `switchboard serve` child. */
export class ServerProcess {
  /** The child itself. */
  readonly process: CliProcess;
  readonly pid: number;
  /** `http://127.0.0.1:PORT` */
  readonly clientUrl: string;
  readonly apiUrl: string;
  readonly clientPort: number;
  readonly apiPort: number;
  /** The full command, shell-quoted. */
  readonly command: string;

  private constructor(child: CliProcess, urls: { client: string; api: string }) {
    this.process = child;
    this.pid = child.pid;
    this.command = child.command;
    this.clientUrl = `http://${urls.client}`;
    this.apiUrl = `http://${urls.api}`;
    this.clientPort = Number(new URL(this.clientUrl).port);
    this.apiPort = Number(new URL(this.apiUrl).port);
  }

  /**
   * Spawns the server and resolves once it has logged both of its addresses.
   *
   * @throws ConfigError when the server or node refuses its flags (exit 2 or 9 before listening).
   * @throws Error when it exits otherwise, does not log its ports in time, or `signal` aborts.
   */
  static async start(opts: ServerProcessOptions): Promise<ServerProcess> {
    const args =
      opts.script !== undefined
        ? [...(opts.serverArgs ?? [])]
        : ['serve', '--port', '0', '--api-port', '0', '--host', '127.0.0.1']
            .concat(opts.dataDir === undefined ? [] : ['--data', opts.dataDir])
            .concat(opts.serverArgs ?? []);
    const child = new CliProcess(args, {
      nodeArgs: opts.nodeArgs,
      script: opts.script,
      logFile: opts.logFile,
      detached: opts.detached,
      keepChars: TAIL_CHARS * 4,
    });
    const timeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    const deadline = performance.now() + timeoutMs;
    try {
      const client = (await child.waitFor(CLIENTS_LINE, timeoutMs, opts.signal))[1]!;
      const api = (await child.waitFor(API_LINE, deadline - performance.now(), opts.signal))[1]!;
      return new ServerProcess(child, { client, api });
    } catch {
      const early = child.exit;
      await child.stop('SIGKILL');
      // Gone by itself: what it wrote last, up to the end of its output, says why.
      if (early !== undefined) await child.closed;
      const out = lastLines(child);
      if (opts.signal?.aborted) throw new Error('interrupted while the server was starting');
      // 2: serve refused a flag (UsageError); 9: node refused one of its own.
      if (early !== undefined && (early.code === 2 || early.code === 9))
        throw new ConfigError(`the server refused its flags (exit ${early.code}): ${out.trim()}`);
      if (early !== undefined)
        throw new Error(
          `the server exited (${early.signal ?? early.code}) before listening; its output:\n${out}`,
        );
      throw new Error(
        `the server did not log its "clients:" and "publish API:" addresses within ${timeoutMs} ms ` +
          `(a --log-level above info in --server-args hides them); its output:\n${out}`,
      );
    }
  }

  /** How it ended, once it has. */
  get exit(): ProcessExit | undefined {
    return this.process.exit;
  }

  /** Resolves when it exits, for whatever reason. */
  get exited(): Promise<ProcessExit> {
    return this.process.exited;
  }

  /** The last lines it wrote. */
  tail(): string {
    return lastLines(this.process);
  }

  /** SIGTERM, then waits for the exit; SIGKILL after `timeoutMs`. Idempotent. */
  stop(timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<ProcessExit> {
    return this.process.stop('SIGTERM', timeoutMs);
  }

  /** Kills it at once (process exit path: no waiting possible). */
  killNow(): void {
    this.process.killNow();
  }
}

function lastLines(child: CliProcess): string {
  return child.tail().slice(-TAIL_CHARS);
}
