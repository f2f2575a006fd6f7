/** `switchboard token`: mints a client token, for scripts and for trying the auth by hand. */

import { type CommandSpec, list, num, str } from '../args.js';
import { UsageError } from '../errors.js';
import { signToken } from '../gateway/token.js';
import { validateId } from '../ids.js';
import { MIN_SECRET_BYTES } from '../options.js';
import type { Command } from './command.js';

const spec: CommandSpec = {
  name: 'token',
  summary: 'Print an HS256 client token that lets a connection log in as <id>.',
  options: {
    secret: {
      type: 'string',
      description: "The server's --token-secret (or env SWITCHBOARD_TOKEN_SECRET)",
      placeholder: 'SECRET',
    },
    also: {
      type: 'list',
      description: 'Further ids the token allows on the same connection (?also=)',
      placeholder: 'IDS',
    },
    ttl: { type: 'duration', description: 'How long the token is valid', default: 3_600_000, min: 1000 },
    audience: {
      type: 'string',
      description: 'The aud claim (servers with --token-audience need it)',
      placeholder: 'AUD',
    },
    issuer: {
      type: 'string',
      description: 'The iss claim (servers with --token-issuer need it)',
      placeholder: 'ISS',
    },
  },
  positionals: [{ name: 'id', description: 'The id the token logs in as', required: true }],
  epilog: 'Example:\n  curl -N "http://127.0.0.1:8000/feed/123?token=$(switchboard token 123)"',
};

export const command: Command = {
  spec,
  async run({ values, positionals }, ctx) {
    const secret = str(values, 'secret') ?? process.env.SWITCHBOARD_TOKEN_SECRET ?? '';
    if (Buffer.byteLength(secret) < MIN_SECRET_BYTES) {
      throw new UsageError(
        `token: --secret (or SWITCHBOARD_TOKEN_SECRET) must be at least ${MIN_SECRET_BYTES} bytes`,
      );
    }
    let sub: string;
    let ids: string[];
    try {
      sub = validateId(positionals[0], 'id');
      ids = list(values, 'also').map((id, i) => validateId(id, `--also[${i}]`));
    } catch (err) {
      throw new UsageError(`token: ${(err as Error).message}`);
    }
    const ttlSeconds = Math.ceil((num(values, 'ttl') ?? 3_600_000) / 1000);
    const aud = str(values, 'audience');
    const iss = str(values, 'issuer');
    ctx.stdout.write(
      `${signToken(secret, { sub, ids, ttlSeconds, ...(aud ? { aud } : {}), ...(iss ? { iss } : {}) })}\n`,
    );
    return 0;
  },
};
