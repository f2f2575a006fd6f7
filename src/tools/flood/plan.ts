/**
 * How `flood` spreads its connections: over local source addresses (the article's part 3 had
 * to bring up 17 IPs to get past the per-address port limit) and over worker processes (a
 * process here may hold at most 20,000 open files). Pure functions: the machine's limits come
 * in as arguments, so every rule is testable without opening a socket.
 *
 * A client socket bound to a source address (`localAddress`) takes one port from
 * `ip_local_port_range` for that address, so one source address holds at most
 * `hi − lo + 1` connections (28,232 with the default 32768–60999) whatever the destination.
 */
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { ConfigError } from '../../errors.js';

/**
 * Most connections one source address is given when flood picks the sources itself. Binding a
 * socket to an address with port 0 makes the kernel search that address's port range for a free
 * port; measured here (Linux 6.18, range 32768–60999), a bind stays cheap up to about a quarter of
 * the range in use on that address and then costs milliseconds of system time (see
 * {@link BIND_SLOW_FRACTION}), which starved a 100,000-connection run. 5,000 stays well below.
 */
export const AUTO_PER_SOURCE = 5_000;
/**
 * Fraction of an address's port range in use past which binding another socket to it gets slow
 * (a search of the range in the kernel under a lock; 2,000 binds took 0.1–0.3 s below it and
 * 3–12 s above it, one address, 18,000 sockets).
 */
export const BIND_SLOW_FRACTION = 0.25;
/** Connections one worker process takes when `procs` is not given. */
export const DEFAULT_PER_PROC = 15_000;
/** Files a worker keeps for itself (stdio, IPC, libuv, the odd DNS or log file). */
export const FD_RESERVE = 64;
/** Fraction of a source address's port range flood uses before it warns. */
export const PORT_WARN_FRACTION = 0.9;
/** The first address flood picks when it chooses sources itself (127.0.0.1 is left alone). */
export const AUTO_SOURCE_START = '127.0.0.2';
/** Most source addresses a range may expand to (a typo such as 127.0.0.1-127.9.0.0 fails early). */
export const MAX_SOURCES = 65_536;

/** The limits of this machine that shape the plan. */
export interface MachineLimits {
  /** `/proc/sys/net/ipv4/ip_local_port_range`. */
  readonly portLow: number;
  readonly portHigh: number;
  /** Soft limit on open files per process (`ulimit -n`). */
  readonly maxFiles: number;
}

/** Reads the limits from /proc; falls back to this project's machines (32768–60999, 20,000). */
export function readMachineLimits(): MachineLimits {
  let portLow = 32768;
  let portHigh = 60999;
  let maxFiles = 20_000;
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    if (Number(lo) > 0 && Number(hi) >= Number(lo)) {
      portLow = Number(lo);
      portHigh = Number(hi);
    }
  } catch {
    // not Linux: keep the defaults
  }
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line ? Number(line.slice('Max open files'.length).trim().split(/\s+/)[0]) : Number.NaN;
    if (soft > 0) maxFiles = soft;
  } catch {
    // keep the default
  }
  return { portLow, portHigh, maxFiles };
}

/** Ports one source address offers. */
export function portsPerSource(limits: MachineLimits): number {
  return limits.portHigh - limits.portLow + 1;
}

function ipToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

function intToIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * Expands `127.0.0.2-127.0.0.41,127.0.1.1` (ranges and comma lists; `items` may already be
 * split on commas) into addresses, in order, without duplicates. Addresses ending in .0 or
 * .255 inside a range are skipped (they are network and broadcast addresses elsewhere).
 */
