/**
 * `chart`: draws a memlog as a picture, replacing the article's awk-into-gnuplot recipe.
 * Memory (MB) and established connections share the time axis; memory reads on the left axis,
 * connections on the right, and both axes use round ticks on the same gridlines.
 *
 * The SVG is built here from string templates (every piece of text escaped); PNG is that SVG
 * rendered by resvg, loaded only when a PNG is asked for.
 */
import { createRequire } from 'node:module';
import { InvalidInputError } from '../../errors.js';
import {
  type Axis,
  formatCountLabel,
  formatSpan,
  formatTick,
  pairedAxes,
  zeroBasedAxis,
} from './chart-axis.js';
import type { Sample } from './memlog.js';

/** Output formats. */
export type ChartFormat = 'svg' | 'png';

/** Options for {@link renderChart}. */
export interface ChartOptions {
  /** Default: derived from the data by {@link defaultTitle}. */
  readonly title?: string;
  /** Default `svg`. */
  readonly format?: ChartFormat;
  /** Pixels; default 900 × 500. */
  readonly width?: number;
  readonly height?: number;
}

/** Default picture size: wide enough for a day of minutes, small enough for a README. */
export const DEFAULT_CHART_WIDTH = 900;
export const DEFAULT_CHART_HEIGHT = 500;

const FONT_FAMILY = "'DejaVu Sans', Verdana, sans-serif";
const MEM_COLOR = '#1f6fb4';
const CONN_COLOR = '#d9620b';
const GRID_COLOR = '#e3e3e3';
const AXIS_COLOR = '#555555';
const TEXT_COLOR = '#222222';
const MUTED_COLOR = '#777777';
const Y_HEADROOM = 1.03;
/** Past this many samples the dots would merge into a second line; draw the line alone. */
const MAX_MARKERS = 60;

/** The format a file name asks for (`.png`, `.svg`), or `undefined`. */
export function chartFormatFor(path: string): ChartFormat | undefined {
  const m = /\.(png|svg)$/i.exec(path);
  return m ? (m[1]!.toLowerCase() as ChartFormat) : undefined;
}

/** `Memory and connections over 24 hours (peak 250 MB at 10k connections)`. */
export function defaultTitle(samples: readonly Sample[]): string {
  const sorted = byTime(samples);
  const peak = peakSample(sorted);
  const span = sorted.at(-1)!.time - sorted[0]!.time;
  const over = sorted.length === 1 ? 'at one sample' : `over ${formatSpan(span)}`;
  const conns = `${formatCountLabel(peak.connections)} connection${peak.connections === 1 ? '' : 's'}`;
  return `Memory and connections ${over} (peak ${formatMb(peak.rssKb / 1024)} MB at ${conns})`;
}

/**
 * Draws `samples` (any order; sorted by time here). Returns SVG text, or PNG bytes for
 * `format: 'png'`.
 *
 * @throws InvalidInputError when there are no samples.
 */
export function renderChart(samples: readonly Sample[], options: ChartOptions & { format: 'png' }): Buffer;
export function renderChart(samples: readonly Sample[], options?: ChartOptions & { format?: 'svg' }): string;
export function renderChart(samples: readonly Sample[], options?: ChartOptions): Buffer | string;
export function renderChart(samples: readonly Sample[], options: ChartOptions = {}): Buffer | string {
  const svg = renderSvg(samples, options);
  return options.format === 'png' ? svgToPng(svg) : svg;
}

/** Renders SVG text to PNG at its own size, with the DejaVu fonts of the system. */
export function svgToPng(svg: string): Buffer {
  // Lazy: the native module is only needed for PNG, and `import` of it would load it eagerly.
  const require = createRequire(import.meta.url);
  const { Resvg } = require('@resvg/resvg-js') as typeof import('@resvg/resvg-js');
  const resvg = new Resvg(svg, {
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
    fitTo: { mode: 'original' },
    background: '#ffffff',
  });
  return resvg.render().asPng();
}

/** Escapes text for SVG content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function byTime(samples: readonly Sample[]): Sample[] {
  if (samples.length === 0) throw new InvalidInputError('chart: no samples to draw');
  return [...samples].sort((a, b) => a.time - b.time);
}

function peakSample(sorted: readonly Sample[]): Sample {
  return sorted.reduce((best, s) => (s.rssKb > best.rssKb ? s : best));
}

function formatMb(mb: number): string {
  return mb >= 100 ? mb.toFixed(0) : mb.toFixed(1);
}

/** Time unit for the x axis: seconds for short runs, hours for multi-day ones, else minutes. */
function timeUnit(spanSeconds: number): { seconds: number; label: string } {
  if (spanSeconds <= 300) return { seconds: 1, label: 'Seconds elapsed' };
  if (spanSeconds <= 48 * 3600) return { seconds: 60, label: 'Minutes elapsed' };
  return { seconds: 3600, label: 'Hours elapsed' };
}

