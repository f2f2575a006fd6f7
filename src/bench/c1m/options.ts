/**
 * `bench c1m` options: defaults, and the figures derived from them (gateways for the open-files
 * limit, flood workers), checked once before anything starts.
 */
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../errors.js';
import { connectionCeiling } from '../../limits.js';

/** Connections one gateway is given on average: under the 20,000 open-files limit, with room for the kernel's uneven spread. */
export const CONNECTIONS_PER_GATEWAY = 19_000;
/** Connections per flood worker (each under the same limit). */
export const CONNECTIONS_PER_FLOOD_WORKER = 19_000;

export const C1M_DEFAULTS = {
  users: 1_000_000,
  m: 15,
  seed: 1,
  connections: 1_000_000,
  routers: 1,
  rampRate: 3000,
  floodNice: 10,
  routerNice: -5,
  holdMs: 30_000,
  msgRate: 1000,
  durationMs: 60_000,
  drainMs: 30_000,
  sampleEveryMs: 5000,
  timeLimitMs: 60 * 60_000,
  minAvailableBytes: 1.5 * 1024 ** 3,
  bus: 'nats://127.0.0.1:4222',
} as const;

export interface C1mOptions {
  readonly users?: number;
  readonly m?: number;
  readonly seed?: number;
  readonly connections?: number;
  /** Default: enough for {@link CONNECTIONS_PER_GATEWAY} each. */
  readonly gateways?: number;
  readonly routers?: number;
  readonly rampRate?: number;
  /** Nice value of the flood workers (0: the server's; 10: they yield the CPU to the server). */
  readonly floodNice?: number;
  /**
   * Nice value of the router processes (-5: ahead of the gateways; 0: level with them). One router
   * among 53 gateways and 53 flood workers gets a 1/100th share of 2 cores from the fair scheduler,
   * where a deployment would give it a core of its own; below 0 needs root.
   */
  readonly routerNice?: number;
  readonly holdMs?: number;
  readonly msgRate?: number;
  readonly durationMs?: number;
  readonly drainMs?: number;
  readonly sampleEveryMs?: number;
  readonly timeLimitMs?: number;
  readonly minAvailableBytes?: number;
  /** NATS URL; ignored with `natsServer`. */
  readonly bus?: string;
  /** Start a NATS server of the run's own (this binary) instead of using `bus`. */
  readonly natsServer?: string;
  /** Set the kernel settings the run needs, and restore them at the end. */
  readonly tune?: boolean;
  /** A friends SQLite file to reuse (built there when missing, and kept). */
  readonly friendsDb?: string;
  /** Further `serve` flags for every cluster worker. */
  readonly serverArgs?: readonly string[];
  /** Node flags for the gateways (default: the cluster's lean ones). */
  readonly nodeArgs?: readonly string[];
  readonly outDir?: string;
  /** How the run was started, for the report. */
  readonly commandLine?: string;
}

export type ResolvedC1mOptions = Required<Omit<C1mOptions, 'natsServer' | 'friendsDb' | 'nodeArgs'>> & {
  readonly natsServer: string | undefined;
  readonly friendsDb: string | undefined;
  readonly nodeArgs: readonly string[] | undefined;
  readonly floodWorkers: number;
};

/** Fills in defaults and derived counts; throws ConfigError for combinations that cannot run. */
export function resolveC1mOptions(o: C1mOptions): ResolvedC1mOptions {
  const d = C1M_DEFAULTS;
  const users = o.users ?? d.users;
  const connections = o.connections ?? Math.min(users, d.connections);
  if (connections > users) {
    throw new ConfigError(
      `--connections ${connections} is more than --users ${users}: every stream is a user of the graph`,
    );
  }
  const m = o.m ?? d.m;
  if (users <= m) throw new ConfigError(`--users must be more than --m (${m})`);
  const perProcess = Math.max(1, connectionCeiling() || 19_744);
  const gateways = o.gateways ?? Math.max(1, Math.ceil(connections / CONNECTIONS_PER_GATEWAY));
  if (connections / gateways > perProcess) {
    throw new ConfigError(
      `${gateways} gateways cannot hold ${connections} connections: one process holds at most ${perProcess} here (its open-files limit); use --gateways ${Math.ceil(connections / CONNECTIONS_PER_GATEWAY)}`,
    );
  }
  return {
    users,
    m,
    seed: o.seed ?? d.seed,
    connections,
    gateways,
    routers: o.routers ?? d.routers,
    rampRate: o.rampRate ?? d.rampRate,
    floodNice: o.floodNice ?? d.floodNice,
    routerNice: o.routerNice ?? d.routerNice,
    holdMs: o.holdMs ?? d.holdMs,
    msgRate: o.msgRate ?? d.msgRate,
    durationMs: o.durationMs ?? d.durationMs,
    drainMs: o.drainMs ?? d.drainMs,
    sampleEveryMs: o.sampleEveryMs ?? d.sampleEveryMs,
    timeLimitMs: o.timeLimitMs ?? d.timeLimitMs,
    minAvailableBytes: o.minAvailableBytes ?? d.minAvailableBytes,
    bus: o.bus ?? d.bus,
    natsServer: o.natsServer,
    tune: o.tune ?? false,
    friendsDb: o.friendsDb === undefined ? undefined : path.resolve(o.friendsDb),
    serverArgs: o.serverArgs ?? [],
    nodeArgs: o.nodeArgs,
    outDir: path.resolve(o.outDir ?? path.join(os.tmpdir(), `sb-c1m-${process.pid}`)),
    commandLine: o.commandLine ?? '',
    floodWorkers: Math.max(1, Math.ceil(connections / CONNECTIONS_PER_FLOOD_WORKER)),
  };
}

/** Above this many connections, a cluster whose primary accepts them all is the bottleneck. */
export const PRIMARY_ACCEPT_CEILING = 200_000;

/**
 * The warning for a run on a Node that cannot bind SO_REUSEPORT (below 22.12): the cluster's
 * primary accepts every connection and hands it to a gateway, and at a few hundred thousand it
 * falls behind and connections are reset. `undefined` when there is nothing to say.
 */
export function acceptWarning(connections: number, reusePort: boolean, node: string): string | undefined {
  if (reusePort || connections <= PRIMARY_ACCEPT_CEILING) return undefined;
  return (
    `Node ${node} cannot bind SO_REUSEPORT: the cluster's primary accepts all ${connections} connections ` +
    'and hands each to a gateway, and at a few hundred thousand it falls behind (on Node 20 here, ' +
    '299,830 of a million opened, the rest reset). Run it on Node ≥ 22.12.'
  );
}
