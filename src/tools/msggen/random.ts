/**
 * A small, fast, seeded pseudo-random generator for load tools: xoshiro128** (Blackman & Vigna),
 * seeded through splitmix32 so that nearby seeds (1, 2, 3…) give unrelated streams.
 *
 * `Math.random()` cannot be seeded, and tools such as `friends generate` promise the same bytes
 * for the same seed on every machine; xoshiro128** uses only 32-bit integer operations, which
 * JavaScript performs exactly (`Math.imul`, shifts), so its output is identical everywhere.
 */
import { ConfigError } from '../../errors.js';

/** One step of splitmix32-style mixing: a well-spread 32-bit value from a counter. */
function mix32(x: number): number {
  let z = x | 0;
  z ^= z >>> 16;
  z = Math.imul(z, 0x21f0aaad);
  z ^= z >>> 15;
  z = Math.imul(z, 0x735a2d97);
  z ^= z >>> 15;
  return z >>> 0;
}

const GOLDEN = 0x9e3779b9;
const TWO_32 = 2 ** 32;

/** xoshiro128**: 128 bits of state, period 2^128 − 1, 32-bit outputs. */
export class Xoshiro128 {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  /** `seed` is any safe integer (its low and high 32 bits are both used). */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new ConfigError(`seed must be a safe integer, got ${seed}`);
    const lo = seed >>> 0;
    const hi = Math.floor(seed / TWO_32) >>> 0;
    let counter = mix32(lo ^ mix32(hi + GOLDEN));
    const next = (): number => {
      counter = (counter + GOLDEN) | 0;
      return mix32(counter) | 0;
    };
    this.#s0 = next();
    this.#s1 = next();
    this.#s2 = next();
    this.#s3 = next();
    // The all-zero state is the one state xoshiro must never be in.
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 1;
  }

  /** The next 32 random bits, as an unsigned integer in [0, 2^32). */
  nextUint32(): number {
    const s1 = this.#s1;
    const x = Math.imul(s1, 5);
    const result = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= s1;
    this.#s1 = s1 ^ this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = (this.#s3 << 11) | (this.#s3 >>> 21);
    return result;
  }

  /**
   * A uniform integer in [0, n), for 1 ≤ n ≤ 2^32. Unbiased: draws that fall in the incomplete
   * last block of size `2^32 mod n` are rejected (rare: probability < n / 2^32).
   */
  below(n: number): number {
    const limit = TWO_32 - (TWO_32 % n);
    let r = this.nextUint32();
    while (r >= limit) r = this.nextUint32();
    return r % n;
  }

  /** A uniform float in [0, 1) with 32 bits of randomness. */
  nextFloat(): number {
    return this.nextUint32() / TWO_32;
  }
}
