/**
 * The tally: how a router learns the exact number of connections a publish reached, when the
 * connections sit on gateways it never talks to directly.
 *
 *     router                         NATS                       gateway (each holding a recipient)
 *     batch [m1 → alice, bob; m2 → …] → sb.dl.<gw>  ─────────▶  deliver, counts[pub][seq1] += n
 *     … every publish since the last round …
 *     tally r [seq1, …] → sb.tally.<gw>  ────────────────────▶  reply {r, [index, count]…}
 *     wait for those gateways ◀──────────────────────────────  (counts for seq1… deleted)
 *
 * A round asks only the gateways that hold a recipient of one of its publishes — the router's
 * interest directory (directory.ts) knows which — so a send costs work on the gateways it reaches,
 * not on every gateway of the cluster. A publish whose recipients no gateway holds is settled at
 * once, with no round.
 *
 * Correctness rests on NATS ordering: messages from one publishing connection reach each
 * subscribing connection in the order they were published, whatever their subjects, so a gateway
 * has delivered every message of a round before it sees the round's tally request.
 *
 * {@link TallyRounds} batches publishes into rounds and collects replies (which gateways are
 * alive is membership.ts's business), {@link DeliveryCounts} is the gateway's side: counts per
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
  /** A round ended without answers from `missing`; it covered `publishes` publishes. */
  timedOut(round: number, missing: readonly string[], publishes: number): void;
}

class Pending {
  readonly seq: number;
  /** Gateways holding a recipient of this publish, when it was published. */
  readonly candidates: readonly string[];
  readonly resolve: (r: PublishResult) => void;
  readonly reject: (err: unknown) => void;
  delivered = 0;
  /** Candidates that expired before this publish's round was sent: it may have reached them. */
  lost: string[] | undefined = undefined;

  constructor(
    seq: number,
    candidates: readonly string[],
    resolve: (r: PublishResult) => void,
    reject: (err: unknown) => void,
  ) {
    this.seq = seq;
    this.candidates = candidates;
    this.resolve = resolve;
    this.reject = reject;
  }
}

class Round {
  readonly id: number;
  readonly items: Pending[];
  /** Per gateway asked: the publishes its request lists, in request order (replies index these). */
  readonly asked: Map<string, Pending[]>;
  /** Gateways not yet answered. */
  readonly waiting: Set<string>;
  /** Gateways that expired before they answered: what they delivered is unknown. */
  lost: string[] | undefined = undefined;
  timer: NodeJS.Timeout | undefined = undefined;

  constructor(id: number, items: Pending[], asked: Map<string, Pending[]>) {
    this.id = id;
    this.items = items;
    this.asked = asked;
    this.waiting = new Set(asked.keys());
  }
}

const COMPLETE_EMPTY: readonly string[] = Object.freeze([]);

/** A publish's result: its round's `missing`, and the candidates it lost before the round. */
function resultOf(item: Pending, delivered: number, missing: readonly string[]): PublishResult {
  const all = item.lost === undefined ? missing : Object.freeze([...missing, ...item.lost]);
  return { delivered, complete: all.length === 0, missing: all };
}

/** The gateways a round lost to expiry, as its `missing` list. */
function lostOf(round: Round): readonly string[] {
  return round.lost === undefined ? COMPLETE_EMPTY : Object.freeze(round.lost);
}

/** Longest a publish waits for a round of its own while an earlier round is still out (ms). */
export const ROUND_GAP_MS = 5;
/** Gateways a round may ask per {@link ROUND_GAP_MS} of gap before rounds are spaced out further. */
export const GATEWAYS_PER_GAP = 8;

/**
 * The least time between rounds that asked `gateways` gateways: {@link ROUND_GAP_MS} up to
 * {@link GATEWAYS_PER_GAP} of them, then in proportion. Every round costs every gateway it asks a
 * request, a reply and an event-loop wakeup; at 56 gateways and a round every 5 ms that was 22,000
 * NATS messages a second, as many as the deliveries themselves, and sends fell to a fifth
 * (`bench c1m`, 100,000 connections: 5,588 messages in 30 s instead of 26,495 on 6 gateways).
 */
export function roundGapMs(gateways: number): number {
  return ROUND_GAP_MS * Math.max(1, gateways / GATEWAYS_PER_GAP);
}

