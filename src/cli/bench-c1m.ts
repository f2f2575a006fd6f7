/**
 * `switchboard bench c1m`: the article's part 3 on one machine: a friends graph, NATS, a cluster
 * sized for the open-files limit, a million streams from flood workers, messages fanned out to
 * online friends, memory by role. The work is in src/bench/c1m/; this file reads flags and prints.
 *
 * Progress goes to stderr; the summary (or the JSON report with `--json`) to stdout. Exit 0 when
 * the counts match and nothing failed, 1 otherwise, 2 for bad flags or kernel settings that are
 * too small without `--tune`.
 */

import { bool, num, str } from '../args.js';
import { C1M_DEFAULTS, runC1m } from '../bench/c1m/c1m.js';
import { formatC1mSummary } from '../bench/c1m/report.js';
import { shellJoin, splitArgs } from '../bench/harness/shell.js';
import type { Command } from './command.js';

const d = C1M_DEFAULTS;

export const command: Command = {
  spec: {
    name: 'bench c1m',
    summary:
      "The article's part 3: a million users with friends, a cluster on this box, streams from flood workers, messages to online friends, memory by role.",
    options: {
      users: {
        type: 'int',
        description: 'Users in the friends graph',
        default: d.users,
        min: 16,
        placeholder: 'N',
      },
      m: {
        type: 'int',
        description: 'Friendships each new user makes (Barabási–Albert m)',
        default: d.m,
        min: 1,
      },
      seed: {
        type: 'int',
        description: 'Seed of the graph and of the random recipients',
        default: d.seed,
        min: 0,
      },
      connections: {
        type: 'int',
        description: 'Streams /test/1 … /test/N (default: --users, at most a million)',
        min: 1,
        short: 'n',
        placeholder: 'N',
      },
      gateways: {
        type: 'int',
        description: 'Gateway processes (default: one per 19,000 connections, under the open-files limit)',
        min: 1,
        max: 512,
      },
      routers: { type: 'int', description: 'Router processes', default: d.routers, min: 1, max: 64 },
      'ramp-rate': {
        type: 'number',
        description: 'New connections per second over all flood workers (0: as fast as possible)',
        default: d.rampRate,
        min: 0,
        placeholder: 'PER_SECOND',
      },
      'flood-nice': {
        type: 'int',
        description:
          'Nice value of the flood workers: 0 competes with the server for the CPU, 10 lets the server go first (the load generator is not what is measured)',
        default: d.floodNice,
        min: 0,
        max: 19,
      },
      'router-nice': {
        type: 'int',
        description:
          'Nice value of the router processes: below 0 (root only) they go ahead of the 50-odd gateways, as a router with a core of its own would',
        default: d.routerNice,
        min: -20,
        max: 19,
      },
      hold: { type: 'duration', description: 'Idle time at full connections', default: d.holdMs, min: 0 },
      'msg-rate': {
        type: 'number',
        description: 'Messages per second to random users (each reaches the user and its online friends)',
        default: d.msgRate,
        min: 0.001,
        placeholder: 'PER_SECOND',
      },
      duration: {
        type: 'duration',
        description: 'How long messages are sent',
        default: d.durationMs,
        min: 1,
      },
      drain: {
        type: 'duration',
        description: 'Longest wait for the last deliveries',
        default: d.drainMs,
        min: 0,
      },
      'sample-every': {
        type: 'duration',
        description: 'Time between memory samples',
        default: d.sampleEveryMs,
        min: 200,
      },
      'time-limit': {
        type: 'duration',
        description: 'The whole run stops by itself after this',
        default: d.timeLimitMs,
        min: 1000,
      },
      'min-available': {
        type: 'size',
        description: "Stop the run when the machine's MemAvailable falls under this",
        default: d.minAvailableBytes,
        min: 0,
      },
      bus: {
        type: 'string',
        description: 'NATS URL (ignored with --nats-server)',
        default: d.bus,
        placeholder: 'URL',
      },
      'nats-server': {
        type: 'string',
        description:
          "Start a NATS server of the run's own from this binary (/usr/sbin/nats-server), JetStream in a temp folder",
        placeholder: 'PATH',
      },
      tune: {
        type: 'boolean',
        description: 'Set the kernel settings the run needs, and put the originals back at the end (root)',
      },
      'friends-db': {
        type: 'string',
        description:
          'SQLite file for the friends graph: reused when it holds the same graph, built and kept otherwise',
        placeholder: 'FILE',
      },
      'server-args': {
        type: 'string',
        description: 'Further `serve` flags for every cluster worker: --server-args="--history 0"',
        placeholder: 'FLAGS',
      },
      'node-args': {
        type: 'string',
        description: "Node flags for the gateways (default: the cluster's lean ones)",
        placeholder: 'FLAGS',
      },
      'out-dir': {
        type: 'string',
        description: 'Folder for report.json, c1m.png/svg and the logs',
        placeholder: 'DIR',
      },
      json: { type: 'boolean', description: 'Print the JSON report on stdout instead of the summary' },
    },
    epilog: [
      'Phases: kernel check → friends graph → NATS → cluster → empty → ramp → hold → messages → drain → stop.',
      'Memory by role (gateways, routers, primary, NATS, flood) as PSS, private and RSS; kernel slab and',
      'TCP buffers; MemAvailable. The run stops itself (partial report, everything it started stopped by',
      'pid) when MemAvailable falls under --min-available, when a process it started dies, at',
      '--time-limit, or on Ctrl-C. The counts must agree: delivered (API) = received (flood) ≥ sent.',
      '',
      'The million (as root; a reused graph saves a minute):',
      '  switchboard bench c1m --tune --friends-db /var/tmp/friends-1m.db --out-dir c1m-run',
      'Scaled down:',
      '  switchboard bench c1m --users 20000 --gateways 2 --msg-rate 200 --duration 20s',
    ].join('\n'),
  },

  async run(args, ctx) {
    const v = args.values;
    const serverArgs = str(v, 'server-args');
    const nodeArgs = str(v, 'node-args');
    const report = await runC1m(
      {
        users: num(v, 'users'),
        m: num(v, 'm'),
        seed: num(v, 'seed'),
        connections: num(v, 'connections'),
        gateways: num(v, 'gateways'),
        routers: num(v, 'routers'),
        rampRate: num(v, 'ramp-rate'),
        floodNice: num(v, 'flood-nice'),
        routerNice: num(v, 'router-nice'),
        holdMs: num(v, 'hold'),
        msgRate: num(v, 'msg-rate'),
        durationMs: num(v, 'duration'),
        drainMs: num(v, 'drain'),
        sampleEveryMs: num(v, 'sample-every'),
        timeLimitMs: num(v, 'time-limit'),
        minAvailableBytes: num(v, 'min-available'),
        bus: str(v, 'bus'),
        natsServer: str(v, 'nats-server'),
        tune: bool(v, 'tune'),
        friendsDb: str(v, 'friends-db'),
        serverArgs: serverArgs === undefined ? undefined : splitArgs(serverArgs, '--server-args'),
        nodeArgs: nodeArgs === undefined ? undefined : splitArgs(nodeArgs, '--node-args'),
        outDir: str(v, 'out-dir'),
        commandLine: shellJoin(process.argv),
      },
      { signal: ctx.signal, onLine: (line) => ctx.stderr.write(`${line}\n`) },
    );
    ctx.stdout.write(bool(v, 'json') ? `${JSON.stringify(report, null, 2)}\n` : formatC1mSummary(report));
    return report.ok ? 0 : 1;
  },
};
