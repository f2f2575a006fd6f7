/**
 * The NATS bus: routers and gateways in different processes or hosts, over one nats-server (or
 * cluster), on the official client `@nats-io/transport-node`.
 *
 * Subjects, under a prefix (default `sb`) so several deployments or test runs share a server:
 *
 *     <prefix>.dl.<gw id>      delivery batches: a router's sends of one turn for the ids that
 *                              gateway holds (see bus-publisher.ts, nats-codec.ts)
 *     <prefix>.gw.hb           gateway heartbeats (`hb <id> <load> <delta seq>`) and `bye <id>`
 *     <prefix>.gw.int          gateways' interest deltas (ids gained and lost), to every router
 *     <prefix>.ia.<gw id>      `ia <router> <seq>`: a router has applied that gateway's deltas
 *                              up to seq (a resume reads the history after every router has)
 *     <prefix>.gw.who          `who <router> [<gateway> [lost]]`: gateways answer with a heartbeat
 *                              and a snapshot of their ids to <prefix>.snap.<router>; `lost`: that
 *                              router lost track of the gateway's ids and may have missed it
 *     <prefix>.rt.hb           router heartbeats (the lowest live router id reports presence)
 *     <prefix>.tally.<gw id>   tally requests to one gateway, replies to <prefix>.tr.<router id>
 *     <prefix>.ctl.<gw id>     control requests to one gateway (presence counts, disconnect)
 *
 * Delivered counts are exact through the tally (see tally.ts): every gateway the router's
 * interest directory (directory.ts) says holds a recipient answers with what it delivered; the
 * others are not asked, so a send's cost does not grow with the number of gateways. This relies on NATS delivering the messages of one
 * publishing connection to each subscribing connection in publish order, across subjects —
 * "NATS implements source ordered delivery per publisher", NATS FAQ,
 * https://docs.nats.io/reference/faq#does-nats-offer-any-guarantee-of-message-ordering —
 * checked against the nats-server 2.9 here by test/bus-nats.test.ts ("keeps one publisher's
 * order across subjects"). That test runs on a single server; through a cluster the order also
 * depends on the route between the two servers, which this code has not been tested on.
 *
 * Routing by the directory: no gateway subscribes per id (a NATS interest costs the server about
 * 900 bytes, a million of them 0.9 GB), and a router's sends of one turn reach a gateway as one
 * NATS message. What that asks of the directory is in bus-publisher.ts and interest-acks.ts.
 */
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import {
  ClosedError,
  ConfigError,
  type DisconnectReason,
  errorMessage,
  internalError,
  isSwitchboardError,
  UnavailableError,
} from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import type { Message } from '../message.js';
import type {
  Bus,
  BusStats,
  BusStatusListener,
  Deliverer,
  GatewayLoad,
  PresenceChange,
  PresenceCounts,
} from './bus.js';
import { BusPublisher } from './bus-publisher.js';
import { Directory } from './directory.js';
import { GatewayReceiver } from './gateway-receiver.js';
import { InterestAcks } from './interest-acks.js';
import { InterestFeed } from './interest-feed.js';
import { Membership } from './membership.js';
import * as codec from './nats-codec.js';
import { type NatsBusOptions, type ResolvedNatsBusOptions, resolveNatsOptions } from './nats-options.js';
import type { PublishResult } from './tally.js';

export type { NatsBusOptions } from './nats-options.js';
export type { PublishResult } from './tally.js';

/** {@link BusStats} plus what only the NATS bus knows. */
export interface NatsBusStats extends BusStats {
  /** Ids this bus holds interest in (gateway side). */
  readonly interests: number;
  /** Delivery batches sent (router side) and received (gateway side). */
  readonly batchesSent: number;
  readonly batchesReceived: number;
  /** Resumes waiting now for routers to ack this gateway's interests, and waits that timed out. */
  readonly ackWaits: number;
  readonly ackTimeouts: number;
  /** Tally rounds sent (router side). */
  readonly tallyRounds: number;
  /** Rounds that ended at `tallyTimeoutMs` without every live gateway's answer. */
  readonly tallyTimeouts: number;
  /** Publishes resolved with a partial count (their round timed out). */
  readonly partialPublishes: number;
  /** Publishes waiting for their count now. */
  readonly pendingPublishes: number;
  /** Per-publish delivery counts held for tallies not yet received (gateway side). */
  readonly heldCounts: number;
  /** Payloads on our subjects that could not be decoded. */
  readonly badPayloads: number;
  /** Routers known alive (this one included when it is one). */
  readonly routers: number;
  /** What this router's interest directory holds: ids, and (id, gateway) pairs. */
  readonly directory: { readonly ids: number; readonly pairs: number };
  /** Snapshots asked of gateways because deltas were lost or this router (re)joined. */
  readonly resyncs: number;
  /** True once this router has learned the cluster (it may then report presence changes). */
  readonly presenceReady: boolean;
}

/** The API's error JSON for `err`, with its HTTP status; an unexpected error is logged, not shown. */
function errorAnswer(
  err: unknown,
  log: Logger,
): { error: { code: string; message: string; status: number } } {
  if (!isSwitchboardError(err)) log.error('publish from the bus failed', { err });
  const e = isSwitchboardError(err) ? err : internalError();
  return { error: { ...e.toJSON().error, status: e.status } };
}

