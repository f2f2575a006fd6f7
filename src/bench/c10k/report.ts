/**
 * The `bench c10k` report: its JSON shape, the count check (every message the API accepted was
 * delivered once and received once), and how the run's readings become the report's figures.
 */
import os from 'node:os';
import type { FloodSummary } from '../../tools/flood/report.js';
import type { Sample } from '../../tools/memlog/memlog.js';
import type { LatencySummary } from '../../tools/msggen/latency.js';
import type { MsggenSummary } from '../../tools/msggen/msggen.js';
import type { ResolvedC10kOptions } from './options.js';

/** Where a run is. `interruptedIn` names the phase a SIGINT arrived in. */
export type C10kPhase = 'server' | 'baseline' | 'ramp' | 'hold' | 'messages' | 'drain' | 'stop';

/** Moments at which the server's RSS, connections and CPU time are read. */
export type MarkName = 'empty' | 'connected' | 'full' | 'after-messages' | 'drained' | 'disconnected';

/** One reading at a named moment. */
/** The settings a report records: the scenario's knobs, not its file paths. */
export type C10kSettings = Pick<
  ResolvedC10kOptions,
  | 'connections'
  | 'rampRate'
  | 'rate'
  | 'durationMs'
  | 'holdMs'
  | 'sampleEveryMs'
  | 'drainMs'
  | 'batch'
  | 'seed'
  | 'nodeArgs'
  | 'serverArgs'
  | 'title'
>;

export interface PhaseMark {
  readonly mark: MarkName;
  /** Milliseconds since the run began. */
  readonly elapsedMs: number;
  readonly rssKb: number | null;
  /** Established connections on the client port. */
  readonly connections: number | null;
  readonly serverCpuSeconds: number | null;
}

/** RSS per connection, two ways. */
export interface PerConnection {
  /** (RSS − empty-server RSS) / connections: what each connection adds. */
  readonly deltaBytes: number;
  /** RSS / connections: the article's "8KB per user". */
  readonly totalBytes: number;
  readonly connections: number;
}

/** What `runC10k` resolves to and writes as JSON. */
export interface C10kReport {
  readonly kind: 'switchboard-bench-c10k';
  readonly version: 1;
  /** No problems: counts match, nothing failed, the server exited 0. */
  readonly ok: boolean;
  readonly problems: readonly string[];
  readonly interrupted: boolean;
  readonly interruptedIn: C10kPhase | null;
  readonly commandLine: string;
  readonly startedAt: string;
  readonly endedAt: string;
  readonly elapsedMs: number;
  /** The run's settings, as resolved (defaults filled in). */
  readonly settings: C10kSettings;
  readonly machine: {
    readonly cpus: number;
    readonly node: string;
    readonly memTotalBytes: number;
    /** 1, 5 and 15 minute load averages when the run began and ended. */
    readonly loadAverageStart: readonly number[];
    readonly loadAverageEnd: readonly number[];
  };
  readonly server: {
    readonly spawned: boolean;
    readonly pids: readonly number[];
    readonly clientUrl: string | null;
    readonly apiUrl: string | null;
    readonly command: string | null;
    readonly exitCode: number | null;
    readonly exitSignal: string | null;
    /** CPU seconds (user + system, /proc/<pid>/stat): whole life, connecting, sending. */
    readonly cpuSeconds: {
      readonly total: number | null;
      readonly ramp: number | null;
      readonly messages: number | null;
    };
    /** Server CPU while messages were sent, as % of one core. */
    readonly cpuPercentWhileSending: number | null;
  };
  readonly memory: {
    readonly emptyRssKb: number | null;
    /** Right after the last connection opened. */
    readonly connectedRssKb: number | null;
    /** At full connections, after the hold, before any message. */
    readonly fullRssKb: number | null;
    readonly peakRssKb: number | null;
    /** After the messages and the drain, connections still open. */
    readonly finalRssKb: number | null;
    /** After flood closed its connections, before the server stopped. */
    readonly disconnectedRssKb: number | null;
    readonly perConnectionFull: PerConnection | null;
    readonly perConnectionFinal: PerConnection | null;
    readonly samples: number;
    readonly skipped: number;
  };
  /** When each phase began, ms since the run began. */
  readonly phases: readonly { readonly phase: C10kPhase; readonly startMs: number }[];
  readonly marks: readonly PhaseMark[];
  readonly connections: {
    readonly requested: number;
    readonly opened: number;
    readonly openAtStop: number;
    readonly failed: number;
    readonly closed: number;
    readonly errors: Readonly<Record<string, number>>;
    readonly closes: Readonly<Record<string, number>>;
    readonly rampMs: number;
    readonly connectRate: number;
  };
  readonly messages: {
    readonly planned: number;
    /** Accepted by the API (2xx). */
    readonly sent: number;
    readonly failed: number;
    readonly errors: Readonly<Record<string, number>>;
    /** Sum of the API's `delivered` answers. */
    readonly delivered: number;
    /** Message chunks flood received. */
    readonly chunks: number;
    /** sent == delivered == chunks (or delivered == chunks when not every id was connected). */
    readonly match: boolean;
    readonly targetRate: number;
    readonly achievedRate: number;
    readonly sendSeconds: number;
    readonly behind: number;
    readonly apiLatency: LatencySummary | null;
  };
  /** Publish → receive, from the send stamps (null when no message was sent). */
  readonly latency: LatencySummary | null;
  readonly loadGenerator: {
    /** This process (msggen, memlog) plus flood's workers, CPU seconds. */
    readonly cpuSeconds: number | null;
    /** Flood processes' RSS just before they stopped. */
    readonly floodRssBytes: number | null;
    /**
     * This process's event-loop delay while sending (ms, p99 and max): msggen sends and times its
     * requests here, so a stall of this process shows as latency that is not the server's.
     */
    readonly loopDelayMs: { readonly p99: number; readonly max: number } | null;
  };
  readonly files: {
    readonly json: string;
    readonly png: string | null;
    readonly svg: string | null;
    readonly memlog: string;
    readonly serverLog: string | null;
  };
}