export function parseSources(items: string | readonly string[], flag = '--sources'): string[] {
  const parts = (typeof items === 'string' ? items.split(',') : items.flatMap((s) => s.split(',')))
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (ip: string): void => {
    if (seen.has(ip)) return;
    if (out.length >= MAX_SOURCES) {
      throw new ConfigError(`${flag} expands to more than ${MAX_SOURCES} addresses`);
    }
    seen.add(ip);
    out.push(ip);
  };
  for (const part of parts) {
    const dash = part.indexOf('-');
    if (dash === -1) {
      if (!isIPv4(part)) throw new ConfigError(`${flag}: ${JSON.stringify(part)} is not an IPv4 address`);
      add(part);
      continue;
    }
    const first = part.slice(0, dash).trim();
    const last = part.slice(dash + 1).trim();
    for (const end of [first, last]) {
      if (!isIPv4(end)) {
        throw new ConfigError(
          `${flag}: ${JSON.stringify(end)} in range ${JSON.stringify(part)} is not an IPv4 address`,
        );
      }
    }
    const a = ipToInt(first);
    const b = ipToInt(last);
    if (b < a) throw new ConfigError(`${flag}: range ${JSON.stringify(part)} ends before it starts`);
    if (b - a >= MAX_SOURCES) {
      throw new ConfigError(
        `${flag}: range ${JSON.stringify(part)} has ${b - a + 1} addresses, the limit is ${MAX_SOURCES}`,
      );
    }
    for (let n = a; n <= b; n++) {
      const low = n & 255;
      if ((low === 0 || low === 255) && n !== a && n !== b) continue;
      add(intToIp(n));
    }
  }
  return out;
}

/**
 * How many source addresses flood picks for `count` connections over `procs` workers: at most
 * {@link AUTO_PER_SOURCE} (and under {@link BIND_SLOW_FRACTION} of the port range) per address, and
 * a multiple of `procs` when there are more addresses than workers, so every worker gets the same
 * number of addresses and none of them carries more than its share.
 */
export function autoSourceCount(count: number, procs: number, ports: number): number {
  const per = Math.max(1, Math.min(AUTO_PER_SOURCE, Math.floor(ports * BIND_SLOW_FRACTION * 0.9)));
  const n = Math.max(1, Math.ceil(count / per));
  return n > procs ? Math.ceil(n / procs) * procs : n;
}

/** `first-last` for {@link autoSources}(n), as `--sources` takes it. */
export function sourceRange(n: number): string {
  const all = autoSources(n);
  return all.length > 1 ? `${all[0]}-${all.at(-1)}` : all[0]!;
}

/** `n` loopback source addresses from 127.0.0.2 on, skipping .0 and .255 (127.0.0.2 … 127.0.0.254, 127.0.1.1 …). */
export function autoSources(n: number): string[] {
  const out: string[] = [];
  let ip = ipToInt(AUTO_SOURCE_START);
  while (out.length < n) {
    const low = ip & 255;
    if (low !== 0 && low !== 255) out.push(intToIp(ip));
    ip++;
  }
  return out;
}

/** True for 127.0.0.0/8 and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || (isIPv4(host) && host.startsWith('127.'));
}

/** One worker's share of the run. */
export interface WorkerShare {
  /** Index of the first connection (0-based, into the id range or URL list). */
  readonly offset: number;
  readonly count: number;
  /** Source addresses this worker binds to, used round-robin from `sourceStart`; empty = kernel's choice. */
  readonly sources: readonly string[];
  readonly sourceStart: number;
  /** Connections per second this worker opens (its part of the total rate; 0 = unlimited). */
  readonly rate: number;
}

/** The whole plan: shares per worker, connections per source address, warnings. */
export interface FloodPlan {
  readonly procs: number;
  readonly sources: readonly string[];
  /** True when flood chose the sources itself (no `--sources`, many connections). */
  readonly autoSources: boolean;
  readonly shares: readonly WorkerShare[];
  /** Largest number of connections bound to any one source address (or to the default one). */
  readonly maxPerSource: number;
  readonly portsPerSource: number;
  readonly warnings: readonly string[];
}

/** What {@link planFlood} needs to know. */
export interface PlanInput {
  readonly count: number;
  /** Total connections per second (0 = as fast as the machine allows). */
  readonly rate: number;
  /** Worker processes; undefined = ceil(count / {@link DEFAULT_PER_PROC}). */
  readonly procs?: number;
  /** Explicit source addresses; undefined = none, or automatic when `count` is large. */
  readonly sources?: readonly string[];
  /** True when every destination is a loopback IPv4 address, so 127.x sources can reach it. */
  readonly loopback: boolean;
  readonly limits: MachineLimits;
}

const fmt = (n: number): string => n.toLocaleString('en-US');

/**
 * Splits `count` connections over workers and source addresses, and checks both limits:
 * files per process and ports per source address. Throws {@link ConfigError} naming the
 * numbers when the run cannot fit.
 */