/** A subscription callback that ignores errors (permission violations, which we do not use). */
function ok(fn: (m: Msg) => void): (err: Error | null, m: Msg) => void {
  return (err, m) => {
    if (err === null) fn(m);
  };
}

const TICKS_PER_HEARTBEAT = 4;
/** How long `close()` lets the connection drain before closing it anyway. */
const DRAIN_TIMEOUT_MS = 5000;

function randomId(): string {
  const bytes = new Uint8Array(9);
  globalThis.crypto.getRandomValues(bytes);
  return Buffer.from(bytes).toString('base64url');
}

/**
 * {@link Bus} over NATS. Make one with {@link NatsBus.connect} (or `openBus('nats://…')`).
 *
 * Roles: with role `all` (default) one instance can both publish and deliver, and counts its own
 * deliveries through NATS like any other gateway's. `gateway` cannot publish, `router` cannot
 * attach a deliverer.
 *
 * `publish()` semantics:
 * - Rejects at once with {@link UnavailableError} while the connection is down (nothing is
 *   buffered for later), and rejects every publish still waiting for its count when the
 *   connection drops (its delivery is unknown). Never a silent success.
 * - Resolves with the number of connections reached over all gateways, exact when every gateway
 *   known alive (heartbeat within 3 × gatewayHeartbeatMs) answers the tally. If one does not answer within
 *   `tallyTimeoutMs` it resolves with the sum of the answers received — a lower bound — logs a
 *   warning and counts it in `stats().tallyTimeouts`/`partialPublishes`; {@link publishDetailed}
 *   says so per publish (`complete: false`, `missing`). A gateway that dies without `bye` stops
 *   being waited for once it expires (≤ 3 × gatewayHeartbeatMs).
 * - After connecting (and after every reconnect) the router spends `discoveryMs` learning the
 *   live gateways, and then waits for the snapshot of every gateway it heard from (until 2.5
 *   heartbeats after it began, at most); publishes made meanwhile are held, routed once it has.
 * - A gateway that joined less than a round trip before a publish may answer after the round is
 *   complete; its deliveries are then missing from that count. Likewise a gateway whose event
 *   loop is blocked for longer than 3 × gatewayHeartbeatMs is treated as gone until its next heartbeat.
 *   (A router's own blocked event loop does not expire anyone: that time is not counted.)
 */
