/**
 * The `bench c1m` record (`report.json`) and its one-screen summary, built from the marks and
 * samples of a run. Pure functions of their input, so the arithmetic is tested on its own.
 *
 * The headline is the RAM the server side needs per million users: the PSS of gateways, routers,
 * the cluster's primary and NATS, plus the kernel's server-side half of the socket memory (slab
 * and TCP buffer pages grown since the empty cluster, halved: both ends of every connection are
 * on this box, and the two ends are the same kind of socket). The slab's `proc_inode_cache` growth
 * is left out of that and reported on its own: it is /proc entries made by whoever lists
 * processes' descriptors (on this machine its own agent does, at a million sockets), not memory a
 * connection needs. The flood is the users' browsers
 * and is left out of it, but reported.
 */
import type { LatencySummary } from '../../tools/msggen/latency.js';
import { coresByName } from '../../tools/proc.js';
import {
  addRoles,
  type C1mSample,
  type GatewaySpread,
  ROLES,
  type Role,
  type RoleMemory,
  SERVER_ROLES,
} from './memory.js';

/** The slab cache of /proc inodes, left out of the sockets' kernel memory (see buildC1mReport). */
const PROC_INODES = 'proc_inode_cache';

/** The article's figures for a million connections (part 3): mochiweb and libevent C. */
export const ARTICLE_GB_PER_MILLION = { mochiweb: 40, libeventC: 10 } as const;

export type C1mMarkName = 'empty' | 'connected' | 'full' | 'messages' | 'drained';

export interface C1mMark {
  readonly mark: C1mMarkName;
  readonly sample: C1mSample;
}

export interface C1mCounts {
  /** Messages the API accepted. */
  readonly sent: number;
  /** Sum of the API's `delivered` answers: the sent id and its online friends. */
  readonly delivered: number;
  /** Messages the flood received. */
  readonly received: number;
  readonly failed: number;
}

export interface C1mInput {
  readonly settings: Readonly<Record<string, unknown>>;
  readonly commandLine: string;
  readonly startedAt: string;
  readonly elapsedMs: number;
  readonly problems: readonly string[];
  /** Why the run stopped early, when it did (memory, a process died, time, a signal). */
  readonly abortedBy: string | null;
  readonly marks: readonly C1mMark[];
  readonly samples: readonly C1mSample[];
  readonly counts: C1mCounts | null;
  readonly latency: LatencySummary | null;
  readonly apiLatency: LatencySummary | null;
  readonly ramp: {
    readonly asked: number;
    readonly reached: number | null;
    readonly opened: number;
    readonly failed: number;
    readonly errors: Readonly<Record<string, number>>;
    readonly closes: Readonly<Record<string, number>>;
  } | null;
  readonly friends: Readonly<Record<string, unknown>> | null;
  readonly kernelSettings: readonly string[];
  /** Slab caches that grew most from the empty cluster to the headline mark. */
  readonly slabCaches: readonly { readonly cache: string; readonly bytes: number }[] | null;
  readonly memAvailableStartBytes: number;
  readonly memAvailableMinBytes: number;
  readonly loadAverage: readonly number[];
  readonly files: Readonly<Record<string, string | null>>;
}

/** Cores kept busy over one phase: by each role, the whole machine, and what else took them. */
export type C1mCores = Readonly<Record<Role | 'machine', number>> & {
  /** The whole machine's busy cores by kind (`/proc/stat`). */
  readonly machineSplit: {
    readonly user: number;
    readonly system: number;
    readonly irq: number;
    readonly steal: number;
  };
  /** The other processes that kept the most of a core busy (0.01 or more), most first. */
  readonly others: readonly { readonly name: string; readonly cores: number }[];
};

