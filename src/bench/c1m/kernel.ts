/**
 * The kernel side of `bench c1m`: the settings a run of N loopback connections needs, checked
 * before anything starts (and set, then put back, with `--tune`), and the kernel's memory read
 * while it runs: slab, the TCP stack's buffer pages, MemAvailable.
 *
 * Why each setting (both ends of every connection are on this box):
 * - `fs.file-max`: every socket is a file, twice per connection.
 * - `net.core.somaxconn`, `net.ipv4.tcp_max_syn_backlog`: a gateway listens with a backlog of
 *   4,096; the kernel caps it at somaxconn, and half-open connections at tcp_max_syn_backlog.
 * - `net.core.netdev_max_backlog`: loopback packets wait in a per-CPU queue of this length; a
 *   ramp of thousands of SYNs a second on two busy cores overflows the default 1,000, and every
 *   dropped SYN is a retry 1 s later (and a reset or timeout for the flood).
 * - `net.netfilter.nf_conntrack_max`: only when connection tracking is in use (its count is not 0).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { readSysctl } from '../../tools/proc.js';

/** One kernel setting: its /proc/sys name, the value it needs and why. */
export interface KernelRequirement {
  /** Dotted name, as `sysctl` takes it. */
  readonly key: string;
  /** Least value of its first (or only) number. */
  readonly atLeast: number;
  readonly why: string;
}

/** A requirement with the value found. */
export interface KernelCheck extends KernelRequirement {
  /** The whole value as read (tab-separated numbers for vectors), or null when not there. */
  readonly value: string | null;
  readonly ok: boolean;
}

/** Writes `value` to `key`; throws the OS error (EACCES when not root). */
export function writeSysctl(key: string, value: string): void {
  writeFileSync(`/proc/sys/${key.replaceAll('.', '/')}`, `${value}\n`);
}

/** What a run of `connections` loopback connections needs from the kernel. */
export function kernelRequirements(connections: number): KernelRequirement[] {
  const out: KernelRequirement[] = [
    {
      key: 'fs.file-max',
      atLeast: 2 * connections + 65_536,
      why: 'two sockets (files) per connection, both ends on this box',
    },
  ];
  if (connections > 20_000) {
    out.push(
      { key: 'net.core.somaxconn', atLeast: 4096, why: 'the gateways listen with a backlog of 4,096' },
      { key: 'net.ipv4.tcp_max_syn_backlog', atLeast: 4096, why: 'half-open connections during the ramp' },
    );
  }
  if (connections > 50_000) {
    out.push({
      key: 'net.core.netdev_max_backlog',
      atLeast: 100_000,
      why: 'the loopback packet queue; a drop during the ramp is a SYN retried a second later',
    });
  }
  const tracked = Number(readSysctl('net.netfilter.nf_conntrack_count') ?? 0);
  if (tracked > 0) {
    out.push({
      key: 'net.netfilter.nf_conntrack_max',
      atLeast: Math.ceil(connections * 1.1) + tracked,
      why: 'connection tracking is on: every connection is an entry',
    });
  }
  return out;
}

/** Reads every requirement's value now. */
export function checkKernel(requirements: readonly KernelRequirement[]): KernelCheck[] {
  return requirements.map((r) => {
    const value = readSysctl(r.key) ?? null;
    const first = value === null ? Number.NaN : Number(value.split(/\s+/)[0]);
    return { ...r, value, ok: value !== null && first >= r.atLeast };
  });
}

/** The `sysctl -w` lines that would satisfy the failed checks. */
export function tuneCommands(checks: readonly KernelCheck[]): string[] {
  return checks.filter((c) => !c.ok && c.value !== null).map((c) => `sysctl -w ${c.key}=${c.atLeast}`);
}

/**
 * Settings changed for one run, put back by {@link restore}: on the run's end, on an error, and
 * from the signal handlers (restore is synchronous so that an exit handler can call it).
 */
