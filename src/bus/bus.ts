/**
 * The bus carries messages from routers to the gateways that hold a recipient (the article's
 * distributed Erlang). A gateway takes interest in an id on the bus when the first connection
 * logs in as that id and drops it when the last one leaves; a router publishes a message once
 * per recipient id; the bus delivers only where there is interest.
 *
 * Implementations: in-process (default, one process) and NATS (`--bus nats://…`). Both pass the
 * same contract suite (`test/bus-contract.ts`).
 */
import type { Message } from '../message.js';

/** What one gateway holds, announced to the cluster with its heartbeats. */
export interface GatewayLoad {
  /** Open client connections. */
  readonly connections: number;
  /** Ids with at least one connection. */
  readonly ids: number;
}

/** The gateway side: hands a message to every local connection logged in as one of `recipients`. */
export interface Deliverer {
  /** Delivers `msg` to local connections of `recipients`; returns how many connections it reached. */
  deliver(msg: Message, recipients: readonly string[]): number;
  /** What this gateway holds now (for cluster-wide stats). */
  load(): GatewayLoad;
}

/** A publish's delivered count and whether every gateway answered in time. */
export interface PublishOutcome {
  /** Connections reached; a lower bound when `complete` is false. */
  readonly delivered: number;
  /** False when a gateway known to be alive did not report its count in time. */
  readonly complete: boolean;
}

/** What the bus knows of the cluster, for `/api/stats` and tests. */
export interface BusStats {
  /** Gateways currently known to be alive (1 for the in-process bus with a gateway attached). */
  readonly gateways: number;
  readonly published: number;
  readonly received: number;
  /** Sum of the load of every live gateway (this one included). */
  readonly cluster: GatewayLoad;
  /** Publishes answered with a partial count because a gateway did not report in time. */
  readonly partialPublishes: number;
}

/** Called when the bus connection goes down or comes back. */
export type BusStatusListener = (up: boolean) => void;

export interface Bus {
  /** `local` or `nats`. */
  readonly kind: string;
  /** False while the bus cannot carry messages; publishers answer 503 then. */
  readonly connected: boolean;

  /** Gateway side: where received messages go. At most one per bus instance. */
  attach(deliverer: Deliverer): void;

  /** Gateway side: start receiving messages for `id` (first local login of `id`). */
  interest(id: string): void;

  /** Gateway side: stop receiving messages for `id` (last local logout of `id`). */
  disinterest(id: string): void;

  /**
   * Router side: delivers `msg` to every connection logged in as one of `recipients`, on every
   * gateway. Resolves to the number of connections reached (a connection logged in as several
   * recipients counts once). Rejects with `UnavailableError` when the bus is down: a publish is
   * never reported as a silent success.
   */
  publish(msg: Message, recipients: readonly string[]): Promise<number>;

  /** {@link publish}, also saying whether the count is complete (every live gateway answered). */
  publishDetailed(msg: Message, recipients: readonly string[]): Promise<PublishOutcome>;

  onStatus(listener: BusStatusListener): void;

  stats(): BusStats;

  close(): Promise<void>;
}
