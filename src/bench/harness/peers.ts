/**
 * The throughput benchmark's peer servers, run in the same run as Switchboard and driven by the
 * same client and publisher: the article's mochiweb app (bench/peers/mochiweb/*.erl, compiled
 * with erlc at start) and nginx + Nchan (bench/peers/nchan/nginx.conf, a template filled in per
 * run). Both come from Debian packages; {@link peerMissing} says what to install.
 *
 * Each start makes a temp dir for the build output, the config, the logs and the pid file, and
 * stop() removes it: nothing is written to the repository or to /etc, /var. Only processes
 * started here are signalled, by pid, and a pid is SIGKILLed only while /proc still shows the
 * start time it had when it was recorded, so a pid the kernel has since reused is left alone.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { type AddressInfo, connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { childPids } from '../../tools/memlog/sockets.js';
import { readStartTime } from '../../tools/proc.js';

/** A running peer server. */
export interface PeerServer {
  readonly name: 'mochiweb' | 'nchan';
  /** `GET /test/<id>` streams. */
  readonly clientPort: number;
  /** mochiweb: the client port (`POST /publish`); nchan: the `POST /pub/<id>` port. */
  readonly publishPort: number;
  /** Every process of the server, for /proc CPU and memory: beam.smp (+ erl_child_setup), or nginx's master + workers. */
  readonly pids: number[];
  /** SIGTERM, then SIGKILL after a grace period; then removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 50;
/** nginx's worker_processes in the template: the workers must all be up before the pids are read. */
const NGINX_WORKERS = 2;
const ERLANG_LIBS = ['/usr/lib/erlang/lib', '/usr/local/lib/erlang/lib'];
const NCHAN_MODULES = [
  '/usr/lib/nginx/modules/ngx_nchan_module.so',
  '/usr/share/nginx/modules/ngx_nchan_module.so',
];
/** nginx lives in /usr/sbin, which a non-login PATH may lack. */
const SBIN = ['/usr/sbin', '/sbin', '/usr/local/sbin'];

/** bench/peers/ from dist/src/bench/harness/ (built) or src/bench/harness/ (run from source). */
function peersDir(): string {
  for (const up of ['../../../../bench/peers/', '../../../bench/peers/']) {
    const dir = fileURLToPath(new URL(up, import.meta.url));
    if (fs.existsSync(path.join(dir, 'nchan', 'nginx.conf'))) return dir;
  }
  throw new Error(`bench/peers/ not found above ${fileURLToPath(import.meta.url)}`);
}

function which(cmd: string, extra: readonly string[] = []): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), ...extra].filter((d) => d !== '');
  return dirs.map((d) => path.join(d, cmd)).find((p) => fs.existsSync(p));
}

/** Debian's erlang-mochiweb installs to /usr/lib/erlang/lib/mochiweb/ebin (no version in the name). */
function mochiwebEbin(): string | undefined {
  const dirs = ERLANG_LIBS.filter((root) => fs.existsSync(root)).flatMap((root) =>
    fs.readdirSync(root).flatMap((n) => (/^mochiweb(-|$)/.test(n) ? [path.join(root, n, 'ebin')] : [])),
  );
  return dirs.find((ebin) => fs.existsSync(path.join(ebin, 'mochiweb_http.beam')));
}

/** Why a peer cannot run here (what is missing, and the apt-get command that brings it), or undefined. */
export function peerMissing(name: 'mochiweb' | 'nchan'): string | undefined {
  if (name === 'mochiweb') {
    if (which('erl') === undefined || which('erlc') === undefined) {
      return 'Erlang (erl, erlc) is not installed: apt-get install -y erlang-base erlang-mochiweb';
    }
    if (mochiwebEbin() === undefined) {
      return `mochiweb is not installed (no mochiweb_http.beam under ${ERLANG_LIBS.join(', ')}): apt-get install -y erlang-mochiweb`;
    }
    return undefined;
  }
  if (nginxMissing() !== undefined)
    return 'nginx is not installed: apt-get install -y nginx libnginx-mod-nchan';
  if (NCHAN_MODULES.every((m) => !fs.existsSync(m))) {
    return 'the Nchan module (ngx_nchan_module.so) is not installed: apt-get install -y libnginx-mod-nchan';
  }
  return undefined;
}

/** A spawned server: its main process, its temp dir and the log files to quote on failure. */
interface Launched {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly logs: readonly string[];
  /** Why it ended, once it has. */
  ended: string | undefined;
  exited: Promise<void>;
}