type Point = readonly [x: number, y: number];

/**
 * Keeps at most the lowest and highest point per pixel column, so a week of one-second samples
 * draws the same envelope as the full series at a fraction of the path size.
 */
function decimate(points: readonly Point[], columns: number): readonly Point[] {
  if (points.length <= columns * 4) return points;
  const out: Point[] = [];
  let col = Number.NaN;
  let lo: Point | undefined;
  let hi: Point | undefined;
  const flush = (): void => {
    if (lo === undefined || hi === undefined) return;
    if (lo === hi) out.push(lo);
    else if (lo[0] <= hi[0]) out.push(lo, hi);
    else out.push(hi, lo);
  };
  for (const p of points) {
    const c = Math.floor(p[0]);
    if (c !== col) {
      flush();
      col = c;
      lo = p;
      hi = p;
    } else {
      // Screen y grows downward: the highest value has the smallest y.
      if (p[1] > lo![1]) lo = p;
      if (p[1] < hi![1]) hi = p;
    }
  }
  flush();
  return out;
}

function pathOf(points: readonly Point[]): string {
  return points.map((p, i) => `${i === 0 ? 'M' : 'L'}${p[0].toFixed(1)} ${p[1].toFixed(1)}`).join(' ');
}

/** Rough width of `text` in DejaVu Sans at `size` px (average advance ≈ 0.6 em). */
function textWidth(text: string, size: number): number {
  return text.length * size * 0.6;
}

function caption(sorted: readonly Sample[]): string {
  const parts = [`Started ${sorted[0]!.date || new Date(sorted[0]!.time * 1000).toISOString()}`];
  const n = sorted.length;
  if (n > 1) {
    const gaps = sorted.slice(1).map((s, i) => s.time - sorted[i]!.time);
    const median = gaps.sort((a, b) => a - b)[Math.floor(gaps.length / 2)]!;
    parts.push(`${n} samples, one every ${formatSpan(median).replace(/^1 /, '')}`);
  } else {
    parts.push('1 sample');
  }
  const procs = sorted.map((s) => s.processes).filter((p): p is number => p !== undefined);
  if (procs.length > 0) {
    const lo = procs.reduce((a, b) => Math.min(a, b));
    const hi = procs.reduce((a, b) => Math.max(a, b));
    const count = lo === hi ? `${lo}` : `${lo}–${hi}`;
    parts.push(`RSS summed over ${count} process${hi === 1 ? '' : 'es'}`);
  }
  return parts.join(' · ');
}