/**
 * Router side. Publishes share rounds (one tally request, one reply from every live gateway), the
 * way a database groups commits: with no round out, the publishes of one event-loop turn form a
 * round, sent from `setImmediate`; while a round is out, new publishes gather and go as one round
 * when it ends, or {@link ROUND_GAP_MS} after it was sent if it is still out then (a slow gateway
 * must not hold everyone back for a whole timeout). A publisher that waits for each answer is
 * never slowed down; when rounds take longer, because the gateways or NATS are busy, they carry
 * more publishes each. A round costs each gateway it asks one request and one reply, whatever
 * it carries; gateways that hold none of its recipients are not asked.
 * With more than {@link GATEWAYS_PER_GAP} gateways asked, rounds are spaced {@link roundGapMs}
 * apart even when none is out, which bounds the tally traffic of a large cluster (a publisher
 * that waits for each answer then gets up to 1000 / roundGapMs rounds a second).
 * A round ends when every gateway it asked has answered, or one of them expires or says bye, or
 * after `timeoutMs`.
 */
export class TallyRounds {
  readonly #gateways: LiveGateways;
  readonly #timeoutMs: number;
  readonly #hooks: TallyHooks;
  readonly #rounds = new Map<number, Round>();
  #batch: Pending[] = [];
  #scheduled = false;
  /** The timer of a flush waiting for the rounds out to end (or for ROUND_GAP_MS). */
  #gapTimer: NodeJS.Timeout | undefined = undefined;
  /** performance.now() when the last round was sent. */
  #lastSentAt = Number.NEGATIVE_INFINITY;
  /** {@link roundGapMs} of the last round sent. */
  #gapMs = ROUND_GAP_MS;
  #held = true;
  #nextRound = 0;
  #pending = 0;
  #idle: (() => void)[] = [];
  #roundsSent = 0;

  constructor(gateways: LiveGateways, timeoutMs: number, hooks: TallyHooks) {
    this.#gateways = gateways;
    this.#timeoutMs = timeoutMs;
    this.#hooks = hooks;
  }

  /**
   * Counts publish `seq` (its messages are already published) in the next round, asking the
   * `candidates`: the gateways that hold one of its recipients. None: settled at once, with 0.
   */
  add(seq: number, candidates: readonly string[]): Promise<PublishResult> {
    if (candidates.length === 0)
      return Promise.resolve({ delivered: 0, complete: true, missing: COMPLETE_EMPTY });
    return new Promise<PublishResult>((resolve, reject) => {
      this.#batch.push(new Pending(seq, candidates, resolve, reject));
      this.#pending++;
      this.#schedule();
    });
  }

