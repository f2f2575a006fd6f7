/**
 * The stats snapshot behind `GET /api/stats`, and `GET /metrics` in Prometheus's text format by
 * its conventions (prom-client): base units in the names (`_seconds`, `_bytes`), `_total` on
 * counters, latencies as histograms, and the standard `process_*` and `nodejs_*` metrics.
 */
import { createRequire } from 'node:module';
import type { Histogram, LabelValues, Registry } from 'prom-client';

/**
 * prom-client, loaded when the first {@link Metrics} is made: a process that serves neither the
 * API nor a metrics port (a cluster gateway) never loads it, which keeps about 2 MB of heap out
 * of each of the 50-odd gateways a million connections take.
 */
let prom: typeof import('prom-client') | undefined;
function promClient(): typeof import('prom-client') {
  prom ??= createRequire(import.meta.url)('prom-client') as typeof import('prom-client');
  return prom;
}

/** The publish API's own load figures, for stats. */
export interface ApiLoad {
  /** Messages being sent now. */
  readonly inflight: number;
  /** Messages refused with 503 because the server was overloaded. */
  readonly shed: number;
  /** Worst event-loop lag of the last second, ms. */
  readonly eventLoopLagMs: number;
  /** Event-loop delay since start, p99 and max, ms. */
  readonly eventLoopDelayP99Ms: number;
  readonly eventLoopDelayMaxMs: number;
}

/** Everything `/api/stats` reports. Counters are since process start. */
export interface StatsSnapshot {
  readonly role: string;
  readonly uptimeSeconds: number;
  /** Open client sockets. */
  readonly connections: number;
  /** Open connections by transport (`head`: still sending their request). */
  readonly streams: Readonly<Record<string, number>>;
  /** Ids with at least one connection here. */
  readonly ids: number;
  /** (connection, id) logins here. */
  readonly logins: number;
  /** Messages accepted for sending by this process's router. */
  readonly messagesIn: number;
  /** Message frames written to clients by this gateway. */
  readonly messagesOut: number;
  /** Connections reached, summed over this router's sends (the `delivered` answers). */
  readonly delivered: number;
  readonly bytesOut: number;
  readonly accepted: number;
  readonly closed: number;
  readonly slowConsumers: number;
  readonly headTimeouts: number;
  readonly rejected: number;
  readonly authFailures: number;
  readonly expired: number;
  readonly stale: number;
  readonly resumed: number;
  readonly gaps: number;
  /** Connections told to resume because the bus may have lost messages (3007). */
  readonly insufficientState: number;
  readonly subscriptions: number | null;
  /** Sends whose delivered count is a lower bound (a gateway did not report in time). */
  readonly partialSends: number;
  readonly bus: {
    readonly kind: string;
    readonly connected: boolean;
    readonly gateways: number;
    /** Messages this process put on / took off the bus. */
    readonly published: number;
    readonly received: number;
    /** NATS bus, routers: tally rounds sent, and those that ended without every gateway's answer. */
    readonly tallyRounds?: number;
    readonly tallyTimeouts?: number;
  };
  /** Every live gateway together, as their heartbeats last said (this process alone on the local bus). */
  readonly cluster: {
    readonly gateways: number;
    readonly connections: number;
    readonly ids: number;
    /** Over NATS: each live gateway's connections and ids, by gateway id. */
    readonly perGateway?: Readonly<Record<string, { readonly connections: number; readonly ids: number }>>;
  };
  readonly memory: { readonly rss: number; readonly heapUsed: number; readonly heapTotal: number };
  /** Times this process's event loop was blocked for over 500 ms, and the longest (stall-watch.ts). */
  readonly stalls: { readonly count: number; readonly worstMs: number };
  /** The publish API's load: messages in flight, refused for overload, event-loop lag. */
  readonly api: ApiLoad;
}

/** One Switchboard figure read off the snapshot at scrape time (null: not known here, left out). */
type Figure = [
  name: string,
  type: 'counter' | 'gauge',
  help: string,
  value: (s: StatsSnapshot) => number | null,
];

