/**
 * Linux `/proc` readers for benchmarks and measurement tools: the CPU time and resident memory of
 * one process, and the busy time of the whole machine. `bench c10k`, the scripts in bench/ and
 * `memlog` all read these figures here, so they mean the same thing everywhere.
 *
 * Synchronous on purpose: each is one read of a small pseudo-file that the kernel fills in
 * memory, cheaper than a round trip through the thread pool, and callers sum them over a handful
 * of processes between awaits. Every reader returns `undefined` for a process that is gone.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Used when `getconf` is missing: USER_HZ is 100 on every mainstream Linux. */
const FALLBACK_CLOCK_TICKS = 100;

let ticks: number | undefined;

/**
 * Clock ticks per second of the times in `/proc/<pid>/stat` and `/proc/stat` (USER_HZ):
 * `getconf CLK_TCK`, asked once, or 100 when that fails.
 */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks =
        Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || FALLBACK_CLOCK_TICKS;
    } catch {
      ticks = FALLBACK_CLOCK_TICKS;
    }
  }
  return ticks;
}

/** CPU seconds a process has used, in user and in kernel mode. */
export interface CpuTimes {
  readonly user: number;
  readonly sys: number;
}

/** A `/proc` file's text, or `undefined` when it cannot be read (its process is gone). */
function readProcFile(file: string): string | undefined {
  try {
    return readFileSync(file, 'latin1');
  } catch {
    return undefined;
  }
}

/**
 * `/proc/<pid>/stat` split: its `comm`, and the fields after it (`rest[0]` is field 3, the state),
 * or `undefined` when the process is gone. "pid (comm) state ppid …": comm may hold spaces, so the
 * fields are counted after the last ')'.
 */
function readStat(pid: number): { comm: string; rest: string[] } | undefined {
  const stat = readProcFile(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  const close = stat.lastIndexOf(')');
  return { comm: stat.slice(stat.indexOf('(') + 1, close), rest: stat.slice(close + 2).split(' ') };
}

/** Fields of `/proc/<pid>/stat`, as indexes of {@link readStat}'s `rest`. */
const STAT_FLAGS = 6;
const STAT_UTIME = 11;
const STAT_STIME = 12;
const STAT_STARTTIME = 19;

/** The CPU time `pid` has used (`utime`, `stime` of `/proc/<pid>/stat`), or `undefined` when it is gone. */
export function readCpuTimes(pid: number): CpuTimes | undefined {
  const rest = readStat(pid)?.rest;
  if (rest === undefined) return undefined;
  const utime = Number(rest[STAT_UTIME]);
  const stime = Number(rest[STAT_STIME]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
  const hz = clockTicks();
  return { user: utime / hz, sys: stime / hz };
}

/**
 * Field 22 of `/proc/<pid>/stat` (start time in ticks since boot): the pid's identity over reuse.
 * `undefined` once the process is gone or a zombie.
 */
export function readStartTime(pid: number): string | undefined {
  const rest = readStat(pid)?.rest;
  if (rest === undefined) return undefined;
  return rest[0] === 'Z' || rest[0] === 'X' ? undefined : rest[STAT_STARTTIME];
}

/** User + system CPU seconds `pid` has used, or `undefined` when it is gone. */
export function readCpuSeconds(pid: number): number | undefined {
  const t = readCpuTimes(pid);
  return t === undefined ? undefined : t.user + t.sys;
}

/** CPU seconds summed over `pids`; `undefined` when none could be read. */
export function sumCpuSeconds(pids: readonly number[]): number | undefined {
  let total = 0;
  let read = 0;
  for (const pid of pids) {
    const s = readCpuSeconds(pid);
    if (s === undefined) continue;
    total += s;
    read++;
  }
  return read === 0 ? undefined : total;
}

/** The `cpu` line of `/proc/stat`: ticks of the whole machine by kind, in the kernel's order. */
function readCpuLine(): number[] {
  return readFileSync('/proc/stat', 'latin1').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
}

/** Busy and total CPU seconds of the whole machine (all cores), from the `cpu` line of `/proc/stat`. */
export function machineCpu(): { busy: number; total: number } {
  const f = readCpuLine();
  const total = f.reduce((a, b) => a + b, 0);
  // idle + iowait
  const idle = f[3]! + f[4]!;
  const hz = clockTicks();
  return { busy: (total - idle) / hz, total: total / hz };
}

/** The whole machine's CPU seconds since boot (all cores) by what they were spent on. */
export interface MachineCpuSplit {
  /** User mode, niced included. */
  readonly user: number;
  readonly system: number;
  /** Interrupts and softirqs (the loopback's receive path runs there in part). */
  readonly irq: number;
  /** Taken by the hypervisor for other guests: busy to this machine, work for nobody here. */
  readonly steal: number;
  /** Idle and waiting for I/O. */
  readonly idle: number;
}

/** {@link MachineCpuSplit} from the `cpu` line of `/proc/stat`. */
export function machineCpuSplit(): MachineCpuSplit {
  const f = readCpuLine();
  const at = (i: number): number => (Number.isFinite(f[i]) ? f[i]! : 0);
  const hz = clockTicks();
  return {
    user: (at(0) + at(1)) / hz,
    system: at(2) / hz,
    irq: (at(5) + at(6)) / hz,
    steal: at(7) / hz,
    idle: (at(3) + at(4)) / hz,
  };
}

/** The pids in `/proc`, in its order (none when it cannot be read). */
export function listPids(): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const entry of entries) {
    const pid = Number(entry);
    if (Number.isSafeInteger(pid) && pid > 0) out.push(pid);
  }
  return out;
}

