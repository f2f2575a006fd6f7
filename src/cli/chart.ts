/**
 * `switchboard chart mem.log --out mem.png`: draws a memlog file (ours or the article's
 * one-liner output) as a PNG or SVG, the format taken from the output file's extension.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { num, str } from '../args.js';
import { InvalidInputError, UsageError } from '../errors.js';
import {
  chartFormatFor,
  DEFAULT_CHART_HEIGHT,
  DEFAULT_CHART_WIDTH,
  renderChart,
} from '../tools/memlog/chart.js';
import { parseMemlog } from '../tools/memlog/memlog.js';
import type { Command } from './command.js';

export const command: Command = {
  spec: {
    name: 'chart',
    summary: 'Draw a memlog file as a chart: memory (MB) and connections over time.',
    options: {
      out: {
        type: 'string',
        description: 'Output file, .png or .svg (default: the log name with .png)',
        short: 'o',
        placeholder: 'FILE',
      },
      title: {
        type: 'string',
        description: 'Chart title (default: derived from the data)',
        placeholder: 'TEXT',
      },
      width: {
        type: 'int',
        description: 'Width in pixels',
        default: DEFAULT_CHART_WIDTH,
        min: 400,
        max: 8000,
        placeholder: 'PX',
      },
      height: {
        type: 'int',
        description: 'Height in pixels',
        default: DEFAULT_CHART_HEIGHT,
        min: 250,
        max: 8000,
        placeholder: 'PX',
      },
    },
    positionals: [{ name: 'log', description: 'A file written by switchboard memlog', required: true }],
    epilog: 'Example: switchboard chart mem.log --out mem.png --title "C10K, 1000 msg/s"',
  },

  async run(args, ctx) {
    const log = args.positionals[0]!;
    const out = str(args.values, 'out') ?? `${log.replace(/\.[^./]*$/, '')}.png`;
    if (out === log) throw new UsageError(`chart: --out ${out} would overwrite the log itself`);
    const format = chartFormatFor(out);
    if (format === undefined) {
      throw new UsageError(`chart: --out must end in .png or .svg, got ${JSON.stringify(out)}`);
    }

    let text: string;
    try {
      text = await readFile(log, 'utf8');
    } catch (err) {
      throw new InvalidInputError(`cannot read ${log}: ${(err as Error).message}`, { cause: err });
    }
    const samples = parseMemlog(text, log);
    if (samples.length === 0) {
      const lines = text.split('\n').filter((l) => l.trim() !== '').length;
      throw new InvalidInputError(
        lines === 0 ? `${log} is empty: no samples to draw` : `${log} has no samples (only comment lines)`,
      );
    }

    const width = num(args.values, 'width') ?? DEFAULT_CHART_WIDTH;
    const height = num(args.values, 'height') ?? DEFAULT_CHART_HEIGHT;
    const image = renderChart(samples, { title: str(args.values, 'title'), format, width, height });
    await writeFile(out, image);
    ctx.stdout.write(
      `chart: wrote ${out} (${format.toUpperCase()} ${width}×${height}, ${samples.length} sample${samples.length === 1 ? '' : 's'})\n`,
    );
    return 0;
  },
};