export interface C1mReport {
  readonly ok: boolean;
  readonly problems: readonly string[];
  readonly abortedBy: string | null;
  readonly commandLine: string;
  readonly startedAt: string;
  readonly elapsedMs: number;
  readonly settings: Readonly<Record<string, unknown>>;
  /** Streams open at the headline mark (the flood's count). */
  readonly connections: number;
  readonly serverConnections: number | null;
  /** The fewest and most connections on one gateway at the headline mark. */
  readonly gatewaySpread: GatewaySpread | null;
  /** Streams open at the last sample (the most a run stopped early reached, about). */
  readonly lastConnections: number;
  /** Which mark the memory figures are from: the end of the messages, else the full hold. */
  readonly at: C1mMarkName | null;
  readonly roles: Readonly<Record<Role, RoleMemory>> | null;
  readonly emptyRoles: Readonly<Record<Role, RoleMemory>> | null;
  readonly kernel: {
    readonly slabBytes: number;
    readonly tcpMemBytes: number;
    /** All of the slab's growth since the empty cluster. */
    readonly slabGrowthBytes: number;
    /** Of it, `proc_inode_cache`: /proc entries someone looked up, not sockets. */
    readonly procInodeGrowthBytes: number;
    /** The growth the connections account for: the rest (the kernel figures below use this). */
    readonly socketSlabGrowthBytes: number;
    readonly tcpMemGrowthBytes: number;
    readonly tcpSockets: number;
    readonly growthByCache: C1mInput['slabCaches'];
  } | null;
  readonly memAvailableDropBytes: number;
  /**
   * Cores each role kept busy (CPU seconds per second): during the ramp (empty → connected) and
   * the messages (full → messages). Two cores is all this machine has.
   */
  readonly cpuCores: {
    readonly ramp: C1mCores | null;
    readonly messages: C1mCores | null;
  };
  readonly sent: number;
  readonly delivered: number;
  readonly received: number;
  readonly failed: number;
  readonly countsMatch: boolean;
  readonly latencyMs: {
    readonly p50: number;
    readonly p99: number;
    readonly max: number;
    readonly count: number;
  } | null;
  readonly apiLatencyMs: { readonly p50: number; readonly p99: number; readonly max: number } | null;
  readonly perConnection: {
    /** Growth of the gateways' PSS since the empty cluster, per connection. */
    readonly gatewayPssBytes: number;
    readonly gatewayPrivateBytes: number;
    /** NATS growth per connection (none is held per id since the directory routes sends). */
    readonly natsPssBytes: number;
    /** Kernel slab + TCP buffer growth per connection, both ends. */
    readonly kernelBothEndsBytes: number;
    readonly floodPssBytes: number;
    /** Server side: gateways + routers + primary + NATS growth, plus half the kernel's. */
    readonly serverSideBytes: number;
  } | null;
  readonly serverSide: {
    /** Server-role PSS plus the kernel's server half, at the headline mark. */
    readonly measuredBytes: number;
    /** The empty cluster plus per-connection growth × 1,000,000 (equal to measured at a million). */
    readonly perMillionUsersBytes: number;
    readonly extrapolated: boolean;
    readonly articleGb: typeof ARTICLE_GB_PER_MILLION;
  } | null;
  readonly ramp: C1mInput['ramp'];
  readonly friends: C1mInput['friends'];
  readonly kernelSettings: readonly string[];
  readonly loadAverage: readonly number[];
  readonly marks: readonly C1mMark[];
  readonly samples: readonly C1mSample[];
  readonly files: C1mInput['files'];
}

const ms = (v: number): number => Math.round(v * 100) / 100;