const FIGURES: readonly Figure[] = [
  ['switchboard_connections', 'gauge', 'Open client sockets.', (s) => s.connections],
  ['switchboard_ids', 'gauge', 'Ids with at least one connection on this gateway.', (s) => s.ids],
  ['switchboard_logins', 'gauge', 'Connection-id logins on this gateway.', (s) => s.logins],
  ['switchboard_messages_in_total', 'counter', 'Messages accepted by this router.', (s) => s.messagesIn],
  ['switchboard_messages_out_total', 'counter', 'Message frames written to clients.', (s) => s.messagesOut],
  ['switchboard_delivered_total', 'counter', 'Connections reached, summed over sends.', (s) => s.delivered],
  ['switchboard_sent_bytes_total', 'counter', 'Bytes written to clients.', (s) => s.bytesOut],
  ['switchboard_accepted_total', 'counter', 'Client sockets accepted.', (s) => s.accepted],
  ['switchboard_closed_total', 'counter', 'Client sockets closed.', (s) => s.closed],
  [
    'switchboard_slow_consumers_total',
    'counter',
    'Connections cut off for a full outbound queue.',
    (s) => s.slowConsumers,
  ],
  [
    'switchboard_insufficient_state_total',
    'counter',
    'Connections told to resume because the bus may have lost messages for them.',
    (s) => s.insufficientState,
  ],
  [
    'switchboard_head_timeouts_total',
    'counter',
    'Connections closed for a late request head.',
    (s) => s.headTimeouts,
  ],
  [
    'switchboard_rejected_total',
    'counter',
    'Client requests answered with an error status.',
    (s) => s.rejected,
  ],
  [
    'switchboard_auth_failures_total',
    'counter',
    'Client requests refused for the token.',
    (s) => s.authFailures,
  ],
  [
    'switchboard_token_expired_total',
    'counter',
    'Streams ended because their token expired.',
    (s) => s.expired,
  ],
  ['switchboard_stale_total', 'counter', 'WebSockets closed for not answering pings.', (s) => s.stale],
  ['switchboard_resumed_total', 'counter', 'Resumes answered from history.', (s) => s.resumed],
  ['switchboard_resume_gaps_total', 'counter', 'Resumes that could not be served.', (s) => s.gaps],
  ['switchboard_subscriptions', 'gauge', 'Subscriptions in the store.', (s) => s.subscriptions],
  [
    'switchboard_bus_connected',
    'gauge',
    '1 when the bus can carry messages.',
    (s) => (s.bus.connected ? 1 : 0),
  ],
  ['switchboard_bus_gateways', 'gauge', 'Gateways known on the bus.', (s) => s.bus.gateways],
  [
    'switchboard_bus_published_total',
    'counter',
    'Messages this process put on the bus.',
    (s) => s.bus.published,
  ],
  [
    'switchboard_bus_received_total',
    'counter',
    'Messages this process took off the bus.',
    (s) => s.bus.received,
  ],
  [
    'switchboard_tally_rounds_total',
    'counter',
    'Tally rounds sent (NATS bus).',
    (s) => s.bus.tallyRounds ?? null,
  ],
  [
    'switchboard_tally_timeouts_total',
    'counter',
    'Tally rounds that ended without every gateway answering (NATS bus).',
    (s) => s.bus.tallyTimeouts ?? null,
  ],
  [
    'switchboard_partial_sends_total',
    'counter',
    'Sends whose delivered count is a lower bound.',
    (s) => s.partialSends,
  ],
  [
    'switchboard_cluster_connections',
    'gauge',
    'Open client connections over all live gateways.',
    (s) => s.cluster.connections,
  ],
  ['switchboard_cluster_ids', 'gauge', 'Ids logged in over all live gateways.', (s) => s.cluster.ids],
  ['switchboard_publish_inflight', 'gauge', 'Messages being sent now.', (s) => s.api.inflight],
  [
    'switchboard_event_loop_stalls_total',
    'counter',
    'Times the event loop was blocked for over 500 ms.',
    (s) => s.stalls.count,
  ],
  [
    'switchboard_publish_shed_total',
    'counter',
    'Messages refused with 503 because of overload.',
    (s) => s.api.shed,
  ],
];

