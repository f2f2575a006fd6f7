/**
 * Server options from the command line, the environment and a config file, generated from the
 * options table (src/options.ts) so the three speak the same names and the same checks:
 *
 * ```
 *   flag           --head-timeout 10s           (serve's flags; help from the table)
 *   environment    SWITCHBOARD_HEAD_TIMEOUT=10s
 *   config file    { "headTimeoutMs": 10000 }   (--config FILE or SWITCHBOARD_CONFIG; durations
 *                                               and sizes may also be written "10s", "64KB")
 * ```
 *
 * Precedence: flags over environment over file over defaults. Secrets (the token secret, the API
 * key, a store URL with a password) can come from the environment or from a file
 * (`--token-secret-file`, `SWITCHBOARD_TOKEN_SECRET_FILE`, `"tokenSecretFile"`), so they never
 * need to be on a command line that `ps` shows.
 */
import { readFileSync } from 'node:fs';
import { convertText, type OptionSpec, type OptionValue } from '../args.js';
import { ConfigError, errorMessage } from '../errors.js';
import {
  envOf,
  flagOf,
  OPTIONS,
  type OptionName,
  type OptionRow,
  type ServerOptionsInput,
  valueProblem,
} from '../options.js';

const NAMES = Object.keys(OPTIONS) as OptionName[];

/** The `serve` flag spec of one option (no default: the environment or a file may set it). */
function flagSpec(name: OptionName): OptionSpec {
  const row: OptionRow<unknown> = OPTIONS[name];
  const type = row.kind === 'boolean' ? 'boolean' : row.kind;
  const shown = typeof row.default === 'string' && row.default === '' ? undefined : row.default;
  return {
    type,
    description: row.help,
    ...(row.short ? { short: row.short } : {}),
    ...(row.min !== undefined ? { min: row.min } : {}),
    ...(row.max !== undefined ? { max: row.max } : {}),
    ...(row.choices ? { choices: row.choices } : {}),
    ...(row.placeholder ? { placeholder: row.placeholder } : {}),
    ...(shown !== undefined && name !== 'allowAnonymous'
      ? { shownDefault: shown as string | number | boolean }
      : {}),
  };
}

/** Every server option as a flag, plus `--config` and a `--…-file` for each secret. */
export function serverFlags(): Record<string, OptionSpec> {
  const out: Record<string, OptionSpec> = {
    config: {
      type: 'string',
      description: 'JSON config file: option names as keys (env SWITCHBOARD_CONFIG)',
      placeholder: 'FILE',
    },
  };
  for (const name of NAMES) {
    const row: OptionRow<unknown> = OPTIONS[name];
    if (row.internal) continue;
    out[flagOf(name)] = flagSpec(name);
    if (row.secret) {
      out[`${flagOf(name)}-file`] = {
        type: 'string',
        description: `Read ${flagOf(name)} from this file`,
        placeholder: 'FILE',
      };
    }
  }
  return out;
}

/** Reads a secret from a file: its content without the trailing newline. */
function readSecret(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new ConfigError(`${what}: cannot read ${file}: ${errorMessage(err)}`);
  }
}

/** A config-file value: the option's own type, or text for durations and sizes ("10s", "64KB"). */
function fileValue(name: OptionName, value: unknown, where: string): unknown {
  const row: OptionRow<unknown> = OPTIONS[name];
  if (typeof value === 'string' && (row.kind === 'duration' || row.kind === 'size' || row.kind === 'int')) {
    return convertText(flagSpec(name), value, `${where}: ${name}`);
  }
  const problem = valueProblem(name, value);
  if (problem !== undefined) throw new ConfigError(`${where}: ${name} ${problem}`);
  return value;
}

/** The options a config file sets; unknown keys are refused, naming the file. */
export function readConfigFile(file: string): ServerOptionsInput {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`config file ${file}: ${errorMessage(err)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${file}: must be a JSON object of option names`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed)) {
    const secretOf = key.endsWith('File') ? (key.slice(0, -4) as OptionName) : undefined;
    if (secretOf !== undefined && (OPTIONS[secretOf] as OptionRow<unknown> | undefined)?.secret) {
      if (typeof value !== 'string') throw new ConfigError(`config file ${file}: ${key} must be a file path`);
      out[secretOf] = readSecret(value, `config file ${file}: ${key}`);
      continue;
    }
    if (!Object.hasOwn(OPTIONS, key))
      throw new ConfigError(`config file ${file}: unknown option ${JSON.stringify(key)}`);
    out[key] = fileValue(key as OptionName, value, `config file ${file}`);
  }
  return out as ServerOptionsInput;
}

/** The options the environment sets (`SWITCHBOARD_<FLAG>`, and `…_FILE` for secrets). */
export function readEnvironment(env: NodeJS.ProcessEnv): ServerOptionsInput {
  const out: Record<string, unknown> = {};
  for (const name of NAMES) {
    const row: OptionRow<unknown> = OPTIONS[name];
    const key = envOf(name);
    const text = env[key];
    if (row.secret && env[`${key}_FILE`]) out[name] = readSecret(env[`${key}_FILE`]!, `${key}_FILE`);
    if (text === undefined || (text === '' && row.kind !== 'string')) continue;
    out[name] = convertText(flagSpec(name), text, key);
  }
  return out as ServerOptionsInput;
}

/** The options given as flags (by flag name, as `parseArgs` returns them). */
export function readFlags(values: Readonly<Record<string, OptionValue>>): ServerOptionsInput {
  const out: Record<string, unknown> = {};
  for (const name of NAMES) {
    const flag = flagOf(name);
    const row: OptionRow<unknown> = OPTIONS[name];
    if (row.secret && typeof values[`${flag}-file`] === 'string') {
      out[name] = readSecret(values[`${flag}-file`] as string, `--${flag}-file`);
    }
    if (values[flag] !== undefined) out[name] = values[flag];
  }
  return out as ServerOptionsInput;
}

/** Every source, merged: flags over environment over config file (defaults come last, in resolveOptions). */
export function loadServerOptions(
  values: Readonly<Record<string, OptionValue>>,
  env: NodeJS.ProcessEnv,
): ServerOptionsInput {
  const file = (values.config as string | undefined) ?? env.SWITCHBOARD_CONFIG;
  return {
    ...(file ? readConfigFile(file) : {}),
    ...readEnvironment(env),
    ...readFlags(values),
  };
}