/** Builds the SVG text; see {@link renderChart}. */
export function renderSvg(samples: readonly Sample[], options: ChartOptions = {}): string {
  const sorted = byTime(samples);
  const width = options.width ?? DEFAULT_CHART_WIDTH;
  const height = options.height ?? DEFAULT_CHART_HEIGHT;
  const title = options.title ?? defaultTitle(sorted);

  const t0 = sorted[0]!.time;
  const span = sorted.at(-1)!.time - t0;
  const unit = timeUnit(span);
  const xAxis = zeroBasedAxis(span / unit.seconds, 5, 10);
  // Loops, not Math.max(...list): a week of one-second samples would overflow the call stack.
  let peakKb = 0;
  let peakConns = 0;
  for (const s of sorted) {
    if (s.rssKb > peakKb) peakKb = s.rssKb;
    if (s.connections > peakConns) peakConns = s.connections;
  }
  // 3% headroom so a line at its peak is not drawn over the frame.
  const [memAxis, connAxis] = pairedAxes((peakKb / 1024) * Y_HEADROOM, peakConns * Y_HEADROOM, true);

  const plot = { left: 84, right: width - 92, top: 84, bottom: height - 78 };
  const plotW = plot.right - plot.left;
  const plotH = plot.bottom - plot.top;
  const px = (v: number): number => plot.left + (v / xAxis.max) * plotW;
  const py = (v: number, axis: Axis): number => plot.bottom - (v / axis.max) * plotH;

  const memPoints: Point[] = sorted.map((s) => [
    px((s.time - t0) / unit.seconds),
    py(s.rssKb / 1024, memAxis),
  ]);
  const connPoints: Point[] = sorted.map((s) => [
    px((s.time - t0) / unit.seconds),
    py(s.connections, connAxis),
  ]);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT_FAMILY}">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
  );

  // Title, shrunk to fit rather than clipped.
  let titleSize = 18;
  while (titleSize > 12 && textWidth(title, titleSize) > width - 40) titleSize--;
  out.push(
    `<text x="${width / 2}" y="34" text-anchor="middle" font-size="${titleSize}" font-weight="bold" fill="${TEXT_COLOR}">${escapeXml(title)}</text>`,
  );

  // Legend, centred under the title.
  const items = [
    { label: 'Memory (RSS, MB) — left axis', color: MEM_COLOR },
    { label: 'Established connections — right axis', color: CONN_COLOR },
  ];
  const itemWidths = items.map((it) => 28 + textWidth(it.label, 13));
  let lx = (width - (itemWidths.reduce((a, b) => a + b, 0) + 28 * (items.length - 1))) / 2;
  out.push('<g class="legend" font-size="13">');
  for (const [i, it] of items.entries()) {
    out.push(
      `<line x1="${lx.toFixed(1)}" y1="58" x2="${(lx + 22).toFixed(1)}" y2="58" stroke="${it.color}" stroke-width="3"/>`,
      `<text x="${(lx + 28).toFixed(1)}" y="62.5" fill="${TEXT_COLOR}">${escapeXml(it.label)}</text>`,
    );
    lx += itemWidths[i]! + 28;
  }
  out.push('</g>');

  // Gridlines and ticks. Horizontal gridlines are shared by both y axes.
  out.push(`<g class="grid" stroke="${GRID_COLOR}" stroke-width="1">`);
  for (const v of memAxis.ticks.slice(1)) {
    const y = py(v, memAxis).toFixed(1);
    out.push(`<line x1="${plot.left}" y1="${y}" x2="${plot.right}" y2="${y}"/>`);
  }
  for (const v of xAxis.ticks.slice(1)) {
    const x = px(v).toFixed(1);
    out.push(`<line x1="${x}" y1="${plot.top}" x2="${x}" y2="${plot.bottom}"/>`);
  }
  out.push('</g>');

  out.push(`<g class="ticks" font-size="12">`);
  for (const v of memAxis.ticks) {
    out.push(
      `<text x="${plot.left - 8}" y="${(py(v, memAxis) + 4).toFixed(1)}" text-anchor="end" fill="${MEM_COLOR}">${formatTick(v, memAxis.step)}</text>`,
    );
  }
  for (const v of connAxis.ticks) {
    out.push(
      `<text x="${plot.right + 8}" y="${(py(v, connAxis) + 4).toFixed(1)}" fill="${CONN_COLOR}">${formatCountLabel(v, connAxis.max)}</text>`,
    );
  }
  for (const v of xAxis.ticks) {
    out.push(
      `<text x="${px(v).toFixed(1)}" y="${plot.bottom + 18}" text-anchor="middle" fill="${TEXT_COLOR}">${formatTick(v, xAxis.step)}</text>`,
    );
  }
  out.push('</g>');

  // Axis titles.
  const midY = (plot.top + plot.bottom) / 2;
  out.push(
    `<g class="axis-titles" font-size="13">`,
    `<text x="${(plot.left + plot.right) / 2}" y="${plot.bottom + 40}" text-anchor="middle" fill="${TEXT_COLOR}">${unit.label}</text>`,
    `<text transform="translate(24 ${midY}) rotate(-90)" text-anchor="middle" fill="${MEM_COLOR}">Memory, RSS (MB)</text>`,
    `<text transform="translate(${width - 20} ${midY}) rotate(90)" text-anchor="middle" fill="${CONN_COLOR}">Established connections</text>`,
    '</g>',
  );

  // Plot frame.
  out.push(
    `<rect x="${plot.left}" y="${plot.top}" width="${plotW}" height="${plotH}" fill="none" stroke="${AXIS_COLOR}" stroke-width="1"/>`,
  );

  // Series: connections first so memory, the subject, is drawn on top.
  const series = [
    { name: 'connections', points: connPoints, color: CONN_COLOR },
    { name: 'memory', points: memPoints, color: MEM_COLOR },
  ];
  for (const s of series) {
    out.push(
      `<path class="series ${s.name}" d="${pathOf(decimate(s.points, plotW))}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>`,
    );
    if (s.points.length <= MAX_MARKERS) {
      out.push(`<g class="markers ${s.name}" fill="${s.color}">`);
      for (const p of s.points) out.push(`<circle cx="${p[0].toFixed(1)}" cy="${p[1].toFixed(1)}" r="3"/>`);
      out.push('</g>');
    }
  }

  out.push(
    `<text x="${plot.left}" y="${height - 14}" font-size="11" fill="${MUTED_COLOR}">${escapeXml(caption(sorted))}</text>`,
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}
