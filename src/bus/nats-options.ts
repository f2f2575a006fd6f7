/**
 * Options of the NATS bus in one place: named defaults, one merge, eager validation that names
 * the option and its allowed range.
 */
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';

/** Subject prefix used when none is given. */
export const DEFAULT_PREFIX = 'sb';
/** How long a router waits for every live gateway's tally answer. */
export const DEFAULT_TALLY_TIMEOUT_MS = 2000;
/** Gateway heartbeat period; a gateway silent for 3 periods is gone. */
export const DEFAULT_GATEWAY_HEARTBEAT_MS = 1000;
/** How long a (re)connected router listens for gateways before sending tally rounds. */
export const DEFAULT_DISCOVERY_MS = 200;
/** Initial connection handshake limit. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
/** Pause between reconnect attempts (plus the client's jitter of up to 100 ms). */
export const DEFAULT_RECONNECT_TIME_WAIT_MS = 250;
/** Reconnect attempts per server; -1 = forever. */
export const DEFAULT_MAX_RECONNECT_ATTEMPTS = -1;
/** Client PING period: a silently dead server is noticed after about 2 periods. */
export const DEFAULT_PING_INTERVAL_MS = 10_000;

/** Which half of the bus an instance plays. */
export type NatsBusRole = 'all' | 'gateway' | 'router';

/** Options of `NatsBus.connect`; only `servers` is required. */
export interface NatsBusOptions {
  /** `nats://host:port` or `host:port`, one or several (a cluster). */
  servers: string | string[];
  /** Subject prefix, NATS tokens of letters, digits, `_` and `-` joined by `.`. Default `sb`. */
  prefix?: string;
  /** Client name shown by the server's monitoring. Default `switchboard`. */
  name?: string;
  /** Default `all`: publish and deliver. */
  role?: NatsBusRole;
  /** {@link DEFAULT_TALLY_TIMEOUT_MS}: after this a publish resolves with a partial count. */
  tallyTimeoutMs?: number;
  /** {@link DEFAULT_GATEWAY_HEARTBEAT_MS}: gateway heartbeat period; 3 periods of silence = gone. */
  gatewayHeartbeatMs?: number;
  /** {@link DEFAULT_DISCOVERY_MS}: a (re)connected router's wait for gateways to announce. */
  discoveryMs?: number;
  /** {@link DEFAULT_CONNECT_TIMEOUT_MS}: handshake limit of the first connection. */
  connectTimeoutMs?: number;
  /** {@link DEFAULT_RECONNECT_TIME_WAIT_MS}: pause between reconnect attempts. */
  reconnectTimeWaitMs?: number;
  /** {@link DEFAULT_MAX_RECONNECT_ATTEMPTS}: per server, -1 for ever. */
  maxReconnectAttempts?: number;
  /** {@link DEFAULT_PING_INTERVAL_MS}: client PINGs, to notice a silently dead server. */
  pingIntervalMs?: number;
  logger?: Logger;
}

/** {@link NatsBusOptions} with every default applied and checked. */
export interface ResolvedNatsBusOptions {
  readonly servers: string[];
  readonly prefix: string;
  readonly name: string;
  readonly role: NatsBusRole;
  readonly tallyTimeoutMs: number;
  readonly gatewayHeartbeatMs: number;
  readonly discoveryMs: number;
  readonly connectTimeoutMs: number;
  readonly reconnectTimeWaitMs: number;
  readonly maxReconnectAttempts: number;
  readonly pingIntervalMs: number;
  readonly logger: Logger | undefined;
}

const PREFIX_PATTERN = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const ROLES: readonly NatsBusRole[] = ['all', 'gateway', 'router'];

function int(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(
      `NATS bus option ${name} must be an integer from ${min} to ${max}, got ${String(value)}`,
    );
  }
  return value;
}

/** Merges `options` with the defaults; throws {@link ConfigError} naming the first bad option. */
export function resolveNatsOptions(options: NatsBusOptions): ResolvedNatsBusOptions {
  const servers = typeof options.servers === 'string' ? [options.servers] : [...options.servers];
  if (servers.length === 0 || servers.some((s) => typeof s !== 'string' || s.trim() === '' || /\s/.test(s))) {
    throw new ConfigError(
      `NATS bus option servers must list one or more host:port or nats://host:port, got ${JSON.stringify(options.servers)}`,
    );
  }
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new ConfigError(
      `NATS bus option prefix ${JSON.stringify(prefix)} must be subject tokens of letters, digits, _ and - joined by "."`,
    );
  }
  const role = options.role ?? 'all';
  if (!ROLES.includes(role))
    throw new ConfigError(
      `NATS bus option role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}`,
    );
  return {
    servers,
    prefix,
    name: options.name ?? 'switchboard',
    role,
    tallyTimeoutMs: int('tallyTimeoutMs', options.tallyTimeoutMs, DEFAULT_TALLY_TIMEOUT_MS, 1, 600_000),
    gatewayHeartbeatMs: int(
      'gatewayHeartbeatMs',
      options.gatewayHeartbeatMs,
      DEFAULT_GATEWAY_HEARTBEAT_MS,
      10,
      60_000,
    ),
    discoveryMs: int('discoveryMs', options.discoveryMs, DEFAULT_DISCOVERY_MS, 0, 60_000),
    connectTimeoutMs: int(
      'connectTimeoutMs',
      options.connectTimeoutMs,
      DEFAULT_CONNECT_TIMEOUT_MS,
      1,
      600_000,
    ),
    reconnectTimeWaitMs: int(
      'reconnectTimeWaitMs',
      options.reconnectTimeWaitMs,
      DEFAULT_RECONNECT_TIME_WAIT_MS,
      0,
      600_000,
    ),
    maxReconnectAttempts: int(
      'maxReconnectAttempts',
      options.maxReconnectAttempts,
      DEFAULT_MAX_RECONNECT_ATTEMPTS,
      -1,
      1_000_000,
    ),
    pingIntervalMs: int('pingIntervalMs', options.pingIntervalMs, DEFAULT_PING_INTERVAL_MS, 100, 3_600_000),
    logger: options.logger,
  };
}
