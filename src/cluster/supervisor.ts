/**
 * Many processes on one box behind one client port: the article's four servers, on one machine.
 *
 * ```
 *                     primary (this supervisor: no clients, no routing)
 *          client port │ round-robin accept          │ API port
 *        ┌─────────────┼───────────┐           ┌─────┴──────┐
 *    gateway 1 … gateway N                   router 1 … router M
 *        └─── NATS bus (interest directory, tally) ──┘   + shared subscription store
 * ```
 *
 * Built on `node:cluster`. Clients see one address, as behind a load balancer. With `--accept
 * kernel` (the default where Node has it) each gateway binds the client port itself with
 * SO_REUSEPORT and the kernel picks a gateway's accept queue per connection; with `--accept
 * primary` this process owns the listening socket and hands each accepted connection to a
 * gateway over IPC (node:cluster round-robin): one process accepting for all, holding the
 * pending handles against its own 20,000 open-files limit (a 400,000-connection ramp through it
 * had 178,237 resets; which of those two limits caused them was not measured). Gateways hold
 * connections (each up to the 20,000 open-files limit of one process, the reason there are many);
 * routers take the publish API. With no routers the gateways take the API too.
 *
 * Supervision: a worker that exits unasked is restarted after a backoff (doubling from 0.5 s to
 * 10 s, reset once it has run for 30 s). Nothing of a dead gateway's users outlives it: its NATS
 * connection drops, taking its interests with it, and routers stop counting it when its
 * heartbeats stop (≤ 3 s).
 */

import cluster, { type Worker } from 'node:cluster';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { ConfigError, UnavailableError } from '../errors.js';
import { listeningAnnouncement } from '../limits.js';
import type { Logger } from '../log.js';

/** One kind of worker and how to start it. */
export interface WorkerSpec {
  readonly role: 'gateway' | 'router';
  /** `switchboard serve` arguments for this worker. */
  readonly args: readonly string[];
  /** Node flags for this worker's process. */
  readonly execArgv: readonly string[];
}

export interface SupervisorOptions {
  /** The `switchboard` entry module (dist/src/cli/main.js). */
  readonly exec: string;
  readonly gateways: number;
  readonly routers: number;
  readonly gatewaySpec: WorkerSpec;
  readonly routerSpec: WorkerSpec;
  /** How long a worker may take to stop after SIGTERM before it is killed. */
  readonly stopTimeoutMs: number;
  /**
   * When set, every worker also serves `GET /metrics` on a port of its own: gateway n on
   * `metricsPortBase + n - 1`, router n after the gateways' (see {@link metricsPorts}).
   */
  readonly metricsPortBase?: number;
  /** Environment for every worker (on top of this process's): settings that must stay off `ps`. */
  readonly env?: Readonly<Record<string, string>>;
  readonly log: Logger;
}

/** A worker slot: which role, which number, and its current process. */
interface Slot {
  readonly role: 'gateway' | 'router';
  readonly n: number;
  worker: Worker | undefined;
  startedAt: number;
  backoffMs: number;
  restarts: number;
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 10_000;
const STABLE_MS = 30_000;

/** What `start()` found listening. */
export interface ClusterAddresses {
  readonly client: AddressInfo | undefined;
  readonly api: AddressInfo | undefined;
}

export class Supervisor {
  readonly #o: SupervisorOptions;
  readonly #slots: Slot[] = [];
  #stopping = false;
  /** Every (worker id, address) a worker has listened on, in order. */
  readonly #listened: [number, AddressInfo][] = [];

  constructor(o: SupervisorOptions) {
    if (!cluster.isPrimary) throw new ConfigError('the supervisor runs in the primary process');
    this.#o = o;
    for (let i = 1; i <= o.gateways; i++) this.#slots.push(slot('gateway', i));
    for (let i = 1; i <= o.routers; i++) this.#slots.push(slot('router', i));
  }

  /** Workers running now, by role. */
  get running(): { gateways: number; routers: number } {
    const alive = (role: string): number =>
      this.#slots.filter((s) => s.role === role && s.worker !== undefined).length;
    return { gateways: alive('gateway'), routers: alive('router') };
  }

  /** Restarts so far, summed over all slots. */
  get restarts(): number {
    return this.#slots.reduce((a, s) => a + s.restarts, 0);
  }

  /**
   * Starts every worker and resolves once each has listened on its port(s) (gateways: the client
   * port, and the API port when there are no routers; routers: the API port).
   */
  async start(): Promise<ClusterAddresses> {
    const ready = this.#slots.map((s) => this.#spawn(s));
    await Promise.all(ready);
    const gatewayPorts = this.#addressesOf('gateway');
    const routerPorts = this.#addressesOf('router');
    // A gateway with an API listens twice; its first address is the client port.
    const client = gatewayPorts[0];
    const api = this.#o.routers > 0 ? routerPorts[0] : gatewayPorts.find((a) => a.port !== client?.port);
    return { client, api };
  }

