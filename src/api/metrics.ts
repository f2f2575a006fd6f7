/**
 * The stats snapshot behind `GET /api/stats`, and its Prometheus text rendering for `GET /metrics`
 * (exposition format 0.0.4: `# HELP`, `# TYPE`, one sample per line).
 */

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
  readonly cluster: { readonly gateways: number; readonly connections: number; readonly ids: number };
  readonly memory: { readonly rss: number; readonly heapUsed: number; readonly heapTotal: number };
  /** Times this process's event loop was blocked for over 500 ms, and the longest (stall-watch.ts). */
  readonly stalls: { readonly count: number; readonly worstMs: number };
  /** The publish API's load: messages in flight, refused for overload, event-loop lag. */
  readonly api: ApiLoad;
}

type Metric = [name: string, type: 'counter' | 'gauge', help: string, value: number | null];

/** Renders `s` as Prometheus text. */
export function renderMetrics(s: StatsSnapshot): string {
  const metrics: Metric[] = [
    ['switchboard_uptime_seconds', 'gauge', 'Seconds since the process started.', s.uptimeSeconds],
    ['switchboard_connections', 'gauge', 'Open client sockets.', s.connections],
    ['switchboard_ids', 'gauge', 'Ids with at least one connection on this gateway.', s.ids],
    ['switchboard_logins', 'gauge', 'Connection-id logins on this gateway.', s.logins],
    ['switchboard_messages_in_total', 'counter', 'Messages accepted by this router.', s.messagesIn],
    ['switchboard_messages_out_total', 'counter', 'Message frames written to clients.', s.messagesOut],
    ['switchboard_delivered_total', 'counter', 'Connections reached, summed over sends.', s.delivered],
    ['switchboard_bytes_out_total', 'counter', 'Bytes written to clients.', s.bytesOut],
    ['switchboard_accepted_total', 'counter', 'Client sockets accepted.', s.accepted],
    ['switchboard_closed_total', 'counter', 'Client sockets closed.', s.closed],
    [
      'switchboard_slow_consumers_total',
      'counter',
      'Connections cut off for a full outbound queue.',
      s.slowConsumers,
    ],
    [
      'switchboard_head_timeouts_total',
      'counter',
      'Connections closed for a late request head.',
      s.headTimeouts,
    ],
    ['switchboard_rejected_total', 'counter', 'Client requests answered with an error status.', s.rejected],
    ['switchboard_auth_failures_total', 'counter', 'Client requests refused for the token.', s.authFailures],
    ['switchboard_token_expired_total', 'counter', 'Streams ended because their token expired.', s.expired],
    ['switchboard_stale_total', 'counter', 'WebSockets closed for not answering pings.', s.stale],
    ['switchboard_resumed_total', 'counter', 'Resumes answered from history.', s.resumed],
    ['switchboard_resume_gaps_total', 'counter', 'Resumes that could not be served.', s.gaps],
    ['switchboard_subscriptions', 'gauge', 'Subscriptions in the store.', s.subscriptions],
    ['switchboard_bus_connected', 'gauge', '1 when the bus can carry messages.', s.bus.connected ? 1 : 0],
    ['switchboard_bus_gateways', 'gauge', 'Gateways known on the bus.', s.bus.gateways],
    ['switchboard_bus_published_total', 'counter', 'Messages this process put on the bus.', s.bus.published],
    ['switchboard_bus_received_total', 'counter', 'Messages this process took off the bus.', s.bus.received],
    ['switchboard_tally_rounds_total', 'counter', 'Tally rounds sent (NATS bus).', s.bus.tallyRounds ?? null],
    [
      'switchboard_tally_timeouts_total',
      'counter',
      'Tally rounds that ended without every gateway answering (NATS bus).',
      s.bus.tallyTimeouts ?? null,
    ],
    [
      'switchboard_partial_sends_total',
      'counter',
      'Sends whose delivered count is a lower bound.',
      s.partialSends,
    ],
    [
      'switchboard_cluster_connections',
      'gauge',
      'Open client connections over all live gateways.',
      s.cluster.connections,
    ],
    ['switchboard_cluster_ids', 'gauge', 'Ids logged in over all live gateways.', s.cluster.ids],
    ['switchboard_resident_memory_bytes', 'gauge', 'Resident set size.', s.memory.rss],
    ['switchboard_heap_used_bytes', 'gauge', 'V8 heap in use.', s.memory.heapUsed],
    ['switchboard_heap_total_bytes', 'gauge', 'V8 heap reserved.', s.memory.heapTotal],
    ['switchboard_publish_inflight', 'gauge', 'Messages being sent now.', s.api.inflight],
    [
      'switchboard_event_loop_stalls_total',
      'counter',
      'Times the event loop was blocked for over 500 ms.',
      s.stalls.count,
    ],
    [
      'switchboard_publish_shed_total',
      'counter',
      'Messages refused with 503 because of overload.',
      s.api.shed,
    ],
    [
      'switchboard_event_loop_lag_ms',
      'gauge',
      'Worst event-loop lag of the last second.',
      s.api.eventLoopLagMs,
    ],
    [
      'switchboard_event_loop_delay_p99_ms',
      'gauge',
      'Event-loop delay since start, p99.',
      s.api.eventLoopDelayP99Ms,
    ],
  ];
  let out = '';
  for (const [name, type, help, value] of metrics) {
    if (value === null) continue;
    out += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}\n`;
  }
  out +=
    '# HELP switchboard_streams Open client connections by transport.\n# TYPE switchboard_streams gauge\n';
  for (const [transport, n] of Object.entries(s.streams))
    out += `switchboard_streams{transport="${transport}"} ${n}\n`;
  return out;
}
