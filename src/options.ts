/**
 * Server options, declared once. Each row of {@link OPTIONS} names an option and gives its type,
 * default, range and help; from the table come
 *
 * - the {@link ServerOptions} type and the named {@link DEFAULTS},
 * - {@link resolveOptions}: one merge with eager validation (unknown keys, wrong types and values
 *   out of range are refused, naming the option and what it allows),
 * - the `serve` flags and their help (`--head-timeout` for `headTimeoutMs`: kebab-case without
 *   the unit suffix, unless a row names its flag),
 * - the config file keys (the option names) and `SWITCHBOARD_*` environment variables (the flag
 *   in upper snake case), read by config.ts.
 */
import path from 'node:path';
import { ConfigError } from './errors.js';
import { LOG_FORMATS, LOG_LEVELS } from './log.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from './message.js';

/**
 * Node flags for processes that hold many idle connections (see src/cli/main.ts): measured 3.9 KB
 * → 1.8 KB of RSS per idle connection. Only effective on the node command line.
 */
export const LEAN_NODE_ARGS: readonly string[] = ['--max-semi-space-size=1', '--optimize-for-size'];

/** What a process does: hold client connections, route publishes, or both (the default). */
export const ROLES = ['all', 'gateway', 'router'] as const;
export type Role = (typeof ROLES)[number];

/** Kinds of option value: `duration` is milliseconds, `size` bytes. */
export type OptionKind = 'string' | 'int' | 'boolean' | 'duration' | 'size';

/** One row of the options table. `T` is the value's type. */
export interface OptionRow<T> {
  readonly kind: OptionKind;
  readonly default: T;
  readonly help: string;
  /** The flag, when it is not the option's name in kebab-case without `Ms`/`Bytes`. */
  readonly flag?: string;
  readonly short?: string;
  /** Inclusive range of a number. */
  readonly min?: number;
  readonly max?: number;
  /** Allowed values of a string. */
  readonly choices?: readonly string[];
  /** Shape of a string, with the words for the error. */
  readonly pattern?: readonly [RegExp, string];
  /** A secret: never logged; may also be read from a file (`--<flag>-file`, `SWITCHBOARD_<FLAG>_FILE`). */
  readonly secret?: boolean;
  /** Shown for the value in help, e.g. `PORT`. */
  readonly placeholder?: string;
  /** Not a flag of `serve` (set from code or the config file only). */
  readonly internal?: boolean;
}

const str = <T extends string = string>(row: Omit<OptionRow<NoInfer<T>>, 'kind'>): OptionRow<T> => ({
  kind: 'string',
  ...row,
});
const int = (row: Omit<OptionRow<number>, 'kind'>): OptionRow<number> => ({ kind: 'int', ...row });
const ms = (row: Omit<OptionRow<number>, 'kind'>): OptionRow<number> => ({ kind: 'duration', ...row });
const bytes = (row: Omit<OptionRow<number>, 'kind'>): OptionRow<number> => ({ kind: 'size', ...row });
const bool = (row: Omit<OptionRow<boolean>, 'kind'>): OptionRow<boolean> => ({ kind: 'boolean', ...row });

const PORT = { min: 0, max: 65535, placeholder: 'PORT' } as const;
const DAY = 86_400_000;

