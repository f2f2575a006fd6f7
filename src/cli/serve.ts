/**
 * `switchboard serve`: runs the comet server until SIGINT/SIGTERM, then shuts down gracefully
 * (stop accepting, tell clients to reconnect, drain, close) and exits 0.
 */
import { createLogger, LOG_LEVELS, type LogLevel } from '../log.js';
import { DEFAULTS, ROLES, type Role } from '../options.js';
import { Switchboard, untilSignal } from '../server.js';
import { bool, type CommandSpec, num, str } from './args.js';
import type { Command } from './command.js';

const spec: CommandSpec = {
  name: 'serve',
  summary: 'Run the comet server: client streams on --port, the publish API on --api-port.',
  options: {
    port: {
      type: 'int',
      description: 'Client port',
      default: DEFAULTS.port,
      min: 0,
      max: 65535,
      short: 'p',
      placeholder: 'PORT',
    },
    host: { type: 'string', description: 'Client bind address', default: DEFAULTS.host, placeholder: 'ADDR' },
    api: {
      type: 'boolean',
      description: 'Serve the publish API (--no-api: a cluster gateway leaving it to routers)',
      default: true,
    },
    'api-port': {
      type: 'int',
      description: 'Publish/admin API port',
      default: DEFAULTS.apiPort,
      min: 0,
      max: 65535,
      placeholder: 'PORT',
    },
    'api-host': {
      type: 'string',
      description: 'API bind address (not loopback: needs --api-key)',
      default: DEFAULTS.apiHost,
      placeholder: 'ADDR',
    },
    'api-key': {
      type: 'string',
      description: 'API bearer key (or env SWITCHBOARD_API_KEY)',
      placeholder: 'KEY',
    },
    data: { type: 'string', description: 'Where state lives', default: DEFAULTS.data, placeholder: 'DIR' },
    store: {
      type: 'string',
      description: 'Subscription store: sqlite:PATH or postgres://… (default sqlite:DIR/switchboard.db)',
      placeholder: 'URL',
    },
    bus: {
      type: 'string',
      description: 'Bus: local or nats://host:port',
      default: DEFAULTS.bus,
      placeholder: 'URL',
    },
    'bus-prefix': {
      type: 'string',
      description: 'Subject prefix on a shared bus',
      default: DEFAULTS.busPrefix,
      placeholder: 'NAME',
    },
    role: { type: 'string', description: 'What this process does', default: DEFAULTS.role, choices: ROLES },
    'log-level': {
      type: 'string',
      description: 'Log level',
      default: DEFAULTS.logLevel,
      choices: LOG_LEVELS.slice(1),
    },
    ticker: {
      type: 'duration',
      description: "Part 1's ticker: a chunk to every stream this often (0: off)",
      default: 0,
      min: 0,
    },
    heartbeat: {
      type: 'duration',
      description: 'SSE comment / WebSocket ping interval',
      default: DEFAULTS.heartbeatMs,
      min: 1000,
    },
    'head-timeout': {
      type: 'duration',
      description: 'Close connections whose request head is late',
      default: DEFAULTS.headTimeoutMs,
      min: 1000,
    },
    'poll-timeout': {
      type: 'duration',
      description: 'Long-poll wait before an empty answer',
      default: DEFAULTS.pollTimeoutMs,
      min: 1000,
    },
    'max-message': {
      type: 'size',
      description: 'Largest message body',
      default: DEFAULTS.maxMessageBytes,
      min: 1,
    },
    'max-body': {
      type: 'size',
      description: 'Largest publish request body (batches)',
      default: DEFAULTS.maxBodyBytes,
      min: 1024,
    },
    'max-queue': {
      type: 'size',
      description: 'Outbound bytes queued per connection before it is cut off',
      default: DEFAULTS.maxQueueBytes,
      min: 1024,
    },
    'max-connections': {
      type: 'int',
      description: 'Most client connections (0: below the open-files limit)',
      default: 0,
      min: 0,
    },
    'token-secret': {
      type: 'string',
      description: 'HS256 secret for client tokens, ≥ 32 bytes (or env SWITCHBOARD_TOKEN_SECRET)',
      placeholder: 'SECRET',
    },
    anonymous: {
      type: 'boolean',
      description: 'Accept ids from the URL without a token (default: only when no token secret)',
    },
    'allow-origin': {
      type: 'string',
      description: 'Access-Control-Allow-Origin for clients ("" for none)',
      default: DEFAULTS.allowOrigin,
      placeholder: 'ORIGIN',
    },
    history: {
      type: 'int',
      description: 'Messages kept for resume (0: off)',
      default: DEFAULTS.historySize,
      min: 0,
    },
    'history-ttl': {
      type: 'duration',
      description: 'Oldest message kept for resume',
      default: DEFAULTS.historyTtlMs,
      min: 0,
    },
    'page-size': {
      type: 'int',
      description: 'Subscribers per bus publish in a fan-out (a turn of the event loop between pages)',
      default: DEFAULTS.pageSize,
      min: 1,
      max: 1_000_000,
    },
    'max-inflight': {
      type: 'int',
      description: 'Messages being sent at once before publishes get 503 (0: no limit)',
      default: DEFAULTS.maxInflight,
      min: 0,
    },
    'max-lag': {
      type: 'duration',
      description: 'Event-loop lag past which publishes get 503 (0: no limit)',
      default: DEFAULTS.maxLagMs,
      min: 0,
    },
    'shutdown-timeout': {
      type: 'duration',
      description: 'How long shutdown waits for clients',
      default: DEFAULTS.shutdownTimeoutMs,
      min: 0,
    },
  },
  epilog: [
    'Examples:',
    '  switchboard serve                               # embedded: SQLite under ./data, in-process bus',
    "  curl -N http://127.0.0.1:8000/test/123          # the article's stream",
    `  curl -d '{"id":"123","msg":"Hello World"}' http://127.0.0.1:8001/api/send`,
  ].join('\n'),
};

