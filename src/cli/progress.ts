/**
 * A progress display for long-running commands (`friends generate`, `friends load`, `flood`).
 *
 * On a terminal it keeps one live line on the stream — bar, count, rate, ETA — redrawn at most
 * every {@link TTY_REDRAW_MS}, so a hot loop may call {@link Progress.update} as often as it likes.
 * Off a terminal (CI logs, `2> file`) cursor tricks would only make noise, so it writes a plain
 * line every `interval` instead. {@link Progress.done} replaces the live line with a summary.
 */
import { formatBytes, formatCount, formatSeconds } from '../tools/format.js';

export { formatBytes, formatCount, formatSeconds };

/** Smallest time between two redraws of the live line (≈10 redraws a second). */
export const TTY_REDRAW_MS = 100;
/** Default time between two plain lines when the stream is not a terminal. */
export const DEFAULT_PLAIN_INTERVAL_MS = 5000;

const BAR_WIDTH = 24;

/** Options for {@link Progress}. */
export interface ProgressOptions {
  /** Short name printed first, e.g. `generate` or `load fakefriends.txt`. */
  readonly label: string;
  /** Where progress goes; stderr, so stdout stays free for data. */
  readonly stream: NodeJS.WritableStream;
  /** True when `stream` is a terminal: live single line. False: plain lines every `interval`. */
  readonly isTTY: boolean;
  /** Amount that means "finished"; without it there is no bar, percentage or ETA. */
  readonly total?: number;
  /** What is counted. `B` formats amounts as bytes (KB/MB/GB); anything else is appended to counts. */
  readonly unit?: string;
  /** Milliseconds between plain lines (non-TTY). Default {@link DEFAULT_PLAIN_INTERVAL_MS}. */
  readonly interval?: number;
  /** Clock in milliseconds; replaced in tests. Default `performance.now()`. */
  readonly now?: () => number;
}

/**
 * Reports progress of one task. Create it when the task starts, call {@link update} with the
 * amount done so far (absolute, not a delta), and {@link done} once at the end.
 */
export class Progress {
  readonly #label: string;
  readonly #stream: NodeJS.WritableStream;
  readonly #isTTY: boolean;
  readonly #total: number | undefined;
  readonly #unit: string;
  readonly #interval: number;
  readonly #now: () => number;
  readonly #start: number;
  #last: number;
  #done = 0;
  #drawn = false;
  #finished = false;

  constructor(options: ProgressOptions) {
    this.#label = options.label;
    this.#stream = options.stream;
    this.#isTTY = options.isTTY;
    this.#total = options.total !== undefined && options.total > 0 ? options.total : undefined;
    this.#unit = options.unit ?? '';
    this.#interval = options.isTTY ? TTY_REDRAW_MS : (options.interval ?? DEFAULT_PLAIN_INTERVAL_MS);
    this.#now = options.now ?? (() => performance.now());
    this.#start = this.#now();
    this.#last = this.#start;
  }

  /** Seconds since the task started. */
  get elapsed(): number {
    return (this.#now() - this.#start) / 1000;
  }

  /** Records that `done` units are finished; draws when the redraw interval has passed. */
  update(done: number): void {
    this.#done = done;
    if (this.#finished) return;
    const now = this.#now();
    if (now - this.#last < this.#interval) return;
    this.#last = now;
    if (this.#isTTY) {
      this.#stream.write(`\r${this.line(now)}\x1b[K`);
      this.#drawn = true;
    } else {
      this.#stream.write(`${this.line(now)}\n`);
    }
  }

  /**
   * Ends the display: clears the live line (TTY) and writes `summary` on a line of its own, when
   * given. Later calls do nothing.
   */
  done(summary?: string): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#isTTY && this.#drawn) this.#stream.write('\r\x1b[K');
    if (summary !== undefined) this.#stream.write(`${summary}\n`);
  }

  /** The progress text for the current state (without line ending), e.g. for tests. */
  line(now = this.#now()): string {
    const seconds = (now - this.#start) / 1000;
    const rate = seconds > 0 ? this.#done / seconds : 0;
    const total = this.#total;
    const parts = [this.#label];
    if (total !== undefined) {
      const frac = Math.min(1, Math.max(0, this.#done / total));
      if (this.#isTTY) {
        const full = Math.round(frac * BAR_WIDTH);
        parts.push(`[${'#'.repeat(full)}${'.'.repeat(BAR_WIDTH - full)}]`);
      }
      const done = this.#unit === 'B' ? formatBytes(this.#done) : formatCount(this.#done);
      parts.push(`${(frac * 100).toFixed(1)}%`, `${done}/${this.#amount(total)}`);
    } else {
      parts.push(this.#amount(this.#done));
    }
    parts.push(`${this.#amount(rate)}/s`);
    if (total !== undefined && rate > 0) parts.push(`ETA ${formatSeconds((total - this.#done) / rate)}`);
    else parts.push(formatSeconds(seconds));
    return parts.join(' ');
  }

  #amount(n: number): string {
    if (this.#unit === 'B') return formatBytes(n);
    return this.#unit ? `${formatCount(n)} ${this.#unit}` : formatCount(n);
  }
}
