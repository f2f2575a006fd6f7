/**
 * A seeded Barabási–Albert friends graph, written as an edge list — the article's `fakefriends.py`
 * (`igraph.Graph.Barabasi(1000000, 15)`), without Python, and reproducible: the same
 * (users, m, seed) gives the same bytes on every machine.
 *
 * The model, exactly:
 *
 * - nodes are `1..users`; the first m+1 nodes form a clique K_{m+1} (m(m+1)/2 edges);
 * - every later node v attaches to m distinct earlier nodes, each picked with probability
 *   proportional to its current degree (linear preferential attachment, no self-loops, no
 *   multi-edges);
 * - so the graph has exactly  m(m+1)/2 + m·(users−m−1) = m·users − m(m+1)/2  edges
 *   (14,999,880 for 1M users, m = 15). That is also the edge count of igraph's
 *   `Graph.Barabasi(n, m)` (one start node, node i attaching to min(i, m) nodes), though igraph
 *   picks with weight degree+1 (its default `zero_appeal = 1`) where we use degree alone.
 *
 * The linear-time trick (Batagelj & Brandes, "Efficient generation of large random networks",
 * 2005): keep every edge's two endpoints in one flat array. A node of degree d appears d times,
 * so a uniform pick from the array is a pick proportional to degree — O(1), no per-node objects.
 *
 *     endpoints: Int32Array   [ a0 b0 | a1 b1 | a2 b2 | … | a_{E-1} b_{E-1} ]
 *                               edge 0   edge 1                edge E-1
 *
 * The same array is the output: edge i is the line `endpoints[2i] endpoints[2i+1]` (new node
 * first, then the older node it chose). It costs 8 bytes per edge (120 MB for 1M users, m = 15);
 * the text output is streamed in chunks and never held whole.
 *
 * This folder is the article's friends data set: this file makes it (`friends generate`),
 * `degree-stats` checks its degree distribution (`--stats`), `edge-list` reads an edge-list file
 * back in batches, and `load` bulk-loads it into the subscription store (`friends load`).
 */
import { Xoshiro128 } from '../msggen/random.js';

/** Endpoint-array limit (2^29 ints = 2 GiB), i.e. at most 268,435,456 edges. */
export const MAX_ENDPOINTS = 2 ** 29;
/** Longest line: two 10-digit ids, a space and a newline. */
const MAX_LINE_BYTES = 22;
const TWO_32 = 2 ** 32;
/** Nodes drawn per block (see {@link BarabasiAlbert}); 1024·m picks fit in L1/L2. */
const BLOCK_NODES = 1024;
/** Edges formatted per output chunk (≈ 0.5–0.7 MB of text). */
export const DEFAULT_CHUNK_EDGES = 32_768;

/** Parameters of the graph. */
export interface BarabasiAlbertOptions {
  /** Number of nodes; ids are `1..users`. Must be greater than `m`. */
  readonly users: number;
  /** Edges each new node brings (igraph's `m`); ≥ 1. */
  readonly m: number;
  /** PRNG seed, any safe integer. */
  readonly seed: number;
}

/** Exact edge count of the graph for `users` nodes and attachment `m` (see the file comment). */
export function baEdgeCount(users: number, m: number): number {
  return m * users - (m * (m + 1)) / 2;
}

/** Why the options cannot make a graph (naming the option), or `undefined` when they can. */
export function baOptionsProblem(options: BarabasiAlbertOptions): string | undefined {
  const { users, m, seed } = options;
  if (!Number.isInteger(m) || m < 1) return `--m must be a whole number ≥ 1, got ${m}`;
  if (!Number.isInteger(users) || users <= m)
    return `--users must be a whole number greater than --m (${m}), got ${users}`;
  if (!Number.isSafeInteger(seed) || seed < 0) return `--seed must be a whole number ≥ 0, got ${seed}`;
  const endpoints = 2 * baEdgeCount(users, m);
  if (endpoints > MAX_ENDPOINTS) {
    return `--users ${users} with --m ${m} makes ${baEdgeCount(users, m)} edges; the limit is ${MAX_ENDPOINTS / 2} (2 GiB of endpoints)`;
  }
  return undefined;
}

