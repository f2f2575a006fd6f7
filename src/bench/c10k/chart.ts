/**
 * The `bench c10k` chart: the memlog chart of src/tools/memlog/chart.ts with the run's phases drawn
 * behind the lines (empty server, connect, hold, messages, drain, stop), so a reader sees which
 * part of the memory curve is the ramp and which the message load.
 *
 * `renderSvg` has no option for this, so the bands are laid over its output: the plot frame and
 * the time axis's tick labels in the SVG give the mapping from time to x. If that layout is not
 * found (the chart changed), the chart is returned without bands rather than with wrong ones.
 */
import { escapeXml, renderSvg, svgToPng } from '../../tools/memlog/chart.js';
import type { Sample } from '../../tools/memlog/memlog.js';

/** One phase of the run, in unix seconds (fractions allowed). */
export interface PhaseSpan {
  readonly label: string;
  readonly from: number;
  readonly to: number;
  /** Tint the band (the message phase), not only mark its start. */
  readonly shade: boolean;
}

const BAND_COLOR = '#1f6fb4';
const BAND_OPACITY = 0.07;
const LINE_COLOR = '#9a9a9a';
const LABEL_COLOR = '#555555';
const LABEL_SIZE = 11;

interface Geometry {
  readonly left: number;
  readonly right: number;
  readonly top: number;
  readonly bottom: number;
  /** x of a time, as seconds since the first sample. */
  readonly x: (seconds: number) => number;
}

/** Reads the plot frame and the time axis from an SVG made by `renderSvg`. */
function geometryOf(svg: string): Geometry | undefined {
  const frame = /<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="none"/.exec(svg);
  const unitWord = /(Seconds|Minutes|Hours) elapsed/.exec(svg)?.[1];
  if (!frame || unitWord === undefined) return undefined;
  const [left, top, width, height] = frame.slice(1, 5).map(Number) as [number, number, number, number];
  const bottom = top + height;
  const ticks: [x: number, value: number][] = [];
  for (const m of svg.matchAll(
    /<text x="([\d.]+)" y="([\d.]+)" text-anchor="middle"[^>]*>([\d.]+)<\/text>/g,
  )) {
    const y = Number(m[2]);
    if (y > bottom && y < bottom + 30) ticks.push([Number(m[1]), Number(m[3])]);
  }
  if (ticks.length < 2) return undefined;
  ticks.sort((a, b) => a[0] - b[0]);
  const [x0, v0] = ticks[0]!;
  const [x1, v1] = ticks.at(-1)!;
  if (!(v1 > v0) || !(x1 > x0)) return undefined;
  const unit = unitWord === 'Seconds' ? 1 : unitWord === 'Minutes' ? 60 : 3600;
  const right = left + width;
  const x = (seconds: number): number =>
    Math.min(right, Math.max(left, x0 + ((seconds / unit - v0) * (x1 - x0)) / (v1 - v0)));
  return { left, right, top, bottom, x };
}

/**
 * `svg` with the phases drawn behind its series. `t0` is the time of the first sample (unix
 * seconds), which the chart's time axis counts from.
 */
export function addPhaseBands(svg: string, t0: number, spans: readonly PhaseSpan[]): string {
  const g = geometryOf(svg);
  const at = svg.indexOf('<g class="ticks"');
  if (g === undefined || at === -1 || spans.length === 0) return svg;
  const out: string[] = ['<g class="phases">'];
  for (const [i, s] of spans.entries()) {
    const x0 = g.x(s.from - t0);
    const x1 = g.x(s.to - t0);
    if (x1 <= x0) continue;
    if (s.shade) {
      out.push(
        `<rect x="${x0.toFixed(1)}" y="${g.top}" width="${(x1 - x0).toFixed(1)}" height="${g.bottom - g.top}" fill="${BAND_COLOR}" fill-opacity="${BAND_OPACITY}"/>`,
      );
    }
    // The first phase starts with the first sample, at the left edge: no line there.
    if (i > 0 && x0 > g.left + 0.5) {
      out.push(
        `<line x1="${x0.toFixed(1)}" y1="${g.top}" x2="${x0.toFixed(1)}" y2="${g.bottom}" stroke="${LINE_COLOR}" stroke-width="1" stroke-dasharray="4 3"/>`,
      );
    }
    // A label only where it fits inside its band (DejaVu Sans averages about 0.6 em a glyph).
    if (s.label.length * LABEL_SIZE * 0.6 <= x1 - x0 - 6) {
      out.push(
        `<text x="${(x0 + 4).toFixed(1)}" y="${g.top + 14}" font-size="${LABEL_SIZE}" fill="${LABEL_COLOR}">${escapeXml(s.label)}</text>`,
      );
    }
  }
  out.push('</g>');
  return `${svg.slice(0, at)}${out.join('\n')}\n${svg.slice(at)}`;
}

/** The chart as SVG text and PNG bytes, phases drawn in. */
export function renderC10kChart(
  samples: readonly Sample[],
  title: string,
  spans: readonly PhaseSpan[],
): { svg: string; png: Buffer } {
  let t0 = Number.POSITIVE_INFINITY;
  for (const s of samples) if (s.time < t0) t0 = s.time;
  const svg = addPhaseBands(renderSvg(samples, { title }), t0, spans);
  return { svg, png: svgToPng(svg) };
}

/** `10000` → `10k`, `1500` → `1500`, `200` → `200`. */
export function connectionsLabel(n: number): string {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

/** The article's chart title, for this run's figures. */
export function defaultC10kTitle(connections: number, rate: number, nodeArgs: readonly string[]): string {
  const base = `Mem usage with ${connectionsLabel(connections)} active connections, ${rate} msg/sec`;
  return nodeArgs.length > 0 ? `${base} (node ${nodeArgs.join(' ')})` : base;
}