/** Output goes to a file, not a pipe: a server that outgrows a pipe nobody reads would block in write. */
function launch(cmd: string, args: readonly string[], dir: string, logs: readonly string[]): Launched {
  const out = fs.openSync(logs[0]!, 'a');
  const child = spawn(cmd, args, { cwd: dir, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const l: Launched = { child, dir, logs, ended: undefined, exited: Promise.resolve() };
  l.exited = new Promise<void>((resolve) => {
    const end = (why: string): void => {
      l.ended ??= why;
      resolve();
    };
    child.once('exit', (code, signal) => end(`exited (${signal ?? `code ${code}`})`));
    child.once('error', (e) => end(`failed to start: ${e.message}`));
  });
  return l;
}

function logTail(files: readonly string[], lines = 20): string {
  const read = (f: string): string => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trimEnd() : '');
  return files
    .map((f) => `--- ${path.basename(f)}:\n${read(f).split('\n').slice(-lines).join('\n')}`)
    .join('\n');
}

/** Polls `ready` until it answers, or throws with the logs' tail if the server exits or the time is up. */
async function waitReady<T>(l: Launched, what: string, ready: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + START_TIMEOUT_MS;
  for (;;) {
    if (l.ended !== undefined) throw new Error(`${what} ${l.ended} before it was ready:\n${logTail(l.logs)}`);
    const v = await ready();
    if (v !== undefined) return v;
    if (performance.now() > deadline) {
      throw new Error(`${what} was not ready after ${START_TIMEOUT_MS / 1000} s:\n${logTail(l.logs)}`);
    }
    await sleep(POLL_MS);
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => (): void => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', done(true)).once('error', done(false));
  });
}

/** `n` distinct ports that were free a moment ago (all held open at once, so they differ). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  for (let i = 0; i < n; i++) {
    const s = createServer();
    servers.push(s);
    await new Promise<void>((resolve, reject) => s.once('error', reject).listen(0, '127.0.0.1', resolve));
  }
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/** Polls until none of the recorded processes runs as itself, for at most `ms`; those that still do. */
async function untilGone(pids: ReadonlyMap<number, string | undefined>, ms: number): Promise<number[]> {
  const deadline = performance.now() + ms;
  for (;;) {
    const left = [...pids].filter(([pid, start]) => start !== undefined && readStartTime(pid) === start);
    if (left.length === 0 || performance.now() >= deadline) return left.map(([pid]) => pid);
    await sleep(POLL_MS);
  }
}

/** The process and all its descendants, parents first. */
async function processTree(root: number): Promise<number[]> {
  const all = [root];
  for (let level = [root]; level.length > 0; ) {
    level = await childPids(level);
    all.push(...level);
  }
  return all;
}

/**
 * SIGTERM to the main process (nginx's master stops its workers, beam runs init:stop), waits for
 * it and then for the rest (erl_child_setup leaves a moment after beam), SIGKILLs what is left.
 */
async function terminate(l: Launched, pids: ReadonlyMap<number, string | undefined>): Promise<void> {
  const deadline = performance.now() + STOP_TIMEOUT_MS;
  if (l.ended === undefined) {
    l.child.kill('SIGTERM');
    // Unref'd: a stop that went well must not hold the event loop open for the grace period.
    await Promise.race([l.exited, sleep(STOP_TIMEOUT_MS, undefined, { ref: false })]);
  }
  for (const pid of await untilGone(pids, deadline - performance.now())) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (l.ended === undefined) {
    l.child.kill('SIGKILL');
    await l.exited;
  }
  await untilGone(pids, 2_000);
  fs.rmSync(l.dir, { recursive: true, force: true });
}

/** Waits for the processes, records them, and wraps it all up as a {@link PeerServer}. */
async function peer(
  l: Launched,
  name: string,
  wantProcesses: number,
): Promise<{ pids: number[]; stop(): Promise<void> }> {
  const mainPid = l.child.pid ?? 0;
  const pids = await waitReady(l, name, async () => {
    const tree = await processTree(mainPid);
    return tree.length >= wantProcesses ? tree : undefined;
  });
  const starts = new Map(pids.map((p) => [p, readStartTime(p)]));
  let stopping: Promise<void> | undefined;
  return {
    pids,
    stop: () => {
      stopping ??= terminate(l, starts);
      return stopping;
    },
  };
}

/** Runs `body` on a fresh launch; on any failure kills what it started and removes its dir. */
async function startOrClean<T>(l: Launched, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (e) {
    const pid = l.child.pid;
    await terminate(l, new Map(pid === undefined ? [] : [[pid, readStartTime(pid)]]));
    throw e;
  }
}

/**
 * Compiles bench/peers/mochiweb/*.erl into a temp dir and starts the article's app on
 * 127.0.0.1:`port` (0 or undefined: a free port, which the VM reports in its "ready <port>" line):
 * `erl -noshell -noinput -pa <tmp>/ebin -pa <mochiweb ebin> -run mochiconntest start <port>`.
 * Resolves once the port accepts connections; rejects after 30 s with the VM's log tail.
 */
