/**
 * `switchboard msggen`: sends messages to random ids through the publish API, as the article's
 * msggen.erl did (`--generators` senders × `--count` messages, `--interval` ms apart), or at a
 * constant open-loop `--rate`. The work is in src/tools/msggen/msggen.ts; this file reads flags and
 * prints. Reports and the summary go to stdout (`--json`: JSON lines, summary last).
 */

import { bool, num, str } from '../args.js';
import { DEFAULT_PREFIX } from '../bus/nats-options.js';
import { UsageError } from '../errors.js';
import {
  DEFAULT_API,
  DEFAULT_REQUEST_TIMEOUT_MS,
  formatMsggenReport,
  formatMsggenSummary,
  MAX_BATCH,
  runMsggen,
} from '../tools/msggen/msggen.js';
import type { Command } from './command.js';

export const command: Command = {
  spec: {
    name: 'msggen',
    summary: "Send messages to random ids through the publish API, like the article's msggen.erl.",
    options: {
      api: { type: 'string', description: 'Publish API base URL', default: DEFAULT_API, placeholder: 'URL' },
      count: {
        type: 'int',
        description: 'Messages per generator (with --rate: total = count × generators)',
        min: 1,
        short: 'n',
        placeholder: 'N',
      },
      interval: {
        type: 'duration',
        description: "Wait after each reply, per generator (closed loop; the article's Interval)",
        default: 100,
        min: 0,
        placeholder: 'DURATION',
      },
      'max-id': {
        type: 'int',
        description: 'Ids are drawn uniformly from --min-id..--max-id',
        min: 1,
        placeholder: 'N',
      },
      'min-id': { type: 'int', description: 'Smallest id', default: 1, min: 0, placeholder: 'N' },
      generators: {
        type: 'int',
        description: 'Senders in parallel',
        default: 1,
        min: 1,
        max: 100_000,
        short: 'g',
        placeholder: 'N',
      },
      rate: {
        type: 'number',
        description: 'Open loop: messages per second in total, on a clock (ignores --interval)',
        min: 0.001,
        placeholder: 'PER_SECOND',
      },
      batch: {
        type: 'int',
        description: 'Messages per request, through /api/send/batch when above 1',
        default: 1,
        min: 1,
        max: MAX_BATCH,
        placeholder: 'N',
      },
      duration: { type: 'duration', description: 'Stop after this long', min: 1, placeholder: 'DURATION' },
      seed: {
        type: 'int',
        description: 'Seed for the random ids (default: random, printed)',
        placeholder: 'N',
      },
      stamp: {
        type: 'boolean',
        description: 'Append " t=<ms since the epoch>" to each body, for flood\'s latency figures',
      },
      'max-sockets': {
        type: 'int',
        description: 'Keep-alive connections to the API (default: --generators, or 64 with --rate)',
        min: 1,
        max: 1024,
        placeholder: 'N',
      },
      'api-key': {
        type: 'string',
        description: 'API key, sent as Authorization: Bearer',
        placeholder: 'KEY',
      },
      bus: {
        type: 'string',
        description: 'Publish as NATS requests on <prefix>.publish through this server instead of the API',
        placeholder: 'nats://HOST:PORT',
      },
      'bus-prefix': {
        type: 'string',
        description: "The deployment's subject prefix (with --bus)",
        default: DEFAULT_PREFIX,
        placeholder: 'NAME',
      },
      timeout: {
        type: 'duration',
        description: 'Per-request timeout',
        default: DEFAULT_REQUEST_TIMEOUT_MS,
        min: 1,
        placeholder: 'DURATION',
      },
      'report-every': {
        type: 'duration',
        description: 'Time between report lines',
        default: 10_000,
        min: 100,
        placeholder: 'DURATION',
      },
      json: { type: 'boolean', description: 'Print reports and the summary as JSON lines' },
    },
    epilog: [
      'Body of each message: "Fake message Num = N" (N counts down per generator, as in msggen.erl),',
      'plus " t=<ms>" with --stamp. Every message is counted: sent (2xx), failed by status or error',
      "code, and the API's delivered figures summed. With --rate a stamp is the message's place on",
      'the clock, so a message sent late (msggen or the API falling behind) shows as latency.',
      '',
      "The article's C10K load, 100 generators × 10 msg/s to ids 1..10,000 (1,000 msg/s):",
      '  switchboard msggen --count 1000000 --interval 100 --max-id 10000 --generators 100',
      'The same rate on a clock, in batches of 50:',
      '  switchboard msggen --count 1000000 --max-id 10000 --rate 1000 --batch 50 --stamp',
      'From a backend on NATS, without HTTP (the router answers on <prefix>.publish):',
      '  switchboard msggen --bus nats://127.0.0.1:4222 --count 100000 --max-id 10000 --batch 500',
    ].join('\n'),
  },

  async run(args, ctx) {
    const v = args.values;
    const count = num(v, 'count');
    const maxId = num(v, 'max-id');
    if (count === undefined) throw new UsageError('msggen: --count is required (messages per generator)');
    if (maxId === undefined)
      throw new UsageError('msggen: --max-id is required (ids are drawn from 1..max-id)');
    const json = bool(v, 'json');
    const summary = await runMsggen(
      {
        api: str(v, 'api'),
        count,
        interval: num(v, 'interval'),
        maxId,
        minId: num(v, 'min-id'),
        generators: num(v, 'generators'),
        rate: num(v, 'rate'),
        batch: num(v, 'batch'),
        duration: num(v, 'duration'),
        seed: num(v, 'seed'),
        stamp: bool(v, 'stamp'),
        maxSockets: num(v, 'max-sockets'),
        apiKey: str(v, 'api-key') ?? process.env.SWITCHBOARD_API_KEY,
        timeout: num(v, 'timeout'),
        bus: str(v, 'bus'),
        busPrefix: str(v, 'bus-prefix'),
        reportEvery: num(v, 'report-every'),
      },
      {
        signal: ctx.signal,
        onReport: (r) =>
          ctx.stdout.write(`${json ? JSON.stringify({ type: 'report', ...r }) : formatMsggenReport(r)}\n`),
      },
    );
    if (json) ctx.stdout.write(`${JSON.stringify({ type: 'summary', ...summary })}\n`);
    else ctx.stdout.write(formatMsggenSummary(summary));
    // Failed sends make the run a failure, so scripts notice; an interrupt is a normal end.
    return summary.failed > 0 ? 1 : 0;
  },
};