/** Counts to compare. */
export interface CountCheck {
  readonly sent: number;
  readonly delivered: number;
  readonly chunks: number;
  /** Every id in 1..connections had exactly one connection for the whole run. */
  readonly exact: boolean;
}

/**
 * `undefined` when the counts agree, else the MISMATCH line. With one connection per id every
 * accepted message is delivered once (sent == delivered); whatever the connections, every
 * delivery must arrive (delivered == chunks).
 */
export function countMismatch(c: CountCheck): string | undefined {
  const agree = c.delivered === c.chunks && (!c.exact || c.sent === c.delivered);
  if (agree) return undefined;
  const why = c.exact ? 'expected sent == delivered == received' : 'expected delivered == received';
  return `MISMATCH: sent ${c.sent}, delivered ${c.delivered} (API), received ${c.chunks} (flood chunks); ${why}`;
}

/** RSS per connection at a reading; null without the readings or with no connection. */
function perConnection(
  rssKb: number | null,
  emptyKb: number | null,
  conns: number | null,
): PerConnection | null {
  if (rssKb === null || emptyKb === null || conns === null || conns <= 0) return null;
  return {
    deltaBytes: Math.round(((rssKb - emptyKb) * 1024) / conns),
    totalBytes: Math.round((rssKb * 1024) / conns),
    connections: conns,
  };
}

/** What a run recorded: the readings {@link buildC10kReport} turns into the report. */
export interface RunRecord {
  readonly settings: C10kReport['settings'];
  readonly commandLine: string;
  readonly startedAt: Date;
  readonly elapsedMs: number;
  readonly loadAverageStart: readonly number[];
  /** Failures noticed while running (the count check adds its own). */
  readonly problems: readonly string[];
  readonly interruptedIn: C10kPhase | null;
  /** The ramp ran to its end (connection failures count only then). */
  readonly rampComplete: boolean;
  readonly flood: FloodSummary | undefined;
  readonly msggen: MsggenSummary | undefined;
  readonly phases: C10kReport['phases'];
  readonly marks: readonly PhaseMark[];
  readonly samples: readonly Sample[];
  readonly skipped: number;
  readonly server: Pick<C10kReport['server'], 'spawned' | 'pids' | 'clientUrl' | 'apiUrl' | 'command'> & {
    readonly exit: { readonly code: number | null; readonly signal: string | null } | undefined;
  };
  readonly loadGenCpuSeconds: number | null;
  readonly loadGenLoopDelayMs: C10kReport['loadGenerator']['loopDelayMs'];
  readonly files: C10kReport['files'];
}

/**
 * The report from a run's readings: counts checked (a MISMATCH line first among the problems),
 * memory per connection, CPU per phase, and `ok` when no problem was found.
 */
