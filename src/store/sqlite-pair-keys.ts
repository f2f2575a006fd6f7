/**
 * Subscription pairs whose ids are all small canonical numbers, held as 64-bit keys in typed
 * arrays and sorted in JS, so a bulk load can write the store's B-trees in key order without
 * SQLite sorting anything (SQLite's sorter was most of a 30M-pair load).
 *
 * A pair is two 32-bit words, `[lo, hi]`; read through a `BigUint64Array` on a little-endian
 * machine it is the number `hi · 2^32 + lo`, so sorting those numbers sorts by `(hi, lo)`:
 *
 *     words:  [ lo0, hi0, lo1, hi1, … ]     hi = the table's first key column, lo = its second
 *
 * Collected pairs are `(hi = subscribee, lo = subscriber)`: the order of `subscriptions`.
 * {@link transposeSorted} gives `(hi = subscriber, lo = subscribee)`: the order of
 * `subscriptions_by_subscriber`.
 *
 * Memory: 8 bytes per pair collected, one more array of 8 bytes per pair while sorting (the
 * collected chunks are released as they are moved, when the garbage collector gets to them), and
 * one more for a transposed copy, which only a load that is not symmetric needs.
 */
import { endianness } from 'node:os';
import type { Subscription } from './store.js';
import { validateSubscriptions } from './subscription-input.js';

/** Pairs per collection chunk (8 MiB): growing never copies what was collected. */
const CHUNK_PAIRS = 1 << 20;
/** Most buckets of the first (counting) sort pass; each bucket is then sorted natively. */
const MAX_BUCKETS = 1 << 16;
const MAX_U32 = 0xffffffff;

/** Whether 64-bit views sort pairs by `(hi, lo)` here (every platform Node 20 ships for). */
export const PAIR_KEYS_SUPPORTED = endianness() === 'LE';

/**
 * The value of `id` when it is a canonical decimal below 2^32 (`"0"`, `"42"`, not `"042"`),
 * else -1. These ids are exactly the ones the store keeps as INTEGERs that fit 32 bits.
 */
export function smallNumericId(id: unknown): number {
  if (typeof id !== 'string') return -1;
  const n = id.length;
  if (n === 0 || n > 10 || (n > 1 && id.charCodeAt(0) === 48)) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const d = id.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v <= MAX_U32 ? v : -1;
}

/** Sorted, duplicate-free keys: pair `i` is `(words[2i + 1], words[2i])` as `(hi, lo)`. */
export interface SortedKeys {
  readonly words: Uint32Array;
  readonly count: number;
}

/**
 * Collects pairs batch by batch, then hands them out sorted ({@link sortUnique}) or as they came
 * ({@link drain}, for a load that turns out not to fit).
 */
export class PairKeys {
  readonly #limit: number;
  #chunks: Uint32Array[] = [];
  #current: Uint32Array = new Uint32Array(0);
  #fill = 0;
  #count = 0;
  #maxSubscribee = 0;

  /** @param limit most pairs to hold; {@link add} refuses a batch that would pass it */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Pairs collected (duplicates included). */
  get size(): number {
    return this.#count;
  }

  /**
   * Adds every pair of `batch` and returns true, or returns false and adds nothing when some id is
   * not a small canonical number or the batch would pass the limit. Throws the store's usual
   * InvalidInputError (naming `what` and the index) for a pair that is not valid at all.
   */
  add(batch: readonly Subscription[], what: string): boolean {
    if (!Array.isArray(batch)) validateSubscriptions(batch, what);
    const n = batch.length;
    if (this.#count + n > this.#limit) return false;
    // The whole batch goes to one chunk, so a batch that turns out not to fit is dropped by
    // simply not advancing the fill.
    if (this.#current.length - 2 * this.#fill < 2 * n) {
      if (this.#fill > 0) this.#chunks.push(this.#current.subarray(0, 2 * this.#fill));
      this.#current = new Uint32Array(2 * Math.max(n, CHUNK_PAIRS));
      this.#fill = 0;
    }
    const out = this.#current;
    let at = 2 * this.#fill;
    let maxEe = this.#maxSubscribee;
    for (let i = 0; i < n; i++) {
      const s = batch[i];
      const ee = s === null || typeof s !== 'object' ? -1 : smallNumericId(s.subscribee);
      // `ee` is -1 unless `s` is an object, so `s` is one here.
      const er = ee < 0 ? -1 : smallNumericId(s!.subscriber);
      if (er < 0 || ee === er) {
        // Throws for an invalid pair; valid ids that are not small numbers end the fast path.
        validateSubscriptions(batch, what);
        return false;
      }
      out[at++] = er;
      out[at++] = ee;
      if (ee > maxEe) maxEe = ee;
    }
    this.#maxSubscribee = maxEe;
    this.#fill += n;
    this.#count += n;
    return true;
  }

  /** The collected pairs in arrival order, chunk by chunk; the collector is empty afterwards. */
  *drain(): Generator<Uint32Array> {
    const chunks = this.#take();
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i]!;
      chunks[i] = EMPTY; // let it be collected once handed out
      yield chunk;
    }
  }