/** Builds the record; adds a MISMATCH problem when the counts disagree. */
export function buildC1mReport(input: C1mInput): C1mReport {
  const problems = [...input.problems];
  const mark = (name: C1mMarkName): C1mSample | undefined => input.marks.find((m) => m.mark === name)?.sample;
  const empty = mark('empty');
  const headName: C1mMarkName | null = mark('messages') ? 'messages' : mark('full') ? 'full' : null;
  const head = headName === null ? undefined : mark(headName);
  const c = input.counts;
  const countsMatch =
    c !== null && c.failed === 0 && c.sent > 0 && c.delivered === c.received && c.delivered >= c.sent;
  if (c !== null && !countsMatch) {
    problems.unshift(
      `MISMATCH: sent ${c.sent} (failed ${c.failed}), delivered ${c.delivered} (API), received ${c.received} (flood); expected delivered == received ≥ sent and no failures`,
    );
  }
  const connections = head?.clientConnections ?? 0;
  const lastSample = input.samples.at(-1);
  let perConnection: C1mReport['perConnection'] = null;
  let serverSide: C1mReport['serverSide'] = null;
  let kernel: C1mReport['kernel'] = null;
  if (head !== undefined && empty !== undefined) {
    const totalSlabGrowth = head.kernel.slabBytes - empty.kernel.slabBytes;
    // /proc inodes are made by whatever lists /proc/<pid>/fd (on this machine, its own agent,
    // which reads every process's descriptors): reclaimable, and not part of holding a socket.
    const procInodes = input.slabCaches?.find((c) => c.cache === PROC_INODES)?.bytes ?? 0;
    const slabGrowth = Math.max(0, totalSlabGrowth - procInodes);
    const tcpGrowth = head.kernel.tcpMemBytes - empty.kernel.tcpMemBytes;
    kernel = {
      slabBytes: head.kernel.slabBytes,
      tcpMemBytes: head.kernel.tcpMemBytes,
      slabGrowthBytes: totalSlabGrowth,
      procInodeGrowthBytes: procInodes,
      socketSlabGrowthBytes: slabGrowth,
      tcpMemGrowthBytes: tcpGrowth,
      tcpSockets: head.kernel.tcpSockets,
      growthByCache: input.slabCaches,
    };
    const serverNow = addRoles(head.roles, SERVER_ROLES).pssBytes;
    const serverEmpty = addRoles(empty.roles, SERVER_ROLES).pssBytes;
    const kernelServer = (slabGrowth + tcpGrowth) / 2;
    const measured = serverNow + kernelServer;
    if (connections > 0) {
      const per = (a: number, b: number): number => Math.round((a - b) / connections);
      const serverPer = (serverNow - serverEmpty + kernelServer) / connections;
      perConnection = {
        gatewayPssBytes: per(head.roles.gateways.pssBytes, empty.roles.gateways.pssBytes),
        gatewayPrivateBytes: per(head.roles.gateways.privateBytes, empty.roles.gateways.privateBytes),
        natsPssBytes: per(head.roles.nats.pssBytes, empty.roles.nats.pssBytes),
        kernelBothEndsBytes: Math.round((slabGrowth + tcpGrowth) / connections),
        floodPssBytes: per(head.roles.flood.pssBytes, empty.roles.flood.pssBytes),
        serverSideBytes: Math.round(serverPer),
      };
      serverSide = {
        measuredBytes: Math.round(measured),
        perMillionUsersBytes: Math.round(serverEmpty + serverPer * 1_000_000),
        extrapolated: connections < 1_000_000,
        articleGb: ARTICLE_GB_PER_MILLION,
      };
    }
  }
  const lat = input.latency;
  const api = input.apiLatency;
  const cores = (from: C1mSample | undefined, to: C1mSample | undefined): C1mCores | null => {
    if (from === undefined || to === undefined || to.elapsedMs <= from.elapsedMs) return null;
    const seconds = (to.elapsedMs - from.elapsedMs) / 1000;
    const rate = (a: number, b: number): number => Math.round(((b - a) / seconds) * 100) / 100;
    const byRole = {} as Record<Role, number>;
    for (const role of ROLES) byRole[role] = rate(from.roles[role].cpuSeconds, to.roles[role].cpuSeconds);
    const a = from.machineCpu;
    const b = to.machineCpu;
    const others =
      from.otherCpu === undefined || to.otherCpu === undefined
        ? []
        : coresByName(from.otherCpu, to.otherCpu, seconds);
    return {
      ...byRole,
      machine: rate(from.machineBusySeconds, to.machineBusySeconds),
      machineSplit: {
        user: rate(a.user, b.user),
        system: rate(a.system, b.system),
        irq: rate(a.irq, b.irq),
        steal: rate(a.steal, b.steal),
      },
      others,
    };
  };
  return {
    ok: problems.length === 0 && input.abortedBy === null,
    problems,
    abortedBy: input.abortedBy,
    commandLine: input.commandLine,
    startedAt: input.startedAt,
    elapsedMs: input.elapsedMs,
    settings: input.settings,
    connections,
    serverConnections: head?.serverConnections ?? null,
    gatewaySpread: head?.gatewaySpread ?? null,
    lastConnections: lastSample?.clientConnections ?? 0,
    at: headName,
    roles: head?.roles ?? null,
    emptyRoles: empty?.roles ?? null,
    kernel,
    memAvailableDropBytes: Math.max(0, input.memAvailableStartBytes - input.memAvailableMinBytes),
    cpuCores: { ramp: cores(empty, mark('connected')), messages: cores(mark('full'), mark('messages')) },
    sent: c?.sent ?? 0,
    delivered: c?.delivered ?? 0,
    received: c?.received ?? 0,
    failed: c?.failed ?? 0,
    countsMatch,
    latencyMs:
      lat === null || lat.count === 0
        ? null
        : { p50: ms(lat.p50), p99: ms(lat.p99), max: ms(lat.max), count: lat.count },
    apiLatencyMs:
      api === null || api.count === 0 ? null : { p50: ms(api.p50), p99: ms(api.p99), max: ms(api.max) },
    perConnection,
    serverSide,
    ramp: input.ramp,
    friends: input.friends,
    kernelSettings: input.kernelSettings,
    loadAverage: input.loadAverage,
    marks: input.marks,
    samples: input.samples,
    files: input.files,
  };
}

const GB = 1024 ** 3;
const MB = 1024 ** 2;
const gb = (b: number): string => `${(b / GB).toFixed(2)} GiB`;
const mb = (b: number): string => `${(b / MB).toFixed(0)} MiB`;
const kb = (b: number): string => `${(b / 1024).toFixed(2)} KB`;