/** A process's CPU seconds so far, and the name it is summed under. */
export interface NamedCpu {
  readonly name: string;
  readonly seconds: number;
}

/** `PF_KTHREAD` in the flags of `/proc/<pid>/stat`: a kernel thread. */
const PF_KTHREAD = 0x200000;

/**
 * The CPU seconds used so far by every process on the machine but `exclude`, keyed by
 * `<pid>@<start time>` (a pid's identity over reuse), each with a name to sum under: kernel
 * threads as `[name]` (`[kworker]`, `[ksoftirqd]`, `[kdamond.0]`: the part before any `/`), this
 * process as `this process`, the rest by their `comm`. Two readings subtracted per key say what
 * each process used in between (one born meanwhile from zero; one that ended is missing).
 */
export function cpuByProcess(exclude: ReadonlySet<number>): Record<string, NamedCpu> {
  const out: Record<string, NamedCpu> = {};
  const hz = clockTicks();
  for (const pid of listPids()) {
    if (exclude.has(pid)) continue;
    const stat = readStat(pid);
    if (stat === undefined) continue;
    const { comm, rest } = stat;
    const seconds = (Number(rest[STAT_UTIME]) + Number(rest[STAT_STIME])) / hz;
    if (!Number.isFinite(seconds)) continue;
    const kernel = (Number(rest[STAT_FLAGS]) & PF_KTHREAD) !== 0;
    const name = pid === process.pid ? 'this process' : kernel ? `[${comm.split('/')[0]}]` : comm;
    out[`${pid}@${rest[STAT_STARTTIME]}`] = { name, seconds };
  }
  return out;
}

/**
 * Cores (CPU seconds per second) each name used between two {@link cpuByProcess} readings
 * `seconds` apart, most first, those under `least` left out.
 */
export function coresByName(
  from: Readonly<Record<string, NamedCpu>>,
  to: Readonly<Record<string, NamedCpu>>,
  seconds: number,
  least = 0.01,
): { name: string; cores: number }[] {
  const byName = new Map<string, number>();
  for (const [key, p] of Object.entries(to)) {
    const used = p.seconds - (from[key]?.seconds ?? 0);
    if (used > 0) byName.set(p.name, (byName.get(p.name) ?? 0) + used);
  }
  return [...byName]
    .map(([name, used]) => ({ name, cores: Math.round((used / seconds) * 100) / 100 }))
    .filter((o) => o.cores >= least)
    .sort((a, b) => b.cores - a.cores || a.name.localeCompare(b.name));
}

/**
 * Resident set size of `pid` in KB (`VmRSS` in `/proc/<pid>/status`, the figure `ps -o rss=`
 * prints), or `undefined` when the process is gone or is a zombie.
 */
export function readRssKb(pid: number): number | undefined {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readProcFile(`/proc/${pid}/status`) ?? '');
  return m ? Number(m[1]) : undefined;
}

/**
 * Memory of one process from `/proc/<pid>/smaps_rollup`, in bytes. RSS counts every resident
 * page, shared ones (the node binary, libraries) once per process; PSS splits each shared page
 * between the processes sharing it, so PSS summed over processes is what they take together;
 * private is what this process alone holds (what ending it would free).
 */
export interface ProcessMemory {
  readonly rssBytes: number;
  readonly pssBytes: number;
  readonly privateBytes: number;
}

/** {@link ProcessMemory} of `pid`, or `undefined` when the process is gone (or not readable). */
export function readProcessMemory(pid: number): ProcessMemory | undefined {
  const text = readProcFile(`/proc/${pid}/smaps_rollup`);
  if (text === undefined) return undefined;
  const kb = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return {
    rssBytes: kb('Rss'),
    pssBytes: kb('Pss'),
    privateBytes: kb('Private_Clean') + kb('Private_Dirty'),
  };
}

/** Open file descriptors of `pid`, or `undefined` when the process is gone. */
export function countFds(pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/** The value of kernel setting `key` (`net.core.somaxconn`), trimmed; `undefined` where it does not exist. */
export function readSysctl(key: string): string | undefined {
  return readProcFile(`/proc/sys/${key.replaceAll('.', '/')}`)?.trim();
}

/** `MemAvailable` of the machine, bytes (`/proc/meminfo`). */
export function memAvailableBytes(): number {
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(readProcFile('/proc/meminfo') ?? '')?.[1] ?? 0) * 1024;
}
