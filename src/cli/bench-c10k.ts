/**
 * `switchboard bench c10k`: the article's part 2 C10K scenario — empty server, 10k streaming
 * connections, 1000 msg/s to random ids — with memory logged throughout, counts checked and a
 * chart drawn. The work is in src/bench/c10k/c10k.ts; this file reads flags and prints.
 *
 * Progress (phases, one line per memory sample) goes to stderr; the summary (or the JSON report
 * with `--json`) to stdout. Exit 0 when the counts match and nothing failed, 1 otherwise (a
 * MISMATCH line says why), 2 for bad flags.
 */

import { bool, list, num, str } from '../args.js';
import { C10K_DEFAULTS, type C10kEvent, MAX_C10K_CONNECTIONS, runC10k } from '../bench/c10k/c10k.js';
import { formatC10kSummary } from '../bench/c10k/summary.js';
import { shellJoin, splitArgs } from '../bench/harness/shell.js';
import { formatMs } from '../tools/msggen/latency.js';
import { MAX_BATCH } from '../tools/msggen/msggen.js';
import type { Command } from './command.js';

const d = C10K_DEFAULTS;

function formatEvent(e: C10kEvent): string {
  const t = (ms: number): string => `[${(ms / 1000).toFixed(1).padStart(7)}s]`;
  switch (e.type) {
    case 'phase':
      return `${t(e.elapsedMs)} ${e.phase}: ${e.message}`;
    case 'warning':
      return `bench c10k: warning: ${e.message}`;
    case 'sample': {
      const parts = [
        `${t(e.elapsedMs)} ${e.phase.padEnd(8)}`,
        `rss ${(e.sample.rssKb / 1024).toFixed(1).padStart(6)} MB`,
        `conns ${String(e.sample.connections).padStart(6)}`,
      ];
      if (e.msggen !== undefined) parts.push(`sent ${e.msggen.sent} (${e.msggen.recentPerSecond}/s)`);
      if (e.flood !== undefined && (e.flood.chunks > 0 || e.msggen !== undefined)) {
        parts.push(`received ${e.flood.chunks}`);
        if (e.flood.latency.count > 0) parts.push(`p99 ${formatMs(e.flood.latency.p99)}`);
      }
      return parts.join('  ');
    }
  }
}