export function planFlood(input: PlanInput): FloodPlan {
  const { count, limits } = input;
  const ports = portsPerSource(limits);
  const warnings: string[] = [];
  const perProcMax = limits.maxFiles - FD_RESERVE;
  if (perProcMax < 1)
    throw new ConfigError(`the open-file limit (${limits.maxFiles}) leaves no room for connections`);

  const procs = input.procs ?? Math.max(1, Math.ceil(count / Math.min(DEFAULT_PER_PROC, perProcMax)));
  if (procs > count && count > 0) {
    throw new ConfigError(
      `--procs ${procs} is more than --count ${count}; every worker needs at least one connection`,
    );
  }

  let sources = input.sources ? [...input.sources] : [];
  let auto = false;
  if (sources.length === 0 && count > AUTO_PER_SOURCE) {
    if (!input.loopback) {
      throw new ConfigError(
        `${fmt(count)} connections need more than one source address (${fmt(ports)} ports each, ip_local_port_range ` +
          `${limits.portLow}–${limits.portHigh}); the target is not loopback, so give --sources with addresses that can reach it`,
      );
    }
    sources = autoSources(autoSourceCount(count, procs, ports));
    auto = true;
  }
  const perProc = Math.ceil(count / procs);
  if (perProc > perProcMax) {
    throw new ConfigError(
      `${fmt(count)} connections over ${procs} process(es) is ${fmt(perProc)} per process, but a process may hold ` +
        `${fmt(limits.maxFiles)} open files (${fmt(perProcMax)} after ${FD_RESERVE} reserved); ` +
        `use --procs ${Math.ceil(count / perProcMax)} or more`,
    );
  }

  const shares: WorkerShare[] = [];
  const perSource = new Array<number>(Math.max(1, sources.length)).fill(0);
  let offset = 0;
  for (let w = 0; w < procs; w++) {
    const n = Math.floor(count / procs) + (w < count % procs ? 1 : 0);
    let mine: number[];
    let start: number;
    if (sources.length >= procs) {
      // Enough addresses: each worker gets its own subset, so no two processes share a port space.
      mine = [];
      for (let i = w; i < sources.length; i += procs) mine.push(i);
      start = 0;
    } else {
      // Fewer addresses than workers: all share them, each starting on a different one.
      mine = sources.map((_, i) => i);
      start = sources.length > 0 ? w % sources.length : 0;
    }
    if (mine.length === 0) {
      perSource[0]! += n;
    } else {
      const m = mine.length;
      for (let k = 0; k < m; k++) {
        perSource[mine[k]!]! += Math.floor(n / m) + ((k - start + m) % m < n % m ? 1 : 0);
      }
    }
    const rate = input.rate > 0 && count > 0 ? (input.rate * n) / count : 0;
    shares.push({ offset, count: n, sources: mine.map((i) => sources[i]!), sourceStart: start, rate });
    offset += n;
  }

  const maxPerSource = perSource.reduce((a, b) => Math.max(a, b), 0);
  const where =
    sources.length === 0 ? 'the default source address' : `each of ${sources.length} source address(es)`;
  if (maxPerSource > ports) {
    const need = autoSourceCount(count, procs, ports);
    throw new ConfigError(
      `${fmt(count)} connections put up to ${fmt(maxPerSource)} on ${where}, but ip_local_port_range ` +
        `${limits.portLow}–${limits.portHigh} gives only ${fmt(ports)} ports per source address; ` +
        `use --sources with ${need} or more addresses (e.g. --sources ${sourceRange(need)})`,
    );
  }
  if (maxPerSource > ports * BIND_SLOW_FRACTION && maxPerSource <= ports * PORT_WARN_FRACTION) {
    const need = autoSourceCount(count, procs, ports);
    warnings.push(
      `up to ${fmt(maxPerSource)} connections on ${where} uses over a quarter of its ${fmt(ports)} ports; past ` +
        `that the kernel's search for a free port makes every new connection slow (seconds of system time per ` +
        `thousand) — use ${need} or more source addresses (e.g. --sources ${sourceRange(need)})`,
    );
  }
  if (maxPerSource > ports * PORT_WARN_FRACTION) {
    warnings.push(
      `up to ${fmt(maxPerSource)} connections on ${where} uses over ${PORT_WARN_FRACTION * 100}% of its ` +
        `${fmt(ports)} ports (ip_local_port_range ${limits.portLow}–${limits.portHigh}); sockets in TIME_WAIT ` +
        `from earlier runs may make some fail with EADDRNOTAVAIL — add source addresses`,
    );
  }
  return { procs, sources, autoSources: auto, shares, maxPerSource, portsPerSource: ports, warnings };
}