/** Every server option. The order is the order of `serve --help`. */
export const OPTIONS = {
  port: int({ default: 8000, ...PORT, short: 'p', help: 'Client port (0: any free port)' }),
  host: str({ default: '0.0.0.0', placeholder: 'ADDR', help: 'Client bind address' }),
  reusePort: bool({
    default: false,
    help: 'Listen on the client port with SO_REUSEPORT, beside other processes doing the same; the kernel spreads connections over them (Linux, Node ≥ 22.12)',
  }),
  api: bool({
    default: true,
    help: 'Serve the publish API (--no-api: a cluster gateway leaving it to routers)',
  }),
  apiPort: int({ default: 8001, ...PORT, help: 'Publish/admin API port' }),
  apiHost: str({
    default: '127.0.0.1',
    placeholder: 'ADDR',
    help: 'API bind address (not loopback: needs an API key)',
  }),
  demo: bool({
    default: true,
    help: 'Serve the demo page at GET / on the client port (--no-demo: not)',
  }),
  accessLog: bool({
    default: false,
    help: "Log each stream's open and close (transport, ids, client address, seconds, messages)",
  }),
  metricsPort: int({
    default: -1,
    min: -1,
    max: 65535,
    placeholder: 'PORT',
    help: 'A port serving only GET /metrics, on the API address (-1: none; 0: any free port)',
  }),
  apiKey: str({
    default: '',
    secret: true,
    placeholder: 'KEY',
    help: 'API bearer key, at least 32 bytes; better from SWITCHBOARD_API_KEY or --api-key-file',
  }),
  data: str({ default: './data', placeholder: 'DIR', help: 'Where state lives' }),
  store: str({
    default: '',
    secret: true,
    placeholder: 'URL',
    help: 'Subscription store: sqlite:PATH or postgres://… (default sqlite:DIR/switchboard.db)',
  }),
  bus: str({ default: 'local', placeholder: 'URL', help: 'Bus: local or nats://host:port[,…]' }),
  busPrefix: str({
    default: 'sb',
    placeholder: 'NAME',
    pattern: [/^[A-Za-z0-9_-]{1,64}$/, '1-64 letters, digits, _ or -'],
    help: 'Subject prefix on a shared bus',
  }),
  busPublish: bool({
    default: true,
    help: 'NATS: take publishes as requests on <prefix>.publish, as /api/send and /api/send/batch (role all or router)',
  }),
  role: str<Role>({ default: 'all', choices: ROLES, help: 'What this process does' }),
  logLevel: str<(typeof LOG_LEVELS)[number]>({ default: 'info', choices: LOG_LEVELS, help: 'Log level' }),
  logFormat: str<(typeof LOG_FORMATS)[number]>({
    default: 'text',
    choices: LOG_FORMATS,
    help: 'Log lines as text or as one JSON object each',
  }),
  tickerMs: ms({
    default: 0,
    min: 0,
    max: DAY,
    help: "Part 1's ticker: a chunk to every stream this often (0: off)",
  }),
  heartbeatMs: ms({
    default: 25_000,
    min: 1000,
    max: 3_600_000,
    help: 'SSE comment / WebSocket ping / plain-stream empty line interval (none on /test)',
  }),
  headTimeoutMs: ms({
    default: 10_000,
    min: 1000,
    max: 600_000,
    help: 'Close connections whose request head is late',
  }),
  lingerMs: ms({
    default: 5000,
    min: 1000,
    max: 600_000,
    help: 'How long a connection whose final answer is written waits for the client to close',
  }),
  pollTimeoutMs: ms({
    default: 25_000,
    min: 1000,
    max: 600_000,
    help: 'Long-poll wait before an empty answer',
  }),
  sseRetryMs: ms({
    default: 2000,
    min: 0,
    max: 600_000,
    help: 'SSE retry: the reconnect delay sent to clients',
  }),
  shutdownTimeoutMs: ms({ default: 5000, min: 0, max: 600_000, help: 'How long shutdown waits for clients' }),
  maxHeadBytes: bytes({
    default: 16 * 1024,
    min: 1024,
    max: 1024 * 1024,
    help: 'Largest request head (431 past it)',
  }),
  maxMessageBytes: bytes({
    default: DEFAULT_MAX_MESSAGE_BYTES,
    min: 1,
    max: 64 * 1024 * 1024,
    help: 'Largest message body',
  }),
  maxBodyBytes: bytes({
    default: 16 * 1024 * 1024,
    min: 1024,
    max: 1024 * 1024 * 1024,
    help: 'Largest publish request body (batches)',
  }),
  maxQueueBytes: bytes({
    default: 256 * 1024,
    min: 1024,
    max: 1024 * 1024 * 1024,
    help: 'Outbound bytes queued per connection before it is cut off',
  }),
  maxClientFrameBytes: bytes({
    default: 64 * 1024,
    min: 125,
    max: 64 * 1024 * 1024,
    help: 'Largest WebSocket frame or message a client may send',
  }),
  maxIdsPerConnection: int({
    default: 100,
    min: 1,
    max: 100_000,
    help: 'Most ids one connection may log in as',
  }),
  maxConnections: int({
    default: 0,
    min: 0,
    max: 10_000_000,
    help: 'Most client connections (0: below the open-files limit)',
  }),
  tokenSecret: str({
    default: '',
    secret: true,
    placeholder: 'SECRET',
    help: 'HS256 secret for client tokens, at least 32 bytes; better from SWITCHBOARD_TOKEN_SECRET or --token-secret-file',
  }),
  allowAnonymous: bool({
    default: false,
    flag: 'anonymous',
    help: 'Accept ids from the URL without a token (default: only when no token secret is set)',
  }),
  tokenAudience: str({
    default: '',
    placeholder: 'AUD',
    help: 'Tokens must name this audience (aud); empty: not checked',
  }),
  tokenIssuer: str({
    default: '',
    placeholder: 'ISS',
    help: 'Tokens must name this issuer (iss); empty: not checked',
  }),
  tokenMaxTtlMs: ms({
    default: 7 * DAY,
    min: 0,
    max: 366 * DAY,
    flag: 'token-max-ttl',
    help: 'Refuse tokens that stay valid longer than this from now (0: no limit)',
  }),
  allowOrigin: str({
    default: '*',
    placeholder: 'ORIGIN',
    help: 'Access-Control-Allow-Origin for clients ("" for none)',
  }),
  historySize: int({
    default: 10_000,
    min: 0,
    max: 10_000_000,
    flag: 'history',
    help: 'Messages kept for resume: in all embedded, per id on NATS JetStream (0: resume off)',
  }),
  historyBytes: bytes({
    default: 64 * 1024 * 1024,
    flag: 'history-bytes',
    min: 1024,
    max: 64 * 1024 ** 3,
    help: 'Bytes kept for resume in all',
  }),
  historyTtlMs: ms({ default: 5 * 60_000, min: 1000, max: 7 * DAY, help: 'Oldest message kept for resume' }),
  historyReplicas: int({
    default: 1,
    min: 1,
    max: 5,
    help: 'NATS: copies of the JetStream resume history (3 on a three-node NATS cluster)',
  }),
  presenceWebhook: str({
    default: '',
    placeholder: 'URL',
    help: 'POST presence events (ids going online/offline, debounced, batched) here; signed with the API key',
  }),
  presenceDebounceMs: ms({
    default: 5000,
    min: 0,
    max: 600_000,
    flag: 'presence-debounce',
    help: 'An id that reconnects within this long makes no presence event',
  }),
  pageSize: int({
    default: 1000,
    min: 1,
    max: 1_000_000,
    help: 'Subscribers per bus publish in a fan-out (a turn of the event loop between pages)',
  }),
  maxInflight: int({
    default: 10_000,
    min: 0,
    max: 100_000_000,
    help: 'Messages being sent at once before publishes get 503, and the largest batch (0: no limit)',
  }),
  maxLagMs: ms({
    default: 1000,
    min: 0,
    max: 600_000,
    help: 'Event-loop lag past which publishes get 503 (0: no limit)',
  }),
  tallyTimeoutMs: ms({
    default: 2000,
    min: 1,
    max: 600_000,
    help: 'NATS bus: how long a send waits for every gateway\'s count before answering "partial"',
  }),
  gatewayHeartbeatMs: ms({
    default: 1000,
    min: 10,
    max: 60_000,
    help: 'NATS bus: gateway announcement period; a gateway silent for 3 periods is gone',
  }),
} as const;

