/**
 * Flood figures for people and machines: the sum of every worker's {@link FloodStats}, the
 * periodic report (the article's `{Open, Closed, Chunks, Bytes}` line, plus failures and
 * latency) and the end-of-run summary.
 */

import { formatBytes } from '../format.js';
import { formatMs, LatencyHistogram, type LatencySummary } from '../msggen/latency.js';
import type { FloodStats } from './pool.js';

/** One report: figures summed over all processes at `elapsedMs`. */
export interface FloodReport {
  readonly elapsedMs: number;
  /** True while connections are still being begun. */
  readonly ramping: boolean;
  /** Connections begun so far. */
  readonly started: number;
  /** Begun, waiting for the response head. */
  readonly connecting: number;
  /** Got `200` and still open (the article's Active). */
  readonly open: number;
  /** Got `200`, ever. */
  readonly opened: number;
  /** Opened, then ended by the server or the network (flood stopping does not count). */
  readonly closed: number;
  /** Never opened: connect errors, non-200 statuses, bad responses. */
  readonly failed: number;
  /** Welcome chunks, one per stream. */
  readonly welcomes: number;
  /** Messages: chunks after the welcome, or SSE events with data. */
  readonly chunks: number;
  /** Named SSE events (control, not messages). */
  readonly controls: number;
  /** Bytes received, response heads included. */
  readonly bytes: number;
  /** Failures by code (`ECONNREFUSED`, `EADDRNOTAVAIL`, `EMFILE`, `HTTP_503`, …). */
  readonly errors: Readonly<Record<string, number>>;
  /** Closes by reason (`EOF`, `ECONNRESET`, …). */
  readonly closes: Readonly<Record<string, number>>;
  /** Publish → receive latency of stamped messages (count 0 when none were stamped). */
  readonly latency: LatencySummary;
  /** Resident memory of all flood processes (bytes). */
  readonly rss: number;
  /** Growth of that since the first connection, per open connection (bytes); null with none open. */
  readonly rssPerConnection: number | null;
  /** Growth of the live JS heap since the first connection, per open connection (bytes); null with none open. */
  readonly heapPerConnection: number | null;
  /** Processes holding connections. */
  readonly procs: number;
}

/** Adds `b`'s tallies into `a`. */
function addTally(a: Record<string, number>, b: Readonly<Record<string, number>>): void {
  for (const [k, v] of Object.entries(b)) a[k] = (a[k] ?? 0) + v;
}

/** The sum of several processes' figures (latency merged exactly, bucket by bucket). */
export function sumStats(list: readonly FloodStats[]): FloodStats {
  const latency = new LatencyHistogram();
  const out: FloodStats = {
    started: 0,
    connecting: 0,
    open: 0,
    opened: 0,
    closed: 0,
    failed: 0,
    welcomes: 0,
    chunks: 0,
    controls: 0,
    bytes: 0,
    errors: {},
    closes: {},
    latency: latency.toJSON(),
    rss: 0,
    rssBase: 0,
    heapUsed: 0,
    heapBase: 0,
    rampMs: list.length > 0 ? 0 : -1,
  };
  for (const s of list) {
    out.started += s.started;
    out.connecting += s.connecting;
    out.open += s.open;
    out.opened += s.opened;
    out.closed += s.closed;
    out.failed += s.failed;
    out.welcomes += s.welcomes;
    out.chunks += s.chunks;
    out.controls += s.controls;
    out.bytes += s.bytes;
    addTally(out.errors, s.errors);
    addTally(out.closes, s.closes);
    latency.merge(s.latency);
    out.rss += s.rss;
    out.rssBase += s.rssBase;
    out.heapUsed += s.heapUsed;
    out.heapBase += s.heapBase;
    out.rampMs = out.rampMs < 0 || s.rampMs < 0 ? -1 : Math.max(out.rampMs, s.rampMs);
  }
  out.latency = latency.toJSON();
  return out;
}

/** A report from summed figures. */
export function toReport(stats: FloodStats, elapsedMs: number, procs: number): FloodReport {
  return {
    elapsedMs: Math.round(elapsedMs),
    ramping: stats.rampMs < 0,
    started: stats.started,
    connecting: stats.connecting,
    open: stats.open,
    opened: stats.opened,
    closed: stats.closed,
    failed: stats.failed,
    welcomes: stats.welcomes,
    chunks: stats.chunks,
    controls: stats.controls,
    bytes: stats.bytes,
    errors: stats.errors,
    closes: stats.closes,
    latency: LatencyHistogram.from(stats.latency).summary(),
    rss: stats.rss,
    rssPerConnection: stats.open > 0 ? Math.round((stats.rss - stats.rssBase) / stats.open) : null,
    heapPerConnection: stats.open > 0 ? Math.round((stats.heapUsed - stats.heapBase) / stats.open) : null,
    procs,
  };
}

