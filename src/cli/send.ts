/** `switchboard send <id> <msg>`: publishes one message through a running server's API. */

import { type CommandSpec, str } from '../args.js';
import { UnavailableError } from '../errors.js';
import type { Command } from './command.js';

const spec: CommandSpec = {
  name: 'send',
  summary:
    'Publish <msg> to <id> (and its subscribers) through a running server; prints how many connections got it.',
  options: {
    api: {
      type: 'string',
      description: 'API base URL',
      default: 'http://127.0.0.1:8001',
      placeholder: 'URL',
    },
    'api-key': { type: 'string', description: 'API key (or env SWITCHBOARD_API_KEY)', placeholder: 'KEY' },
  },
  positionals: [
    { name: 'id', description: 'The id to send to', required: true },
    { name: 'msg', description: 'The message text', required: true },
  ],
};

export const command: Command = {
  spec,
  async run({ values, positionals }, ctx) {
    const base = str(values, 'api') ?? 'http://127.0.0.1:8001';
    const key = str(values, 'api-key') ?? process.env.SWITCHBOARD_API_KEY;
    let res: Response;
    try {
      res = await fetch(new URL('/api/send', base), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...(key ? { Authorization: `Bearer ${key}` } : {}) },
        body: JSON.stringify({ id: positionals[0], msg: positionals[1] }),
        signal: ctx.signal,
      });
    } catch (err) {
      throw new UnavailableError(`cannot reach the API at ${base}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const body = (await res.json()) as { delivered?: number; error?: { message: string } };
    if (!res.ok) {
      ctx.stderr.write(`switchboard send: ${res.status}: ${body.error?.message ?? 'failed'}\n`);
      return 1;
    }
    ctx.stdout.write(`delivered ${body.delivered}\n`);
    return 0;
  },
};
