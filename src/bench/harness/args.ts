/**
 * Flags for the benchmark scripts in bench/, through the CLI's own checked parser
 * (src/cli/args.ts): each script declares its flags once, with types, ranges, choices and
 * defaults, so a typo such as `--connections 10k` stops it with exit 2 and a message naming the
 * flag instead of running with NaN, and `--help` prints them. The values come back typed from
 * the declaration (`int` → number, `boolean` → boolean, …; `| undefined` without a default).
 */
import { type CommandSpec, formatHelp, type OptionSpec, parseArgs } from '../../args.js';
import { UsageError } from '../../errors.js';
import { LEAN_NODE_ARGS } from '../../options.js';

/** A bench script's flags; `name` is its path under dist/ (`bench/scale-out.js`), used in messages. */
export interface BenchSpec extends CommandSpec {
  readonly name: `bench/${string}.js`;
}

type ValueOf<O extends OptionSpec> = O['type'] extends 'boolean'
  ? boolean
  : O['type'] extends 'string'
    ? string
    : O['type'] extends 'list'
      ? string[]
      : number;

/** The parsed values of `S`'s options, by flag name. */
export type BenchValues<S extends CommandSpec> = {
  readonly [K in keyof S['options']]: S['options'][K] extends { readonly default: unknown }
    ? ValueOf<S['options'][K]>
    : ValueOf<S['options'][K]> | undefined;
};

/** `--node-args`, for a bench that starts a server: its node flags, the lean V8 flags by default. */
export const NODE_ARGS_OPTION = {
  type: 'string',
  description: "The server's node flags ('' for none)",
  default: LEAN_NODE_ARGS.join(' '),
} as const satisfies OptionSpec;

/** A `--node-args` value as arguments: whitespace separates them. */
export function nodeArgsOf(text: string): string[] {
  return text.split(/\s+/).filter((a) => a.length > 0);
}

/** The `--help` text of a bench script: the CLI's help, with `node dist/<name>` as the command. */
export function benchHelp(spec: BenchSpec): string {
  return formatHelp(spec).replace(
    `Usage: switchboard ${spec.name}`,
    `Usage: node [node flags] dist/${spec.name}`,
  );
}

/** The error for a flag value a script checks itself, worded like the parser's own. */
export function badFlag(spec: BenchSpec, flag: string, what: string, raw: unknown): UsageError {
  return new UsageError(`${spec.name}: --${flag} ${what}, got ${JSON.stringify(raw)}`);
}

/**
 * A list flag's items as numbers of at least `min` (`--page-sizes 100,1000`), whole with `int`.
 * @throws UsageError naming the flag.
 */
export function numberList(
  spec: BenchSpec,
  flag: string,
  items: readonly string[],
  opts: { readonly min: number; readonly int?: boolean },
): number[] {
  const what = `must be a comma-separated list of ${opts.int ? 'whole numbers' : 'numbers'} of at least ${opts.min}`;
  if (items.length === 0) throw badFlag(spec, flag, what, items.join(','));
  return items.map((item) => {
    const n = Number(item);
    if (!Number.isFinite(n) || n < opts.min || (opts.int && !Number.isInteger(n)))
      throw badFlag(spec, flag, what, items.join(','));
    return n;
  });
}

/**
 * Parses this process's arguments against `spec`. `--help` prints the help and exits 0; a bad
 * flag, or a {@link UsageError} thrown by `check` (for rules the declaration cannot say), prints
 * the message and exits 2.
 */
export function parseBenchArgs<const S extends BenchSpec>(
  spec: S,
  check?: (values: BenchValues<S>) => void,
  argv: readonly string[] = process.argv.slice(2),
): BenchValues<S> {
  try {
    const parsed = parseArgs(spec, argv);
    if (parsed.help) {
      process.stdout.write(benchHelp(spec));
      process.exit(0);
    }
    // parseArgs checked every value against its declared type and filled in the defaults.
    const values = parsed.values as BenchValues<S>;
    check?.(values);
    return values;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${err.message}\nRun 'node dist/${spec.name} --help' for its flags.\n`);
    process.exit(2);
  }
}
