/**
 * The bus carries messages from routers to the gateways that hold a recipient (the article's
 * distributed Erlang), and what routers must know of the gateways: who is alive, which ids each
 * holds (for exact counts, presence and disconnects without asking every gateway).
 *
 * A gateway takes interest in an id on the bus when the first connection logs in as that id and
 * drops it when the last one leaves; the bus delivers a router's message only to the gateways
 * with interest in a recipient, once per gateway.
 *
 * Implementations: in-process (default, one process) and NATS (`--bus nats://…`). Both pass the
 * same contract suite (`test/bus-contract.ts`).
 */
import type { DisconnectReason } from '../errors.js';
import type { Message } from '../message.js';

/** What one gateway holds, announced to the cluster with its heartbeats. */
export interface GatewayLoad {
  /** Open client connections. */
  readonly connections: number;
  /** Ids with at least one connection. */
  readonly ids: number;
}

/** The gateway side: its local connections, as the bus needs them. */
export interface Deliverer {
  /** Delivers `msg` to local connections of `recipients`; returns how many connections it reached. */
  deliver(msg: Message, recipients: readonly string[]): number;
  /** What this gateway holds now (for cluster-wide stats). */
  load(): GatewayLoad;
  /** Local connections logged in as `id`. */
  count(id: string): number;
  /** Ends every local connection of `id` with `reason`; returns how many. */
  disconnect(id: string, reason: DisconnectReason): number;
  /** Every id with a local connection (for a router that must learn them all). */
  heldIds(): Iterable<string>;
  /**
   * The bus may have dropped messages for this gateway's ids: end every connection that can
   * resume (with {@link Disconnect.InsufficientState}), so it comes back with its last event id
   * and the history gives it what it missed. Returns how many were ended.
   */
  missedMessages?(): number;
}

/** A publish's delivered count and whether every gateway concerned answered in time. */
export interface PublishOutcome {
  /** Connections reached; a lower bound when `complete` is false. */
  readonly delivered: number;
  /** False when a gateway known to hold a recipient did not report its count in time. */
  readonly complete: boolean;
}

/** Connections per id across the cluster; `complete` false when a gateway did not answer in time. */
export interface PresenceCounts {
  readonly counts: ReadonlyMap<string, number>;
  readonly complete: boolean;
}

/** An id came online (its first connection anywhere) or went offline (its last one left). */
export interface PresenceChange {
  readonly id: string;
  readonly online: boolean;
  /** Milliseconds since the epoch. */
  readonly at: number;
}

/** What the bus knows of the cluster, for `/api/stats` and tests. */
export interface BusStats {
  /** Gateways currently known to be alive (1 for the in-process bus with a gateway attached). */
  readonly gateways: number;
  readonly published: number;
  readonly received: number;
  /** Sum of the load of every live gateway (this one included). */
  readonly cluster: GatewayLoad;
  /** Each live gateway's load by gateway id, as last announced (buses that know them). */
  readonly perGateway?: Readonly<Record<string, GatewayLoad>>;
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
   * Gateway side, optional: resolves once every router knows of the interests taken so far, so
   * that each later send to those ids reaches this gateway and each earlier one is in the
   * history. A resume reads the history after it. Absent: interests take effect at once.
   */
  settled?(): Promise<void>;

  /**
   * Router side: delivers `msg` to every connection logged in as one of `recipients`, on every
   * gateway. Resolves to the number of connections reached (a connection logged in as several
   * recipients counts once) and whether that count is complete. Rejects with
   * `UnavailableError` when the bus is down: a publish is never reported as a silent success.
   */
  publish(msg: Message, recipients: readonly string[]): Promise<PublishOutcome>;

  /** Optional: {@link publish} for a bus that delivers at once (in process); throws as publish rejects. */
  publishNow?(msg: Message, recipients: readonly string[]): PublishOutcome;

  /** Router side: connections of each of `ids` across the cluster (0: offline). */
  presence(ids: readonly string[]): Promise<PresenceCounts>;

  /** Router side: ends every connection of `id` on every gateway; resolves to how many. */
  disconnect(id: string, reason: DisconnectReason): Promise<{ disconnected: number; complete: boolean }>;

  /**
   * Router side: ids going online and offline across the cluster, as they happen (not debounced).
   * Only one process of a cluster reports them (the router with the lowest id), so a backend
   * hears of each change once.
   */
  onPresence(listener: (changes: readonly PresenceChange[]) => void): void;

  onStatus(listener: BusStatusListener): void;

  stats(): BusStats;

  close(): Promise<void>;
}
