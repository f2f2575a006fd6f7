/**
 * `switchboard memlog`: logs the server's RSS and connection count over time (the article's
 * `ps`/`netstat` one-liner). Lines go to stdout and are appended to `--out`; the closing summary
 * goes to stderr so stdout stays a clean log.
 */
import { open } from 'node:fs/promises';
import { formatDuration, list, num, str } from '../args.js';
import { UsageError } from '../errors.js';
import { DEFAULT_MEMLOG_INTERVAL_MS, runMemlog } from '../tools/memlog/memlog.js';
import type { Command } from './command.js';

export const command: Command = {
  spec: {
    name: 'memlog',
    summary: 'Log server RSS (KB) and established connections on a port, one tab-separated line per sample.',
    options: {
      port: {
        type: 'int',
        description: 'Server port: connections are counted on it and, without --pid, its processes found',
        min: 1,
        max: 65535,
        short: 'p',
        placeholder: 'PORT',
      },
      pid: {
        type: 'int',
        description: 'Measure this process instead of finding it by port (repeat to sum several)',
        min: 1,
        repeat: true,
        placeholder: 'PID',
      },
      every: {
        type: 'duration',
        description: 'Time between samples',
        default: DEFAULT_MEMLOG_INTERVAL_MS,
        min: 10,
        placeholder: 'DURATION',
      },
      out: {
        type: 'string',
        description: "File to append lines to ('-' for stdout only)",
        default: 'mem.log',
        short: 'o',
        placeholder: 'FILE',
      },
      duration: {
        type: 'duration',
        description: 'Stop after this long (default: until interrupted)',
        min: 0,
        placeholder: 'DURATION',
      },
      samples: {
        type: 'int',
        description: 'Stop after this many samples (default: until interrupted)',
        min: 1,
        placeholder: 'N',
      },
    },
    epilog: [
      'Columns (tab-separated): date, unix time (s), RSS KB summed over the server processes,',
      'established connections on the port, number of processes summed. The first four are the',
      "article's, so its awk/gnuplot recipe works unchanged; 'switchboard chart' draws the file.",
      '',
      'Without --pid, every process holding a socket on the port (listening or accepted) is',
      'summed, plus the node:cluster workers of those processes (an idle worker holds no socket),',
      'looked up afresh at every sample. Reads /proc only; needs no netstat, ss or lsof.',
      '',
      'Example: switchboard memlog --port 8000 --every 10s --out mem.log',
    ].join('\n'),
  },

  async run(args, ctx) {
    const port = num(args.values, 'port');
    if (port === undefined) throw new UsageError('memlog: --port is required (the server port to watch)');
    const pids = list(args.values, 'pid').map(Number);
    const out = str(args.values, 'out') ?? 'mem.log';
    const everyMs = num(args.values, 'every') ?? DEFAULT_MEMLOG_INTERVAL_MS;

    // Open before the first sample so a bad path fails at once, not a minute in.
    const file = out === '-' ? undefined : await open(out, 'a');
    try {
      const summary = await runMemlog({
        port,
        pids,
        everyMs,
        durationMs: num(args.values, 'duration'),
        samples: num(args.values, 'samples'),
        signal: ctx.signal,
        onSample: async (_sample, line) => {
          ctx.stdout.write(`${line}\n`);
          if (file) await file.write(`${line}\n`);
        },
        onSkip: (problem) => ctx.stderr.write(`memlog: sample skipped: ${problem}\n`),
      });
      const where = file ? ` to ${out}` : '';
      const peak = summary.peak
        ? `; peak ${(summary.peak.rssKb / 1024).toFixed(1)} MB RSS at ${summary.peak.connections} connections`
        : '';
      const skipped = summary.skipped > 0 ? `, ${summary.skipped} skipped` : '';
      ctx.stderr.write(
        `memlog: ${summary.samples} sample${summary.samples === 1 ? '' : 's'} every ${formatDuration(everyMs)} written${where}${skipped}${peak}\n`,
      );
      return 0;
    } finally {
      await file?.close();
    }
  },
};
