/**
 * A small leveled logger: one line per event on stderr, as text (`time level component message
 * {fields}`) or as JSON (`{"time","level","component","msg",...fields}`, for log shippers).
 * Hot paths do not log per message or per connection at info level; they count in metrics instead.
 */

/** Levels from most to least severe; `silent` logs nothing. */
export const LOG_LEVELS = ['silent', 'error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

/** How a line is written. */
export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** What components log through. */
export interface Logger {
  readonly level: LogLevel;
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  /** A logger that prefixes every line with `component`. */
  child(component: string): Logger;
  /** True when `level` lines are written (guard costly field building). */
  enabled(level: Exclude<LogLevel, 'silent'>): boolean;
}

/** Where log lines go; defaults to process.stderr. */
export interface LogSink {
  write(line: string): unknown;
}

const rank: Record<LogLevel, number> = { silent: 0, error: 1, warn: 2, info: 3, debug: 4 };

class LineLogger implements Logger {
  readonly level: LogLevel;
  readonly #sink: LogSink;
  readonly #component: string;
  readonly #format: LogFormat;

  constructor(level: LogLevel, sink: LogSink, component: string, format: LogFormat) {
    this.level = level;
    this.#sink = sink;
    this.#component = component;
    this.#format = format;
  }

  enabled(level: Exclude<LogLevel, 'silent'>): boolean {
    return rank[level] <= rank[this.level];
  }

  #write(level: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields): void {
    if (rank[level] > rank[this.level]) return;
    const time = new Date().toISOString();
    if (this.#format === 'json') {
      // The fixed keys last, so a field cannot overwrite them.
      const record = { ...(fields && plain(fields)), time, level, component: this.#component, msg };
      this.#sink.write(`${JSON.stringify(record)}\n`);
      return;
    }
    let line = `${time} ${level.padEnd(5)} ${this.#component ? `${this.#component}: ` : ''}${msg}`;
    if (fields !== undefined) line += ` ${JSON.stringify(plain(fields))}`;
    this.#sink.write(`${line}\n`);
  }

  error(msg: string, fields?: LogFields): void {
    this.#write('error', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#write('warn', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#write('info', msg, fields);
  }
  debug(msg: string, fields?: LogFields): void {
    this.#write('debug', msg, fields);
  }
  child(component: string): Logger {
    return new LineLogger(
      this.level,
      this.#sink,
      this.#component ? `${this.#component}.${component}` : component,
      this.#format,
    );
  }
}

/**
 * Errors become `message (code)`. Done before JSON.stringify, which would otherwise call an
 * error's own `toJSON` (our API body shape) ahead of any replacer.
 */
function plain(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    if (value instanceof Error) {
      const code = (value as { code?: unknown }).code;
      out[key] = code === undefined ? value.message : `${value.message} (${String(code)})`;
    } else {
      out[key] = value;
    }
  }
  return out;
}

/** A logger at `level` writing to `sink` (stderr by default) as `format` lines. */
export function createLogger(
  level: LogLevel = 'info',
  sink: LogSink = process.stderr,
  component = '',
  format: LogFormat = 'text',
): Logger {
  return new LineLogger(level, sink, component, format);
}

/** A logger that writes nothing; the default for library use and tests. */
export const silentLogger: Logger = createLogger('silent');
