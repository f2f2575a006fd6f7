/**
 * `memlog`: the article's "hideous one-liner" (part 2), as a tool. Every interval it writes one
 * line with the server's resident memory and its number of established connections:
 *
 *     Mon Oct 20 16:57:24 BST 2008<TAB>1224518244<TAB>40388<TAB>1<TAB>1
 *
 * Columns, tab-separated, in the article's order so its gnuplot/awk recipe still works
 * (`awk 'BEGIN{FS="\t"} ... $2 ... $3'`):
 *
 * 1. human date, as `date` prints it (`%a %b %e %H:%M:%S %Z %Y`; contains spaces, never tabs)
 * 2. unix time, whole seconds
 * 3. RSS in KB (the `ps -o rss=` figure), summed over the server processes (see below)
 * 4. ESTABLISHED TCP connections whose local port is the server port, at an address its
 *    listener covers (server side only: the client ends of loopback connections are not counted,
 *    nor a load generator's sockets that happen to use the port number as their source port)
 * 5. extra, after the article's columns: how many processes the RSS was summed over
 * 6. extra: PSS in KB summed over the same processes (`/proc/<pid>/smaps_rollup`): shared pages
 *    split between the processes sharing them, so unlike column 3 it does not count the node
 *    binary once per cluster worker; blank when smaps_rollup could not be read
 *
 * Which processes: with explicit pids, those. Otherwise every process holding any socket whose
 * local port is the port, listening or established, plus the Node cluster workers of those
 * processes. That covers a single server, SO_REUSEPORT groups, and Node's cluster mode, where
 * the primary holds the listening socket and the workers hold the accepted connections (and an
 * idle worker holds nothing on the port, hence the cluster-worker rule). Note that summing RSS
 * counts pages shared between those processes (the node binary, shared libraries) once per
 * process.
 *
 * {@link parseMemlog} reads this format back, and also the article's own lines, including copies
 * whose tabs became spaces.
 *
 * This folder is memlog and what draws its output: `sockets` finds a port's connections and
 * server processes in `/proc`, `chart` draws a memlog file as SVG or PNG (`switchboard chart`),
 * `chart-axis` picks its round ticks and labels.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidInputError, UnavailableError } from '../../errors.js';
import { readProcessMemory, readRssKb } from '../proc.js';
import { findServerProcesses, scanPort } from './sockets.js';

/** The article's interval: one line a minute. */
export const DEFAULT_MEMLOG_INTERVAL_MS = 60_000;

/** One line of a memlog. */
export interface Sample {
  /** Human-readable date as written (not re-parsed; `time` is the authority). */
  readonly date: string;
  /** Unix time in seconds. */
  readonly time: number;
  /** Resident memory of the server process(es), KB. */
  readonly rssKb: number;
  /** Established connections on the server port. */
  readonly connections: number;
  /** Processes summed into `rssKb`; `undefined` for logs written by the article's one-liner. */
  readonly processes: number | undefined;
  /** PSS of the same processes, KB; `undefined` for older logs or when it could not be read. */
  readonly pssKb?: number | undefined;
}

/** Formats `d` like `date(1)` in the C locale: `Mon Oct  5 16:57:24 BST 2008`. */
export function formatDate(d: Date): string {
  const parts = new Intl.DateTimeFormat('en-US', {
    weekday: 'short',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
    year: 'numeric',
    timeZoneName: 'short',
  }).formatToParts(d);
  const get = (type: Intl.DateTimeFormatPartTypes): string => parts.find((p) => p.type === type)?.value ?? '';
  const zone = get('timeZoneName').replace(/\s+/g, '');
  return `${get('weekday')} ${get('month')} ${get('day').padStart(2, ' ')} ${get('hour')}:${get('minute')}:${get('second')} ${zone} ${get('year')}`;
}

/** One memlog line for `s`, without the newline. */
export function formatSample(s: Sample): string {
  const cols = [s.date.replace(/\t/g, ' '), String(s.time), String(s.rssKb), String(s.connections)];
  if (s.processes !== undefined) {
    cols.push(String(s.processes));
    if (s.pssKb !== undefined) cols.push(String(s.pssKb));
  }
  return cols.join('\t');
}

const UINT = /^\d+$/;
const UNIX_TIME = /^\d+(?:\.\d+)?$/;

/**
 * Reads memlog text into samples, in file order. Accepts our lines, the article's one-liner
 * output (`ps` pads RSS with spaces), and copies whose tabs were turned into spaces (the unix
 * time is then the first number of nine or more digits after the date). Blank lines and lines
 * starting with `#` are skipped; columns after the sixth are ignored.
 *
 * @param source Named in error messages (a file name).
 * @throws InvalidInputError naming the line number and quoting the line.
 */
