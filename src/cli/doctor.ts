/** `switchboard doctor`: checks this box's limits against a connection target. Exit 1 if one fails. */

import { bool, type CommandSpec, num } from '../args.js';
import { type Check, runChecks } from '../tools/doctor.js';
import type { Command } from './command.js';

const spec: CommandSpec = {
  name: 'doctor',
  summary:
    'Check the limits that break at scale (open files, ports, backlogs, kernel memory) for a connection target.',
  options: {
    connections: { type: 'int', description: 'Connections this box should hold', default: 1_000_000, min: 1 },
    'local-clients': {
      type: 'boolean',
      description: 'The load generator runs on this box too (two sockets per connection)',
      default: true,
    },
    'server-kb': {
      type: 'number',
      description: 'Server KB per idle connection (see BENCHMARKS.md)',
      default: 2,
      min: 0,
    },
    'client-kb': {
      type: 'number',
      description: 'Load-generator KB per connection (measured by bench c1m at a million: 3.6)',
      default: 3.6,
      min: 0,
    },
    'kernel-kb': {
      type: 'number',
      description: 'Kernel KB per idle socket (measured: bench/idle-memory)',
      default: 5,
      min: 0,
    },
    json: { type: 'boolean', description: 'Print the checks as JSON' },
  },
};

const MARK: Record<Check['status'], string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };

export const command: Command = {
  spec,
  async run({ values }, ctx) {
    const checks = runChecks({
      connections: num(values, 'connections') ?? 1_000_000,
      localClients: bool(values, 'local-clients'),
      serverKBPerConn: num(values, 'server-kb') ?? 2,
      clientKBPerConn: num(values, 'client-kb') ?? 3.6,
      kernelKBPerSocket: num(values, 'kernel-kb') ?? 5,
    });
    if (bool(values, 'json')) ctx.stdout.write(`${JSON.stringify(checks, null, 2)}\n`);
    else
      for (const c of checks)
        ctx.stdout.write(`${MARK[c.status]}  ${c.name}: ${c.value}\n      ${c.advice}\n`);
    return checks.some((c) => c.status === 'fail') ? 1 : 0;
  },
};
