/**
 * Degree statistics of a friends graph, and a power-law fit of its degree distribution.
 *
 * The fit is the discrete maximum-likelihood estimator of Clauset, Shalizi & Newman, "Power-law
 * distributions in empirical data" (SIAM Review 51, 2009), eq. 3.5: for the degrees k ≥ k_min,
 * α̂ maximises  L(α) = −n·ln ζ(α, k_min) − α·Σ ln kᵢ,  where ζ(α, q) = Σ_{j≥0} (j+q)^−α is the
 * Hurwitz zeta function. We solve it exactly (golden-section search on the concave L) rather than
 * with the continuous approximation (their eq. 3.7), which is biased at small k_min.
 *
 * k_min is a choice, not an estimate: for a Barabási–Albert graph every node has degree ≥ m, so
 * k_min = m uses every node. BA's exact degree law is P(k) = 2m(m+1)/(k(k+1)(k+2)), a power law
 * with exponent 3 only asymptotically; fitted from k_min = m, α̂ lands a little below 3
 * (≈ 2.9 for m = 15 on large graphs — see test/friends.test.ts for the band the tests allow).
 */

/** Summary of a degree sequence. */
export interface DegreeStats {
  readonly nodes: number;
  readonly edges: number;
  readonly minDegree: number;
  readonly maxDegree: number;
  readonly meanDegree: number;
  /** Lower bound of the power-law fit. */
  readonly kMin: number;
  /** Nodes with degree ≥ kMin (the ones the fit uses). */
  readonly tailNodes: number;
  /** Fitted exponent α̂ (discrete MLE), NaN when fewer than two tail nodes or all equal. */
  readonly exponent: number;
  /** Its standard error, (α̂ − 1)/√tailNodes (CSN eq. 3.2, large-n). */
  readonly exponentError: number;
}

/**
 * Degrees of nodes `1..nodes` from a flat endpoint array (`endpoints[2i]`, `endpoints[2i+1]` are
 * edge i). Index 0 of the result is unused so ids index it directly.
 */
export function degreesFromEndpoints(endpoints: Int32Array, edges: number, nodes: number): Int32Array {
  const degree = new Int32Array(nodes + 1);
  const end = edges * 2;
  for (let i = 0; i < end; i++) degree[endpoints[i]!]!++;
  return degree;
}

// Bernoulli numbers B2, B4, …, B12 for the Euler–Maclaurin tail of the Hurwitz zeta sum.
const BERNOULLI = [1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730];
const DIRECT_TERMS = 12;

/**
 * Hurwitz zeta ζ(s, q) = Σ_{j≥0} (j+q)^−s for s > 1, q > 0: a direct sum of the first terms and an
 * Euler–Maclaurin remainder, accurate to about 1e-12 relative for the s and q used here.
 */
export function hurwitzZeta(s: number, q: number): number {
  let sum = 0;
  for (let j = 0; j < DIRECT_TERMS; j++) sum += (q + j) ** -s;
  const x = q + DIRECT_TERMS;
  sum += x ** (1 - s) / (s - 1) + 0.5 * x ** -s;
  // Term j: B_{2j}/(2j)! · s(s+1)…(s+2j−2) · x^(−s−2j+1).
  let rising = s; // s(s+1)…(s+2j−2), built up as j grows
  let factorial = 2; // (2j)!
  let power = x ** (-s - 1);
  for (let j = 1; j <= BERNOULLI.length; j++) {
    sum += (BERNOULLI[j - 1]! / factorial) * rising * power;
    rising *= (s + 2 * j - 1) * (s + 2 * j);
    factorial *= (2 * j + 1) * (2 * j + 2);
    power /= x * x;
  }
  return sum;
}

/**
 * Discrete power-law MLE of the degrees ≥ `kMin` (see the file comment). Returns α̂, its standard
 * error and how many degrees were used.
 */
export function fitPowerLaw(
  degrees: ArrayLike<number>,
  kMin: number,
  from = 0,
): { exponent: number; error: number; tail: number } {
  let tail = 0;
  let sumLog = 0;
  let allSame = true;
  let first = -1;
  for (let i = from; i < degrees.length; i++) {
    const k = degrees[i]!;
    if (k < kMin) continue;
    if (first === -1) first = k;
    else if (k !== first) allSame = false;
    tail++;
    sumLog += Math.log(k);
  }
  if (tail < 2 || allSame) return { exponent: Number.NaN, error: Number.NaN, tail };
  const meanLog = sumLog / tail;
  // Per-node log-likelihood; concave in α, so golden-section search finds its maximum.
  const ll = (alpha: number): number => -Math.log(hurwitzZeta(alpha, kMin)) - alpha * meanLog;
  let lo = 1.0001;
  let hi = 20;
  const ratio = (Math.sqrt(5) - 1) / 2;
  let a = hi - ratio * (hi - lo);
  let b = lo + ratio * (hi - lo);
  let fa = ll(a);
  let fb = ll(b);
  while (hi - lo > 1e-9) {
    if (fa < fb) {
      lo = a;
      a = b;
      fa = fb;
      b = lo + ratio * (hi - lo);
      fb = ll(b);
    } else {
      hi = b;
      b = a;
      fb = fa;
      a = hi - ratio * (hi - lo);
      fa = ll(a);
    }
  }
  const exponent = (lo + hi) / 2;
  return { exponent, error: (exponent - 1) / Math.sqrt(tail), tail };
}

/**
 * Degree summary and power-law fit for nodes `1..degree.length-1` (index 0 unused, as returned by
 * {@link degreesFromEndpoints}). `edges` is the edge count (mean degree = 2·edges/nodes).
 */
export function degreeStats(degree: Int32Array, edges: number, kMin: number): DegreeStats {
  const nodes = degree.length - 1;
  let min = Number.POSITIVE_INFINITY;
  let max = 0;
  for (let v = 1; v <= nodes; v++) {
    const k = degree[v]!;
    if (k < min) min = k;
    if (k > max) max = k;
  }
  const fit = fitPowerLaw(degree, kMin, 1);
  return {
    nodes,
    edges,
    minDegree: nodes > 0 ? min : 0,
    maxDegree: max,
    meanDegree: nodes > 0 ? (2 * edges) / nodes : 0,
    kMin,
    tailNodes: fit.tail,
    exponent: fit.exponent,
    exponentError: fit.error,
  };
}
