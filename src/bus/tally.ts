/**
 * The tally: how a router learns the exact number of connections a publish reached, when the
 * connections sit on gateways it never talks to directly.
 *
 *     router                         NATS                       gateway (each holding a recipient)
 *     publish m1 → sb.u.alice  ─────────────────────────────▶  deliver, counts[pub][seq1] += n
 *     publish m1 → sb.u.bob    ─────────────────────────────▶  deliver, counts[pub][seq1] += n
 *     … every publish since that gateway was last asked …
 *     tally r [seq1, …] → sb.tally.<gw>  ────────────────────▶  reply {r, [index, count]…}
 *     wait for each gateway asked ◀──────────────────────────  (counts for seq1… deleted)
 *
 * A request goes only to the gateways that hold a recipient of one of its publishes — the router's
 * interest directory (directory.ts) knows which — so a send costs work on the gateways it reaches,
 * not on every gateway of the cluster. A publish whose recipients no gateway holds is settled at
 * once, with no request. Each gateway is asked on its own schedule: one with no request out is
 * asked in the same socket write as the messages, so it reads messages and request in one wakeup.
 *
 * Correctness rests on NATS ordering: messages from one publishing connection reach each
 * subscribing connection in the order they were published, whatever their subjects, so a gateway
 * has delivered every message a request is about before it sees the request.
 *
 * {@link TallyRounds} batches publishes into requests per gateway and collects replies (which
 * gateways are alive is membership.ts's business), {@link DeliveryCounts} is the gateway's side: counts per
 * publish, kept only until tallied.
 */
import type { TallyReply } from './nats-codec.js';

/** What a publish learned from its tally round. */
export interface PublishResult {
  /** Connections reached, summed over the gateways that answered. */
  readonly delivered: number;
  /**
   * True when every gateway the router knew to be alive answered, so `delivered` is exact.
   * False when the round timed out: `delivered` is then a lower bound.
   */
  readonly complete: boolean;
  /** Ids of the gateways that were waited for and did not answer in time. */
  readonly missing: readonly string[];
}

/** Which gateways are alive now (membership.ts): a round waits only for live candidates. */
export interface LiveGateways {
  has(id: string): boolean;
}

/** What {@link TallyRounds} needs from the bus. */
export interface TallyHooks {
  /** Sends gateway `gateway` the tally request of `round` for `seqs`; may throw if the connection is gone. */
  send(round: number, gateway: string, seqs: readonly number[]): void;
  /** Request `round` ended without an answer from `missing`; it made `publishes` publishes partial. */
  timedOut(round: number, missing: readonly string[], publishes: number): void;
}

class Pending {
  readonly seq: number;
  readonly resolve: (r: PublishResult) => void;
  readonly reject: (err: unknown) => void;
  delivered = 0;
  /** Gateways still to answer for this publish (asked or not yet asked). */
  remaining: number;
  /** Gateways that expired or timed out before they answered: what they delivered is unknown. */
  lost: string[] | undefined = undefined;
  settled = false;

  constructor(
    seq: number,
    remaining: number,
    resolve: (r: PublishResult) => void,
    reject: (err: unknown) => void,
  ) {
    this.seq = seq;
    this.remaining = remaining;
    this.resolve = resolve;
    this.reject = reject;
  }
}

/** One gateway as the tally sees it: publishes not yet asked of it, and its requests out. */
class GatewayTally {
  readonly id: string;
  /** Publishes to ask it about, in publish order (requests must list seqs in increasing order). */
  queue: Pending[] = [];
  readonly out = new Set<Request>();
  /** performance.now() when it was last asked. */
  lastSentAt = Number.NEGATIVE_INFINITY;

  constructor(id: string) {
    this.id = id;
  }
}

/** A tally request to one gateway: the publishes it lists, in request order (replies index these). */
class Request {
  readonly id: number;
  readonly gateway: GatewayTally;
  readonly items: Pending[];
  timer: NodeJS.Timeout | undefined = undefined;

  constructor(id: number, gateway: GatewayTally, items: Pending[]) {
    this.id = id;
    this.gateway = gateway;
    this.items = items;
  }
}

const COMPLETE_EMPTY: readonly string[] = Object.freeze([]);

/** Longest a gateway's publishes wait for a request of their own while an earlier one is out (ms). */
export const ROUND_GAP_MS = 5;
/** Gateways a round may ask per {@link ROUND_GAP_MS} of gap before rounds are spaced out further. */
export const GATEWAYS_PER_GAP = 8;

/**
 * The least time between rounds after one that asked `gateways` gateways: {@link ROUND_GAP_MS}
 * up to {@link GATEWAYS_PER_GAP} of them, then in proportion. A request costs its gateway a reply
 * and, unless it rides with the messages it is about, an event-loop wakeup; at 56 gateways asked
 * every 5 ms that was 22,000 NATS messages a second, as many as the deliveries themselves, and
 * sends fell to a fifth (`bench c1m`, 100,000 connections: 5,588 messages in 30 s instead of
 * 26,495 on 6 gateways).
 */