export async function startMochiweb(opts: { port?: number }): Promise<PeerServer> {
  const missing = peerMissing('mochiweb');
  if (missing !== undefined) throw new Error(missing);
  const src = path.join(peersDir(), 'mochiweb');
  const dir = fs.mkdtempSync(path.join(tmpdir(), 'switchboard-peer-mochiweb-'));
  const ebin = path.join(dir, 'ebin');
  fs.mkdirSync(ebin);
  const sources = fs.readdirSync(src).filter((f) => f.endsWith('.erl'));
  const erlc = spawnSync('erlc', ['-o', ebin, ...sources], { cwd: src, encoding: 'utf8' });
  if (erlc.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `erlc failed (${erlc.error?.message ?? `exit ${erlc.status}`}):\n${erlc.stdout}${erlc.stderr}`,
    );
  }
  const log = path.join(dir, 'erl.log');
  // The VM's default schedulers (one per core) use both cores; no -sname, so no epmd is started.
  const args = ['-noshell', '-noinput', '-pa', ebin, '-pa', mochiwebEbin()!];
  const l = launch('erl', [...args, '-run', 'mochiconntest', 'start', String(opts.port ?? 0)], dir, [log]);
  return startOrClean(l, async () => {
    const port = await waitReady(l, 'mochiweb', async () => {
      const m = /^ready (\d+)$/m.exec(fs.readFileSync(log, 'utf8'));
      return m !== null && (await accepts(Number(m[1]))) ? Number(m[1]) : undefined;
    });
    // beam.smp is erl's own pid (erl and erlexec exec into it); erl_child_setup is its child.
    const { pids, stop } = await peer(l, 'mochiweb', 1);
    return { name: 'mochiweb', clientPort: port, publishPort: port, pids, stop };
  });
}

/** A running nginx started by {@link startNginx}. */
export interface Nginx {
  /** Its temp dir (config, logs, pid file). */
  readonly dir: string;
  /** The master and its workers. */
  readonly pids: number[];
  /** The tail of its error log, for a failure message. */
  errors(): string;
  stop(): Promise<void>;
}

/** Why nginx cannot run here, or undefined. */
export function nginxMissing(): string | undefined {
  return which('nginx', SBIN) === undefined ? 'nginx is not installed: apt-get install -y nginx' : undefined;
}

/**
 * Starts nginx in the foreground on a config made by `conf(dir)` for a fresh temp dir `dir`
 * (`nginx -p <dir>/ -c <dir>/nginx.conf -e <dir>/error.log`; the config should say
 * `daemon off`, and keep its pid file, logs and temp paths under `dir`). Resolves once every port
 * of `ports` accepts connections and `workers` workers are up.
 */
export async function startNginx(
  conf: (dir: string) => string,
  ports: readonly number[],
  workers: number,
): Promise<Nginx> {
  const missing = nginxMissing();
  if (missing !== undefined) throw new Error(missing);
  const dir = fs.mkdtempSync(path.join(tmpdir(), 'switchboard-nginx-'));
  // The workers run as nobody (no `user` line), and must reach the temp paths inside.
  fs.chmodSync(dir, 0o755);
  const confFile = path.join(dir, 'nginx.conf');
  fs.writeFileSync(confFile, conf(dir));
  const errorLog = path.join(dir, 'error.log');
  // -e: nginx opens its built-in error log (/var/log/nginx) before reading the config otherwise.
  const args = ['-p', `${dir}/`, '-c', confFile, '-e', errorLog];
  const l = launch(which('nginx', SBIN)!, args, dir, [path.join(dir, 'nginx.out'), errorLog]);
  const server = await startOrClean(l, async () => {
    await waitReady(l, 'nginx', async () => {
      for (const p of ports) if (!(await accepts(p))) return undefined;
      return true;
    });
    return peer(l, 'nginx', 1 + workers);
  });
  return { dir, pids: server.pids, errors: () => logTail(l.logs), stop: server.stop };
}

/**
 * Fills bench/peers/nchan/nginx.conf into a temp dir and starts nginx on it (see
 * {@link startNginx}), with subscribers on 127.0.0.1:`clientPort` and publishers on
 * 127.0.0.1:`publishPort` (free ports when not given).
 */
export async function startNchan(opts: { clientPort?: number; publishPort?: number }): Promise<PeerServer> {
  const missing = peerMissing('nchan');
  if (missing !== undefined) throw new Error(missing);
  const [freeA, freeB] = await freePorts(2);
  const ports = { client: opts.clientPort || freeA!, publish: opts.publishPort || freeB! };
  const template = fs.readFileSync(path.join(peersDir(), 'nchan', 'nginx.conf'), 'utf8');
  const nginx = await startNginx(
    (dir) =>
      template
        .replaceAll('{{RUN_DIR}}', dir)
        .replaceAll('{{NCHAN_MODULE}}', NCHAN_MODULES.find((m) => fs.existsSync(m))!)
        .replaceAll('{{CLIENT_PORT}}', String(ports.client))
        .replaceAll('{{PUBLISH_PORT}}', String(ports.publish)),
    [ports.client, ports.publish],
    NGINX_WORKERS,
  );
  return {
    name: 'nchan',
    clientPort: ports.client,
    publishPort: ports.publish,
    pids: nginx.pids,
    stop: nginx.stop,
  };
}
