/**
 * The `bench c10k` summary for people: this run's figures beside the article's part 2 figures
 * (mochiweb on Erlang, 2008), then connections, counts, latency and CPU.
 */

import { formatBytes } from '../../tools/format.js';
import { formatMs } from '../../tools/msggen/latency.js';
import type { C10kReport, PerConnection } from './report.js';

/** The article's part 2 figures (mochiweb on Erlang R12, 2008), for the summary. */
export const ARTICLE = {
  emptyMb: 40,
  at10kMb: 90,
  after10MinMb: 125,
  after24hMb: 250,
  hibernateMb: 78,
  /** (90 MB − 40 MB) / 10,000 connections. */
  deltaKbPerConn: 5,
  /** "80MB, or 8KB per user" with hibernate. */
  hibernateKbPerConn: 8,
} as const;

function mb(kb: number | null): string {
  return kb === null ? '—' : `${(kb / 1024).toFixed(1)} MB`;
}

function perConn(p: PerConnection | null, which: 'deltaBytes' | 'totalBytes'): string {
  return p === null ? '—' : `${formatBytes(p[which])} (${p[which]} bytes, ${p.connections} conns)`;
}

function secs(ms: number): string {
  const s = ms / 1000;
  return s >= 120 && s % 60 === 0 ? `${s / 60} min` : `${s.toFixed(s < 10 ? 1 : 0)} s`;
}

/** The end-of-run summary: this run beside the article's figures. */
export function formatC10kSummary(r: C10kReport): string {
  const s = r.settings;
  const m = r.memory;
  const row = (label: string, here: string, article: string): string =>
    `  ${label.padEnd(30)} ${here.padEnd(36)} ${article}`;
  const load = (l: readonly number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  const lines = [
    `bench c10k: ${s.connections} connections at ${s.rampRate || 'max'}/s, hold ${secs(s.holdMs)}, then ${s.rate} msg/s for ${secs(s.durationMs)}${r.interrupted ? ` — INTERRUPTED during ${r.interruptedIn}` : ''}`,
    `  command    ${r.commandLine}`,
    `  server     ${r.server.command ?? r.server.clientUrl ?? '—'}`,
    `  machine    ${r.machine.cpus} CPUs, node ${r.machine.node}; load average ${load(r.machine.loadAverageStart)} at start, ${load(r.machine.loadAverageEnd)} at end`,
    '',
    row('', 'Switchboard (this run)', 'article, part 2 (mochiweb, 2008)'),
    row('empty server RSS', mb(m.emptyRssKb), `${ARTICLE.emptyMb} MB`),
    row('RSS right after connecting', mb(m.connectedRssKb), ''),
    row(`RSS at ${s.connections} connections, idle`, mb(m.fullRssKb), `${ARTICLE.at10kMb} MB at 10k`),
    row(
      `RSS after ${secs(r.messages.sendSeconds * 1000)} of messages`,
      mb(m.finalRssKb),
      `${ARTICLE.after10MinMb} MB after 10 min; ~${ARTICLE.after24hMb} MB over 24 h`,
    ),
    row('peak RSS', mb(m.peakRssKb), `${ARTICLE.hibernateMb} MB with hibernate (24 h)`),
    row(
      'per connection, Δ from empty',
      perConn(m.perConnectionFull, 'deltaBytes'),
      `~${ARTICLE.deltaKbPerConn} KB`,
    ),
    row(
      'per connection, RSS / conns',
      perConn(m.perConnectionFull, 'totalBytes'),
      `~9 KB; ${ARTICLE.hibernateKbPerConn} KB with hibernate`,
    ),
    row('  after messages, Δ from empty', perConn(m.perConnectionFinal, 'deltaBytes'), ''),
    row('RSS after disconnect', mb(m.disconnectedRssKb), ''),
    '',
  ];
  const c = r.connections;
  lines.push(
    `  connections  ${c.opened} opened of ${c.requested} ${c.rampMs >= 0 ? `in ${(c.rampMs / 1000).toFixed(1)} s (${c.connectRate}/s)` : '(ramp not finished)'}, ${c.failed} failed, ${c.closed} closed by the server`,
  );
  const g = r.messages;
  lines.push(
    `  messages     sent ${g.sent} (API accepted) / delivered ${g.delivered} (API) / received ${g.chunks} (flood chunks): ${g.match ? 'match' : 'MISMATCH'}${g.failed > 0 ? `; ${g.failed} failed at the API` : ''}`,
    `  send rate    ${g.achievedRate} msg/s achieved of ${g.targetRate} asked, over ${g.sendSeconds.toFixed(1)} s${g.behind > 0 ? ` (fell behind by up to ${g.behind})` : ''}`,
  );
  const l = r.latency;
  if (l !== null && l.count > 0) {
    lines.push(
      `  latency      publish → receive, ${l.count} messages: p50 ${formatMs(l.p50)}  p90 ${formatMs(l.p90)}  p99 ${formatMs(l.p99)}  max ${formatMs(l.max)}`,
    );
  }
  const cpu = r.server.cpuSeconds;
  const f = (x: number | null): string => (x === null ? '—' : `${x.toFixed(2)} s`);
  lines.push(
    `  server CPU   ${f(cpu.total)} total, ${f(cpu.ramp)} while connecting, ${f(cpu.messages)} while sending${r.server.cpuPercentWhileSending !== null ? ` (${r.server.cpuPercentWhileSending}% of one core)` : ''}`,
    `  load gen CPU ${f(r.loadGenerator.cpuSeconds)} (msggen + memlog + flood workers); flood RSS ${r.loadGenerator.floodRssBytes === null ? '—' : formatBytes(r.loadGenerator.floodRssBytes)}`,
    `  load gen loop delay while sending ${r.loadGenerator.loopDelayMs === null ? '—' : `p99 ${r.loadGenerator.loopDelayMs.p99} ms, max ${r.loadGenerator.loopDelayMs.max} ms`} (a stall here is latency that is not the server's)`,
    `  server exit  ${r.server.spawned ? (r.server.exitSignal ?? r.server.exitCode ?? '—') : 'not ours (--server-url)'}`,
    `  files        ${[r.files.json, r.files.png, r.files.svg, r.files.memlog, r.files.serverLog].filter((x) => x !== null).join('  ')}`,
  );
  for (const p of r.problems) lines.push(`  PROBLEM      ${p}`);
  lines.push(
    `  result       ${r.ok ? 'OK' : 'FAILED'}${r.interrupted ? ' (interrupted: partial figures)' : ''}`,
  );
  return `${lines.join('\n')}\n`;
}