export const command: Command = {
  spec,
  async run({ values: v }, ctx) {
    const level = str(v, 'log-level') as LogLevel;
    // In a cluster, each worker's lines say which worker wrote them.
    const logger = createLogger(level, process.stderr, process.env.SWITCHBOARD_WORKER ?? '');
    const sb = await Switchboard.start({
      logger,
      port: num(v, 'port'),
      host: str(v, 'host'),
      api: bool(v, 'api'),
      apiPort: num(v, 'api-port'),
      apiHost: str(v, 'api-host'),
      apiKey: str(v, 'api-key') ?? process.env.SWITCHBOARD_API_KEY ?? '',
      data: str(v, 'data'),
      store: str(v, 'store'),
      bus: str(v, 'bus'),
      busPrefix: str(v, 'bus-prefix'),
      role: str(v, 'role') as Role,
      logLevel: level,
      tickerMs: num(v, 'ticker'),
      heartbeatMs: num(v, 'heartbeat'),
      headTimeoutMs: num(v, 'head-timeout'),
      pollTimeoutMs: num(v, 'poll-timeout'),
      maxMessageBytes: num(v, 'max-message'),
      maxBodyBytes: num(v, 'max-body'),
      maxQueueBytes: num(v, 'max-queue'),
      maxConnections: num(v, 'max-connections'),
      tokenSecret: str(v, 'token-secret') ?? process.env.SWITCHBOARD_TOKEN_SECRET ?? '',
      allowAnonymous: v.anonymous === undefined ? undefined : bool(v, 'anonymous'),
      allowOrigin: str(v, 'allow-origin'),
      historySize: num(v, 'history'),
      historyTtlMs: num(v, 'history-ttl'),
      shutdownTimeoutMs: num(v, 'shutdown-timeout'),
      pageSize: num(v, 'page-size'),
      maxInflight: num(v, 'max-inflight'),
      maxLagMs: num(v, 'max-lag'),
    });
    await untilSignal(ctx.signal);
    sb.log.info('shutting down');
    await sb.close();
    return 0;
  },
};