export class NatsBus implements Bus {
  readonly kind = 'nats';
  /** This bus's id on the wire: gateway id, publisher id and router id. */
  readonly id: string;
  readonly #nc: NatsConnection;
  readonly #o: ResolvedNatsBusOptions;
  readonly #log: Logger;
  readonly #subjects: {
    deliveries: string;
    acks: string;
    hb: string;
    routerHb: string;
    who: string;
    deltas: string;
    snapshots: string;
    tallyPrefix: string;
    controlPrefix: string;
    replies: string;
  };
  readonly #gateways: Membership;
  readonly #routers: Membership;
  /** Live routers that have learned the cluster (presence leadership goes to the lowest). */
  readonly #readyRouters = new Set<string>();
  /** The router half, unless the role is `gateway`. */
  readonly #publisher: BusPublisher | undefined;
  readonly #directory: Directory;
  /** Gateway side: ids with a local connection (what the deltas have told routers). */
  readonly #interests = new Set<string>();
  readonly #acks: InterestAcks;
  readonly #feed: InterestFeed;
  readonly #listeners: BusStatusListener[] = [];
  readonly #presenceListeners: ((changes: readonly PresenceChange[]) => void)[] = [];
  #presenceBatch: PresenceChange[] = [];
  /** The gateway half, once a deliverer is attached. */
  #receiver: GatewayReceiver | undefined = undefined;
  #up = true;
  #closed = false;
  #closing: Promise<void> | undefined = undefined;
  #ticks = 0;
  readonly #tickMs: number;
  readonly #ticksPerHeartbeat: number;
  #lastTick = Date.now();
  #timer: NodeJS.Timeout;
  #badPayloads = 0;
  #resyncs = 0;
  /** When each gateway was last asked for a snapshot (ms), so a lagging one is not asked every beat. */
  readonly #askedAt = new Map<string, number>();
  /** Until then (ms), presence changes are not reported: the directory is being learned. */
  #learningUntil = 0;
  /** When this router last began learning the cluster (its `who` to every gateway). */
  #discoveryAt = 0;
  /** The end-of-turn send of {@link #toAck} is scheduled. */
  #acksScheduled = false;
  /** Gateways whose snapshot began arriving since this router's last `who` to all. */
  readonly #snapshotStarted = new Set<string>();
  #lastLoad: GatewayLoad = { connections: 0, ids: 0 };
  /** Router side: heartbeats sent (numbered, so a gateway can tell it lost some). */
  #beats = 0;
  /** Gateway side: the last heartbeat number heard from each live router. */
  readonly #routerBeats = new Map<string, number>();
  /** Gateway side: when connections were last told to resume (at most once a heartbeat period). */
  #missedAt = 0;
  /**
   * Router side: gateways whose deltas were lost, not acked until their snapshot is in; true while
   * the gateway is still to be told (once) that this router may have missed it.
   */
  readonly #unsure = new Map<string, boolean>();
  /** Router side: gateways whose first snapshot is arriving after this router began routing. */
  readonly #lateSnapshots = new Set<string>();
  /** Router side: gateways whose applied deltas are acked at the end of this turn. */
  readonly #toAck = new Set<string>();
  /**
   * Gateway side: until then (ms) not every live router has had a heartbeat period to be heard
   * from (after connecting or reconnecting), so a resume waits that long before asking for acks.
   */
  #routersKnownAt = 0;

  /** Connects to NATS; rejects with {@link UnavailableError} when no server answers in time. */
  static async connect(options: NatsBusOptions): Promise<NatsBus> {
    const o = resolveNatsOptions(options);
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: o.servers,
        // The servers given, in the order given (nearest first), and no others: not a shuffle,
        // and not the addresses a cluster gossips, which may not be reachable from this host.
        noRandomize: true,
        ignoreClusterUpdates: true,
        name: o.name,
        timeout: o.connectTimeoutMs,
        reconnect: true,
        maxReconnectAttempts: o.maxReconnectAttempts,
        reconnectTimeWait: o.reconnectTimeWaitMs,
        pingInterval: o.pingIntervalMs,
        // Otherwise every request (each JetStream append, each control request) builds
        // two Error objects with stack traces up front, for a timeout that rarely comes: 16% of
        // a router's CPU and much of its garbage in bench/throughput.
        noAsyncTraces: true,
      });
    } catch (err) {
      throw new UnavailableError(`cannot connect to NATS at ${o.servers.join(',')}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    return new NatsBus(nc, o);
  }

  private constructor(nc: NatsConnection, o: ResolvedNatsBusOptions) {
    this.#nc = nc;
    this.#o = o;
    this.#log = (o.logger ?? silentLogger).child('bus');
    this.id = randomId();
    const p = o.prefix;
    this.#subjects = {
      deliveries: `${p}.dl.`,
      acks: `${p}.ia.`,
      hb: `${p}.gw.hb`,
      routerHb: `${p}.rt.hb`,
      who: `${p}.gw.who`,
      deltas: `${p}.gw.int`,
      snapshots: `${p}.snap.`,
      tallyPrefix: `${p}.tally.`,
      controlPrefix: `${p}.ctl.`,
      replies: `${p}.tr.${this.id}`,
    };
    this.#directory = new Directory((id, online) => this.#presenceChange(id, online));
    this.#gateways = new Membership(3 * o.gatewayHeartbeatMs, this.#log, (id, expired) => {
      this.#directory.dropGateway(id);
      this.#askedAt.delete(id);
      this.#unsure.delete(id);
      this.#lateSnapshots.delete(id);
      this.#snapshotStarted.delete(id);
      // Last: it may end discovery, and the held sends are routed on the directory without it.
      this.#publisher?.gatewayGone(id, expired);
    });
    this.#routers = new Membership(
      3 * o.gatewayHeartbeatMs,
      this.#log,
      (id, expired) => {
        this.#readyRouters.delete(id);
        this.#routerBeats.delete(id);
        this.#acks.gone(id);
        // Its sends may have stopped reaching us without its stopping (a partition), or it died
        // between recording a send in the history and publishing it.
        if (expired) this.#missed('a router went silent', { router: id });
      },
      'router',
    );
    this.#acks = new InterestAcks(3 * o.gatewayHeartbeatMs, (routers, seq) =>
      this.#log.warn(
        "routers did not ack this gateway's interests in time; a resume reads its history anyway",
        {
          routers,
          seq,
        },
      ),
    );
    this.#feed = new InterestFeed(this.id, this.#subjects.deltas, (subject, payload) =>
      this.#send(subject, payload),
    );

    // Routers track gateway membership and keep the directory. A gateway needs neither: every
    // gateway hearing every other's heartbeat would cost the cluster gateways² messages a period.
    if (o.role !== 'gateway') {
      nc.subscribe(this.#subjects.hb, { callback: ok((m) => this.#onAnnouncement(m)) });
      this.#publisher = new BusPublisher({
        nc,
        id: this.id,
        deliverySubjectPrefix: this.#subjects.deliveries,
        tallySubjectPrefix: this.#subjects.tallyPrefix,
        controlSubjectPrefix: this.#subjects.controlPrefix,
        replySubject: this.#subjects.replies,
        whoSubject: this.#subjects.who,
        gateways: this.#gateways,
        directory: this.#directory,
        tallyTimeoutMs: o.tallyTimeoutMs,
        discoveryMs: o.discoveryMs,
        // Under a gateway's 3-heartbeat wait for acks, with room for the last snapshot's ack.
        discoveryCapMs: Math.max(0, 2.5 * o.gatewayHeartbeatMs - o.discoveryMs),
        learned: (missing) => {
          // The acks held back while learning go after the held sends' batches (both at the end
          // of this turn, in that order).
          this.#scheduleAcks();
          // Routed without their ids: asked again, `lost`, so their clients come back to the history.
          for (const gateway of missing) {
            this.#askedAt.delete(gateway);
            this.#resync(gateway, true);
          }
        },
        log: this.#log,
        bad: (subject, err) => this.#bad(subject, err),
      });
      nc.subscribe(this.#subjects.deltas, { callback: ok((m) => this.#onDelta(m)) });
      nc.subscribe(this.#subjects.snapshots + this.id, { callback: ok((m) => this.#onSnapshot(m)) });
      nc.subscribe(this.#subjects.routerHb, { callback: ok((m) => this.#onRouterAnnouncement(m)) });
      this.#announceRouter('hb');
      this.#learn();
    }
    // A quarter period, so an expired gateway is noticed within 3¼ heartbeats of its last one; a
    // gateway expires no one and only beats, once a period.
    this.#ticksPerHeartbeat = o.role === 'gateway' ? 1 : TICKS_PER_HEARTBEAT;
    this.#tickMs = Math.max(5, Math.floor(o.gatewayHeartbeatMs / this.#ticksPerHeartbeat));
    this.#timer = setInterval(() => this.#tick(), this.#tickMs);
    this.#timer.unref();
    void this.#watchStatus();
  }

  get connected(): boolean {
    return this.#up && !this.#closed;
  }

  /** Gateway side: where received messages go. Starts heartbeats, interest deltas and tally answers. */
  attach(deliverer: Deliverer): void {
    if (this.#o.role === 'router')
      throw new ConfigError("this bus was opened with role 'router' and cannot attach a deliverer");
    if (this.#receiver !== undefined) throw new ConfigError('a deliverer is already attached to this bus');
    if (this.#closed) throw new ClosedError('the bus is closed');
    this.#receiver = new GatewayReceiver({
      deliverer,
      gatewayId: this.id,
      countsIdleMs: Math.max(30_000, 4 * this.#o.tallyTimeoutMs),
      log: this.#log,
      bad: (subject, err) => this.#bad(subject, err),
    });
    this.#hearRoutersAgain();
    this.#nc.subscribe(this.#subjects.deliveries + this.id, {
      callback: ok((m) => this.#receiver?.onDeliveries(m.subject, m.data)),
    });
    this.#nc.subscribe(this.#subjects.acks + this.id, { callback: ok((m) => this.#onInterestAck(m)) });
    this.#nc.subscribe(this.#subjects.tallyPrefix + this.id, {
      callback: ok((m) => this.#onTallyRequest(m)),
    });
    this.#nc.subscribe(this.#subjects.controlPrefix + this.id, {
      callback: ok((m) => this.#onControl(m)),
    });
    this.#nc.subscribe(this.#subjects.who, { callback: ok((m) => this.#onWho(m)) });
    // A router half hears routers already; a bare gateway listens too, to notice lost messages.
    if (this.#publisher === undefined) {
      this.#nc.subscribe(this.#subjects.routerHb, { callback: ok((m) => this.#onRouterAnnouncement(m)) });
    }
    this.#announce('hb');
  }

  /** Tells routers this gateway holds `id`. Idempotent; ignored once the bus is closed. */
  interest(id: string): void {
    if (this.#closed || this.#interests.has(id)) return;
    this.#interests.add(id);
    this.#feed.gained(id);
  }

  /** Tells routers this gateway no longer holds `id`. Idempotent; ignored once the bus is closed. */
  disinterest(id: string): void {
    if (this.#closed || !this.#interests.delete(id)) return;
    this.#feed.lost(id);
  }

  /** Gateway side, after connecting: every live router heartbeats within 1.5 periods. */
  #hearRoutersAgain(): void {
    this.#routersKnownAt = Date.now() + Math.ceil(1.5 * this.#o.gatewayHeartbeatMs);
  }

  /**
   * Gateway side: resolves when every live router has applied the interests announced so far
   * (see interest-acks.ts): from then on every send to those ids reaches this gateway, and what
   * was sent before is in the history. A router that does not ack within 3 heartbeat periods is
   * not waited for (logged); a router learning the cluster acks within 2.5.
   */
  async settled(): Promise<void> {
    if (this.#receiver === undefined || this.#closed || !this.#up) return;
    this.#feed.flush();
    const early = this.#routersKnownAt - Date.now();
    if (early > 0) await new Promise((resolve) => setTimeout(resolve, early));
    const routers = new Set(this.#routers.ids());
    if (this.#publisher !== undefined) routers.add(this.id);
    await this.#acks.wait(this.#feed.seq, routers);
  }

  /**
   * Publishes `msg` to every recipient and resolves with the tally's verdict: `complete` is false
   * when a gateway holding a recipient did not answer within `tallyTimeoutMs` (then `delivered`
   * is a lower bound and `missing` names it).
   */
  publish(msg: Message, recipients: readonly string[]): Promise<PublishResult> {
    const publisher = this.#router();
    if (typeof publisher === 'string') return Promise.reject(this.#refusal(publisher));
    return publisher.publish(msg, recipients);
  }

  presence(ids: readonly string[]): Promise<PresenceCounts> {
    const publisher = this.#router();
    if (typeof publisher === 'string') return Promise.reject(this.#refusal(publisher));
    return publisher.presence(ids);
  }

  disconnect(id: string, reason: DisconnectReason): Promise<{ disconnected: number; complete: boolean }> {
    const publisher = this.#router();
    if (typeof publisher === 'string') return Promise.reject(this.#refusal(publisher));
    return publisher.disconnect(id, reason.code);
  }

  onPresence(listener: (changes: readonly PresenceChange[]) => void): void {
    this.#presenceListeners.push(listener);
  }

  #router(): BusPublisher | 'closed' | 'gateway' | 'down' {
    if (this.#closed) return 'closed';
    if (this.#publisher === undefined) return 'gateway';
    if (!this.#up) return 'down';
    return this.#publisher;
  }

  #refusal(why: 'closed' | 'gateway' | 'down'): Error {
    if (why === 'closed') return new ClosedError('the bus is closed');
    if (why === 'gateway')
      return new ConfigError("this bus was opened with role 'gateway' and cannot publish");
    return this.#downError();
  }

  onStatus(listener: BusStatusListener): void {
    this.#listeners.push(listener);
  }

  stats(): NatsBusStats {
    return {
      gateways: this.#gateways.size,
      published: this.#publisher?.published ?? 0,
      received: this.#receiver?.received ?? 0,
      cluster: this.#gateways.load(),
      perGateway: this.#gateways.loads(),
      interests: this.#interests.size,
      batchesSent: this.#publisher?.batches ?? 0,
      batchesReceived: this.#receiver?.batches ?? 0,
      ackWaits: this.#acks.waiting,
      ackTimeouts: this.#acks.timeouts,
      tallyRounds: this.#publisher?.tallyRounds ?? 0,
      tallyTimeouts: this.#publisher?.tallyTimeouts ?? 0,
      partialPublishes: this.#publisher?.partialPublishes ?? 0,
      pendingPublishes: this.#publisher?.pending ?? 0,
      heldCounts: this.#receiver?.heldCounts ?? 0,
      badPayloads: this.#badPayloads,
      routers: this.#routers.size + (this.#publisher === undefined ? 0 : 1),
      directory: { ids: this.#directory.ids, pairs: this.#directory.pairs },
      resyncs: this.#resyncs,
      presenceReady: this.reportingPresence,
    };
  }

  /**
   * Resolves when the NATS server has processed everything this bus sent so far (interests and
   * their deltas included): a publish from another process after this reaches them.
   */
  flush(): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('the bus is closed'));
    if (!this.#up) return Promise.reject(this.#downError());
    this.#feed.flush();
    return this.#nc.flush();
  }

  /** True while this router learns the cluster (after it starts or reconnects): sends are held. */
  get learning(): boolean {
    return this.#publisher?.learning ?? false;
  }

  /** Ids of the gateways this bus currently knows to be alive (itself included if attached). */
  liveGateways(): string[] {
    return [...this.#gateways.ids()];
  }

  /** `all`, `gateway` or `router`. */
  get role(): string {
    return this.#o.role;
  }

  /** True once this router has learned the cluster and reports presence changes. */
  get reportingPresence(): boolean {
    return this.#publisher !== undefined && !this.#directory.quiet;
  }

  /** True when this router is the one that reports presence changes (see #leads). */
  get leadsPresence(): boolean {
    return this.reportingPresence && this.#leads();
  }

  /** The gateways this router's directory says hold `id`. */
  holders(id: string): string[] {
    return this.#directory.holders(id);
  }

  /**
   * Takes publishes as NATS requests on `<prefix>.publish`, in one queue group so each request is
   * answered by one process: `handle` gets the payload and its answer is the JSON reply; a
   * thrown error is answered `{"error":{"code","message","status"}}` (status as over HTTP). A
   * request without a reply subject is refused in the log, not sent: nobody would hear the count.
   */
  answerPublishes(handle: (payload: Uint8Array) => Promise<unknown>): void {
    if (this.#publisher === undefined)
      throw new ConfigError("this bus was opened with role 'gateway' and cannot take publishes");
    const subject = `${this.#o.prefix}.publish`;
    this.#nc.subscribe(subject, {
      queue: subject,
      callback: ok((m) => {
        if (m.reply === undefined || m.reply === '') {
          this.#log.warn('a publish on the bus had no reply subject; not sent (use a request)', { subject });
          return;
        }
        const reply = (answer: unknown): void => {
          try {
            m.respond(JSON.stringify(answer));
          } catch (err) {
            this.#log.debug('publish answer not sent', { err });
          }
        };
        handle(m.data).then(reply, (err: unknown) => reply(errorAnswer(err, this.#log)));
      }),
    });
  }

  /** The NATS connection, for a history on the same server (jetstream-log.ts). @internal */
  get connection(): NatsConnection {
    return this.#nc;
  }

  /**
   * Says `bye` (gateway and router), lets waiting publishes get their counts (at most
   * `tallyTimeoutMs`), then drains the connection: in-flight messages are still delivered, then
   * it closes.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  /**
   * Drops the NATS connection without `bye` or drain, as a crash would. For fault tests.
   * @internal
   */
  async abort(): Promise<void> {
    this.#closed = true;
    this.#stopTimers();
    this.#publisher?.stop(new ClosedError('the bus was aborted'));
    this.#closing ??= this.#nc.close().catch(() => undefined);
    await this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    this.#stopTimers();
    if (this.#nc.isClosed()) return;
    if (this.#up) {
      if (this.#receiver !== undefined) {
        // Deltas still waiting for the end of the turn go first: after the bye they would bring
        // this gateway back to the routers for three heartbeats.
        this.#feed.flush();
        this.#announce('bye');
      }
      if (this.#publisher !== undefined) this.#announceRouter('bye');
    }
    await this.#publisher?.finish();
    // A drain waits for the server to confirm; with the server gone it would wait forever.
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), DRAIN_TIMEOUT_MS);
    });
    try {
      const drained = this.#up ? await Promise.race([this.#nc.drain(), limit]) : 'down';
      if (drained !== undefined) this.#log.debug('not drained, closing', { why: drained });
    } catch (err) {
      this.#log.debug('drain failed, closing', { err });
    } finally {
      clearTimeout(timer);
    }
    if (!this.#nc.isClosed()) await this.#nc.close().catch(() => undefined);
  }

  #stopTimers(): void {
    clearInterval(this.#timer);
  }

  #downError(): UnavailableError {
    return new UnavailableError(
      `the NATS bus (${this.#o.servers.join(',')}) is disconnected; message not sent`,
    );
  }

  /** Publishes, dropping what the client cannot take now (it is down; the heartbeat seq tells routers). */
  #send(subject: string, payload: Uint8Array | string): void {
    try {
      this.#nc.publish(subject, payload);
    } catch (err) {
      this.#log.debug('not sent', { subject, err });
    }
  }

  #announce(kind: 'hb' | 'bye'): void {
    this.#send(this.#subjects.hb, codec.encodeAnnouncement(kind, this.id, this.#load(), this.#feed.seq));
  }

  /** A router's heartbeat says whether it has learned the cluster (`seq` 1) and may report presence. */
  #announceRouter(kind: 'hb' | 'bye'): void {
    const ready = this.#directory.quiet ? 0 : 1;
    this.#send(
      this.#subjects.routerHb,
      codec.encodeAnnouncement(kind, this.id, { connections: 0, ids: 0 }, ready, ++this.#beats),
    );
  }

  /**
   * The attached gateway's load (none attached: nothing held). A failing load source must not
   * silence the heartbeat, nor drop its delta seq (read as 0, "never held an id", a router would
   * take the gateway for empty): the last load read goes instead.
   */
  #load(): GatewayLoad {
    try {
      this.#lastLoad = this.#receiver?.load() ?? this.#lastLoad;
    } catch (err) {
      this.#log.warn('gateway load not available for the heartbeat', { err });
    }
    return this.#lastLoad;
  }

  /** A router (re)joins: ask every gateway who it is and what it holds; presence stays quiet meanwhile. */
  #learn(): void {
    this.#directory.quiet = true;
    this.#discoveryAt = Date.now();
    this.#snapshotStarted.clear();
    this.#learningUntil = this.#discoveryAt + Math.max(2000, 2 * this.#o.discoveryMs);
    this.#publisher?.discover();
  }

  #tick(): void {
    const now = Date.now();
    const late = now - this.#lastTick - this.#tickMs;
    this.#lastTick = now;
    this.#receiver?.sweep(now);
    if (!this.#up) return;
    this.#ticks = (this.#ticks + 1) % this.#ticksPerHeartbeat;
    if (this.#ticks === 0) {
      if (this.#receiver !== undefined) this.#announce('hb');
      if (this.#publisher !== undefined) this.#announceRouter('hb');
    }
    this.#gateways.sweep(late > this.#tickMs ? late : 0, () => this.#closed);
    this.#routers.sweep(late > this.#tickMs ? late : 0, () => this.#closed);
    if (this.#directory.quiet && now >= this.#learningUntil) {
      this.#directory.quiet = false;
      this.#announceRouter('hb');
    }
  }

  #onAnnouncement(m: Msg): void {
    let a: codec.Announcement;
    try {
      a = this.#gateways.hear(m.data, Date.now());
    } catch (err) {
      this.#bad(m.subject, err);
      return;
    }
    if (this.#publisher === undefined || a.kind !== 'hb') return;
    const gw = a.gatewayId;
    // A gateway that has announced no id yet (seq 0) has nothing to teach: known, and empty.
    if (a.seq === 0 && this.#directory.seqOf(gw) === -1 && !this.#directory.snapshotting(gw)) {
      this.#directory.knowEmpty(gw);
      this.#publisher.snapshotIn();
      return;
    }
    // A heartbeat names the gateway's last delta: behind it, deltas were lost. Ask for a snapshot.
    if (
      ((a.seq > 0 && a.seq > this.#directory.seqOf(gw)) || this.#unsure.has(gw)) &&
      !this.#directory.snapshotting(gw)
    ) {
      this.#directory.behind(gw);
      if (!this.#answering(gw)) this.#resync(gw, true);
    }
  }

  /**
   * True while `gateway`'s answer to this router's `who` to all may still be on its way (learning,
   * within discoveryMs, no part of its snapshot yet): asking it again would send a second snapshot
   * for nothing, whose first part would unlearn the first's ids.
   */
  #answering(gateway: string): boolean {
    return (
      this.#publisher?.learning === true &&
      !this.#snapshotStarted.has(gateway) &&
      Date.now() - this.#discoveryAt < this.#o.discoveryMs
    );
  }

  #onRouterAnnouncement(m: Msg): void {
    try {
      const a = this.#routers.hear(m.data, Date.now());
      if (a.kind === 'hb' && a.seq === 1) this.#readyRouters.add(a.gatewayId);
      else this.#readyRouters.delete(a.gatewayId);
      if (this.#receiver !== undefined && a.kind === 'hb' && a.beat > 0 && a.gatewayId !== this.id) {
        const before = this.#routerBeats.get(a.gatewayId);
        this.#routerBeats.set(a.gatewayId, a.beat);
        // One publisher's messages arrive in order: a heartbeat missing between two heard ones
        // means NATS dropped what it sent meanwhile (a route down, or this client too slow).
        if (before !== undefined && a.beat > before + 1) {
          this.#missed('heartbeats of a router were lost', {
            router: a.gatewayId,
            lost: a.beat - before - 1,
          });
        }
      }
    } catch (err) {
      this.#bad(m.subject, err);
    }
  }

  /**
   * Asks `gateway` for a snapshot of its ids, at most once per heartbeat period. Its deltas are
   * not acked until the snapshot is in. When this router was routing sends meanwhile (not
   * learning) and the gateway had announced ids, some may have missed it: the request says
   * `lost`, and the gateway tells its resumable connections to come back.
   */
  #resync(gateway: string, lost: boolean): void {
    const tell = (lost && this.#publisher?.learning === false) || this.#unsure.get(gateway) === true;
    this.#unsure.set(gateway, tell);
    const now = Date.now();
    if (now - (this.#askedAt.get(gateway) ?? 0) < this.#o.gatewayHeartbeatMs) return;
    this.#askedAt.set(gateway, now);
    this.#resyncs++;
    const flag = tell ? ' lost' : '';
    this.#unsure.set(gateway, false);
    this.#log.debug('asking a gateway for its interests', { gateway, lost: flag !== '' });
    this.#send(this.#subjects.who, `who ${this.id} ${gateway}${flag}`);
  }

  /**
   * Tells `gateway` which of its deltas this router has applied, unless it is unsure of them: at
   * the end of the turn, once per gateway however many of its deltas the turn applied, and not
   * before this router has learned the cluster.
   */
  #ackInterests(gateway: string): void {
    this.#toAck.add(gateway);
    this.#scheduleAcks();
  }

  /**
   * A router still learning acks nothing: a resume that read the history now would also get the
   * sends it holds, routed once it has learned. Its acks are scheduled when it has, after those
   * sends' batches, so they reach the gateway first.
   */
  #scheduleAcks(): void {
    if (this.#acksScheduled || this.#toAck.size === 0 || this.#publisher?.learning === true) return;
    this.#acksScheduled = true;
    setImmediate(() => {
      this.#acksScheduled = false;
      this.#sendAcks();
    });
  }

  #sendAcks(): void {
    // Scheduled before this router began learning again (a reconnect): kept for when it has.
    if (this.#publisher?.learning === true) return;
    for (const gateway of this.#toAck) {
      if (this.#unsure.has(gateway) || this.#directory.snapshotting(gateway)) continue;
      const seq = this.#directory.seqOf(gateway);
      if (seq > 0) this.#send(this.#subjects.acks + gateway, codec.encodeInterestAck(this.id, seq));
    }
    this.#toAck.clear();
  }

  #onInterestAck(m: Msg): void {
    try {
      const a = codec.decodeInterestAck(m.data);
      this.#acks.heard(a.routerId, a.seq);
    } catch (err) {
      this.#bad(m.subject, err);
    }
  }

  #onDelta(m: Msg): void {
    let d: codec.InterestDelta;
    try {
      d = codec.decodeDelta(m.data);
    } catch (err) {
      this.#bad(m.subject, err);
      return;
    }
    // A sign of life: a gateway heard only through its deltas (one whose heartbeats are lost, or a
    // late delta after its bye) still expires, and its ids with it.
    this.#gateways.seen(d.gatewayId, Date.now());
    if (!this.#directory.applyDelta(d.gatewayId, d.seq, d.adds, d.removes)) {
      // Out of order, or the first this router hears of it: its snapshot says the rest.
      if (!this.#answering(d.gatewayId)) this.#resync(d.gatewayId, true);
    } else {
      this.#publisher?.snapshotIn();
      this.#ackInterests(d.gatewayId);
    }
  }

  #onSnapshot(m: Msg): void {
    let snap: codec.InterestSnapshot;
    try {
      snap = codec.decodeSnapshot(m.data);
    } catch (err) {
      this.#bad(m.subject, err);
      return;
    }
    const gw = snap.gatewayId;
    this.#gateways.seen(gw, Date.now());
    // The answer to this router's `who` at (re)start, arriving after it stopped holding sends: the
    // sends routed meanwhile missed that gateway's ids. It is told so (asked again, `lost`).
    const late =
      snap.part === 0 &&
      snap.seq > 0 &&
      this.#publisher?.learning === false &&
      this.#directory.seqOf(gw) === -1 &&
      !this.#directory.snapshotting(gw) &&
      !this.#unsure.has(gw);
    if (late) this.#lateSnapshots.add(gw);
    if (snap.part === 0) this.#snapshotStarted.add(gw);
    const whole = this.#directory.applySnapshot(gw, snap.seq, snap.part, snap.last, snap.ids);
    if (snap.last && this.#lateSnapshots.delete(gw)) {
      this.#resync(gw, true);
    } else if (!whole) {
      // A part was lost: ids of it may be missing, so neither acked nor trusted; ask again.
      this.#resync(gw, true);
    } else if (snap.last && !this.#directory.snapshotting(gw)) {
      this.#unsure.delete(gw);
      this.#publisher?.snapshotIn();
      this.#ackInterests(gw);
    }
  }

  /**
   * A router asks who is there (`who <router> [<gateway> [lost]]`): heartbeat, and a snapshot for
   * it. From now on a resume here waits for that router's acks too.
   */
  #onWho(m: Msg): void {
    const [, router, target, flag] = m.string().split(' ');
    if (target !== undefined && target !== this.id) return;
    this.#announce('hb');
    if (router === undefined || this.#receiver === undefined) return;
    this.#routers.seen(router, Date.now());
    this.#acks.forget(router);
    if (flag === 'lost') this.#missed('a router lost track of the ids held here', { router });
    try {
      this.#feed.snapshot(this.#subjects.snapshots + router, this.#receiver.heldIds());
    } catch (err) {
      this.#log.warn('interest snapshot not sent', { router, err });
    }
  }

  #onTallyRequest(m: Msg): void {
    const reply = this.#receiver?.answer(m.subject, m.data);
    if (reply === undefined) return;
    try {
      m.respond(reply);
    } catch (err) {
      this.#log.debug('tally reply not sent', { err });
    }
  }

  #onControl(m: Msg): void {
    const reply = this.#receiver?.control(m.subject, m.data);
    if (reply === undefined) return;
    try {
      m.respond(reply);
    } catch (err) {
      this.#log.debug('control reply not sent', { err });
    }
  }

  /**
   * True when this router reports presence: it has learned the cluster and no other live router
   * that has has a lower id. (A router still learning would miss changes: it never leads.)
   */
  #leads(): boolean {
    if (this.#directory.quiet) return false;
    for (const id of this.#readyRouters) if (id < this.id && this.#routers.has(id)) return false;
    return true;
  }

  #presenceChange(id: string, online: boolean): void {
    if (this.#presenceListeners.length === 0 || !this.#leads()) return;
    if (this.#presenceBatch.length === 0) setImmediate(() => this.#flushPresence());
    this.#presenceBatch.push({ id, online, at: Date.now() });
  }

  #flushPresence(): void {
    const changes = this.#presenceBatch;
    this.#presenceBatch = [];
    for (const listener of this.#presenceListeners) {
      try {
        listener(changes);
      } catch (err) {
        this.#log.error('presence listener failed', { err });
      }
    }
  }

  /**
   * Gateway side: messages for this gateway's ids may have been lost, so every connection that can
   * resume is ended with 3007 and comes back with its last event id (its history fills the hole).
   * At most once a heartbeat period unless `always`: the clients told are still reconnecting.
   */
  #missed(why: string, fields: Record<string, unknown>, always = false): void {
    const receiver = this.#receiver;
    if (receiver === undefined || this.#closed) return;
    const now = Date.now();
    if (!always && now - this.#missedAt < this.#o.gatewayHeartbeatMs) return;
    this.#missedAt = now;
    const told = receiver.missed();
    this.#log.warn(`${why}: messages may have been missed; connections told to resume`, { ...fields, told });
  }

  #bad(subject: string, err: unknown): void {
    this.#badPayloads++;
    this.#log.debug('undecodable payload', { subject, err });
  }

  #setUp(up: boolean): void {
    if (this.#up === up) return;
    this.#up = up;
    if (!up)
      this.#publisher?.failAll(
        new UnavailableError(
          `the NATS bus (${this.#o.servers.join(',')}) disconnected before the delivered count arrived; delivery unknown`,
        ),
      );
    if (this.#closed) return;
    // Nothing reaches this gateway until it is back, and NATS keeps nothing for it meanwhile.
    if (!up) this.#missed('the NATS connection dropped', { server: this.#nc.getServer() }, true);
    // Waits for routers' acks end: the routers relearn this gateway, its resumes were told to resume.
    this.#acks.clear();
    if (up) {
      this.#gateways.clear();
      this.#routers.clear();
      this.#routerBeats.clear();
      this.#readyRouters.clear();
      this.#unsure.clear();
      this.#lateSnapshots.clear();
      if (this.#receiver !== undefined) this.#hearRoutersAgain();
      if (this.#receiver !== undefined) this.#announce('hb');
      if (this.#publisher !== undefined) {
        // Deltas may have been lost while away: relearn every gateway's interests.
        this.#directory.quiet = true;
        this.#directory.clear();
        this.#announceRouter('hb');
        this.#learn();
      }
    }
    // An outage is an operator's business (warn); the recovery is news (info).
    if (up) this.#log.info('NATS reconnected', { server: this.#nc.getServer() });
    else
      this.#log.warn('NATS disconnected: sends get 503 until it is back', { server: this.#nc.getServer() });
    for (const listener of this.#listeners) {
      try {
        listener(up);
      } catch (err) {
        this.#log.error('bus status listener failed', { err });
      }
    }
  }

  async #watchStatus(): Promise<void> {
    void this.#nc.closed().then(() => this.#setUp(false));
    for await (const s of this.#nc.status()) {
      if (s.type === 'disconnect') this.#setUp(false);
      else if (s.type === 'reconnect') this.#setUp(true);
    }
  }
}