type Rows = typeof OPTIONS;
/** The type of an option's value, from its row. */
type ValueOf<R> = R extends OptionRow<infer T> ? T : never;

/** Every option, resolved: see {@link OPTIONS} for each one's meaning, default and range. */
export type ServerOptions = { readonly [K in keyof Rows]: ValueOf<Rows[K]> };
export type OptionName = keyof ServerOptions;

/** Options as given: any subset; `allowAnonymous` left out means "only when no token secret". */
export type ServerOptionsInput = Partial<ServerOptions>;

/** The defaults, named (`allowAnonymous` is decided from `tokenSecret` when not given). */
export const DEFAULTS: Omit<ServerOptions, 'allowAnonymous'> = Object.freeze(
  Object.fromEntries(
    Object.entries(OPTIONS)
      .filter(([k]) => k !== 'allowAnonymous')
      .map(([k, row]) => [k, row.default]),
  ) as Omit<ServerOptions, 'allowAnonymous'>,
);

/** Shortest secret accepted (bytes) for the token secret and the API key. */
export const MIN_SECRET_BYTES = 32;

/** The `serve` flag of an option: its row's `flag`, or its name in kebab-case without the unit. */
export function flagOf(name: OptionName): string {
  const row: OptionRow<unknown> = OPTIONS[name];
  return row.flag ?? name.replace(/(Ms|Bytes)$/, '').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The environment variable of an option: `SWITCHBOARD_` and its flag in upper snake case. */
export function envOf(name: OptionName): string {
  return `SWITCHBOARD_${flagOf(name).replace(/-/g, '_').toUpperCase()}`;
}

/** True for 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Why `value` is not acceptable for option `name` (`undefined`: it is). `where` names it. */
export function valueProblem(name: OptionName, value: unknown): string | undefined {
  const row: OptionRow<unknown> = OPTIONS[name];
  switch (row.kind) {
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `must be true or false, got ${JSON.stringify(value)}`;
    case 'string': {
      if (typeof value !== 'string') return `must be a string, got ${describe(value)}`;
      if (row.choices && !row.choices.includes(value))
        return `must be one of ${row.choices.join(', ')}, got ${JSON.stringify(value)}`;
      if (row.pattern && !row.pattern[0].test(value))
        return `must be ${row.pattern[1]}, got ${JSON.stringify(value)}`;
      return undefined;
    }
    default: {
      const unit = row.kind === 'duration' ? ' ms' : row.kind === 'size' ? ' bytes' : '';
      if (typeof value !== 'number' || !Number.isInteger(value))
        return `must be a whole number${unit ? ` of${unit}` : ''}, got ${describe(value)}`;
      if ((row.min !== undefined && value < row.min) || (row.max !== undefined && value > row.max))
        return `must be from ${row.min} to ${row.max}${unit}, got ${value}`;
      return undefined;
    }
  }
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : `${typeof value} ${JSON.stringify(value)}`;
}

/** The option named like `name` (for "did you mean"), if any. */
function nearest(name: string): string | undefined {
  const lower = name.toLowerCase();
  return Object.keys(OPTIONS).find(
    (k) =>
      k.toLowerCase() === lower ||
      k.toLowerCase().startsWith(lower.slice(0, 5)) ||
      lower.startsWith(k.toLowerCase()),
  );
}

/**
 * Merges `input` over {@link DEFAULTS} and validates every field and the rules between them;
 * throws {@link ConfigError} naming the option. Unknown keys and wrong types are refused.
 */
export function resolveOptions(input: ServerOptionsInput = {}): ServerOptions {
  if (typeof input !== 'object' || input === null) throw new ConfigError('options must be an object');
  const given: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue;
    if (!Object.hasOwn(OPTIONS, key)) {
      const near = nearest(key);
      throw new ConfigError(`unknown option ${JSON.stringify(key)}${near ? ` (did you mean ${near}?)` : ''}`);
    }
    const problem = valueProblem(key as OptionName, value);
    if (problem !== undefined) throw new ConfigError(`option ${key} ${problem}`);
    given[key] = value;
  }
  const merged = { ...DEFAULTS, ...given } as Omit<ServerOptions, 'allowAnonymous'> & {
    allowAnonymous?: boolean;
  };
  return checkRules({
    ...merged,
    data: path.resolve(merged.data),
    allowAnonymous: merged.allowAnonymous ?? merged.tokenSecret === '',
  });
}

