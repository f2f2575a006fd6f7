/**
 * Axis arithmetic for `chart`: round tick steps (1, 2, 2.5, 5 × 10^k), a second axis whose
 * ticks land on the first axis's gridlines, and tick labels a person reads at a glance.
 */

/** A linear axis from 0 to `max` with ticks every `step` (`max` is a whole number of steps). */
export interface Axis {
  readonly max: number;
  readonly step: number;
  /** Tick values, 0 and `max` included. */
  readonly ticks: readonly number[];
}

const NICE_FACTORS = [1, 2, 2.5, 5, 10] as const;

/** The smallest round step ≥ `raw` (1, 2, 2.5 or 5 times a power of ten). */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const f = raw / magnitude;
  // Tolerance so 0.30000000000000004 still picks 0.3's factor.
  const factor = NICE_FACTORS.find((n) => n >= f - 1e-9) ?? 10;
  return factor * magnitude;
}

function ticksOf(step: number, intervals: number): number[] {
  const ticks: number[] = [];
  // Multiplying, not accumulating, keeps 0.1 steps free of drift.
  for (let i = 0; i <= intervals; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

/**
 * An axis from 0 covering `max` with between `fewest` and `most` intervals, choosing the round
 * step that wastes the least room above `max` (1440 minutes: 0–1500 by 250, not 0–1600 by 200).
 */
export function zeroBasedAxis(max: number, fewest = 4, most = 8): Axis {
  const top = max > 0 ? max : 1;
  let best: { step: number; intervals: number } | undefined;
  for (let target = most; target >= fewest; target--) {
    const step = niceStep(top / target);
    const intervals = Math.max(1, Math.ceil(top / step - 1e-9));
    if (best === undefined || intervals * step < best.intervals * best.step) best = { step, intervals };
  }
  const { step, intervals } = best ?? { step: 1, intervals: 1 };
  return { max: intervals * step, step, ticks: ticksOf(step, intervals) };
}

/**
 * An axis from 0 covering `max` with exactly `intervals` intervals, so its ticks share the
 * gridlines of another axis. The step is still round; the top may sit above `max`.
 */
export function alignedAxis(max: number, intervals: number, integer = false): Axis {
  let step = niceStep((max > 0 ? max : 1) / intervals);
  // Whole numbers only: a count axis must not show 2.5 connections (2.5 is the one round
  // step ≥ 1 that is not whole).
  if (integer) step = step < 1 ? 1 : step === 2.5 ? 5 : step;
  return { max: intervals * step, step, ticks: ticksOf(step, intervals) };
}

/**
 * Two y axes sharing gridlines: tries 4 to 8 intervals and keeps the count that wastes the least
 * room above both maxima, so neither line is squashed into the bottom half of the plot.
 */
export function pairedAxes(leftMax: number, rightMax: number, rightInteger = false): [Axis, Axis] {
  const l = leftMax > 0 ? leftMax : 1;
  const r = rightMax > 0 ? rightMax : 1;
  let best: [Axis, Axis] | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  // 5 first so it wins ties: five gridlines is the most familiar look.
  for (const n of [5, 4, 6, 7, 8]) {
    const left = alignedAxis(l, n);
    const right = alignedAxis(r, n, rightInteger);
    const score = left.max / l + right.max / r;
    if (score < bestScore - 1e-9) {
      best = [left, right];
      bestScore = score;
    }
  }
  return best ?? [alignedAxis(l, 5), alignedAxis(r, 5, rightInteger)];
}

/** Digits after the point needed to show multiples of `step` exactly. */
function decimalsFor(step: number): number {
  for (let d = 0; d < 6; d++) {
    const scaled = step * 10 ** d;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6) return d;
  }
  return 6;
}

/** A tick label for a measurement axis (MB, minutes): as many decimals as the step needs. */
export function formatTick(value: number, step: number): string {
  return value.toFixed(decimalsFor(step));
}

/**
 * A count for a label: `950`, `2,500`, `10k`, `250k`, `1.25M`. With `scale` (an axis top), every
 * tick uses the unit the largest one needs, so an axis reads 2.5k, 5k, 7.5k, 10k. Not the
 * progress lines' `formatCount` (tools/format.ts: `1234`, `56.8k`, `15.0M`).
 */
export function formatCountLabel(value: number, scale = value): string {
  const trim = (s: string): string => (s.includes('.') ? s.replace(/\.?0+$/, '') : s);
  if (value === 0) return '0';
  // 999,999 would round to "1000k"; it reads better as 1M.
  if (Math.abs(scale) >= 1e6 || Math.abs(value) >= 999_950) return `${trim((value / 1e6).toFixed(3))}M`;
  if (Math.abs(scale) >= 1e4) return `${trim((value / 1e3).toFixed(1))}k`;
  return Math.round(value).toLocaleString('en-US');
}

/** A span of time in words: `45 seconds`, `10 minutes`, `24 hours`, `1.5 days`. */
export function formatSpan(seconds: number): string {
  const unit = (n: number, word: string): string => {
    const shown = Number(n.toFixed(n < 10 && n % 1 !== 0 ? 1 : 0));
    return `${shown} ${word}${shown === 1 ? '' : 's'}`;
  };
  if (seconds < 120) return unit(seconds, 'second');
  if (seconds < 2 * 3600) return unit(seconds / 60, 'minute');
  if (seconds < 3 * 86400) return unit(seconds / 3600, 'hour');
  return unit(seconds / 86400, 'day');
}