export function roundGapMs(gateways: number): number {
  return ROUND_GAP_MS * Math.max(1, gateways / GATEWAYS_PER_GAP);
}

/**
 * Router side. While few gateways are busy, each is asked on its own: a gateway with no request
 * out is asked at once, from a microtask queued by {@link willAdd} just before the publish, so the
 * request leaves in the same socket write as the messages it is about and the gateway reads both
 * in one wakeup; while a gateway has a request out, its new publishes gather and go as one request
 * when it answers, or {@link ROUND_GAP_MS} after that request was sent if it is still out then (a
 * slow gateway must not hold its publishes back for a whole timeout). Gateways do not wait for
 * one another, so with many gateways and sends to few of them each (51 gateways, one recipient
 * per send) requests still ride with their messages. A publisher that waits for each answer is
 * never slowed down; when answers take longer, because the gateways or NATS are busy, requests
 * carry more publishes each. Gateways that hold none of a publish's recipients are not asked.
 * The gateways asked at one time form a round. When the last round asked more than
 * {@link GATEWAYS_PER_GAP} gateways, or more than that many have a request out (wide fan-out over
 * a large cluster), every gateway waits for the next round, sent {@link roundGapMs} after the
 * last: that bounds the tally traffic to about GATEWAYS_PER_GAP requests per ROUND_GAP_MS (a
 * publisher that waits for each answer then gets up to 1000 / roundGapMs answers a second).
 * A publish is settled when every gateway it asked has answered, expired or said bye; a request
 * not answered within `timeoutMs` makes the counts it was about partial.
 */
export class TallyRounds {
  readonly #gateways: LiveGateways;
  readonly #timeoutMs: number;
  readonly #hooks: TallyHooks;
  readonly #byGateway = new Map<string, GatewayTally>();
  /** Gateways with publishes not yet asked. */
  readonly #queued = new Set<GatewayTally>();
  readonly #requests = new Map<number, Request>();
  #scheduled = false;
  /** A flush waiting for the earliest gateway due later (spacing or the gap behind a request out). */
  #timer: NodeJS.Timeout | undefined = undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #held = true;
  #nextRequest = 0;
  #pending = 0;
  #idle: (() => void)[] = [];
  #roundsSent = 0;
  #requestsSent = 0;
  /** Gateways with a request out. */
  #busy = 0;
  /** performance.now() of the last round, and the spacing it set (see roundGapMs). */
  #lastRoundAt = Number.NEGATIVE_INFINITY;
  #lastRoundGapMs = ROUND_GAP_MS;

  constructor(gateways: LiveGateways, timeoutMs: number, hooks: TallyHooks) {
    this.#gateways = gateways;
    this.#timeoutMs = timeoutMs;
    this.#hooks = hooks;
  }

  /**
   * Counts publish `seq` (its messages are already published), asking the `candidates`: the
   * gateways that hold one of its recipients. None: settled at once, with 0.
   */
  add(seq: number, candidates: readonly string[]): Promise<PublishResult> {
    if (candidates.length === 0)
      return Promise.resolve({ delivered: 0, complete: true, missing: COMPLETE_EMPTY });
    return new Promise<PublishResult>((resolve, reject) => {
      const item = new Pending(seq, candidates.length, resolve, reject);
      for (const id of candidates) {
        let g = this.#byGateway.get(id);
        if (g === undefined) {
          g = new GatewayTally(id);
          this.#byGateway.set(id, g);
        }
        g.queue.push(item);
        this.#queued.add(g);
      }
      this.#pending++;
      this.#schedule();
    });
  }