  #addressesOf(role: string): AddressInfo[] {
    const out: AddressInfo[] = [];
    const metrics = new Set(Object.values(this.metricsPorts()));
    for (const s of this.#slots) {
      if (s.role !== role || s.worker === undefined) continue;
      for (const [id, a] of this.#listened)
        if (id === s.worker.id && !metrics.has(a.port) && !out.some((o) => o.port === a.port)) out.push(a);
    }
    return out;
  }

  #metricsPort(s: Slot): number | undefined {
    const base = this.#o.metricsPortBase;
    if (base === undefined) return undefined;
    return base + (s.role === 'gateway' ? s.n - 1 : this.#o.gateways + s.n - 1);
  }

  /** Each worker's metrics port by slot name (`gateway-1`, …); empty without `metricsPortBase`. */
  metricsPorts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.#slots) {
      const port = this.#metricsPort(s);
      if (port !== undefined) out[`${s.role}-${s.n}`] = port;
    }
    return out;
  }

  /** Forks the worker of `s`; resolves when it has listened on every port its role needs. */
  #spawn(s: Slot): Promise<void> {
    const spec = s.role === 'gateway' ? this.#o.gatewaySpec : this.#o.routerSpec;
    cluster.setupPrimary({ exec: this.#o.exec, args: [...spec.args], execArgv: [...spec.execArgv] });
    const metricsPort = this.#metricsPort(s);
    const worker = cluster.fork({
      ...this.#o.env,
      SWITCHBOARD_WORKER: `${s.role}-${s.n}`,
      ...(metricsPort === undefined ? {} : { SWITCHBOARD_METRICS_PORT: String(metricsPort) }),
    });
    s.worker = worker;
    s.startedAt = Date.now();
    const needs =
      (s.role === 'gateway' && this.#o.routers === 0 ? 2 : 1) + (metricsPort === undefined ? 0 : 1);
    let seen = 0;
    const ready = new Promise<void>((resolve, reject) => {
      const listened = (address: AddressInfo): void => {
        this.#listened.push([worker.id, address]);
        seen++;
        if (seen === needs) {
          this.#o.log.info(`${s.role} ${s.n} ready`, { pid: worker.process.pid, port: address.port });
          resolve();
        }
      };
      worker.on('listening', listened);
      // A socket bound with SO_REUSEPORT is the worker's own: node:cluster does not see it, so
      // the worker says so itself (see announceListening).
      worker.on('message', (m: unknown) => {
        const address = listeningAnnouncement(m);
        if (address !== undefined) listened(address);
      });
      worker.once('exit', (code, signal) => {
        if (seen < needs)
          reject(new UnavailableError(`${s.role} ${s.n} exited (${signal ?? code}) before it was ready`));
      });
    });
    worker.once('exit', (code, signal) => this.#exited(s, worker, code, signal));
    return ready;
  }

  #exited(s: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (s.worker !== worker) return;
    s.worker = undefined;
    if (this.#stopping) return;
    const ranMs = Date.now() - s.startedAt;
    s.backoffMs =
      ranMs > STABLE_MS
        ? MIN_BACKOFF_MS
        : Math.min(MAX_BACKOFF_MS, Math.max(MIN_BACKOFF_MS, s.backoffMs * 2));
    this.#o.log.warn(
      `${s.role} ${s.n} exited (${signal ?? `code ${code}`}); restarting in ${s.backoffMs} ms`,
      {
        pid: worker.process.pid,
      },
    );
    setTimeout(() => {
      if (this.#stopping) return;
      s.restarts++;
      this.#spawn(s).catch((err: unknown) =>
        this.#o.log.error(`${s.role} ${s.n} failed to restart`, { err }),
      );
    }, s.backoffMs).unref();
  }

  /** Worker pids by slot name (`gateway-1`, `router-1`, …), for operators and tests. */
  pids(): Record<string, number | undefined> {
    const out: Record<string, number | undefined> = {};
    for (const s of this.#slots) out[`${s.role}-${s.n}`] = s.worker?.process.pid;
    return out;
  }

  /**
   * Stops the cluster: no more restarts; every worker gets SIGTERM and shuts down gracefully
   * (its clients are told to reconnect); one that has not exited after `stopTimeoutMs` is killed.
   * Gateways stop first so no client is left with a gateway that cannot route.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const role of ['gateway', 'router'] as const) {
      const workers = this.#slots
        .filter((s) => s.role === role && s.worker !== undefined)
        .map((s) => s.worker!);
      await Promise.all(workers.map((w) => this.#stopWorker(w)));
    }
  }

  async #stopWorker(w: Worker): Promise<void> {
    if (w.isDead()) return;
    const exited = once(w, 'exit');
    w.process.kill('SIGTERM');
    const timer = setTimeout(() => w.process.kill('SIGKILL'), this.#o.stopTimeoutMs);
    await exited;
    clearTimeout(timer);
  }
}

function slot(role: 'gateway' | 'router', n: number): Slot {
  return { role, n, worker: undefined, startedAt: 0, backoffMs: MIN_BACKOFF_MS, restarts: 0 };
}
