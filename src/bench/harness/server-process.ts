/**
 * The server under test as a child process, for `bench c10k`: started the way an operator
 * starts it (`node [node flags] main.js serve …`), its ports read from its own log lines, and
 * stopped with SIGTERM, after which it must exit 0.
 *
 * A separate process, not an in-process `Switchboard`, because what is measured is the server's
 * RSS: a load generator or a test runner in the same process would be counted with it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { ConfigError } from '../../errors.js';
import { CLI_MAIN } from './cli-process.js';
import { shellJoin } from './shell.js';

/** Default wait for the server's "clients:" and "publish API:" log lines. */
export const DEFAULT_START_TIMEOUT_MS = 20_000;
/** Default wait for the server to exit after SIGTERM before it is killed. */
export const DEFAULT_STOP_TIMEOUT_MS = 20_000;
/** Server output kept in memory for error messages (the whole log goes to the log file). */
const TAIL_CHARS = 8192;

const CLIENTS_LINE = /clients: http:\/\/(\S+?)\/test\//;
const API_LINE = /publish API: http:\/\/(\S+?)\/api\/send/;

/** How to start the server. */
export interface ServerProcessOptions {
  /** Flags for node itself, before the script (`--max-semi-space-size=1`). */
  readonly nodeArgs?: readonly string[];
  /** Extra `serve` flags, after ours (so they may override them). */
  readonly serverArgs?: readonly string[];
  /** `--data` folder (a fresh temp dir). */
  readonly dataDir: string;
  /** The server's stdout and stderr are appended here. */
  readonly logFile: string;
  readonly startTimeoutMs?: number;
  /** Aborting while starting kills the server and rejects. */
  readonly signal?: AbortSignal;
}

/** How the server ended. */
export interface ServerExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when it had to be killed after the stop timeout. */
  readonly killed: boolean;
}

/** A running `switchboard serve` child. */
export class ServerProcess {
  readonly pid: number;
  /** `http://127.0.0.1:PORT` */
  readonly clientUrl: string;
  readonly apiUrl: string;
  readonly clientPort: number;
  /** The full command, shell-quoted. */
  readonly command: string;
  readonly #child: ChildProcess;
  readonly #log: WriteStream;
  readonly #exited: Promise<ServerExit>;
  #exit: ServerExit | undefined;
  #tail: { text: string };
  #killed = false;

  private constructor(
    child: ChildProcess,
    log: WriteStream,
    tail: { text: string },
    exited: Promise<ServerExit>,
    urls: { client: string; api: string },
    command: string,
  ) {
    this.#child = child;
    this.pid = child.pid ?? 0;
    this.#log = log;
    this.#tail = tail;
    this.#exited = exited.then((e) => {
      this.#exit = e;
      return e;
    });
    this.clientUrl = `http://${urls.client}`;
    this.apiUrl = `http://${urls.api}`;
    this.clientPort = Number(new URL(this.clientUrl).port);
    this.command = command;
  }

  /**
   * Spawns the server and resolves once it has logged both of its addresses.
   *
   * @throws ConfigError when the server or node refuses its flags (exit 2 or 9 before listening).
   * @throws Error when it exits otherwise, does not log its ports in time, or `signal` aborts.
   */
  static async start(opts: ServerProcessOptions): Promise<ServerProcess> {
    const args = [
      ...(opts.nodeArgs ?? []),
      CLI_MAIN,
      'serve',
      '--port',
      '0',
      '--api-port',
      '0',
      '--host',
      '127.0.0.1',
      '--data',
      opts.dataDir,
      ...(opts.serverArgs ?? []),
    ];
    const command = shellJoin([process.execPath, ...args]);
    const log = createWriteStream(opts.logFile, { flags: 'a' });
    // Own process group: a Ctrl-C in the terminal reaches the bench only, which then stops
    // msggen, flood and the server in that order instead of all at once.
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const tail = { text: '' };
    const exited = new Promise<ServerExit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal, killed: false }));
      child.once('error', () => resolve({ code: null, signal: null, killed: false }));
    });
    let onOutput: () => void = () => undefined;
    const take = (d: Buffer): void => {
      log.write(d);
      tail.text = (tail.text + d.toString('utf8')).slice(-TAIL_CHARS * 4);
      onOutput();
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);

    const timeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const urls = await new Promise<{ client: string; api: string }>((resolve, reject) => {
        const check = (): void => {
          const client = CLIENTS_LINE.exec(tail.text)?.[1];
          const api = API_LINE.exec(tail.text)?.[1];
          if (client !== undefined && api !== undefined) resolve({ client, api });
        };
        onOutput = check;
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `the server did not log its "clients:" and "publish API:" addresses within ${timeoutMs} ms ` +
                  `(a --log-level above info in --server-args hides them); its output:\n${lastLines(tail.text)}`,
              ),
            ),
          timeoutMs,
        );
        onAbort = () => reject(new Error('interrupted while the server was starting'));
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        if (opts.signal?.aborted) onAbort();
        void exited.then((e) => {
          const out = lastLines(tail.text);
          // 2: serve refused a flag (UsageError); 9: node refused one of its own.
          if (e.code === 2 || e.code === 9) {
            reject(new ConfigError(`the server refused its flags (exit ${e.code}): ${out.trim()}`));
          } else {
            reject(
              new Error(`the server exited (${e.signal ?? e.code}) before listening; its output:\n${out}`),
            );
          }
        });
        check();
      });
      onOutput = () => undefined;
      return new ServerProcess(child, log, tail, exited, urls, command);
    } catch (err) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      await new Promise<void>((resolve) => log.end(resolve));
      throw err;
    } finally {
      clearTimeout(timer);
      if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** How it ended, once it has. */
  get exit(): ServerExit | undefined {
    return this.#exit;
  }

  /** The last lines it wrote. */
  tail(): string {
    return lastLines(this.#tail.text);
  }

  /** SIGTERM, then waits for the exit; SIGKILL after `timeoutMs`. Idempotent. */
  async stop(timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<ServerExit> {
    if (this.#exit === undefined) {
      this.#child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), timeoutMs);
      });
      const first = await Promise.race([this.#exited, late]);
      clearTimeout(timer);
      if (first === 'late') {
        this.#killed = true;
        this.#child.kill('SIGKILL');
      }
    }
    const e = await this.#exited;
    await new Promise<void>((resolve) => this.#log.end(resolve));
    return { ...e, killed: this.#killed };
  }

  /** Kills it at once (process exit path: no waiting possible). */
  killNow(): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
  }

  /** Resolves when it exits, for whatever reason. */
  get exited(): Promise<ServerExit> {
    return this.#exited;
  }
}

function lastLines(text: string, max = 20): string {
  return text.trimEnd().split('\n').slice(-max).join('\n').slice(-TAIL_CHARS);
}
