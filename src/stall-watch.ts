/**
 * This process's event-loop lateness, measured once for everyone who needs it: one coarse timer
 * (every `tickMs`) measures how late it fires. It keeps the worst lateness of the last
 * {@link WINDOW_TICKS} ticks for the publish API's overload protection (load-shedder.ts reads
 * {@link StallWatch.lagMs}), and logs a lateness past `thresholdMs` as a warning with its length.
 * Every role runs one, so in a cluster the process that stalled names itself (gateways have no API
 * to ask). The cost is one timer per process, none per connection.
 */
import type { Logger } from './log.js';

/** Ticks {@link StallWatch.lagMs} looks back over (one second at the default tick). */
const WINDOW_TICKS = 10;

/** What the overload protection needs to know of the event loop. */
export interface LoopLag {
  /** The worst event-loop lag of the recent window, ms, including the current, unfinished tick. */
  readonly lagMs: number;
}

export class StallWatch implements LoopLag {
  readonly #log: Logger;
  readonly #thresholdMs: number;
  readonly #tickMs: number;
  readonly #timer: NodeJS.Timeout;
  /** Lateness of each recent tick, a ring of WINDOW_TICKS. */
  readonly #lags = new Array<number>(WINDOW_TICKS).fill(0);
  #ticks = 0;
  #last = performance.now();
  #stalls = 0;
  #worstMs = 0;

  constructor(log: Logger, thresholdMs = 500, tickMs = 100) {
    this.#log = log;
    this.#thresholdMs = thresholdMs;
    this.#tickMs = tickMs;
    this.#timer = setInterval(() => this.#tick(), tickMs);
    this.#timer.unref();
  }

  #tick(): void {
    const now = performance.now();
    const late = Math.max(0, now - this.#last - this.#tickMs);
    this.#last = now;
    this.#lags[this.#ticks++ % WINDOW_TICKS] = late;
    if (late <= this.#thresholdMs) return;
    this.#stalls++;
    this.#worstMs = Math.max(this.#worstMs, late);
    this.#log.warn('event loop stalled', { ms: Math.round(late) });
  }

  get lagMs(): number {
    const current = Math.max(0, performance.now() - this.#last - this.#tickMs);
    return Math.round(Math.max(current, ...this.#lags));
  }

  /** Stalls past the threshold so far. */
  get stalls(): number {
    return this.#stalls;
  }

  /** The longest of them, ms (0 when none). */
  get worstMs(): number {
    return Math.round(this.#worstMs);
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