  /**
   * Called just before publishing what will be {@link add}ed: gateways due now are asked from a
   * microtask queued now, which runs before the NATS client's own flush of the publish (queued
   * after it), so messages and tally requests leave in one socket write.
   */
  willAdd(): void {
    if (this.#scheduled || this.#held) return;
    this.#scheduled = true;
    queueMicrotask(() => this.#flush());
  }

  /** Stops sending requests (membership not yet known, after connect or reconnect). */
  hold(): void {
    this.#held = true;
  }

  /** Asks about what was held, if anything, and as usual from now on. */
  release(): void {
    this.#held = false;
    this.#schedule();
  }

  /** Publishes not yet settled. */
  get pending(): number {
    return this.#pending;
  }

  /** Rounds sent so far: the times gateways were asked, one or more at once. */
  get roundsSent(): number {
    return this.#roundsSent;
  }

  /** Tally requests sent so far (one per gateway per round). */
  get requestsSent(): number {
    return this.#requestsSent;
  }

  /** Resolves when no publish is waiting for its count. */
  idle(): Promise<void> {
    if (this.#pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** A gateway answered; its pairs index the publishes its request listed. */
  onReply(reply: TallyReply): void {
    const req = this.#requests.get(reply.round);
    if (req === undefined || req.gateway.id !== reply.gatewayId) return;
    const { pairs } = reply;
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const item = req.items[pairs[i] as number];
      if (item !== undefined) item.delivered += pairs[i + 1] as number;
    }
    this.#end(req, undefined);
  }

  /**
   * A gateway left (`expired` false: it said bye after answering what it had delivered) or
   * expired (true: it may have delivered and not said, so the counts it was asked for are
   * partial). Publishes stop waiting for it.
   */
  gatewayGone(id: string, expired: boolean): void {
    const g = this.#byGateway.get(id);
    if (g === undefined) return;
    this.#byGateway.delete(id);
    this.#queued.delete(g);
    const lost = expired ? id : undefined;
    for (const req of [...g.out]) this.#end(req, lost);
    const queue = g.queue;
    g.queue = [];
    for (const item of queue) this.#answered(item, lost);
  }

  /** Rejects every unsettled publish (connection lost: their fate is unknown). */
  failAll(err: unknown): void {
    const items = new Set<Pending>();
    for (const g of this.#byGateway.values()) {
      for (const item of g.queue) items.add(item);
      g.queue = [];
      g.out.clear();
    }
    this.#busy = 0;
    this.#queued.clear();
    for (const req of this.#requests.values()) {
      clearTimeout(req.timer);
      for (const item of req.items) items.add(item);
    }
    this.#requests.clear();
    for (const item of items) this.#settle(item, undefined, err);
  }

  #schedule(): void {
    if (this.#scheduled || this.#held || this.#queued.size === 0) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  /** Asks every queued gateway that is due; arms a timer for the earliest one that is not. */
  #flush(): void {
    this.#scheduled = false;
    if (this.#held || this.#queued.size === 0) return;
    const now = performance.now();
    // Wide: the last round asked many gateways, or many have a request out. Then every gateway
    // waits for the next round, spaced by roundGapMs, as one; else each is asked on its own.
    const wide = this.#lastRoundGapMs > ROUND_GAP_MS || this.#busy > GATEWAYS_PER_GAP;
    const roundAt = this.#lastRoundAt + this.#lastRoundGapMs;
    const due: GatewayTally[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const g of this.#queued) {
      if (!this.#gateways.has(g.id)) {
        // Gone since (bye, or expired and already reported): it delivered nothing it could report.
        this.#queued.delete(g);
        const queue = g.queue;
        g.queue = [];
        for (const item of queue) this.#answered(item, undefined);
        continue;
      }
      const at = wide ? roundAt : g.out.size === 0 ? now : g.lastSentAt + ROUND_GAP_MS;
      if (at <= now) due.push(g);
      else if (at < next) next = at;
    }
    if (due.length > 0) {
      this.#roundsSent++;
      this.#lastRoundAt = now;
      this.#lastRoundGapMs = roundGapMs(due.length);
      for (const g of due) this.#ask(g, now);
    }
    if (next !== Number.POSITIVE_INFINITY) this.#wakeAt(next);
  }

  #ask(g: GatewayTally, now: number): void {
    const items = g.queue;
    g.queue = [];
    this.#queued.delete(g);
    this.#nextRequest = (this.#nextRequest + 1) >>> 0;
    const req = new Request(this.#nextRequest, g, items);
    try {
      this.#hooks.send(
        req.id,
        g.id,
        items.map((item) => item.seq),
      );
    } catch (err) {
      for (const item of items) this.#settle(item, undefined, err);
      return;
    }
    this.#requestsSent++;
    g.lastSentAt = now;
    if (g.out.size === 0) this.#busy++;
    g.out.add(req);
    this.#requests.set(req.id, req);
    req.timer = setTimeout(() => this.#timeout(req), this.#timeoutMs);
  }

  /** Flushes at `at` (performance.now() time) unless a flush is already due by then. */
  #wakeAt(at: number): void {
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#timerAt = Number.POSITIVE_INFINITY;
        if (!this.#scheduled) this.#flush();
      },
      Math.max(1, Math.ceil(at - performance.now())),
    );
  }

  #timeout(req: Request): void {
    // Timers run before I/O in each event-loop turn: after a stall, answers may be sitting unread
    // in the socket. Decide in the check phase, after one more poll for I/O.
    setImmediate(() => {
      if (!this.#requests.has(req.id)) return;
      // Publishes already partial through another gateway are not counted twice.
      let fresh = 0;
      for (const item of req.items) if (item.lost === undefined && !item.settled) fresh++;
      this.#hooks.timedOut(req.id, [req.gateway.id], fresh);
      this.#end(req, req.gateway.id);
    });
  }

  /** A request ended (answered, or `lost` to expiry or time-out); its gateway may be due again. */
  #end(req: Request, lost: string | undefined): void {
    this.#requests.delete(req.id);
    clearTimeout(req.timer);
    if (req.gateway.out.delete(req) && req.gateway.out.size === 0) this.#busy--;
    for (const item of req.items) this.#answered(item, lost);
    if (req.gateway.queue.length > 0) this.#schedule();
  }

  /** One of the item's gateways is done with it (`lost`: without a count). */
  #answered(item: Pending, lost: string | undefined): void {
    if (lost !== undefined) {
      if (item.lost === undefined) item.lost = [lost];
      else item.lost.push(lost);
    }
    if (--item.remaining > 0) return;
    const missing = item.lost === undefined ? COMPLETE_EMPTY : Object.freeze(item.lost);
    this.#settle(item, { delivered: item.delivered, complete: missing.length === 0, missing });
  }