export const command: Command = {
  spec: {
    name: 'bench c10k',
    summary:
      "The article's part 2 C10K test: start a server, open N streams, send messages to random ids, log memory, report.",
    options: {
      connections: {
        type: 'int',
        description: 'Streaming connections (/test/1 … /test/N)',
        default: d.connections,
        min: 1,
        max: MAX_C10K_CONNECTIONS,
        short: 'n',
        placeholder: 'N',
      },
      'ramp-rate': {
        type: 'number',
        description: 'New connections per second (the article: 100); 0 = as fast as possible',
        default: d.rampRate,
        min: 0,
        placeholder: 'PER_SECOND',
      },
      rate: {
        type: 'number',
        description: 'Messages per second to random ids 1..N (open loop, stamped for latency)',
        default: d.rate,
        min: 0.001,
        placeholder: 'PER_SECOND',
      },
      duration: {
        type: 'duration',
        description: 'How long messages are sent (the article: 24h)',
        default: d.durationMs,
        min: 1,
        placeholder: 'DURATION',
      },
      hold: {
        type: 'duration',
        description: 'Idle time at full connections before the first message',
        default: d.holdMs,
        min: 0,
        placeholder: 'DURATION',
      },
      'sample-every': {
        type: 'duration',
        description: 'Time between memory samples',
        default: d.sampleEveryMs,
        min: 100,
        placeholder: 'DURATION',
      },
      drain: {
        type: 'duration',
        description: 'Longest wait for the last chunks after the last message',
        default: d.drainMs,
        min: 0,
        placeholder: 'DURATION',
      },
      batch: {
        type: 'int',
        description: 'Messages per publish request (1: /api/send, as the article)',
        default: d.batch,
        min: 1,
        max: MAX_BATCH,
        placeholder: 'N',
      },
      seed: {
        type: 'int',
        description: 'Seed for the random ids (default: random, reported)',
        placeholder: 'N',
      },
      'out-dir': {
        type: 'string',
        description: 'Folder for the report, charts, memlog and server log (default: ./c10k-<timestamp>)',
        placeholder: 'DIR',
      },
      out: {
        type: 'string',
        description: 'JSON report file, relative to --out-dir; the charts take its name with .png/.svg',
        default: d.out,
        short: 'o',
        placeholder: 'FILE',
      },
      title: {
        type: 'string',
        description: "Chart title (default: the article's, with these figures)",
        placeholder: 'TEXT',
      },
      'node-args': {
        type: 'string',
        description: 'Node flags for the server: --node-args="--max-semi-space-size=1 --optimize-for-size"',
        placeholder: 'FLAGS',
      },
      'server-args': {
        type: 'string',
        description: 'Extra `serve` flags for the server: --server-args="--history 0"',
        placeholder: 'FLAGS',
      },
      'server-url': {
        type: 'string',
        description: 'Use a running server: its client URL (http://127.0.0.1:8000); needs --api-url',
        placeholder: 'URL',
      },
      'api-url': {
        type: 'string',
        description: "That server's publish API (http://127.0.0.1:8001)",
        placeholder: 'URL',
      },
      'server-pid': {
        type: 'int',
        description: 'With --server-url: process to measure (repeat; default: found from the port)',
        min: 1,
        repeat: true,
        placeholder: 'PID',
      },
      'api-key': {
        type: 'string',
        description: 'API key for --api-url (or env SWITCHBOARD_API_KEY)',
        placeholder: 'KEY',
      },
      json: { type: 'boolean', description: 'Print the JSON report on stdout instead of the summary' },
    },
    epilog: [
      'Phases: empty server (one sample interval) → ramp → hold → messages → drain → stop',
      '(flood, then the server with SIGTERM, which must exit 0). Files in --out-dir: c10k.json,',
      'c10k.png, c10k.svg (memory and connections over time), memlog.log (the raw samples, for',
      "'switchboard chart'), server.log. Ctrl-C stops at any phase and still writes the report.",
      '',
      "The counts must agree: messages the API accepted = the API's delivered sum = chunks flood",
      'received (each id 1..N holds exactly one connection); otherwise a MISMATCH line and exit 1.',
      '',
      "The article's run (100 connections/s, 24 hours):",
      '  switchboard bench c10k --ramp-rate 100 --duration 24h --sample-every 60s',
      'Lean V8 settings for the server (a value starting with -- needs the = form):',
      '  switchboard bench c10k --node-args="--max-semi-space-size=1 --optimize-for-size"',
    ].join('\n'),
  },

  async run(args, ctx) {
    const v = args.values;
    const nodeArgs = str(v, 'node-args');
    const serverArgs = str(v, 'server-args');
    const json = bool(v, 'json');
    const report = await runC10k(
      {
        connections: num(v, 'connections'),
        rampRate: num(v, 'ramp-rate'),
        rate: num(v, 'rate'),
        durationMs: num(v, 'duration'),
        holdMs: num(v, 'hold'),
        sampleEveryMs: num(v, 'sample-every'),
        drainMs: num(v, 'drain'),
        batch: num(v, 'batch'),
        seed: num(v, 'seed'),
        outDir: str(v, 'out-dir'),
        out: str(v, 'out'),
        title: str(v, 'title'),
        nodeArgs: nodeArgs === undefined ? undefined : splitArgs(nodeArgs, '--node-args'),
        serverArgs: serverArgs === undefined ? undefined : splitArgs(serverArgs, '--server-args'),
        serverUrl: str(v, 'server-url'),
        apiUrl: str(v, 'api-url'),
        serverPids: list(v, 'server-pid').map(Number),
        apiKey: str(v, 'api-key') ?? process.env.SWITCHBOARD_API_KEY,
        commandLine: shellJoin(process.argv),
      },
      { signal: ctx.signal, onEvent: (e) => ctx.stderr.write(`${formatEvent(e)}\n`) },
    );
    if (!report.messages.match) {
      ctx.stderr.write(
        `bench c10k: ${report.problems.find((p) => p.startsWith('MISMATCH')) ?? 'MISMATCH'}\n`,
      );
    }
    ctx.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : formatC10kSummary(report));
    return report.ok ? 0 : 1;
  },
};