export function buildC10kReport(r: RunRecord): C10kReport {
  const o = r.settings;
  const mark = (name: MarkName): PhaseMark | undefined => r.marks.find((m) => m.mark === name);
  const f = r.flood;
  const g = r.msggen;
  const interrupted = r.interruptedIn !== null;
  const problems = [...r.problems];

  // Connections: judged only once the ramp was allowed to finish.
  const opened = f?.opened ?? 0;
  const failed = f?.failed ?? 0;
  const closed = f?.closed ?? 0;
  if (r.rampComplete && failed > 0)
    problems.push(`${failed} connections failed: ${JSON.stringify(f?.errors)}`);
  if (closed > 0)
    problems.push(`${closed} connections were closed by the server: ${JSON.stringify(f?.closes)}`);
  if (g !== undefined && g.failed > 0)
    problems.push(`${g.failed} messages failed at the API: ${JSON.stringify(g.errors)}`);
  const exact = opened === o.connections && failed === 0 && closed === 0;
  const sent = g?.sent ?? 0;
  const delivered = g?.delivered ?? 0;
  const chunks = f?.chunks ?? 0;
  const mismatch = countMismatch({ sent, delivered, chunks, exact });
  if (mismatch !== undefined) problems.unshift(mismatch);
  const latency = f !== undefined && f.latency.count > 0 ? f.latency : null;
  if (sent > 0 && chunks > 0 && (latency?.count ?? 0) !== chunks) {
    problems.push(
      `latency was measured for ${latency?.count ?? 0} of ${chunks} messages (send stamps not found)`,
    );
  }

  const rss = (name: MarkName): number | null => mark(name)?.rssKb ?? null;
  const cpu = (name: MarkName): number | null => mark(name)?.serverCpuSeconds ?? null;
  const diff = (a: number | null, b: number | null): number | null =>
    a === null || b === null ? null : Math.round((a - b) * 100) / 100;
  let peak: number | null = null;
  for (const s of r.samples) if (peak === null || s.rssKb > peak) peak = s.rssKb;
  for (const m of r.marks) if (m.rssKb !== null && (peak === null || m.rssKb > peak)) peak = m.rssKb;
  const lastCpu = [...r.marks].reverse().find((m) => m.serverCpuSeconds !== null)?.serverCpuSeconds ?? null;
  const sendCpu = diff(cpu('after-messages'), cpu('full'));
  const sendSeconds = g === undefined ? 0 : g.elapsedMs / 1000;
  const exit = r.server.exit;
  const full = mark('full');
  const drained = mark('drained');

  return {
    kind: 'switchboard-bench-c10k',
    version: 1,
    ok: problems.length === 0,
    problems,
    interrupted,
    interruptedIn: r.interruptedIn,
    commandLine: r.commandLine,
    startedAt: r.startedAt.toISOString(),
    endedAt: new Date().toISOString(),
    elapsedMs: r.elapsedMs,
    settings: { ...o, seed: g?.seed ?? o.seed },
    machine: {
      cpus: os.cpus().length,
      node: process.version,
      memTotalBytes: os.totalmem(),
      loadAverageStart: r.loadAverageStart.map((x) => Math.round(x * 100) / 100),
      loadAverageEnd: os.loadavg().map((x) => Math.round(x * 100) / 100),
    },
    server: {
      spawned: r.server.spawned,
      pids: r.server.pids,
      clientUrl: r.server.clientUrl,
      apiUrl: r.server.apiUrl,
      command: r.server.command,
      exitCode: exit?.code ?? null,
      exitSignal: exit?.signal ?? null,
      cpuSeconds: { total: lastCpu, ramp: diff(cpu('connected'), cpu('empty')), messages: sendCpu },
      cpuPercentWhileSending:
        sendCpu === null || sendSeconds <= 0 ? null : Math.round((sendCpu / sendSeconds) * 1000) / 10,
    },
    memory: {
      emptyRssKb: rss('empty'),
      connectedRssKb: rss('connected'),
      fullRssKb: rss('full'),
      peakRssKb: peak,
      finalRssKb: rss('drained'),
      disconnectedRssKb: rss('disconnected'),
      perConnectionFull: perConnection(rss('full'), rss('empty'), full?.connections ?? null),
      perConnectionFinal: perConnection(rss('drained'), rss('empty'), drained?.connections ?? null),
      samples: r.samples.length,
      skipped: r.skipped,
    },
    phases: r.phases,
    marks: r.marks,
    connections: {
      requested: o.connections,
      opened,
      openAtStop: f?.open ?? 0,
      failed,
      closed,
      errors: f?.errors ?? {},
      closes: f?.closes ?? {},
      rampMs: f?.rampMs ?? -1,
      connectRate: f?.connectRate ?? 0,
    },
    messages: {
      planned: g?.planned ?? 0,
      sent,
      failed: g?.failed ?? 0,
      errors: g?.errors ?? {},
      delivered,
      chunks,
      match: mismatch === undefined,
      targetRate: o.rate,
      achievedRate: g?.sentPerSecond ?? 0,
      sendSeconds,
      behind: g?.behind ?? 0,
      apiLatency: g?.apiLatency ?? null,
    },
    latency,
    loadGenerator: {
      cpuSeconds: r.loadGenCpuSeconds,
      floodRssBytes: f?.rss ?? null,
      loopDelayMs: r.loadGenLoopDelayMs,
    },
    files: r.files,
  };
}
