/**
 * Picks the bus implementation from a URL (`--bus`): the seam between the in-process bus and NATS.
 *
 *     local, local:, ""                       → LocalBus (one process, the default)
 *     nats://host:port[,nats://host:port…]    → NatsBus, connected before this resolves
 */
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Bus } from './bus.js';
import { LocalBus } from './local-bus.js';
import type { NatsBusRole } from './nats-options.js';

/** What `openBus` passes on to the NATS bus; ignored by the local one. */
export interface OpenBusOptions {
  /** Subject prefix (default `sb`). */
  prefix?: string;
  logger?: Logger;
  /** Client name shown by the NATS server. */
  name?: string;
  /** `all` (default), `gateway` or `router`. */
  role?: NatsBusRole;
  /** How long to wait for the NATS server on startup (default 5 s). */
  connectTimeoutMs?: number;
  /** How long a send waits for every gateway's count (default 2 s). */
  tallyTimeoutMs?: number;
  /** Gateway announcement period (default 1 s); 3 silent periods and a gateway is gone. */
  gatewayHeartbeatMs?: number;
}

const ACCEPTED = '"local" or nats://host:port (several separated by commas)';

/** The NATS server list of a `nats://` bus URL; throws {@link ConfigError} naming the bad part. */
export function parseNatsUrl(url: string): string[] {
  const parts = url.split(',').map((p) => p.trim());
  return parts.map((part, i) => {
    let u: URL;
    try {
      u = new URL(part);
    } catch {
      throw new ConfigError(
        `bus URL ${JSON.stringify(url)}: server ${i + 1} ${JSON.stringify(part)} is not a URL; use ${ACCEPTED}`,
      );
    }
    if (
      u.protocol !== 'nats:' ||
      u.hostname === '' ||
      (u.pathname !== '' && u.pathname !== '/') ||
      u.search !== '' ||
      u.hash !== ''
    ) {
      throw new ConfigError(
        `bus URL ${JSON.stringify(url)}: server ${i + 1} ${JSON.stringify(part)} is not nats://host:port; use ${ACCEPTED}`,
      );
    }
    return part.replace(/\/$/, '');
  });
}

/**
 * Opens the bus named by `url`. A NATS bus is connected when this resolves; when no server
 * answers within the connect timeout it rejects with `UnavailableError` naming the URL. Any
 * other URL is a {@link ConfigError} naming it and the accepted forms.
 */
export async function openBus(url: string, options: OpenBusOptions = {}): Promise<Bus> {
  const trimmed = url.trim();
  if (trimmed === '' || trimmed === 'local' || trimmed === 'local:') return new LocalBus();
  if (!trimmed.startsWith('nats://'))
    throw new ConfigError(`bus URL ${JSON.stringify(url)} is not supported; use ${ACCEPTED}`);
  const servers = parseNatsUrl(trimmed);
  // Loaded only when asked for: the embedded default never pays for the NATS client.
  const { NatsBus } = await import('./nats-bus.js');
  return NatsBus.connect({
    servers,
    prefix: options.prefix,
    logger: options.logger,
    name: options.name,
    role: options.role,
    connectTimeoutMs: options.connectTimeoutMs,
    tallyTimeoutMs: options.tallyTimeoutMs,
    gatewayHeartbeatMs: options.gatewayHeartbeatMs,
  });
}