/**
 * The graph under construction. Call {@link grow} until {@link finished}; edges `[0, edges)` of
 * {@link endpoints} are final as soon as they exist, so they can be written out while later ones
 * are still being drawn.
 *
 * Speed: the work is one random read in a large array per pick, so cache misses are the cost. Two
 * things cut them. (1) An even slot holds the node that made the edge, and past the clique node
 * m+2+j made edges C+j·m … C+j·m+m−1 (C = clique edges), so even slots are computed, not read.
 * (2) Nodes are drawn in blocks of {@link BLOCK_NODES}: first every pick's slot index for the whole
 * block (the range for each node is known in advance: node b of the block draws from the
 * 2·(edges + b·m) slots before it), then all reads that fall before the block in one tight loop
 * (independent loads the CPU overlaps), then node by node the rest (reads inside the block, already
 * cache-hot) and the duplicate check, redrawing a repeated pick at once.
 */
export class BarabasiAlbert {
  readonly users: number;
  readonly m: number;
  /** Edge count once finished: {@link baEdgeCount}. */
  readonly edgeCount: number;
  /** Flat endpoints, two per edge (see the file comment). Only `[0, 2·edges)` is filled. */
  readonly endpoints: Int32Array;
  readonly #rng: Xoshiro128;
  readonly #cliqueEdges: number;
  /** Per block: the slot index of each pick, then its value when the slot lies before the block. */
  readonly #slots: Float64Array;
  readonly #picks: Int32Array;
  /** Next node to add. */
  #node = 2;
  #edges = 0;

  constructor(options: BarabasiAlbertOptions) {
    const problem = baOptionsProblem(options);
    if (problem !== undefined) throw new RangeError(problem);
    this.users = options.users;
    this.m = options.m;
    this.edgeCount = baEdgeCount(options.users, options.m);
    this.endpoints = new Int32Array(2 * this.edgeCount);
    this.#rng = new Xoshiro128(options.seed);
    this.#cliqueEdges = (this.m * (this.m + 1)) / 2;
    this.#slots = new Float64Array(BLOCK_NODES * this.m);
    this.#picks = new Int32Array(BLOCK_NODES * this.m);
  }

  /** Edges generated so far. */
  get edges(): number {
    return this.#edges;
  }

  get finished(): boolean {
    return this.#node > this.users;
  }

  /**
   * Adds whole blocks of nodes until at least `minEdges` new edges exist (it may add up to one block
   * more) or the graph is complete; returns the edge total.
   */
  grow(minEdges: number): number {
    const target = this.#edges + minEdges;
    // The seed clique: nodes 2..m+1 join every earlier node (there is no choice to make).
    while (this.#node <= this.m + 1 && this.#node <= this.users && this.#edges < target) {
      const v = this.#node++;
      for (let u = 1; u < v; u++) {
        this.endpoints[2 * this.#edges] = v;
        this.endpoints[2 * this.#edges + 1] = u;
        this.#edges++;
      }
    }
    while (this.#node <= this.users && this.#edges < target) {
      // Always whole blocks: where blocks start decides the order of draws, so it must not depend
      // on how callers chunk their calls, or the same seed would give different graphs.
      this.#block(Math.min(BLOCK_NODES, this.users - this.#node + 1));
    }
    return this.#edges;
  }

  /** A uniform slot index in [0, slots): rejection keeps it exact (draws in the incomplete last block of 2^32 are redrawn). */
  #draw(slots: number): number {
    const limit = TWO_32 - (TWO_32 % slots);
    let r = this.#rng.nextUint32();
    while (r >= limit) r = this.#rng.nextUint32();
    // r, slots < 2^32, so the float quotient cannot round across an integer: the remainder is exact.
    return r - Math.floor(r / slots) * slots;
  }

  /** The node in slot `i`: computed for an even slot past the clique, read otherwise. */
  #at(i: number): number {
    const e = i >>> 1;
    const c = this.#cliqueEdges;
    return (i & 1) === 0 && e >= c ? this.m + 2 + Math.floor((e - c) / this.m) : this.endpoints[i]!;
  }

  /** Adds `count` nodes (past the clique) in the three passes described on the class. */
  #block(count: number): void {
    const ep = this.endpoints;
    const m = this.m;
    const slots = this.#slots;
    const picks = this.#picks;
    const start = 2 * this.#edges;
    const n = count * m;
    for (let b = 0; b < count; b++) {
      const before = start + 2 * m * b;
      for (let k = 0; k < m; k++) slots[b * m + k] = this.#draw(before);
    }
    for (let j = 0; j < n; j++) {
      const i = slots[j]!;
      if (i < start) picks[j] = this.#at(i);
    }
    let v = this.#node;
    for (let b = 0; b < count; b++, v++) {
      const base = 2 * this.#edges;
      for (let k = 0; k < m; k++) {
        const j = b * m + k;
        let t = slots[j]! < start ? picks[j]! : this.#at(slots[j]!);
        // Picks must be distinct; a repeat (rare: ~1 in 5,000 for 1M users, m = 15) is redrawn.
        for (let q = 0; q < k; q++) {
          if (ep[base + 2 * q + 1] === t) {
            t = this.#at(this.#draw(base));
            q = -1;
          }
        }
        ep[base + 2 * k] = v;
        ep[base + 2 * k + 1] = t;
      }
      this.#edges += m;
    }
    this.#node = v;
  }
}

