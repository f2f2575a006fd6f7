/**
 * Says when this process's event loop was blocked: one coarse timer (every `tickMs`) measures how
 * late it fires, and a lateness past `thresholdMs` is logged as a warning with its length. Every
 * role runs one, so in a cluster the process that stalled names itself (gateways have no API to
 * ask). The cost is one timer per process, none per connection.
 */
import type { Logger } from './log.js';

export class StallWatch {
  readonly #log: Logger;
  readonly #thresholdMs: number;
  readonly #tickMs: number;
  readonly #timer: NodeJS.Timeout;
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
    const late = now - this.#last - this.#tickMs;
    this.#last = now;
    if (late <= this.#thresholdMs) return;
    this.#stalls++;
    this.#worstMs = Math.max(this.#worstMs, late);
    this.#log.warn('event loop stalled', { ms: Math.round(late) });
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
