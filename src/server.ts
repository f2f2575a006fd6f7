/**
 * `Switchboard`: one server process, wired from its parts by role.
 *
 * ```
 *   role all (default) : store + bus + router + gateway (client port, hub) + API
 *   role gateway       : bus + router + gateway + API   (routes via the shared store; with no API
 *                        the store is opened at the first resume, which reads subscriptions)
 *   role router        : store + bus + router + API                 (no client port)
 * ```
 *
 * Embedded defaults: a SQLite file under `--data` and the in-process bus; `--store postgres://…`
 * and `--bus nats://…` for more than one process.
 */

import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { ApiServer } from './api/api-server.js';
import type { StatsSnapshot } from './api/metrics.js';
import { MetricsServer } from './api/metrics-server.js';
import type { Bus, BusStats } from './bus/bus.js';
import { JetStreamLog } from './bus/jetstream-log.js';
import type { MessageLog } from './bus/message-log.js';
import { NatsBus } from './bus/nats-bus.js';
import { openBus } from './bus/open-bus.js';
import { ConfigError } from './errors.js';
import { Gateway } from './gateway/gateway.js';
import { announceListening, connectionCeiling } from './limits.js';
import { createLogger, type Logger } from './log.js';
import { EventIds } from './message.js';
import { resolveOptions, type ServerOptions, type ServerOptionsInput } from './options.js';
import { History } from './router/history.js';
import { PresenceEvents } from './router/presence-events.js';
import { Router } from './router/router.js';
import { StallWatch } from './stall-watch.js';
import { LazyStore } from './store/lazy-store.js';
import { defaultStoreUrl, openStore, openStoreLazily } from './store/open-store.js';
import type { SubscriptionStore } from './store/store.js';

/** {@link Switchboard.start} input: any subset of the options, plus an optional logger. */
export interface StartOptions extends ServerOptionsInput {
  /** Where log lines go; by default stderr at `logLevel`. */
  readonly logger?: Logger;
}

export class Switchboard {
  readonly options: ServerOptions;
  readonly router: Router;
  readonly store: SubscriptionStore;
  readonly bus: Bus;
  readonly gateway: Gateway | undefined;
  readonly api: ApiServer;
  /** The `--metrics-port` server, when there is one. */
  readonly metrics: MetricsServer | undefined;
  readonly log: Logger;
  /** Where sent messages are kept for resume (in process, or JetStream over NATS). */
  readonly messageLog: MessageLog;
  /** Presence events for backends (webhook, NATS subject), when configured. */
  readonly presence: PresenceEvents | undefined;
  readonly #started = Date.now();
  readonly #stallWatch: StallWatch;
  #closing: Promise<void> | undefined;

  private constructor(parts: {
    options: ServerOptions;
    router: Router;
    store: SubscriptionStore;
    bus: Bus;
    gateway: Gateway | undefined;
    log: Logger;
    messageLog: MessageLog;
    presence: PresenceEvents | undefined;
  }) {
    this.options = parts.options;
    this.router = parts.router;
    this.store = parts.store;
    this.bus = parts.bus;
    this.gateway = parts.gateway;
    this.log = parts.log;
    this.messageLog = parts.messageLog;
    this.presence = parts.presence;
    this.#stallWatch = new StallWatch(parts.log, 500, parts.options.api ? 100 : 250);
    const o = parts.options;
    this.api = new ApiServer(
      this,
      {
        port: o.apiPort,
        host: o.apiHost,
        apiKey: o.apiKey,
        maxBodyBytes: o.maxBodyBytes,
        maxMessageBytes: o.maxMessageBytes,
        maxInflight: o.maxInflight,
        maxLagMs: o.maxLagMs,
      },
      this.log.child('api'),
      this.#stallWatch,
    );
    this.metrics =
      o.metricsPort < 0
        ? undefined
        : new MetricsServer(
            () => this.stats(),
            { host: o.apiHost, port: o.metricsPort, apiKey: o.apiKey },
            this.log.child('metrics'),
            this.#stallWatch,
          );
  }

