/**
 * Command-line parsing for every `switchboard` command, from one declarative spec per command.
 *
 * The spec drives parsing, validation (type, range, choices — each error names the flag and what
 * it allows) and the `--help` text, so the three cannot drift apart. Wrong use throws
 * {@link UsageError}; `main.ts` turns that into exit code 2 with the message and a pointer to
 * `--help`.
 */
import { UsageError } from './errors.js';

/**
 * Kinds of option value. `duration` is milliseconds, written with a unit (`250ms`, `10s`, `5m`,
 * `1h`, `1d`; only `0` may go without); `size` is bytes (`65536`, `64KB`, `1MB`).
 */
export type OptionType = 'string' | 'int' | 'number' | 'boolean' | 'duration' | 'size' | 'list';

export interface OptionSpec {
  readonly type: OptionType;
  readonly description: string;
  /** Default value, already in parsed form (ms for durations, bytes for sizes). */
  readonly default?: string | number | boolean | readonly string[];
  /** One-letter alias, without the dash. */
  readonly short?: string;
  /** Inclusive numeric range for int/number/duration/size. */
  readonly min?: number;
  readonly max?: number;
  /** Allowed values for a string. */
  readonly choices?: readonly string[];
  /** Name shown for the value in help, e.g. `PORT`. */
  readonly placeholder?: string;
  /**
   * The default to show in help when `default` is left out because the value may still come
   * from elsewhere (the environment, a config file).
   */
  readonly shownDefault?: string | number | boolean;
  /** The option may be given several times; values collect into a list. */
  readonly repeat?: boolean;
}

export interface PositionalSpec {
  readonly name: string;
  readonly description: string;
  readonly required?: boolean;
  /** Takes all remaining arguments. */
  readonly rest?: boolean;
}

export interface CommandSpec {
  /** Full command name as typed, e.g. `friends generate`. */
  readonly name: string;
  readonly summary: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  readonly positionals?: readonly PositionalSpec[];
  /** Extra help text after the options (examples, notes). */
  readonly epilog?: string;
}

export type OptionValue = string | number | boolean | string[] | undefined;

export interface ParsedArgs {
  /** Values by option name (camelCase of the flag is NOT applied: `api-port` stays `api-port`). */
  readonly values: Record<string, OptionValue>;
  readonly positionals: string[];
  /** True when `--help`/`-h` was given; nothing else was validated. */
  readonly help: boolean;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1024,
  k: 1024,
  mb: 1024 ** 2,
  m: 1024 ** 2,
  gb: 1024 ** 3,
  g: 1024 ** 3,
};

/**
 * Parses `10s`, `250ms`, `5m`, `1.5h`, `1d`. A unit is required (a bare `15` has meant 15 ms to
 * one reader and 15 s to another); only `0` needs none.
 */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (/^0+(\.0+)?$/.test(t)) return 0;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/i.exec(t);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!.toLowerCase()]!);
}

/** Parses `65536`, `64KB`, `1MB`, `2g`; units are powers of 1024. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(b|kb?|mb?|gb?)?$/i.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()]!);
}

function flagName(name: string): string {
  return `--${name}`;
}

function convert(
  cmd: CommandSpec,
  name: string,
  spec: OptionSpec,
  raw: string,
): string | number | boolean | string[] {
  return convertText(spec, raw, `${cmd.name}: ${flagName(name)}`);
}

/**
 * Converts `raw` as an option of `spec` would be, or throws {@link UsageError} that starts with
 * `label` (a flag, an environment variable) and says what is allowed.
 */
export function convertText(
  spec: OptionSpec,
  raw: string,
  label: string,
): string | number | boolean | string[] {
  const fail = (what: string): never => {
    throw new UsageError(`${label} ${what}, got ${JSON.stringify(raw)}`);
  };
  let value: number;
  switch (spec.type) {
    case 'string':
      if (spec.choices && !spec.choices.includes(raw)) fail(`must be one of ${spec.choices.join(', ')}`);
      return raw;
    case 'list':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
    case 'boolean':
      if (/^(true|1|yes|on)$/i.test(raw)) return true;
      if (/^(false|0|no|off)$/i.test(raw)) return false;
      return fail('must be true or false');
    case 'int':
      if (!/^-?\d+$/.test(raw.trim())) fail('must be a whole number');
      value = Number(raw);
      break;
    case 'number':
      value = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(value)) fail('must be a number');
      break;
    case 'duration':
      value = parseDuration(raw) ?? fail('must be a duration with a unit, such as 500ms, 10s, 5m, 1h, 1d');
      break;
    case 'size':
      value = parseSize(raw) ?? fail('must be a size such as 65536, 64KB, 1MB');
      break;
  }
  const unit = spec.type === 'duration' ? ' ms' : spec.type === 'size' ? ' bytes' : '';
  if (spec.min !== undefined && value < spec.min) fail(`must be at least ${spec.min}${unit}`);
  if (spec.max !== undefined && value > spec.max) fail(`must be at most ${spec.max}${unit}`);
  return value;
}

/**
 * Parses `argv` (the arguments after the command name) against `cmd`.
 * Accepts `--flag value`, `--flag=value`, `-x value`, `--bool`, `--no-bool`, and `--` to end options.
 */
