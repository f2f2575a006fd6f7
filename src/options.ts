/**
 * Server options in one place: named defaults, one merge, eager validation that names the option
 * and its allowed range. `switchboard serve` flags map one-to-one onto these (kebab-case there,
 * camelCase here).
 */
import path from 'node:path';
import { ConfigError } from './errors.js';
import { MIN_SECRET_BYTES } from './gateway/token.js';
import { LOG_LEVELS, type LogLevel } from './log.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from './message.js';

/**
 * Node flags for processes that hold many idle connections (see src/cli/main.ts): measured 3.9 KB
 * → 1.8 KB of RSS per idle connection. Only effective on the node command line.
 */
export const LEAN_NODE_ARGS: readonly string[] = ['--max-semi-space-size=1', '--optimize-for-size'];

/** What a process does: hold client connections, route publishes, or both (the default). */
export const ROLES = ['all', 'gateway', 'router'] as const;
export type Role = (typeof ROLES)[number];

export interface ServerOptions {
  /** Client port (the article's 8000); 0 picks a free one. */
  readonly port: number;
  readonly host: string;
  /** Serve the publish/admin API from this process (a cluster's gateways leave it to its routers). */
  readonly api: boolean;
  /** Publish/admin API port. */
  readonly apiPort: number;
  /** API bind address; anything but loopback requires `apiKey`. */
  readonly apiHost: string;
  /** Bearer key for the API; empty for none (loopback only). */
  readonly apiKey: string;
  /** Where state lives (the SQLite store by default). */
  readonly data: string;
  /** Subscription store URL; empty means `sqlite:<data>/switchboard.db`. */
  readonly store: string;
  /** Bus URL: `local` (in-process) or `nats://host:port`. */
  readonly bus: string;
  /** Subject prefix on a shared bus, so several clusters can share one NATS. */
  readonly busPrefix: string;
  readonly role: Role;
  readonly logLevel: LogLevel;
  /** Part 1 ticker interval, ms; 0 is off. */
  readonly tickerMs: number;
  readonly heartbeatMs: number;
  readonly headTimeoutMs: number;
  /** How long a connection whose final answer is written may wait for the client to close. */
  readonly lingerMs: number;
  readonly pollTimeoutMs: number;
  readonly sseRetryMs: number;
  readonly shutdownTimeoutMs: number;
  readonly maxHeadBytes: number;
  readonly maxMessageBytes: number;
  /** Largest publish request body (a batch), bytes. */
  readonly maxBodyBytes: number;
  readonly maxQueueBytes: number;
  readonly maxClientFrameBytes: number;
  readonly maxIdsPerConnection: number;
  /** Most open client connections per process; 0 picks one below the open-files limit. */
  readonly maxConnections: number;
  /** HS256 secret for client tokens (at least 32 bytes); empty: no tokens. */
  readonly tokenSecret: string;
  /** Accept ids from the URL alone. Default: true when no token secret is set, else false. */
  readonly allowAnonymous: boolean;
  readonly allowOrigin: string;
  /** Messages kept for resume; 0 turns resume off. */
  readonly historySize: number;
  readonly historyBytes: number;
  readonly historyTtlMs: number;
  /** Subscribers per bus publish in a fan-out. */
  readonly pageSize: number;
  /** Messages being sent at once before new publishes get 503 (overload); 0: no limit. */
  readonly maxInflight: number;
  /** Event-loop lag (ms, worst of the last second) past which new publishes get 503; 0: no limit. */
  readonly maxLagMs: number;
}

/** The defaults, named. */
export const DEFAULTS = {
  port: 8000,
  host: '0.0.0.0',
  api: true,
  apiPort: 8001,
  apiHost: '127.0.0.1',
  apiKey: '',
  data: './data',
  store: '',
  bus: 'local',
  busPrefix: 'sb',
  role: 'all',
  logLevel: 'info',
  tickerMs: 0,
  heartbeatMs: 25_000,
  headTimeoutMs: 10_000,
  lingerMs: 5_000,
  pollTimeoutMs: 25_000,
  sseRetryMs: 2_000,
  shutdownTimeoutMs: 5_000,
  maxHeadBytes: 16 * 1024,
  maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
  maxBodyBytes: 16 * 1024 * 1024,
  maxQueueBytes: 256 * 1024,
  maxClientFrameBytes: 64 * 1024,
  maxIdsPerConnection: 100,
  maxConnections: 0,
  tokenSecret: '',
  allowOrigin: '*',
  historySize: 10_000,
  historyBytes: 16 * 1024 * 1024,
  historyTtlMs: 5 * 60_000,
  pageSize: 1000,
  maxInflight: 10_000,
  maxLagMs: 1000,
} as const satisfies Omit<ServerOptions, 'allowAnonymous'>;