  /** Opens the store and bus, starts listening, and resolves once both ports accept. */
  static async start(input: StartOptions = {}): Promise<Switchboard> {
    const { logger, ...given } = input;
    const options = resolveOptions(given);
    const log = logger ?? createLogger(options.logLevel, process.stderr, '', options.logFormat);
    const storeUrl = options.store || defaultStoreUrl(options.data);
    const storeOptions = { dataDir: options.data, logger: log.child('store') };
    // A gateway with no API reads the store only for a resuming client: it opens it then.
    const store =
      options.role === 'gateway' && !options.api
        ? openStoreLazily(storeUrl, storeOptions)
        : await openStore(storeUrl, storeOptions);
    let bus: Bus | undefined;
    let log_: MessageLog | undefined;
    let sb: Switchboard | undefined;
    try {
      bus = await openBus(options.bus, {
        prefix: options.busPrefix,
        logger: log.child('bus'),
        role: options.role,
        tallyTimeoutMs: options.tallyTimeoutMs,
        gatewayHeartbeatMs: options.gatewayHeartbeatMs,
      });
      log_ = await openLog(bus, options, log);
      const router = new Router({
        bus,
        store,
        log: log_,
        pageSize: options.pageSize,
        maxMessageBytes: options.maxMessageBytes,
      });
      const presence = startPresenceEvents(bus, options, log);
      const maxConnections = options.maxConnections || connectionCeiling();
      const gateway =
        options.role === 'router'
          ? undefined
          : new Gateway({ ...options, maxConnections }, router, log.child('gateway'), bus);
      if (gateway !== undefined) bus.attach(gateway);
      sb = new Switchboard({ options, router, store, bus, gateway, log, messageLog: log_, presence });
      if (bus instanceof NatsBus && options.busPublish && options.role !== 'gateway') {
        const apiServer = sb.api;
        bus.answerPublishes((payload) => apiServer.publish(payload));
      }
      const client = await gateway?.listen();
      if (client && options.reusePort) announceListening(client);
      const api = options.api ? await sb.api.listen() : undefined;
      if (client)
        log.info(`clients: http://${hostPort(client)}/test/<id> and /feed/<id>`, { maxConnections });
      if (api) log.info(`publish API: http://${hostPort(api)}/api/send`);
      if (api && gateway) gateway.publishUrl = `http://${hostPort(api)}/api/send`;
      const metrics = await sb.metrics?.listen();
      if (metrics) log.info(`metrics: http://${hostPort(metrics)}/metrics`);
      log.info('store, bus and history', {
        store: store.location,
        bus: bus.kind,
        history: log_.kind,
        role: options.role,
      });
      if (options.allowAnonymous && gateway) {
        log.warn(
          'anonymous ids are allowed: any client may log in as any id from the URL (set --token-secret to require tokens)',
        );
      }
      return sb;
    } catch (err) {
      if (sb) await sb.close().catch(() => undefined);
      else {
        await log_?.close().catch(() => undefined);
        await bus?.close().catch(() => undefined);
        await store.close().catch(() => undefined);
      }
      throw err;
    }
  }

  /** `http://host:port` of the client port. */
  get clientUrl(): string {
    if (this.gateway === undefined) throw new ConfigError('this process has no client port (role router)');
    return `http://${hostPort(this.gateway.address())}`;
  }

  /** `http://host:port` of the API port. */
  get apiUrl(): string {
    if (!this.options.api) throw new ConfigError('this process serves no API (--no-api)');
    return `http://${hostPort(this.api.address())}`;
  }

