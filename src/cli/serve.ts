/**
 * `switchboard serve`: runs the comet server until SIGINT/SIGTERM, then shuts down gracefully
 * (stop accepting, tell clients to reconnect, drain, close) and exits 0. Its flags come from the
 * options table (src/options.ts) through server-config.ts, as do the environment variables and
 * the config file it reads.
 */

import type { CommandSpec } from '../args.js';
import { createLogger } from '../log.js';
import { resolveOptions } from '../options.js';
import { Switchboard, untilSignal } from '../server.js';
import type { Command } from './command.js';
import { loadServerOptions, serverFlags } from './server-config.js';

const spec: CommandSpec = {
  name: 'serve',
  summary: 'Run the comet server: client streams on --port, the publish API on --api-port.',
  options: serverFlags(),
  epilog: [
    'Examples:',
    '  switchboard serve                               # embedded: SQLite under ./data, in-process bus',
    "  curl -N http://127.0.0.1:8000/test/123          # the article's stream",
    `  curl -d '{"id":"123","msg":"Hello World"}' http://127.0.0.1:8001/api/send`,
    '',
    'Every option can also come from the environment (SWITCHBOARD_<FLAG>, e.g. SWITCHBOARD_HEAD_TIMEOUT=10s)',
    'or a JSON config file (--config FILE, keys are option names: {"headTimeoutMs": 10000}).',
    'Flags win over the environment, which wins over the file. Durations need a unit (10s, 5m, 1d).',
  ].join('\n'),
};

export const command: Command = {
  spec,
  async run({ values }, ctx) {
    const options = resolveOptions(loadServerOptions(values, process.env));
    // In a cluster, each worker's lines say which worker wrote them.
    const logger = createLogger(
      options.logLevel,
      process.stderr,
      process.env.SWITCHBOARD_WORKER ?? '',
      options.logFormat,
    );
    const sb = await Switchboard.start({ ...options, logger });
    await untilSignal(ctx.signal);
    sb.log.info('shutting down');
    await sb.close();
    return 0;
  },
};
