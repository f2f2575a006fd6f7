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
 * Lag is sampled by one 100 ms timer: how late it fires is the loop's delay. The shedder looks at
 * the worst delay of the last second.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

export interface LoadShedderOptions {
  /** Messages being sent at once before new ones are refused; 0: no limit. */
  readonly maxInflight: number;
  /** Event-loop lag (ms, worst of the last second) past which new messages are refused; 0: no limit. */
  readonly maxLagMs: number;
}

/** Why a publish was refused, for the 503 body. */
export type Refusal = { readonly reason: string };

const TICK_MS = 100;
const WINDOW_TICKS = 10;

export class LoadShedder {
  readonly #o: LoadShedderOptions;
  #inflight = 0;
  #shed = 0;
  /** Worst lag of each recent tick, a ring of WINDOW_TICKS. */
  readonly #lags = new Array<number>(WINDOW_TICKS).fill(0);
  #tick = 0;
  #last = performance.now();
  readonly #timer: NodeJS.Timeout;
  readonly #histogram = monitorEventLoopDelay({ resolution: 20 });

  constructor(o: LoadShedderOptions) {
    this.#o = o;
    this.#timer = setInterval(() => this.#sample(), TICK_MS);
    this.#timer.unref();
    this.#histogram.enable();
  }

  #sample(): void {
    const now = performance.now();
    this.#lags[this.#tick++ % WINDOW_TICKS] = Math.max(0, now - this.#last - TICK_MS);
    this.#last = now;
  }

  /** The worst event-loop lag of the last second, ms (including the current, unfinished tick). */
  get lagMs(): number {
    const current = Math.max(0, performance.now() - this.#last - TICK_MS);
    return Math.round(Math.max(current, ...this.#lags));
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
    clearInterval(this.#timer);
    this.#histogram.disable();
  }
}