  #settle(item: Pending, result: PublishResult | undefined, err?: unknown): void {
    if (item.settled) return;
    item.settled = true;
    if (result === undefined) item.reject(err);
    else item.resolve(result);
    this.#pending--;
    if (this.#pending === 0 && this.#idle.length > 0) {
      const waiters = this.#idle;
      this.#idle = [];
      for (const w of waiters) w();
    }
  }
}

/** Counts of one publisher: seq → connections reached, in arrival (= publish) order. */
class PublisherCounts {
  readonly counts = new Map<number, number>();
  touched: number;

  constructor(now: number) {
    this.touched = now;
  }
}

/**
 * Gateway side: connections reached per publish, kept until the publisher's tally asks for them.
 * Bounded three ways, so a router that dies before tallying leaks nothing: a tally drops any
 * older entry of the same publisher (its tally was lost), a publisher not heard from for `idleMs`
 * is dropped whole, and each publisher keeps at most `maxPerPublisher` entries (oldest go first).
 * Publishes that reached no connection take no entry.
 */
export class DeliveryCounts {
  readonly #byPublisher = new Map<string, PublisherCounts>();
  readonly #maxPerPublisher: number;
  readonly #idleMs: number;
  /** Coarse clock, advanced by {@link sweep}: no Date.now() per delivered message. */
  #now: number;
  #dropped = 0;

  constructor(idleMs: number, maxPerPublisher = 100_000, now = Date.now()) {
    this.#idleMs = idleMs;
    this.#maxPerPublisher = maxPerPublisher;
    this.#now = now;
  }

  add(pubId: string, seq: number, n: number): void {
    let pc = this.#byPublisher.get(pubId);
    if (pc === undefined) {
      pc = new PublisherCounts(this.#now);
      this.#byPublisher.set(pubId, pc);
    }
    pc.touched = this.#now;
    const { counts } = pc;
    counts.set(seq, (counts.get(seq) ?? 0) + n);
    if (counts.size > this.#maxPerPublisher) {
      const oldest = counts.keys().next();
      if (oldest.done !== true) counts.delete(oldest.value);
      this.#dropped++;
    }
  }

  /**
   * Answers a tally: flat `[index, count, …]` for the seqs this gateway delivered to, and forgets
   * them together with any older entry of the same publisher.
   */
  take(pubId: string, seqs: readonly number[]): number[] {
    const pairs: number[] = [];
    const pc = this.#byPublisher.get(pubId);
    if (pc === undefined || seqs.length === 0) return pairs;
    pc.touched = this.#now;
    const { counts } = pc;
    let min = Number.POSITIVE_INFINITY;
    for (let i = 0; i < seqs.length; i++) {
      const seq = seqs[i] as number;
      if (seq < min) min = seq;
      const n = counts.get(seq);
      if (n !== undefined) {
        pairs.push(i, n);
        counts.delete(seq);
      }
    }
    for (const seq of counts.keys()) {
      if (seq >= min) break;
      counts.delete(seq);
      this.#dropped++;
    }
    if (counts.size === 0) this.#byPublisher.delete(pubId);
    return pairs;
  }

  /** Advances the coarse clock and drops publishers idle for longer than `idleMs`. */
  sweep(now: number): void {
    this.#now = now;
    for (const [pubId, pc] of this.#byPublisher) {
      if (now - pc.touched > this.#idleMs) {
        this.#dropped += pc.counts.size;
        this.#byPublisher.delete(pubId);
      }
    }
  }

  /** Entries held, over all publishers. */
  get size(): number {
    let n = 0;
    for (const pc of this.#byPublisher.values()) n += pc.counts.size;
    return n;
  }

  /** Entries dropped untallied (lost tallies, dead routers, overflow). */
  get dropped(): number {
    return this.#dropped;
  }
}