  /** The collected pairs sorted by (subscribee, subscriber), each once; the collector is empty afterwards. */
  sortUnique(): SortedKeys {
    const count = this.#count;
    const maxHi = this.#maxSubscribee;
    return bucketSort(this.#take(), count, maxHi, false);
  }

  #take(): Uint32Array[] {
    const chunks = this.#chunks;
    if (this.#fill > 0) chunks.push(this.#current.subarray(0, 2 * this.#fill));
    this.#chunks = [];
    this.#current = new Uint32Array(0);
    this.#fill = 0;
    this.#count = 0;
    this.#maxSubscribee = 0;
    return chunks;
  }
}

const EMPTY = new Uint32Array(0);

/** Widest `lo` (in bits) that {@link transposeSorted} sorts by counting alone. */
const MAX_COUNTING_BITS = 24;
/** Top-level buckets of the transposition: few enough write streams to stay in cache. */
const TOP_BITS = 11;
/** {@link isSymmetric} transposes this fraction of the keys at a time. */
const SYMMETRY_GROUPS = 4;

/** How {@link transposeRange} splits `lo` values: top buckets by `lo >>> shift`, and where each starts. */
interface TransposePlan {
  readonly shift: number;
  readonly top: number;
  /** `start[b]`: pairs with a `lo` in buckets before `b`; `start[top]` is the count. */
  readonly start: Uint32Array;
}

/** The plan for `keys`, or undefined when ids are too wide to sort by counting. */
function planTranspose(keys: SortedKeys): TransposePlan | undefined {
  const { words, count } = keys;
  let maxLo = 0;
  for (let i = 0; i < count; i++) if (words[2 * i]! > maxLo) maxLo = words[2 * i]!;
  const bits = 32 - Math.clz32(maxLo);
  if (bits > MAX_COUNTING_BITS) return undefined;
  const shift = Math.max(0, bits - TOP_BITS);
  const top = (maxLo >>> shift) + 1;
  const start = new Uint32Array(top + 1);
  for (let i = 0; i < count; i++) start[(words[2 * i]! >>> shift) + 1]!++;
  for (let b = 0; b < top; b++) start[b + 1]! += start[b]!;
  return { shift, top, start };
}

/**
 * Writes the pairs of `keys` whose `lo` falls in top buckets `[from, to)`, swapped and sorted, to
 * `out` from index 0. The input is sorted by `hi`, so a stable sort on `lo` alone is enough: a
 * stable scatter by the top bits of `lo`, then a stable counting sort of each bucket (small
 * enough to stay in CPU cache) by the rest. 30M pairs in about 1.5 s; one counting pass over
 * every distinct `lo` at once was 2x slower (a million write streams), {@link bucketSort} 2.5x.
 */
function transposeRange(
  keys: SortedKeys,
  plan: TransposePlan,
  from: number,
  to: number,
  out: Uint32Array,
): void {
  const { words, count } = keys;
  const { shift, start } = plan;
  const base = start[from]!;
  const next = start.slice(from, to);
  const first = from * 2 ** shift;
  const end = to * 2 ** shift;
  for (let i = 0; i < count; i++) {
    const lo = words[2 * i]!;
    if (lo < first || lo >= end) continue;
    const at = 2 * (next[(lo >>> shift) - from]!++ - base);
    out[at] = words[2 * i + 1]!;
    out[at + 1] = lo;
  }
  if (shift === 0) return;
  // Each bucket is sorted by the top bits of its new `hi`; sort it by the rest, stably.
  const mask = 2 ** shift - 1;
  const sub = new Uint32Array(mask + 2);
  let largest = 0;
  for (let b = from; b < to; b++) largest = Math.max(largest, start[b + 1]! - start[b]!);
  const tmp = new Uint32Array(2 * largest);
  for (let b = from; b < to; b++) {
    const lo = start[b]! - base;
    const hi = start[b + 1]! - base;
    if (hi - lo < 2) continue;
    sub.fill(0);
    for (let i = lo; i < hi; i++) sub[(out[2 * i + 1]! & mask) + 1]!++;
    for (let v = 0; v <= mask; v++) sub[v + 1]! += sub[v]!;
    for (let i = lo; i < hi; i++) {
      const at = 2 * sub[out[2 * i + 1]! & mask]!++;
      tmp[at] = out[2 * i]!;
      tmp[at + 1] = out[2 * i + 1]!;
    }
    out.set(tmp.subarray(0, 2 * (hi - lo)), 2 * lo);
  }
}

/**
 * `keys` with each pair's words swapped, sorted again: `(hi, lo)` becomes `(lo, hi)`. Ids wider
 * than {@link MAX_COUNTING_BITS} bits take the (slower) bucket sort.
 */
export function transposeSorted(keys: SortedKeys): SortedKeys {
  const plan = planTranspose(keys);
  const { words, count } = keys;
  if (plan === undefined) return bucketSort([words.subarray(0, 2 * count)], count, MAX_U32, true);
  const out = new Uint32Array(2 * count);
  transposeRange(keys, plan, 0, plan.top, out);
  return { words: out, count };
}

/**
 * Whether every pair's mirror is in `keys` too (a mutual load), i.e. whether
 * `transposeSorted(keys)` equals `keys`. Transposes about a quarter of the keys at a time and
 * compares it with the matching stretch of `keys`, so it needs a quarter of the memory a whole
 * transposed copy would, and stops at the first difference.
 */
export function isSymmetric(keys: SortedKeys): boolean {
  const plan = planTranspose(keys);
  if (plan === undefined) return sameKeys(keys, transposeSorted(keys));
  const { start, top } = plan;
  const { words, count } = keys;
  const groupPairs = Math.ceil(count / SYMMETRY_GROUPS);
  let buffer = new Uint32Array(0);
  // The transposed pairs of buckets [from, to) have their `hi` in that bucket range, as do the
  // pairs of `keys` right after the stretches already compared.
  for (let from = 0, at = 0; from < top; ) {
    let to = from + 1;
    while (to < top && start[to + 1]! - start[from]! <= groupPairs) to++;
    const size = start[to]! - start[from]!;
    if (buffer.length < 2 * size) buffer = new Uint32Array(2 * Math.max(size, groupPairs));
    transposeRange(keys, plan, from, to, buffer);
    for (let i = 0; i < 2 * size; i++) if (buffer[i] !== words[2 * at + i]) return false;
    at += size;
    from = to;
  }
  return true;
}

/** Whether two sorted key sets are equal. */
export function sameKeys(a: SortedKeys, b: SortedKeys): boolean {
  if (a.count !== b.count) return false;
  const x = a.words;
  const y = b.words;
  for (let i = 0; i < 2 * a.count; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * Sorts the pairs of `sources` (flat `[lo, hi, …]`, or `[hi, lo, …]` when `swap`) by `(hi, lo)` and
 * drops duplicates. A counting pass scatters pairs into at most {@link MAX_BUCKETS} buckets by the
 * top bits of `hi`, then each bucket is sorted as 64-bit numbers by the engine's native typed-array
 * sort: 30M pairs in about 3 s, against 5 s for one native sort of everything. Entries of
 * `sources` are released as they are consumed.
 */
function bucketSort(sources: Uint32Array[], count: number, maxHi: number, swap: boolean): SortedKeys {
  const hiAt = swap ? 0 : 1;
  const loAt = 1 - hiAt;
  const bits = 32 - Math.clz32(maxHi);
  const shift = Math.max(0, bits - Math.log2(MAX_BUCKETS));
  const buckets = Math.floor(maxHi / 2 ** shift) + 1;
  // Float64: a bucket can hold more than 2^32 words in principle, and doubles are exact here.
  const start = new Float64Array(buckets + 1);
  for (const src of sources) {
    for (let i = hiAt; i < src.length; i += 2) start[(src[i]! >>> shift) + 1]!++;
  }
  for (let b = 0; b < buckets; b++) start[b + 1]! += start[b]!;
  const next = start.slice(0, buckets);
  const out = new Uint32Array(2 * count);
  for (let s = 0; s < sources.length; s++) {
    const src = sources[s]!;
    sources[s] = EMPTY;
    for (let i = 0; i < src.length; i += 2) {
      const hi = src[i + hiAt]!;
      const at = 2 * next[hi >>> shift]!++;
      out[at] = src[i + loAt]!;
      out[at + 1] = hi;
    }
  }
  for (let b = 0; b < buckets; b++) {
    const from = start[b]!;
    const to = start[b + 1]!;
    if (to - from > 1) new BigUint64Array(out.buffer, from * 8, to - from).sort();
  }
  // Drop duplicates in place.
  let kept = 0;
  for (let i = 0; i < count; i++) {
    const lo = out[2 * i]!;
    const hi = out[2 * i + 1]!;
    if (kept > 0 && out[2 * kept - 2] === lo && out[2 * kept - 1] === hi) continue;
    out[2 * kept] = lo;
    out[2 * kept + 1] = hi;
    kept++;
  }
  return { words: out, count: kept };
}