/** The rules between options. */
function checkRules(o: ServerOptions): ServerOptions {
  if (!o.api && o.role === 'router') {
    throw new ConfigError('a router without its API would do nothing: drop --no-api or use --role gateway');
  }
  if (o.maxMessageBytes > o.maxBodyBytes) {
    throw new ConfigError(
      `option maxMessageBytes (${o.maxMessageBytes}) must not exceed maxBodyBytes (${o.maxBodyBytes})`,
    );
  }
  if (o.tokenSecret !== '' && Buffer.byteLength(o.tokenSecret) < MIN_SECRET_BYTES) {
    throw new ConfigError(`option tokenSecret must be at least ${MIN_SECRET_BYTES} bytes long`);
  }
  if (o.apiKey !== '' && Buffer.byteLength(o.apiKey) < MIN_SECRET_BYTES) {
    throw new ConfigError(
      `option apiKey must be at least ${MIN_SECRET_BYTES} bytes long (try: openssl rand -hex 32)`,
    );
  }
  if (!isLoopback(o.apiHost) && o.apiKey === '' && (o.api || o.metricsPort >= 0)) {
    throw new ConfigError(
      `the ${o.api ? 'API' : 'metrics port'} is bound to ${o.apiHost}, which is not loopback: set an API key (SWITCHBOARD_API_KEY or --api-key-file)`,
    );
  }
  if (!o.allowAnonymous && o.tokenSecret === '' && o.role !== 'router') {
    throw new ConfigError(
      'anonymous ids are off but no token secret is set, so no client could log in: set a token secret (SWITCHBOARD_TOKEN_SECRET) or allow anonymous ids',
    );
  }
  return Object.freeze(o);
}