  /**
   * Called just before publishing what will be {@link add}ed: when no round is out, the round is
   * sent from a microtask queued now, which runs before the NATS client's own flush of the
   * publish (queued after it), so message and tally request leave in one socket write.
   */
  willAdd(): void {
    // A round out, or rounds spaced for many gateways: add() schedules this one.
    if (this.#scheduled || this.#held || this.#rounds.size > 0 || this.#waitMs() > 0) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  /** Stops sending rounds (membership not yet known, after connect or reconnect). */
  hold(): void {
    this.#held = true;
  }

  /** Sends the held batch, if any, and rounds as usual from now on. */
  release(): void {
    this.#held = false;
    this.#schedule();
  }

  /** Publishes not yet settled. */
  get pending(): number {
    return this.#pending;
  }

  /** Rounds sent so far. */
  get roundsSent(): number {
    return this.#roundsSent;
  }

  /** Resolves when no publish is waiting for its count. */
  idle(): Promise<void> {
    if (this.#pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** A gateway answered; its pairs index the publishes its request listed. */
  onReply(reply: TallyReply): void {
    const round = this.#rounds.get(reply.round);
    if (round === undefined || !round.waiting.delete(reply.gatewayId)) return;
    const list = round.asked.get(reply.gatewayId) ?? [];
    const { pairs } = reply;
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const item = list[pairs[i] as number];
      if (item !== undefined) item.delivered += pairs[i + 1] as number;
    }
    if (round.waiting.size === 0) this.#finish(round, lostOf(round));
  }

  /**
   * A gateway left (`expired` false: it said bye after answering what it had delivered) or
   * expired (true: it may have delivered and not said, so the counts it was asked for are
   * partial). Rounds stop waiting for it; publishes not yet in a round that it was a candidate
   * of are partial too when it expired (their messages went out before it went).
   */
  gatewayGone(id: string, expired: boolean): void {
    if (expired) {
      for (const item of this.#batch) {
        if (!item.candidates.includes(id)) continue;
        if (item.lost === undefined) item.lost = [id];
        else item.lost.push(id);
      }
    }
    for (const round of this.#rounds.values()) {
      if (!round.waiting.delete(id)) continue;
      if (expired) {
        round.lost ??= [];
        round.lost.push(id);
      }
      if (round.waiting.size === 0) this.#finish(round, lostOf(round));
    }
  }

  /** Rejects every unsettled publish (connection lost: their fate is unknown). */
  failAll(err: unknown): void {
    const batch = this.#batch;
    this.#batch = [];
    for (const item of batch) this.#settle(item, undefined, err);
    const rounds = [...this.#rounds.values()];
    this.#rounds.clear();
    for (const round of rounds) {
      clearTimeout(round.timer);
      for (const item of round.items) this.#settle(item, undefined, err);
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#held || this.#batch.length === 0) return;
    this.#scheduled = true;
    const wait = this.#waitMs();
    if (wait <= 0) {
      setImmediate(() => {
        this.#scheduled = false;
        this.#flush();
      });
    } else {
      this.#gapTimer = setTimeout(() => {
        this.#gapTimer = undefined;
        this.#scheduled = false;
        this.#flush();
      }, Math.ceil(wait));
    }
  }

  /**
   * How long the next round must wait: none when no round is out, unless the last one asked so
   * many gateways that rounds are spaced (see roundGapMs); else until the gap since it has passed.
   */
  #waitMs(): number {
    if (this.#rounds.size === 0 && this.#gapMs <= ROUND_GAP_MS) return 0;
    return this.#lastSentAt + this.#gapMs - performance.now();
  }

  /** A round ended: if none is out any more, a batch waiting for that goes in the next turn. */
  #roundEnded(): void {
    if (this.#gapTimer === undefined || this.#rounds.size > 0) return;
    clearTimeout(this.#gapTimer);
    this.#gapTimer = undefined;
    this.#scheduled = false;
    this.#schedule();
  }

  #flush(): void {
    if (this.#held || this.#batch.length === 0) return;
    const items = this.#batch;
    this.#batch = [];
    const asked = new Map<string, Pending[]>();
    for (const item of items) {
      for (const gw of item.candidates) {
        // A candidate gone since said bye (nothing to report) or expired (item.lost says so).
        if (!this.#gateways.has(gw)) continue;
        const list = asked.get(gw);
        if (list === undefined) asked.set(gw, [item]);
        else list.push(item);
      }
    }
    if (asked.size === 0) {
      for (const item of items) this.#settle(item, resultOf(item, 0, COMPLETE_EMPTY));
      return;
    }
    this.#nextRound = (this.#nextRound + 1) >>> 0;
    const round = new Round(this.#nextRound, items, asked);
    try {
      for (const [gw, list] of asked) {
        this.#hooks.send(
          round.id,
          gw,
          list.map((item) => item.seq),
        );
      }
    } catch (err) {
      for (const item of items) this.#settle(item, undefined, err);
      return;
    }
    this.#roundsSent++;
    this.#lastSentAt = performance.now();
    this.#gapMs = roundGapMs(asked.size);
    this.#rounds.set(round.id, round);
    round.timer = setTimeout(() => this.#timeout(round), this.#timeoutMs);
  }

  #timeout(round: Round): void {
    // Timers run before I/O in each event-loop turn: after a stall, answers may be sitting unread
    // in the socket. Decide in the check phase, after one more poll for I/O.
    setImmediate(() => {
      if (!this.#rounds.has(round.id)) return;
      const missing = Object.freeze([...(round.lost ?? []), ...round.waiting]);
      this.#hooks.timedOut(round.id, missing, round.items.length);
      this.#finish(round, missing);
    });
  }

  #finish(round: Round, missing: readonly string[]): void {
    this.#rounds.delete(round.id);
    clearTimeout(round.timer);
    for (const item of round.items) this.#settle(item, resultOf(item, item.delivered, missing));
    this.#roundEnded();
  }

  #settle(item: Pending, result: PublishResult | undefined, err?: unknown): void {
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