/** ASCII pairs "00".."99", so numbers are written two digits per division. */
const DIGIT_PAIRS = Buffer.from(
  Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0')).join(''),
  'latin1',
);

/** Writes the decimal digits of `x` (an int in [0, 2^31)) into `buf` at `pos`; returns the new position. */
function putUint(buf: Uint8Array, pos: number, x: number): number {
  const len =
    x < 1e4
      ? x < 10
        ? 1
        : x < 100
          ? 2
          : x < 1e3
            ? 3
            : 4
      : x < 1e6
        ? x < 1e5
          ? 5
          : 6
        : x < 1e7
          ? 7
          : x < 1e8
            ? 8
            : x < 1e9
              ? 9
              : 10;
  let p = pos + len;
  while (x >= 100) {
    const q = (x / 100) | 0;
    const d = (x - q * 100) * 2;
    buf[--p] = DIGIT_PAIRS[d + 1]!;
    buf[--p] = DIGIT_PAIRS[d]!;
    x = q;
  }
  if (x >= 10) {
    buf[--p] = DIGIT_PAIRS[2 * x + 1]!;
    buf[--p] = DIGIT_PAIRS[2 * x]!;
  } else {
    buf[--p] = 48 + x;
  }
  return pos + len;
}

/** Formats edges `[from, to)` of `endpoints` as `a b\n` lines; returns a buffer holding just those bytes. */
export function formatEdges(endpoints: Int32Array, from: number, to: number): Buffer {
  const buf = Buffer.allocUnsafe((to - from) * MAX_LINE_BYTES);
  let pos = 0;
  for (let i = from; i < to; i++) {
    pos = putUint(buf, pos, endpoints[2 * i]!);
    buf[pos++] = 32;
    pos = putUint(buf, pos, endpoints[2 * i + 1]!);
    buf[pos++] = 10;
  }
  return buf.subarray(0, pos);
}

/** Options for {@link writeFriendsGraph}. */
export interface WriteGraphOptions extends BarabasiAlbertOptions {
  /** Where the edge list goes. Only written to, never ended. */
  readonly out: NodeJS.WritableStream;
  /** Edges per chunk. Default {@link DEFAULT_CHUNK_EDGES}. */
  readonly chunkEdges?: number;
  /** Stops after the current chunk when aborted; the result says `complete: false`. */
  readonly signal?: AbortSignal;
  /** Called after each chunk with the edges written so far. */
  readonly onProgress?: (edges: number) => void;
}

/** What {@link writeFriendsGraph} did. */
export interface WriteGraphResult {
  readonly graph: BarabasiAlbert;
  /** Edges written (all of them unless interrupted). */
  readonly edges: number;
  readonly bytes: number;
  readonly complete: boolean;
}

function writeChunk(out: NodeJS.WritableStream, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    out.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * Generates the graph and streams it to `out` as text, one `a b` line per edge. The next chunk is
 * drawn while the previous one is being written, and at most one write is outstanding, so output
 * memory stays at about two chunks whatever the graph size.
 */
export async function writeFriendsGraph(options: WriteGraphOptions): Promise<WriteGraphResult> {
  const graph = new BarabasiAlbert(options);
  const chunk = options.chunkEdges ?? DEFAULT_CHUNK_EDGES;
  let written = 0;
  let bytes = 0;
  let pending: Promise<void> | undefined;
  while (written < graph.edgeCount) {
    if (options.signal?.aborted) break;
    const upto = graph.grow(chunk);
    const buf = formatEdges(graph.endpoints, written, upto);
    if (pending !== undefined) await pending;
    pending = writeChunk(options.out, buf);
    // Keep a rejection from surfacing as unhandled before we await it.
    pending.catch(() => {});
    written = upto;
    bytes += buf.length;
    options.onProgress?.(written);
  }
  if (pending !== undefined) await pending;
  return { graph, edges: written, bytes, complete: written === graph.edgeCount };
}
