/**
 * Memory by role for `bench c1m`: every process the run started, grouped (gateways, routers, the
 * cluster's primary, NATS, flood workers), each group summed three ways from
 * `/proc/<pid>/smaps_rollup`:
 *
 * - PSS: shared pages split between the processes sharing them; summed over processes, what they
 *   take together. The honest figure.
 * - private: pages only that process maps; what ending it would free.
 * - RSS: the article's column (`ps -o rss`); summed over 60 Node processes it counts the node
 *   binary's shared pages 60 times, so it overcounts.
 */
import { type MachineCpuSplit, type NamedCpu, readCpuSeconds, readProcessMemory } from '../../tools/proc.js';
import type { KernelMemory } from './kernel.js';

export const ROLES = ['gateways', 'routers', 'primary', 'nats', 'flood'] as const;
export type Role = (typeof ROLES)[number];

/** The server side: what a deployment needs (the flood is the users' browsers). */
export const SERVER_ROLES: readonly Role[] = ['gateways', 'routers', 'primary', 'nats'];

/** One role's memory, bytes, and the CPU time its processes have used so far. */
export interface RoleMemory {
  readonly processes: number;
  readonly pssBytes: number;
  readonly privateBytes: number;
  readonly rssBytes: number;
  /** User + system seconds of the processes alive now, since each started. */
  readonly cpuSeconds: number;
}

/** The fewest and most connections on one gateway, over the gateways the router counts. */
export interface GatewaySpread {
  readonly gateways: number;
  readonly min: number;
  readonly max: number;
}

/** One sample of the whole run. */
export interface C1mSample {
  /** Milliseconds since the run started. */
  readonly elapsedMs: number;
  readonly phase: string;
  readonly roles: Readonly<Record<Role, RoleMemory>>;
  readonly kernel: KernelMemory;
  /** Streams open at the flood (its `open`). */
  readonly clientConnections: number;
  /** Connections the cluster's gateways report, when the router answered in time. */
  readonly serverConnections: number | null;
  /** How evenly the gateways share them (from the same answer), or null. */
  readonly gatewaySpread: GatewaySpread | null;
  /** Messages received by the flood so far. */
  readonly received: number;
  readonly sent: number;
  /**
   * Busy CPU seconds of the whole machine so far (all cores, /proc/stat): with the roles' own, it
   * shows what else took the CPU (this bench process, the machine's own agents).
   */
  readonly machineBusySeconds: number;
  /** The machine's CPU seconds so far by kind (user, system, interrupts, steal, idle). */
  readonly machineCpu: MachineCpuSplit;
  /**
   * At the marks only: CPU seconds so far of every other process on the machine, by pid and start
   * time, with its name (kernel threads in brackets; `this process` is the bench): where the
   * machine's busy time beside the roles went.
   */
  readonly otherCpu?: Readonly<Record<string, NamedCpu>>;
}

const NONE: RoleMemory = { processes: 0, pssBytes: 0, privateBytes: 0, rssBytes: 0, cpuSeconds: 0 };

/** `a` and `b` added up. */
function plus(a: RoleMemory, b: RoleMemory): RoleMemory {
  return {
    processes: a.processes + b.processes,
    pssBytes: a.pssBytes + b.pssBytes,
    privateBytes: a.privateBytes + b.privateBytes,
    rssBytes: a.rssBytes + b.rssBytes,
    cpuSeconds: a.cpuSeconds + b.cpuSeconds,
  };
}

/** Sums the memory of `pids`; processes that are gone count as none. */
export function sumMemory(pids: readonly number[]): RoleMemory {
  let sum = NONE;
  for (const pid of pids) {
    const m = readProcessMemory(pid);
    if (m === undefined) continue;
    sum = plus(sum, { processes: 1, ...m, cpuSeconds: readCpuSeconds(pid) ?? 0 });
  }
  return { ...sum, cpuSeconds: Math.round(sum.cpuSeconds * 100) / 100 };
}

/** Every role's memory now. */
export function sampleRoles(pids: Readonly<Record<Role, readonly number[]>>): Record<Role, RoleMemory> {
  const out = {} as Record<Role, RoleMemory>;
  for (const role of ROLES) out[role] = sumMemory(pids[role]);
  return out;
}

/** The roles' figures added up. */
export function addRoles(roles: Readonly<Record<Role, RoleMemory>>, which: readonly Role[]): RoleMemory {
  return which.reduce((sum, r) => plus(sum, roles[r]), NONE);
}

/** The spread of `/api/stats`' `cluster.perGateway` connections, or null without gateways. */
export function gatewaySpread(
  perGateway: Readonly<Record<string, { readonly connections: number }>> | undefined,
): GatewaySpread | null {
  const counts = Object.values(perGateway ?? {}).map((g) => g.connections);
  if (counts.length === 0) return null;
  return { gateways: counts.length, min: Math.min(...counts), max: Math.max(...counts) };
}