/** Request durations: from 1 ms (a send embedded) to 10 s (a big batch on a loaded cluster). */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Event-loop lateness of a timer tick: from 1 ms to 5 s. */
const LAG_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * The registry of one process's metrics (not prom-client's global one: a test runs several
 * servers in one process). Switchboard's figures are read off a {@link StatsSnapshot} when
 * scraped; the histograms are fed as things happen.
 */
export class Metrics {
  readonly #registry: Registry = new (promClient().Registry)();
  readonly #requests: Histogram<'method' | 'route' | 'status'>;
  readonly #lag: Histogram;
  #snapshot: StatsSnapshot | undefined;
  #figures = false;

  constructor() {
    // The standard process_* and nodejs_* metrics; the event-loop delay sampling is theirs.
    const { collectDefaultMetrics, Histogram } = promClient();
    collectDefaultMetrics({ register: this.#registry, eventLoopMonitoringPrecision: 20 });
    // Three of prom-client's gauges end in _total, which the conventions keep for counters
    // (`promtool check metrics` says so); the handle and request counts are not worth the noise.
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ])
      this.#registry.removeSingleMetric(name);
    this.#requests = new Histogram({
      name: 'switchboard_api_request_duration_seconds',
      help: 'Publish/admin API requests, from the request to the end of the answer.',
      labelNames: ['method', 'route', 'status'],
      buckets: REQUEST_BUCKETS,
      registers: [this.#registry],
    });
    this.#lag = new Histogram({
      name: 'switchboard_event_loop_lag_seconds',
      help: 'How late each tick of the stall watch timer ran (every 100 ms with an API, 250 ms without).',
      buckets: LAG_BUCKETS,
      registers: [this.#registry],
    });
  }

  /** The Content-Type of {@link render}'s text. */
  get contentType(): string {
    return this.#registry.contentType;
  }

  /** Counts one API request: `route` is the matched route (bounded), not the path. */
  request(labels: LabelValues<'method' | 'route' | 'status'>, seconds: number): void {
    this.#requests.observe(labels, seconds);
  }

  /** One event-loop timer tick that ran `ms` late. */
  lag(ms: number): void {
    this.#lag.observe(ms / 1000);
  }

  /** Every metric, in the text format. */
  async render(s: StatsSnapshot): Promise<string> {
    this.#snapshot = s;
    if (!this.#figures) this.#register(s);
    return this.#registry.metrics();
  }

  /** Registers the figures this process knows (the first snapshot tells which are null here). */
  #register(first: StatsSnapshot): void {
    this.#figures = true;
    const { Counter, Gauge } = promClient();
    const self = this;
    for (const [name, type, help, value] of FIGURES) {
      if (value(first) === null) continue;
      const read = (): number => {
        const s = self.#snapshot;
        return s === undefined ? 0 : (value(s) ?? 0);
      };
      if (type === 'gauge') {
        new Gauge({
          name,
          help,
          registers: [this.#registry],
          collect() {
            this.set(read());
          },
        });
      } else {
        new Counter({
          name,
          help,
          registers: [this.#registry],
          // A counter of ours is a running total kept elsewhere: report it as it stands.
          collect() {
            this.reset();
            this.inc(read());
          },
        });
      }
    }
    new Gauge({
      name: 'switchboard_streams',
      help: 'Open client connections by transport.',
      labelNames: ['transport'],
      registers: [this.#registry],
      collect() {
        for (const [transport, n] of Object.entries(self.#snapshot?.streams ?? {}))
          this.set({ transport }, n);
      },
    });
  }
}