function tallyText(t: Readonly<Record<string, number>>): string {
  return Object.entries(t)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

/**
 * The periodic line, in the article's shape first:
 * `[  10.0s] {open, closed, failed, chunks, bytes} = {10000, 0, 0, 5912, 1183620}` then
 * what is still connecting, latency when messages were stamped, and memory per connection.
 */
export function formatReport(r: FloodReport): string {
  const t = `[${(r.elapsedMs / 1000).toFixed(1).padStart(7)}s]`;
  const parts = [
    `${t} {open, closed, failed, chunks, bytes} = {${r.open}, ${r.closed}, ${r.failed}, ${r.chunks}, ${r.bytes}}`,
  ];
  if (r.ramping || r.connecting > 0) parts.push(`connecting ${r.connecting}`);
  if (r.latency.count > 0) {
    parts.push(
      `latency p50 ${formatMs(r.latency.p50)} p99 ${formatMs(r.latency.p99)} max ${formatMs(r.latency.max)}`,
    );
  }
  if (r.rssPerConnection !== null) parts.push(`${formatBytes(r.rssPerConnection)}/conn`);
  return parts.join('  ');
}

/** The live progress text while ramping up (no timestamp; the progress line adds rate and ETA). */
export function formatProgress(r: FloodReport): string {
  return `open ${r.open} connecting ${r.connecting} failed ${r.failed} chunks ${r.chunks}`;
}

/** The end-of-run summary, several lines. */
export function formatSummary(s: FloodSummary): string {
  const lines = [
    `flood: ${s.target}`,
    `  connections  ${s.opened} opened of ${s.count} (${s.open} open at the end), ${s.closed} closed by the server, ${s.failed} failed`,
    `  ramp         ${s.rampMs >= 0 ? `${(s.rampMs / 1000).toFixed(1)}s` : 'not finished'}, ${s.connectRate} connections/s; ${s.procs} process(es), ${s.sources > 0 ? `${s.sources} source address(es)${s.autoSources ? ' (chosen automatically)' : ''}` : 'the default source address'}`,
    `  received     ${s.chunks} messages, ${s.welcomes} welcomes${s.controls > 0 ? `, ${s.controls} control events` : ''}, ${formatBytes(s.bytes)} (${s.bytes} bytes)`,
  ];
  if (s.latency.count > 0) {
    const l = s.latency;
    lines.push(
      `  latency      ${l.count} stamped: p50 ${formatMs(l.p50)}  p90 ${formatMs(l.p90)}  p99 ${formatMs(l.p99)}  max ${formatMs(l.max)}  mean ${formatMs(l.mean)}`,
    );
  }
  if (Object.keys(s.errors).length > 0) lines.push(`  failures     ${tallyText(s.errors)}`);
  if (Object.keys(s.closes).length > 0) lines.push(`  closes       ${tallyText(s.closes)}`);
  lines.push(
    `  memory       ${formatBytes(s.rss)} RSS in ${s.procs} process(es)${s.rssPerConnection !== null ? `, ${formatBytes(s.rssPerConnection)} (${s.rssPerConnection} bytes) per open connection` : ''}`,
  );
  for (const w of s.workerErrors) lines.push(`  worker error ${w}`);
  lines.push(`  stopped by   ${s.stoppedBy} after ${(s.elapsedMs / 1000).toFixed(1)}s`);
  return `${lines.join('\n')}\n`;
}

/** What `runFlood` resolves to: the last figures, with the memory and `open` taken just before stopping. */
export interface FloodSummary extends FloodReport {
  /** The template or URL file. */
  readonly target: string;
  /** Connections asked for. */
  readonly count: number;
  /** Time to begin every connection (ms); -1 when stopped first. */
  readonly rampMs: number;
  /** Connections opened per second during the ramp. */
  readonly connectRate: number;
  readonly sources: number;
  readonly autoSources: boolean;
  readonly warnings: readonly string[];
  /** Workers that died or failed, with what they said. */
  readonly workerErrors: readonly string[];
  /** `signal` (SIGINT/abort), `duration`, or `idle` (every connection ended). */
  readonly stoppedBy: 'signal' | 'duration' | 'idle';
}