/** Options as given: any subset; `allowAnonymous` left out means "decide from tokenSecret". */
export type ServerOptionsInput = Partial<ServerOptions>;

type Range = readonly [min: number, max: number];
const RANGES: Partial<Record<keyof ServerOptions, Range>> = {
  port: [0, 65535],
  apiPort: [0, 65535],
  tickerMs: [0, 86_400_000],
  heartbeatMs: [1000, 3_600_000],
  headTimeoutMs: [1000, 600_000],
  lingerMs: [1000, 600_000],
  pollTimeoutMs: [1000, 600_000],
  sseRetryMs: [0, 600_000],
  shutdownTimeoutMs: [0, 600_000],
  maxHeadBytes: [1024, 1024 * 1024],
  maxMessageBytes: [1, 64 * 1024 * 1024],
  maxBodyBytes: [1024, 1024 * 1024 * 1024],
  maxQueueBytes: [1024, 1024 * 1024 * 1024],
  maxClientFrameBytes: [125, 64 * 1024 * 1024],
  maxIdsPerConnection: [1, 100_000],
  maxConnections: [0, 10_000_000],
  historySize: [0, 10_000_000],
  historyBytes: [0, 64 * 1024 * 1024 * 1024],
  historyTtlMs: [0, 7 * 86_400_000],
  pageSize: [1, 1_000_000],
  maxInflight: [0, 100_000_000],
  maxLagMs: [0, 600_000],
};

/** True for 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Merges `input` over {@link DEFAULTS} and validates every field; throws ConfigError naming the option. */
export function resolveOptions(input: ServerOptionsInput = {}): ServerOptions {
  const defined = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
  const merged = { ...DEFAULTS, ...defined } as Omit<ServerOptions, 'allowAnonymous'> & {
    allowAnonymous?: boolean;
  };
  for (const [name, range] of Object.entries(RANGES) as [keyof ServerOptions, Range][]) {
    const v = merged[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1]) {
      throw new ConfigError(
        `option ${name} must be a whole number from ${range[0]} to ${range[1]}, got ${JSON.stringify(v)}`,
      );
    }
  }
  if (!merged.api && merged.role === 'router') {
    throw new ConfigError('a router without its API would do nothing: drop --no-api or use --role gateway');
  }
  if (!ROLES.includes(merged.role))
    throw new ConfigError(
      `option role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(merged.role)}`,
    );
  if (!LOG_LEVELS.includes(merged.logLevel)) {
    throw new ConfigError(
      `option logLevel must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(merged.logLevel)}`,
    );
  }
  if (merged.maxMessageBytes > merged.maxBodyBytes) {
    throw new ConfigError(
      `option maxMessageBytes (${merged.maxMessageBytes}) must not exceed maxBodyBytes (${merged.maxBodyBytes})`,
    );
  }
  if (merged.tokenSecret !== '' && Buffer.byteLength(merged.tokenSecret) < MIN_SECRET_BYTES) {
    throw new ConfigError(`option tokenSecret must be at least ${MIN_SECRET_BYTES} bytes long`);
  }
  if (!isLoopback(merged.apiHost) && merged.apiKey === '') {
    throw new ConfigError(
      `the API is bound to ${merged.apiHost}, which is not loopback: set an API key (--api-key or SWITCHBOARD_API_KEY)`,
    );
  }
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(merged.busPrefix)) {
    throw new ConfigError(
      `option busPrefix must be 1-64 letters, digits, _ or -, got ${JSON.stringify(merged.busPrefix)}`,
    );
  }
  const allowAnonymous = merged.allowAnonymous ?? merged.tokenSecret === '';
  return Object.freeze({ ...merged, data: path.resolve(merged.data), allowAnonymous });
}