export function parseArgs(cmd: CommandSpec, argv: readonly string[]): ParsedArgs {
  const values: Record<string, OptionValue> = {};
  const positionals: string[] = [];
  const shorts = new Map<string, string>();
  for (const [name, spec] of Object.entries(cmd.options)) if (spec.short) shorts.set(spec.short, name);

  if (argv.includes('--help') || argv.includes('-h')) {
    const end = argv.indexOf('--');
    const helpAt = Math.max(argv.indexOf('--help'), argv.indexOf('-h'));
    if (end === -1 || helpAt < end) return { values, positionals, help: true };
  }

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq === -1 ? undefined : arg.slice(eq + 1);
    } else {
      const alias = shorts.get(arg.slice(1));
      if (alias === undefined) throw new UsageError(`${cmd.name}: unknown option ${arg}`);
      name = alias;
    }
    const spec = cmd.options[name];
    if (spec === undefined && name.startsWith('no-') && cmd.options[name.slice(3)]?.type === 'boolean') {
      if (inline !== undefined) throw new UsageError(`${cmd.name}: ${flagName(name)} takes no value`);
      values[name.slice(3)] = false;
      continue;
    }
    if (spec === undefined) {
      const known = Object.keys(cmd.options);
      const near = known.find((k) => k.startsWith(name.slice(0, 3)));
      throw new UsageError(
        `${cmd.name}: unknown option --${name}${near ? ` (did you mean --${near}?)` : ''}`,
      );
    }
    let raw: string;
    if (spec.type === 'boolean' && inline === undefined) {
      raw = 'true';
    } else if (inline !== undefined) {
      raw = inline;
    } else {
      const next = argv[i + 1];
      // `--node-args "--a --b"`: a value with spaces is a value, though it starts with --.
      if (next === undefined || (next.startsWith('--') && next.length > 2 && !/\s/.test(next))) {
        throw new UsageError(`${cmd.name}: ${flagName(name)} needs a value`);
      }
      raw = next;
      i++;
    }
    const value = convert(cmd, name, spec, raw);
    if (spec.repeat || spec.type === 'list') {
      const prev = values[name];
      const list = Array.isArray(prev) ? prev : [];
      values[name] = list.concat(Array.isArray(value) ? value : [String(value)]);
    } else {
      values[name] = value;
    }
  }

  for (const [name, spec] of Object.entries(cmd.options)) {
    if (values[name] === undefined && spec.default !== undefined) {
      values[name] = Array.isArray(spec.default) ? [...spec.default] : (spec.default as OptionValue);
    }
  }

  const specs = cmd.positionals ?? [];
  const hasRest = specs.some((p) => p.rest);
  for (const [idx, p] of specs.entries()) {
    if (p.required && positionals[idx] === undefined) {
      throw new UsageError(`${cmd.name}: missing argument <${p.name}> (${p.description})`);
    }
  }
  if (!hasRest && positionals.length > specs.length) {
    throw new UsageError(`${cmd.name}: unexpected argument ${JSON.stringify(positionals[specs.length])}`);
  }
  return { values, positionals, help: false };
}

function showDefault(spec: OptionSpec): string {
  const d = spec.default ?? spec.shownDefault;
  if (d === undefined || d === false) return '';
  if (Array.isArray(d)) return d.length ? ` (default: ${d.join(',')})` : '';
  if (spec.type === 'duration' && typeof d === 'number') return ` (default: ${formatDuration(d)})`;
  if (spec.type === 'size' && typeof d === 'number') return ` (default: ${formatSize(d)})`;
  return ` (default: ${String(d)})`;
}

/** `90000` → `90s`, `250` → `250ms`. */
export function formatDuration(ms: number): string {
  if (ms !== 0 && ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms !== 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms !== 0 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms !== 0 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** `65536` → `64KB`. */
export function formatSize(bytes: number): string {
  if (bytes !== 0 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3}GB`;
  if (bytes !== 0 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}MB`;
  if (bytes !== 0 && bytes % 1024 === 0) return `${bytes / 1024}KB`;
  return `${bytes}`;
}

/** The `--help` text for `cmd`. */
export function formatHelp(cmd: CommandSpec): string {
  const pos = (cmd.positionals ?? []).map((p) => (p.required ? `<${p.name}>` : `[${p.name}]`)).join(' ');
  const lines = [`Usage: switchboard ${cmd.name} [options]${pos ? ` ${pos}` : ''}`, '', cmd.summary, ''];
  if (cmd.positionals?.length) {
    lines.push('Arguments:');
    for (const p of cmd.positionals) lines.push(`  ${p.name.padEnd(28)} ${p.description}`);
    lines.push('');
  }
  lines.push('Options:');
  const rows: [string, string][] = Object.entries(cmd.options).map(([name, spec]) => {
    const value = spec.type === 'boolean' ? '' : ` ${spec.placeholder ?? spec.type.toUpperCase()}`;
    const short = spec.short ? `-${spec.short}, ` : '';
    const range =
      spec.min !== undefined || spec.max !== undefined
        ? ` [${spec.min ?? ''}..${spec.max ?? ''}]`
        : spec.choices
          ? ` [${spec.choices.join('|')}]`
          : '';
    return [`${short}--${name}${value}`, `${spec.description}${range}${showDefault(spec)}`];
  });
  rows.push(['-h, --help', 'Show this help']);
  for (const [left, right] of rows) lines.push(`  ${left.padEnd(28)} ${right}`);
  if (cmd.epilog) lines.push('', cmd.epilog);
  return `${lines.join('\n')}\n`;
}

/** Reads an option known to be a string (after defaults). */
export function str(values: ParsedArgs['values'], name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

/** Reads an option known to be numeric (after defaults). */
export function num(values: ParsedArgs['values'], name: string): number | undefined {
  const v = values[name];
  return typeof v === 'number' ? v : undefined;
}

/** Reads a boolean option; absent is false. */
export function bool(values: ParsedArgs['values'], name: string): boolean {
  return values[name] === true;
}

/** Reads a list option; absent is empty. */
export function list(values: ParsedArgs['values'], name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : [];
}
