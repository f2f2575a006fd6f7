/**
 * Subcommand dispatch: finds the subcommand, loads only its module, parses its flags and runs it.
 * Exit codes: 0 success, 1 failure at run time, 2 wrong use (unknown command or flag, bad value),
 * 130 interrupted twice.
 */

import { formatHelp, parseArgs } from '../args.js';
import { ConfigError, errorMessage, isSwitchboardError, UsageError } from '../errors.js';
import type { Command, CommandContext } from './command.js';

interface Entry {
  /** Module under src/cli/ exporting `command`. */
  readonly module: string;
  readonly summary: string;
}

/** Every subcommand, in help order. Two-word names are matched before one-word ones. */
const COMMANDS: Readonly<Record<string, Entry>> = {
  serve: { module: 'serve', summary: 'Run the comet server (gateway + router + publish API)' },
  cluster: { module: 'cluster', summary: 'Run several gateway and router processes behind one client port' },
  token: { module: 'token', summary: 'Mint a signed client token for an id' },
  send: { module: 'send', summary: 'Publish one message through a running server' },
  flood: { module: 'flood', summary: 'Open many streaming connections and count what arrives' },
  msggen: { module: 'msggen', summary: 'Generate messages to random ids, as the article did' },
  memlog: { module: 'memlog', summary: 'Log server RSS and connection count over time' },
  chart: { module: 'chart', summary: 'Draw a memlog file as a PNG or SVG chart' },
  'friends generate': { module: 'friends-generate', summary: 'Generate a Barabási–Albert friends graph' },
  'friends load': { module: 'friends-load', summary: 'Bulk-load a friends edge list as subscriptions' },
  'bench c10k': { module: 'bench-c10k', summary: "Run the article's part 2 C10K scenario and report" },
  'bench c1m': {
    module: 'bench-c1m',
    summary: "Run the article's part 3 on this box: a million users with friends, memory by role",
  },
  doctor: { module: 'doctor', summary: 'Check the limits that break at scale' },
};

function topHelp(): string {
  const rows = Object.entries(COMMANDS).map(([name, e]) => `  ${name.padEnd(18)} ${e.summary}`);
  return [
    'Usage: switchboard <command> [options]',
    '',
    'A million-user comet server.',
    '',
    'Commands:',
    ...rows,
    '',
    "Run 'switchboard <command> --help' (or 'switchboard help <command>') for a command's options.",
    '',
  ].join('\n');
}

function findCommand(argv: readonly string[]): { name: string; entry: Entry; rest: string[] } | undefined {
  const two = `${argv[0]} ${argv[1]}`;
  if (argv.length >= 2 && COMMANDS[two]) return { name: two, entry: COMMANDS[two], rest: argv.slice(2) };
  const one = argv[0];
  if (one !== undefined && COMMANDS[one]) return { name: one, entry: COMMANDS[one], rest: argv.slice(1) };
  return undefined;
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit code. */
export async function main(argv: readonly string[], ctx: CommandContext): Promise<number> {
  // `switchboard help serve` is `switchboard serve --help`.
  if (argv[0] === 'help' && argv.length > 1) return main([...argv.slice(1), '--help'], ctx);
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    ctx.stdout.write(topHelp());
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === '--version' || argv[0] === '-v') {
    ctx.stdout.write(`${await version()}\n`);
    return 0;
  }
  const found = findCommand(argv);
  if (!found) {
    const groups = Object.keys(COMMANDS).filter((k) => k.startsWith(`${argv[0]} `));
    const hint = groups.length ? ` (did you mean ${groups.map((g) => `'${g}'`).join(' or ')}?)` : '';
    ctx.stderr.write(
      `switchboard: unknown command '${argv[0]}'${hint}\nRun 'switchboard --help' for the list.\n`,
    );
    return 2;
  }
  const mod = (await import(`./${found.entry.module}.js`)) as { command: Command };
  const cmd = mod.command;
  try {
    const args = parseArgs(cmd.spec, found.rest);
    if (args.help) {
      ctx.stdout.write(formatHelp(cmd.spec));
      return 0;
    }
    return await cmd.run(args, ctx);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError) {
      ctx.stderr.write(`switchboard ${found.name}: ${err.message.replace(`${found.name}: `, '')}\n`);
      if (err instanceof UsageError) ctx.stderr.write(`Run 'switchboard ${found.name} --help' for usage.\n`);
      return 2;
    }
    const code = isSwitchboardError(err) ? ` [${err.code}]` : '';
    ctx.stderr.write(`switchboard ${found.name}: ${errorMessage(err)}${code}\n`);
    return 1;
  }
}

async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const pkg = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
