/**
 * Overload protection for the publish API. A server that cannot keep up must refuse new messages
 * quickly and clearly (503 + Retry-After, nothing sent) rather than queue them without bound: a
 * queued publish times out at the client, its outcome unknown, and is still delivered later —
 * a retrying publisher then sends it twice.
 *
 * Two signals, because the backlog sits in different places:
 * - event-loop lag: on the embedded path a send completes within microtasks, so an overloaded
 *   process shows as a late event loop, with requests waiting unread in socket buffers;
 * - messages in flight: on the NATS path a send waits for the gateways' tally, so the backlog is
 *   sends that have started and not finished.
 *
 * The lag is the process's own measurement (stall-watch.ts: the worst lateness of a 100 ms timer
 * over the last second), shared with the stall warnings rather than sampled twice.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { LoopLag } from '../stall-watch.js';

export interface LoadShedderOptions {
  /** Messages being sent at once before new ones are refused; 0: no limit. */
  readonly maxInflight: number;
  /** Event-loop lag (ms, worst of the last second) past which new messages are refused; 0: no limit. */
  readonly maxLagMs: number;
}

/** Why a publish was refused, for the 503 body. */
export type Refusal = { readonly reason: string };

export class LoadShedder {
  readonly #o: LoadShedderOptions;
  readonly #loop: LoopLag;
  #inflight = 0;
  #shed = 0;
  readonly #histogram = monitorEventLoopDelay({ resolution: 20 });

  constructor(o: LoadShedderOptions, loop: LoopLag) {
    this.#o = o;
    this.#loop = loop;
  }

  /** Starts measuring the event-loop delay (a 20 ms sampling timer: only where the API is served). */
  start(): void {
    this.#histogram.enable();
  }

  /** The worst event-loop lag of the last second, ms (including the current, unfinished tick). */
  get lagMs(): number {
    return this.#loop.lagMs;
  }

  get inflight(): number {
    return this.#inflight;
  }

  /** Publishes refused so far. */
  get shed(): number {
    return this.#shed;
  }

  /** Event-loop delay since start: p99 and max, ms. */
  delay(): { p99: number; max: number } {
    return {
      p99: Math.round(this.#histogram.percentile(99) / 1e6),
      max: Math.round(this.#histogram.max / 1e6),
    };
  }

  /**
   * Takes `n` messages into flight, or says why not. Call {@link release} with the same `n` when
   * the send has finished, whatever its outcome.
   */
  acquire(n: number): Refusal | undefined {
    const o = this.#o;
    if (o.maxLagMs > 0) {
      const lag = this.lagMs;
      if (lag > o.maxLagMs) {
        this.#shed += n;
        return {
          reason: `server overloaded: event loop ${lag} ms late (limit ${o.maxLagMs} ms); retry later`,
        };
      }
    }
    if (o.maxInflight > 0 && this.#inflight > 0 && this.#inflight + n > o.maxInflight) {
      this.#shed += n;
      return {
        reason: `server overloaded: ${this.#inflight} messages in flight (limit ${o.maxInflight}); retry later`,
      };
    }
    this.#inflight += n;
    return undefined;
  }

  release(n: number): void {
    this.#inflight -= n;
  }

  close(): void {
    this.#histogram.disable();
  }
}
