/**
 * The `bench c1m` chart: the article's Ganglia picture for the whole box. Memory by role (PSS of
 * the gateways, NATS, routers + primary, the flood; the kernel's slab; the box's used memory) on
 * the left axis, connections on the right, the run's phases drawn behind.
 */

import { escapeXml, svgToPng } from '../../tools/memlog/chart.js';
import { formatCountLabel, formatTick, pairedAxes, zeroBasedAxis } from '../../tools/memlog/chart-axis.js';
import type { C1mSample } from './memory.js';

/** One phase, in milliseconds since the run started. */
export interface C1mSpan {
  readonly label: string;
  readonly fromMs: number;
  readonly toMs: number;
  readonly shade: boolean;
}

interface Series {
  readonly label: string;
  readonly color: string;
  readonly value: (s: C1mSample) => number;
  readonly dashed?: boolean;
}

const GB = 1024 ** 3;

const SERIES: readonly Series[] = [
  {
    label: 'box: used (MemTotal − MemAvailable)',
    color: '#444444',
    value: (s) => s.kernel.memTotalBytes - s.kernel.memAvailableBytes,
  },
  { label: 'gateways PSS', color: '#1f6fb4', value: (s) => s.roles.gateways.pssBytes },
  { label: 'kernel slab', color: '#d62728', value: (s) => s.kernel.slabBytes },
  { label: 'NATS PSS', color: '#2ca02c', value: (s) => s.roles.nats.pssBytes },
  {
    label: 'routers + primary PSS',
    color: '#9467bd',
    value: (s) => s.roles.routers.pssBytes + s.roles.primary.pssBytes,
  },
  { label: 'flood (load generator) PSS', color: '#ff7f0e', value: (s) => s.roles.flood.pssBytes },
];

const W = 1000;
const H = 560;
const LEFT = 70;
const RIGHT = 80;
const TOP = 50;
const BOTTOM = 130;

/** The chart as SVG and PNG. */
export function renderC1mChart(
  samples: readonly C1mSample[],
  title: string,
  spans: readonly C1mSpan[],
): { svg: string; png: Buffer } {
  const svg = renderC1mSvg(samples, title, spans);
  return { svg, png: svgToPng(svg) };
}

export function renderC1mSvg(
  samples: readonly C1mSample[],
  title: string,
  spans: readonly C1mSpan[],
): string {
  const pw = W - LEFT - RIGHT;
  const ph = H - TOP - BOTTOM;
  const t0 = samples[0]?.elapsedMs ?? 0;
  const tEnd = Math.max(t0 + 1000, samples.at(-1)?.elapsedMs ?? 0);
  const useMinutes = (tEnd - t0) / 1000 > 600;
  const unit = useMinutes ? 60_000 : 1000;
  const xAxis = zeroBasedAxis((tEnd - t0) / unit, 4, 10);
  let memMax = 0;
  let connMax = 0;
  for (const s of samples) {
    for (const series of SERIES) memMax = Math.max(memMax, series.value(s) / GB);
    connMax = Math.max(connMax, s.clientConnections);
  }
  const [yAxis, cAxis] = pairedAxes(memMax, connMax, true);
  const x = (ms: number): number => LEFT + (((ms - t0) / unit) * pw) / xAxis.max;
  const y = (gb: number): number => TOP + ph - (gb * ph) / yAxis.max;
  const yc = (n: number): number => TOP + ph - (n * ph) / cAxis.max;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="28" text-anchor="middle" font-size="16">${escapeXml(title)}</text>`,
  ];
  for (const s of spans) {
    const x0 = Math.max(LEFT, x(s.fromMs));
    const x1 = Math.min(LEFT + pw, x(s.toMs));
    if (x1 <= x0) continue;
    if (s.shade) {
      out.push(
        `<rect x="${x0.toFixed(1)}" y="${TOP}" width="${(x1 - x0).toFixed(1)}" height="${ph}" fill="#1f6fb4" fill-opacity="0.07"/>`,
      );
    }
    out.push(
      `<line x1="${x0.toFixed(1)}" y1="${TOP}" x2="${x0.toFixed(1)}" y2="${TOP + ph}" stroke="#9a9a9a" stroke-dasharray="4 3"/>`,
    );
    if (s.label.length * 11 * 0.6 <= x1 - x0 - 6) {
      out.push(
        `<text x="${(x0 + 4).toFixed(1)}" y="${TOP + 14}" font-size="11" fill="#555555">${escapeXml(s.label)}</text>`,
      );
    }
  }
  for (const [i, v] of yAxis.ticks.entries()) {
    const yy = y(v).toFixed(1);
    out.push(`<line x1="${LEFT}" y1="${yy}" x2="${LEFT + pw}" y2="${yy}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${LEFT - 6}" y="${yy}" text-anchor="end" dy="4">${formatTick(v, yAxis.step)}</text>`);
    const c = cAxis.ticks[i] ?? 0;
    out.push(
      `<text x="${LEFT + pw + 6}" y="${yy}" dy="4">${escapeXml(formatCountLabel(c, cAxis.max))}</text>`,
    );
  }
  for (const v of xAxis.ticks) {
    const xx = (LEFT + (v * pw) / xAxis.max).toFixed(1);
    out.push(`<text x="${xx}" y="${TOP + ph + 18}" text-anchor="middle">${formatTick(v, xAxis.step)}</text>`);
  }
  out.push(
    `<text x="${LEFT + pw / 2}" y="${TOP + ph + 36}" text-anchor="middle">${useMinutes ? 'Minutes' : 'Seconds'} elapsed</text>`,
    `<text x="18" y="${TOP + ph / 2}" text-anchor="middle" transform="rotate(-90 18 ${TOP + ph / 2})">Memory (GB)</text>`,
    `<text x="${W - 14}" y="${TOP + ph / 2}" text-anchor="middle" transform="rotate(90 ${W - 14} ${TOP + ph / 2})">Connections</text>`,
    `<rect x="${LEFT}" y="${TOP}" width="${pw}" height="${ph}" fill="none" stroke="#888888"/>`,
  );
  const line = (pts: string, color: string, dashed = false): string =>
    `<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ''}/>`;
  for (const series of SERIES) {
    const pts = samples.map((s) => `${x(s.elapsedMs).toFixed(1)},${y(series.value(s) / GB).toFixed(1)}`);
    out.push(line(pts.join(' '), series.color, series.dashed));
  }
  const conns = samples.map((s) => `${x(s.elapsedMs).toFixed(1)},${yc(s.clientConnections).toFixed(1)}`);
  out.push(line(conns.join(' '), '#000000', true));
  const legend: [string, string, boolean][] = [
    ...SERIES.map((s): [string, string, boolean] => [s.label, s.color, false]),
    ['connections (right axis)', '#000000', true],
  ];
  for (const [i, [label, color, dashed]] of legend.entries()) {
    const lx = LEFT + (i % 3) * 290;
    const ly = TOP + ph + 62 + Math.floor(i / 3) * 20;
    out.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 24}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text x="${lx + 30}" y="${ly}">${escapeXml(label)}</text>`,
    );
  }
  out.push('</svg>');
  return out.join('\n');
}
