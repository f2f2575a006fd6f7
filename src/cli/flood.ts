/**
 * `switchboard flood`: opens many streaming connections at a rate and counts what arrives (the
 * article's floodtest.erl, floodtest2.erl and libevent httpclient). The work is in
 * src/tools/flood/flood.ts; this file reads flags and prints.
 *
 * Report lines and the summary go to stdout (`--json`: one JSON object per line, the summary
 * last with `"type":"summary"`); the live ramp-up line and warnings go to stderr.
 */

import { bool, list, num, str } from '../args.js';
import { UsageError } from '../errors.js';
import {
  DEFAULT_MAX_CONNECTING,
  DEFAULT_RATE,
  DEFAULT_REPORT_EVERY_MS,
  runFlood,
} from '../tools/flood/flood.js';
import { AUTO_PER_SOURCE, DEFAULT_PER_PROC } from '../tools/flood/plan.js';
import { type FloodReport, formatReport, formatSummary } from '../tools/flood/report.js';
import type { Command } from './command.js';
import { Progress } from './progress.js';

export const command: Command = {
  spec: {
    name: 'flood',
    summary:
      'Open many streaming connections at a set rate, from many source addresses, and count what arrives.',
    options: {
      url: {
        type: 'string',
        description: 'URL template; {id} is replaced by each id, e.g. http://127.0.0.1:8000/test/{id}',
        placeholder: 'URL',
      },
      'url-file': {
        type: 'string',
        description: "File with one URL per line, instead of --url (the article's /tmp/mochi-urls.txt)",
        placeholder: 'FILE',
      },
      from: { type: 'int', description: 'First id for {id}', default: 1, min: 0, placeholder: 'ID' },
      count: {
        type: 'int',
        description: 'Connections to open (with --url-file: the first N URLs; default all)',
        min: 1,
        short: 'n',
        placeholder: 'N',
      },
      rate: {
        type: 'number',
        description: 'New connections per second over all processes; 0 = as fast as possible',
        default: DEFAULT_RATE,
        min: 0,
        placeholder: 'PER_SECOND',
      },
      sources: {
        type: 'list',
        description: `Local source addresses: ranges and lists, e.g. 127.0.0.2-127.0.0.41,127.0.1.1 (default: automatic above ${AUTO_PER_SOURCE.toLocaleString('en-US')} connections)`,
        placeholder: 'ADDRS',
      },
      procs: {
        type: 'int',
        description: `Worker processes (default: one per ${DEFAULT_PER_PROC.toLocaleString('en-US')} connections)`,
        min: 1,
        placeholder: 'N',
      },
      sse: {
        type: 'boolean',
        description: 'Send Accept: text/event-stream and count SSE events (use with /feed/{id})',
      },
      duration: {
        type: 'duration',
        description: 'Stop after this long (default: until interrupted or every connection ended)',
        min: 1,
        placeholder: 'DURATION',
      },
      'report-every': {
        type: 'duration',
        description: 'Time between report lines',
        default: DEFAULT_REPORT_EVERY_MS,
        min: 100,
        placeholder: 'DURATION',
      },
      'max-connecting': {
        type: 'int',
        description: 'Most connections per process waiting for a response head',
        default: DEFAULT_MAX_CONNECTING,
        min: 1,
        placeholder: 'N',
      },
      json: { type: 'boolean', description: 'Print reports and the summary as JSON lines' },
    },
    epilog: [
      'Counts: open = connections that got a 200 head and are still open; closed = opened, then',
      'ended by the server; failed = never opened (connect error, non-200, bad response), tallied by',
      'error code; chunks = messages (chunks after the welcome chunk, or SSE events with data);',
      'welcomes = welcome chunks, one per stream; bytes = everything received, heads included.',
      '',
      'Latency: messages sent with `switchboard msggen --stamp` carry " t=<ms since the epoch>";',
      'flood reports publish-to-receive p50/p99/max for them.',
      '',
      'Limits: one source address gives ip_local_port_range ports (28,232 with 32768-60999), and a',
      'process may hold 20,000 open files; flood checks both before it starts and says what to change.',
      'Connections live in worker processes (--procs), so the memory per connection reported is theirs.',
      '',
      'Examples:',
      "  switchboard flood --url 'http://127.0.0.1:8000/test/{id}' --count 10000 --rate 100",
      "  switchboard flood --url 'http://127.0.0.1:8000/test/{id}' --count 100000 --sources 127.0.0.2-127.0.0.11",
      '  switchboard flood --url-file /tmp/mochi-urls.txt --rate 10',
    ].join('\n'),
  },

  async run(args, ctx) {
    const v = args.values;
    const url = str(v, 'url');
    const urlFile = str(v, 'url-file');
    if (url === undefined && urlFile === undefined) {
      throw new UsageError("flood: give --url 'http://HOST:PORT/test/{id}' with --count, or --url-file FILE");
    }
    if (url !== undefined && urlFile !== undefined)
      throw new UsageError('flood: give --url or --url-file, not both');
    if (url !== undefined && num(v, 'count') === undefined)
      throw new UsageError('flood: --count is required with --url');
    const json = bool(v, 'json');
    const sse = bool(v, 'sse');
    if (sse && url?.includes('/test/')) {
      ctx.stderr.write(
        'flood: warning: /test/ streams are not SSE; --sse counts SSE events, so expect 0 chunks (use /feed/{id})\n',
      );
    }
    const sources = list(v, 'sources');
    let progress: Progress | undefined;
    let drawn = false;
    const print = (line: string): void => {
      if (drawn) ctx.stderr.write('\r\x1b[K');
      ctx.stdout.write(`${line}\n`);
    };
    const emit = (r: FloodReport): void =>
      print(json ? JSON.stringify({ type: 'report', ...r }) : formatReport(r));

    const summary = await runFlood(
      {
        url,
        urlFile,
        from: num(v, 'from'),
        count: num(v, 'count'),
        rate: num(v, 'rate'),
        sources: sources.length > 0 ? sources : undefined,
        procs: num(v, 'procs'),
        sse,
        duration: num(v, 'duration'),
        reportEvery: num(v, 'report-every'),
        maxConnecting: num(v, 'max-connecting'),
        // Connections always live in worker processes, so the memory figures are theirs alone.
        fork: true,
      },
      {
        signal: ctx.signal,
        onPlan: (plan) => {
          const total = plan.shares.reduce((a, s) => a + s.count, 0);
          const where =
            plan.sources.length > 0
              ? `${plan.sources.length} source address(es)${plan.autoSources ? ' (automatic)' : ''}`
              : 'the default source address';
          ctx.stderr.write(`flood: ${total} connections from ${where} in ${plan.procs} process(es)\n`);
          if (ctx.isTTY && !json)
            progress = new Progress({
              label: 'flood open',
              stream: ctx.stderr,
              isTTY: true,
              total,
              unit: 'conns',
            });
        },
        onWarning: (w) => ctx.stderr.write(`flood: warning: ${w}\n`),
        onReport: emit,
        onProgress: (r) => {
          if (progress === undefined) return;
          if (!r.ramping && r.connecting === 0) {
            progress.done();
            progress = undefined;
            drawn = false;
            return;
          }
          progress.update(r.opened + r.failed);
          drawn = true;
        },
      },
    );
    progress?.done();
    drawn = false;
    if (json) ctx.stdout.write(`${JSON.stringify({ type: 'summary', ...summary })}\n`);
    else ctx.stdout.write(formatSummary(summary));
    for (const w of summary.workerErrors) ctx.stderr.write(`flood: ${w}\n`);
    // Nothing ever opened is a failed run (wrong port, server down); an interrupt is the normal end.
    return summary.opened === 0 && summary.failed > 0 ? 1 : 0;
  },
};