export class KernelTuning {
  readonly #original = new Map<string, string>();

  /** Raises every failed check to what it needs; returns what changed (`key: old → new`). */
  apply(checks: readonly KernelCheck[]): string[] {
    const changed: string[] = [];
    for (const c of checks) {
      if (c.ok || c.value === null) continue;
      if (!this.#original.has(c.key)) this.#original.set(c.key, c.value);
      writeSysctl(c.key, String(c.atLeast));
      changed.push(`${c.key}: ${c.value} → ${c.atLeast}`);
    }
    return changed;
  }

  /** Puts every changed setting back; returns the problems (a setting that could not be written). */
  restore(): string[] {
    const problems: string[] = [];
    for (const [key, value] of this.#original) {
      try {
        writeSysctl(key, value);
        this.#original.delete(key);
      } catch (err) {
        problems.push(`could not restore ${key}=${value}: ${(err as Error).message}`);
      }
    }
    return problems;
  }

  get changed(): number {
    return this.#original.size;
  }
}

/** The kernel's memory now, bytes. */
export interface KernelMemory {
  /** `Slab` of /proc/meminfo: sockets, inodes, dentries, epoll items … */
  readonly slabBytes: number;
  /** TCP buffer memory: `TCP: … mem N` of /proc/net/sockstat (pages). */
  readonly tcpMemBytes: number;
  /** TCP sockets in use (`inuse`), both ends of loopback connections. */
  readonly tcpSockets: number;
  readonly memAvailableBytes: number;
  readonly memTotalBytes: number;
}

const PAGE = 4096;

/** Parses /proc/meminfo and /proc/net/sockstat text into {@link KernelMemory}. */
export function parseKernelMemory(meminfo: string, sockstat: string): KernelMemory {
  const kb = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(meminfo)?.[1] ?? 0) * 1024;
  const tcp = /^TCP:(.*)$/m.exec(sockstat)?.[1] ?? '';
  const field = (name: string): number => Number(new RegExp(`\\b${name} (\\d+)`).exec(tcp)?.[1] ?? 0);
  return {
    slabBytes: kb('Slab'),
    tcpMemBytes: field('mem') * PAGE,
    tcpSockets: field('inuse'),
    memAvailableBytes: kb('MemAvailable'),
    memTotalBytes: kb('MemTotal'),
  };
}

/** {@link KernelMemory} of this machine now. */
export function readKernelMemory(): KernelMemory {
  return parseKernelMemory(readFileSync('/proc/meminfo', 'utf8'), readFileSync('/proc/net/sockstat', 'utf8'));
}

/** Bytes held by each slab cache (`num_objs × objsize` of /proc/slabinfo); empty when unreadable. */
export function readSlabCaches(text?: string): Map<string, number> {
  const out = new Map<string, number>();
  let body = text;
  if (body === undefined) {
    try {
      body = readFileSync('/proc/slabinfo', 'utf8');
    } catch {
      return out;
    }
  }
  for (const line of body.split('\n')) {
    if (line.startsWith('slabinfo') || line.startsWith('#') || line.trim() === '') continue;
    const f = line.trim().split(/\s+/);
    const objs = Number(f[2]);
    const size = Number(f[3]);
    if (f[0] !== undefined && Number.isFinite(objs) && Number.isFinite(size)) out.set(f[0], objs * size);
  }
  return out;
}

/** The caches that grew most from `before` to `after`, bytes, largest first. */
export function slabGrowth(
  before: ReadonlyMap<string, number>,
  after: ReadonlyMap<string, number>,
  top = 10,
): { cache: string; bytes: number }[] {
  const grown: { cache: string; bytes: number }[] = [];
  for (const [cache, bytes] of after) {
    const d = bytes - (before.get(cache) ?? 0);
    if (d > 0) grown.push({ cache, bytes: d });
  }
  return grown.sort((a, b) => b.bytes - a.bytes).slice(0, top);
}
