/**
 * This process's event-loop lateness, measured once for everyone who needs it: one coarse timer
 * (every `tickMs`) measures how late it fires. It keeps the worst lateness of the last
 * second for the publish API's overload protection (load-shedder.ts reads
 * {@link StallWatch.lagMs}), and logs a lateness past `thresholdMs` as a warning with its length.
 * Every role runs one, so in a cluster the process that stalled names itself (gateways have no API
 * to ask). The cost is one timer per process, none per connection.
 */
import type { Logger } from './log.js';

/** How far back {@link StallWatch.lagMs} looks, ms. */
const WINDOW_MS = 1000;

/** What the overload protection needs to know of the event loop. */
export interface LoopLag {
  /** The worst event-loop lag of the recent window, ms, including the current, unfinished tick. */
  readonly lagMs: number;
  /** Calls `fn` with each tick's lateness, ms (for a histogram). */
  observe?(fn: (lateMs: number) => void): void;
}

export class StallWatch implements LoopLag {
  readonly #log: Logger;
  readonly #thresholdMs: number;
  readonly #tickMs: number;
  readonly #timer: NodeJS.Timeout;
  /** Lateness of each recent tick, a ring covering WINDOW_MS. */
  readonly #lags: number[];
  #ticks = 0;
  #last = performance.now();
  #stalls = 0;
  #worstMs = 0;
  readonly #observers: ((lateMs: number) => void)[] = [];

  /**
   * `tickMs`: 100 where the publish API sheds load on it; a process without the API (a cluster's
   * gateway) ticks less often, since an idle gateway's wakeups add up over 50 of them.
   */
  constructor(log: Logger, thresholdMs = 500, tickMs = 100) {
    this.#lags = new Array<number>(Math.max(1, Math.ceil(WINDOW_MS / tickMs))).fill(0);
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
    this.#lags[this.#ticks++ % this.#lags.length] = late;
    for (const fn of this.#observers) fn(late);
    if (late <= this.#thresholdMs) return;
    this.#stalls++;
    this.#worstMs = Math.max(this.#worstMs, late);
    this.#log.warn('event loop stalled', { ms: Math.round(late) });
  }

  observe(fn: (lateMs: number) => void): void {
    this.#observers.push(fn);
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