  async stats(): Promise<StatsSnapshot> {
    const g = this.gateway;
    const gs = g?.stats;
    const r = this.router.stats();
    const b = this.bus.stats();
    const mem = process.memoryUsage();
    let subscriptions: number | null = null;
    try {
      // A gateway's store not opened yet stays closed for a count the routers report anyway.
      const unopened = this.store instanceof LazyStore && !this.store.opened;
      if (!unopened) subscriptions = (await this.store.stats()).subscriptions;
    } catch {
      // Store down: report it as unknown rather than fail the stats.
    }
    return {
      role: this.options.role,
      uptimeSeconds: Math.round((Date.now() - this.#started) / 1000),
      connections: g?.open ?? 0,
      streams: { ...(g?.openByKind() ?? {}) },
      ids: g?.hub.ids ?? 0,
      logins: g?.hub.logins ?? 0,
      messagesIn: r.messagesIn,
      messagesOut: gs?.deliveries ?? 0,
      delivered: r.delivered,
      bytesOut: gs?.bytesOut ?? 0,
      accepted: gs?.accepted ?? 0,
      closed: gs?.closed ?? 0,
      slowConsumers: gs?.slowConsumers ?? 0,
      headTimeouts: gs?.headTimeouts ?? 0,
      rejected: gs?.rejected ?? 0,
      authFailures: gs?.authFailures ?? 0,
      expired: gs?.expired ?? 0,
      stale: gs?.stale ?? 0,
      resumed: gs?.resumed ?? 0,
      gaps: gs?.gaps ?? 0,
      insufficientState: gs?.insufficientState ?? 0,
      subscriptions,
      partialSends: r.partialSends,
      // Everything the bus counts (the NATS bus adds tally rounds, time-outs, interests, …).
      bus: { kind: this.bus.kind, connected: this.bus.connected, ...withoutCluster(b) },
      cluster: {
        gateways: b.gateways,
        ...b.cluster,
        ...(b.perGateway === undefined ? {} : { perGateway: b.perGateway }),
      },
      api: this.api.load(),
      stalls: { count: this.#stallWatch.stalls, worstMs: this.#stallWatch.worstMs },
      memory: { rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal },
    };
  }

  health(): { ok: boolean; checks: Record<string, boolean> } {
    const checks = {
      bus: this.bus.connected,
      accepting: !(this.gateway?.draining ?? false) && !this.#closing,
    };
    return { ok: checks.bus && checks.accepting, checks };
  }

  /**
   * Graceful shutdown: the gateway stops accepting and tells clients to reconnect, the API
   * finishes requests in flight, then the bus and store close.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.gateway?.close();
      if (this.options.api) await this.api.close();
      await this.metrics?.close();
      this.presence?.close();
      await this.messageLog.close();
      await this.bus.close();
      await this.store.close();
      this.#stallWatch.close();
      this.log.info('stopped');
    })();
    return this.#closing;
  }
}

function hostPort(a: AddressInfo): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** Waits for SIGINT or SIGTERM (used by `serve`; exported for tests of shutdown). */
export async function untilSignal(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  await once(signal, 'abort');
}

/**
 * The message log for `bus`: JetStream on a NATS bus (shared by every process, so a client may
 * resume anywhere), the in-process ring otherwise; off with `historySize` 0.
 */
async function openLog(bus: Bus, o: ServerOptions, log: Logger): Promise<MessageLog> {
  const ring = (size: number): MessageLog =>
    new History(new EventIds(), { maxMessages: size, maxBytes: o.historyBytes, ttlMs: o.historyTtlMs });
  if (o.historySize === 0 || !(bus instanceof NatsBus)) return ring(o.historySize);
  return JetStreamLog.open(bus.connection, {
    prefix: o.busPrefix,
    ttlMs: o.historyTtlMs,
    maxPerSubject: o.historySize,
    maxBytes: o.historyBytes,
    replicas: o.historyReplicas,
    log: log.child('history'),
  });
}

/** Presence events, when someone listens: a webhook, or the NATS subject `<prefix>.presence`. */
function startPresenceEvents(bus: Bus, o: ServerOptions, log: Logger): PresenceEvents | undefined {
  const nats = bus instanceof NatsBus ? bus : undefined;
  if (o.presenceWebhook === '' && nats === undefined) return undefined;
  if (o.role === 'gateway' && !o.api) return undefined;
  return new PresenceEvents(bus, {
    webhook: o.presenceWebhook,
    secret: o.apiKey,
    debounceMs: o.presenceDebounceMs,
    log: log.child('presence'),
    ...(nats ? { publish: (body: string) => nats.connection.publish(`${o.busPrefix}.presence`, body) } : {}),
  });
}

/** A bus's own figures without the cluster load (reported in its own section). */
function withoutCluster(b: BusStats): Omit<BusStats, 'cluster'> & Record<string, unknown> {
  const { cluster: _cluster, perGateway: _perGateway, ...rest } = b;
  return rest;
}
