/**
 * A log-linear latency histogram: exact counts in buckets whose width grows with the value, so
 * a fixed, small array covers microseconds to days with a bounded relative error, and two
 * histograms merge exactly by adding bucket counts. Load tools run in many processes (`flood
 * --procs`); each keeps one histogram and ships it over IPC, and the parent merges them — which
 * raw sample arrays or per-process percentiles could not do correctly.
 *
 * Values are recorded in milliseconds (fractions allowed) and stored as whole microseconds.
 *
 * ```
 *  value (µs)      bucket width   buckets
 *  0 … 127         1 µs           128 (exact)
 *  128 … 255       1 µs           128
 *  256 … 511       2 µs           128
 *  512 … 1023      4 µs           128      relative width ≤ 1/128 everywhere
 *  …               doubles        128 per octave
 * ```
 */

/** log2 of the buckets per octave; 7 → 128 buckets, ≤ 0.79 % relative error. */
const SUB_BITS = 7;
const SUB = 1 << SUB_BITS;
/** Largest value kept exactly (µs); larger values go in the last bucket: about 12.7 days. */
const MAX_MICROS = 2 ** 40;

/** The serialisable form of a histogram (IPC, JSON): sparse `[index, count, …]` pairs. */
export interface HistogramSnapshot {
  readonly count: number;
  /** Sum of recorded values in ms (for the mean). */
  readonly sum: number;
  /** Smallest and largest values recorded, in ms, exact (not bucketed); 0 when empty. */
  readonly min: number;
  readonly max: number;
  readonly buckets: readonly number[];
}

/** The figures a report prints, all in ms. */
export interface LatencySummary {
  readonly count: number;
  readonly min: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

/** Bucket index of a value in whole microseconds. */
export function bucketOf(micros: number): number {
  const v = micros < MAX_MICROS ? micros : MAX_MICROS - 1;
  if (v < SUB) return v;
  let e = v < 2 ** 31 ? 31 - Math.clz32(v) : Math.floor(Math.log2(v));
  // Math.log2 may be off by one at exact powers of two; settle it.
  while (2 ** (e + 1) <= v) e++;
  while (2 ** e > v) e--;
  const width = 2 ** (e - SUB_BITS);
  return SUB + (e - SUB_BITS) * SUB + (Math.floor(v / width) - SUB);
}

/** Lowest and highest microsecond values that fall in bucket `index`. */
export function bucketRange(index: number): [number, number] {
  if (index < SUB) return [index, index];
  const octave = Math.floor((index - SUB) / SUB);
  const sub = (index - SUB) % SUB;
  const width = 2 ** octave;
  const low = (SUB + sub) * width;
  return [low, low + width - 1];
}

/** Counts values into log-linear buckets; see the file comment. */
export class LatencyHistogram {
  #counts: number[] = [];
  #count = 0;
  #sum = 0;
  #min = Number.POSITIVE_INFINITY;
  #max = 0;

  /** Records one value in milliseconds. Negative values (clock skew) count as 0. */
  record(ms: number): void {
    const v = ms > 0 && Number.isFinite(ms) ? ms : 0;
    const index = bucketOf(Math.round(v * 1000));
    const counts = this.#counts;
    while (counts.length <= index) counts.push(0);
    counts[index]!++;
    this.#count++;
    this.#sum += v;
    if (v < this.#min) this.#min = v;
    if (v > this.#max) this.#max = v;
  }

  /** Values recorded. */
  get count(): number {
    return this.#count;
  }

  /** Smallest value recorded (ms), 0 when empty. */
  get min(): number {
    return this.#count === 0 ? 0 : this.#min;
  }

  /** Largest value recorded (ms), exact. */
  get max(): number {
    return this.#max;
  }

  /** Arithmetic mean (ms), 0 when empty. */
  get mean(): number {
    return this.#count === 0 ? 0 : this.#sum / this.#count;
  }

  /**
   * The value (ms) at or below which `p` percent of recorded values lie: the highest value of
   * the bucket holding that rank, clamped to the exact min and max. 0 when empty.
   */
  percentile(p: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil((Math.min(100, Math.max(0, p)) / 100) * this.#count));
    let seen = 0;
    const counts = this.#counts;
    for (let i = 0; i < counts.length; i++) {
      seen += counts[i]!;
      if (seen >= rank) {
        const high = bucketRange(i)[1] / 1000;
        return Math.min(this.#max, Math.max(this.min, high));
      }
    }
    return this.#max;
  }

  /** Adds every value of `other` (a histogram or a snapshot) to this one. Exact. */
  merge(other: LatencyHistogram | HistogramSnapshot): void {
    const snap = other instanceof LatencyHistogram ? other.toJSON() : other;
    if (snap.count === 0) return;
    const counts = this.#counts;
    const b = snap.buckets;
    for (let i = 0; i + 1 < b.length; i += 2) {
      const index = b[i]!;
      while (counts.length <= index) counts.push(0);
      counts[index]! += b[i + 1]!;
    }
    this.#count += snap.count;
    this.#sum += snap.sum;
    if (snap.min < this.#min) this.#min = snap.min;
    if (snap.max > this.#max) this.#max = snap.max;
  }

  /** Forgets every value. */
  reset(): void {
    this.#counts = [];
    this.#count = 0;
    this.#sum = 0;
    this.#min = Number.POSITIVE_INFINITY;
    this.#max = 0;
  }

  /** The sparse, serialisable form; {@link LatencyHistogram.from} reads it back. */
  toJSON(): HistogramSnapshot {
    const buckets: number[] = [];
    const counts = this.#counts;
    for (let i = 0; i < counts.length; i++) if (counts[i]! > 0) buckets.push(i, counts[i]!);
    return { count: this.#count, sum: this.#sum, min: this.min, max: this.#max, buckets };
  }

  /** A histogram holding the values of `snapshot`. */
  static from(snapshot: HistogramSnapshot): LatencyHistogram {
    const h = new LatencyHistogram();
    h.merge(snapshot);
    return h;
  }

  /** The usual report figures, rounded to microseconds. */
  summary(): LatencySummary {
    const r = (ms: number): number => Math.round(ms * 1000) / 1000;
    return {
      count: this.#count,
      min: r(this.min),
      mean: r(this.mean),
      p50: r(this.percentile(50)),
      p90: r(this.percentile(90)),
      p99: r(this.percentile(99)),
      p999: r(this.percentile(99.9)),
      max: r(this.#max),
    };
  }
}

/** `0.42` → `420µs`, `12.3` → `12.3ms`, `2500` → `2.50s`: latency for human report lines. */
export function formatMs(ms: number): string {
  if (ms < 1) return `${Math.round(ms * 1000)}µs`;
  if (ms < 100) return `${ms.toFixed(1)}ms`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  return `${(ms / 1000).toFixed(2)}s`;
}