export function parseMemlog(text: string, source = 'memlog'): Sample[] {
  const samples: Sample[] = [];
  const lines = text.split(/\r?\n/);
  for (const [idx, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const sample = parseLine(raw);
    if (sample === undefined) {
      const shown = line.length > 80 ? `${line.slice(0, 80)}…` : line;
      throw new InvalidInputError(
        `${source} line ${idx + 1}: expected "date<TAB>unix time<TAB>RSS KB<TAB>connections", got ${JSON.stringify(shown)}`,
      );
    }
    samples.push(sample);
  }
  return samples;
}

function parseLine(raw: string): Sample | undefined {
  let date: string;
  let nums: string[];
  if (raw.includes('\t')) {
    const fields = raw.split('\t').map((f) => f.trim());
    date = fields[0] ?? '';
    nums = fields.slice(1);
  } else {
    const tokens = raw.trim().split(/\s+/);
    const at = tokens.findIndex((t, i) => i > 0 && UINT.test(t) && t.length >= 9);
    if (at === -1) return undefined;
    date = tokens.slice(0, at).join(' ');
    nums = tokens.slice(at);
  }
  const [time, rss, conns, procs, pss] = nums;
  if (time === undefined || rss === undefined || conns === undefined) return undefined;
  if (!UNIX_TIME.test(time) || !UINT.test(rss) || !UINT.test(conns)) return undefined;
  if (procs !== undefined && procs !== '' && !UINT.test(procs)) return undefined;
  if (pss !== undefined && pss !== '' && !UINT.test(pss)) return undefined;
  return {
    date,
    time: Number(time),
    rssKb: Number(rss),
    connections: Number(conns),
    processes: procs === undefined || procs === '' ? undefined : Number(procs),
    ...(pss === undefined || pss === '' ? {} : { pssKb: Number(pss) }),
  };
}

/** What to measure. */
export interface SampleTarget {
  /** The server's TCP port (connections are counted where this is the local port). */
  readonly port: number;
  /** Processes to measure; when absent or empty, found from the port each time. */
  readonly pids?: readonly number[];
}

/** A measurement, or why there is none. */
export type SampleResult =
  | { readonly sample: Sample }
  | { readonly sample: undefined; readonly problem: string };

/**
 * Takes one sample now. Processes are looked up afresh every time (without explicit pids), so
 * cluster workers that start or die between samples are followed.
 */
export async function takeSample(target: SampleTarget, at?: Date): Promise<SampleResult> {
  const explicit = target.pids !== undefined && target.pids.length > 0;
  const scan = await scanPort(target.port, !explicit);
  let pids: readonly number[];
  let unreadable = 0;
  if (explicit) {
    pids = target.pids ?? [];
  } else {
    const owners = await findServerProcesses(scan.inodes);
    pids = owners.pids;
    unreadable = owners.unreadable;
  }
  // Timestamp the sample when RSS is read: the port scan before may take seconds on a busy box.
  const now = at ?? new Date();
  let rssKb = 0;
  let pssKb: number | undefined = 0;
  let processes = 0;
  for (const pid of pids) {
    const rss = readRssKb(pid);
    if (rss === undefined) continue;
    rssKb += rss;
    processes++;
    const mem = readProcessMemory(pid);
    pssKb = mem === undefined || pssKb === undefined ? undefined : pssKb + Math.round(mem.pssBytes / 1024);
  }
  if (processes === 0) {
    let problem: string;
    if (explicit) problem = `process ${pids.join(', ')} not running`;
    else if (scan.listening === 0) problem = `nothing is listening on port ${target.port}`;
    else
      problem =
        `port ${target.port} is listening but its process was not found` +
        (unreadable > 0
          ? ` (${unreadable} processes' /proc/<pid>/fd unreadable: run as that user or pass --pid)`
          : '');
    return { sample: undefined, problem };
  }
  const sample: Sample = {
    date: formatDate(now),
    time: Math.floor(now.getTime() / 1000),
    rssKb,
    connections: scan.established,
    processes,
    ...(pssKb === undefined ? {} : { pssKb }),
  };
  return { sample };
}

/** Options for {@link runMemlog}. */
export interface MemlogOptions extends SampleTarget {
  /** Time between samples, ms (default one minute, as the article). */
  readonly everyMs?: number;
  /** Stop once this long has passed since the first sample, ms (a sample due exactly then is taken). */
  readonly durationMs?: number;
  /** Stop after this many samples. */
  readonly samples?: number;
  /** Stop when aborted; resolves normally with what was written. */
  readonly signal?: AbortSignal;
  /** Receives each sample and its formatted line (no newline); awaited before the next. */
  readonly onSample: (sample: Sample, line: string) => void | Promise<void>;
  /** Told when a sample is skipped because the server was not found (it may be restarting). */
  readonly onSkip?: (problem: string) => void;
}

/** What {@link runMemlog} did. */
export interface MemlogSummary {
  readonly samples: number;
  readonly skipped: number;
  /** The sample with the most RSS, if any. */
  readonly peak: Sample | undefined;
}

/**
 * Samples until `samples`, `durationMs` or `signal` says stop. Samples are scheduled on a fixed
 * grid from the start (start, start + every, ...) so the interval does not drift by the time a
 * sample takes; slots missed by a slow sample are skipped, not made up in a burst.
 *
 * @throws UnavailableError when the very first sample finds no server: a typo in the port
 *   should fail loudly, while a server that disappears later is reported through `onSkip`.
 */
export async function runMemlog(opts: MemlogOptions): Promise<MemlogSummary> {
  const every = opts.everyMs ?? DEFAULT_MEMLOG_INTERVAL_MS;
  const start = Date.now();
  let taken = 0;
  let skipped = 0;
  let peak: Sample | undefined;
  for (let slot = 0; ; ) {
    if (opts.signal?.aborted) break;
    const result = await takeSample(opts);
    if (result.sample === undefined) {
      if (taken === 0 && skipped === 0) throw new UnavailableError(result.problem);
      skipped++;
      opts.onSkip?.(result.problem);
    } else {
      taken++;
      if (peak === undefined || result.sample.rssKb > peak.rssKb) peak = result.sample;
      await opts.onSample(result.sample, formatSample(result.sample));
    }
    if (opts.samples !== undefined && taken >= opts.samples) break;
    const now = Date.now();
    // The next grid point; after an overrun the missed ones are skipped rather than burst.
    slot = Math.max(slot + 1, Math.ceil((now - start) / every));
    const due = start + slot * every;
    if (opts.durationMs !== undefined && due - start > opts.durationMs) break;
    try {
      await sleep(Math.max(0, due - now), undefined, { signal: opts.signal });
    } catch {
      break; // aborted
    }
  }
  return { samples: taken, skipped, peak };
}