/** The one-screen summary. */
export function formatC1mSummary(r: C1mReport): string {
  const lines: string[] = [];
  const s = r.settings;
  lines.push(
    `bench c1m: ${(r.at === null ? r.lastConnections : r.connections).toLocaleString('en-US')} connections${r.at === null ? ' (last sample)' : ''} of ${Number(s.connections).toLocaleString('en-US')} asked, ${s.gateways} gateways, ${s.routers} routers; ${Number(s.users).toLocaleString('en-US')} users (m = ${s.m})`,
  );
  if (r.ramp !== null) {
    lines.push(
      `  ramp         ${r.ramp.opened} opened, ${r.ramp.failed} failed, at ${r.ramp.reached ?? '?'}/s (asked ${r.ramp.asked}/s)${r.ramp.failed > 0 ? ` ${JSON.stringify(r.ramp.errors)}` : ''}`,
    );
  }
  if (r.gatewaySpread !== null) {
    const g = r.gatewaySpread;
    lines.push(
      `  gateways     ${(r.serverConnections ?? 0).toLocaleString('en-US')} connections counted by the router, ${g.min.toLocaleString('en-US')} to ${g.max.toLocaleString('en-US')} on each of ${g.gateways}`,
    );
  }
  if (r.roles !== null) {
    lines.push(`  memory at ${r.at}:         PSS        private    RSS (overcounts)  processes`);
    for (const role of ROLES) {
      const m = r.roles[role];
      lines.push(
        `    ${role.padEnd(10)} ${mb(m.pssBytes).padStart(10)} ${mb(m.privateBytes).padStart(10)} ${mb(m.rssBytes).padStart(12)} ${String(m.processes).padStart(10)}`,
      );
    }
  }
  if (r.kernel !== null) {
    lines.push(
      `  kernel       slab ${gb(r.kernel.slabBytes)} (+${gb(r.kernel.slabGrowthBytes)}, of which /proc inodes ${gb(r.kernel.procInodeGrowthBytes)}), TCP buffers ${mb(r.kernel.tcpMemBytes)}, ${r.kernel.tcpSockets} TCP sockets; MemAvailable fell ${gb(r.memAvailableDropBytes)}`,
    );
  }
  const cpu = (label: string, c: C1mCores | null): void => {
    if (c === null) return;
    const roles = ROLES.map((role) => `${role} ${c[role]}`).join(', ');
    const m = c.machineSplit;
    lines.push(
      `  cores ${label.padEnd(8)} ${roles}; whole machine ${c.machine} (user ${m.user}, system ${m.system}, irq ${m.irq}, steal ${m.steal})`,
    );
    if (c.others.length > 0) {
      const top = c.others.slice(0, 6).map((o) => `${o.name} ${o.cores}`);
      lines.push(`               besides: ${top.join(', ')}`);
    }
  };
  cpu('ramp', r.cpuCores.ramp);
  cpu('messages', r.cpuCores.messages);
  if (r.perConnection !== null) {
    const p = r.perConnection;
    lines.push(
      `  per conn     gateways ${kb(p.gatewayPssBytes)} PSS (${kb(p.gatewayPrivateBytes)} private), NATS ${kb(p.natsPssBytes)}, kernel ${kb(p.kernelBothEndsBytes)} (both ends), flood ${kb(p.floodPssBytes)}; server side ${kb(p.serverSideBytes)}`,
    );
  }
  if (r.serverSide !== null) {
    lines.push(
      `  SERVER RAM   ${gb(r.serverSide.measuredBytes)} (${(r.serverSide.measuredBytes / 1e9).toFixed(2)} GB) measured; ${gb(r.serverSide.perMillionUsersBytes)} per million users${r.serverSide.extrapolated ? ' (extrapolated from this run)' : ''} — the article: ${ARTICLE_GB_PER_MILLION.mochiweb} GB mochiweb, ${ARTICLE_GB_PER_MILLION.libeventC} GB libevent C`,
    );
  }
  if (r.sent + r.failed === 0 && r.abortedBy !== null)
    lines.push('  messages     none: the run stopped first');
  else {
    lines.push(
      `  messages     sent ${r.sent}, delivered ${r.delivered}, received ${r.received}, failed ${r.failed}: ${r.countsMatch ? 'counts exact' : 'COUNTS DIFFER'}`,
    );
  }
  if (r.latencyMs !== null) {
    lines.push(
      `  latency      p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms (send → flood)`,
    );
  }
  if (r.abortedBy !== null) lines.push(`  STOPPED EARLY: ${r.abortedBy}`);
  for (const p of r.problems) lines.push(`  problem: ${p}`);
  lines.push(`  report ${r.files.json}${r.files.png ? `, chart ${r.files.png}` : ''}`);
  return `${lines.join('\n')}\n`;
}
