/**
 * The gateway side of "the routers know": which of this gateway's interest deltas each router
 * has applied (directory.ts), as the routers ack them on `<prefix>.ia.<gateway id>`.
 *
 * Routers send a message only to the gateways their directory says hold a recipient, so a
 * resuming client's history may be read only once every router knows the gateway holds its ids:
 * a send routed before that is in the history, a send routed after it reaches the connection
 * (the gateway drops the copies it already replayed). {@link InterestAcks.wait} resolves then.
 *
 * A router that does not ack within `timeoutMs` (alive but lagging far behind) is not waited for
 * any longer: the wait resolves, the caller is told which routers it gave up on, and a send those
 * routers make before they catch up may miss that connection. One that leaves or expires is
 * dropped from every wait.
 */

/** Resumes waiting for the same delta seq share one of these. */
class Waiter {
  readonly seq: number;
  readonly waiting: Set<string>;
  readonly promise: Promise<void>;
  resolve!: () => void;
  timer: NodeJS.Timeout | undefined = undefined;

  constructor(seq: number, waiting: Set<string>) {
    this.seq = seq;
    this.waiting = waiting;
    this.promise = new Promise<void>((resolve) => {
      this.resolve = resolve;
    });
  }
}

export class InterestAcks {
  readonly #timeoutMs: number;
  readonly #gaveUp: (routers: readonly string[], seq: number) => void;
  /** The highest delta seq each router has acked. */
  readonly #acked = new Map<string, number>();
  readonly #waiters = new Map<number, Waiter>();
  #timeouts = 0;

  constructor(timeoutMs: number, gaveUp: (routers: readonly string[], seq: number) => void) {
    this.#timeoutMs = timeoutMs;
    this.#gaveUp = gaveUp;
  }

  /** Waits in progress (one per delta seq). */
  get waiting(): number {
    return this.#waiters.size;
  }

  /** Waits that ended because a router did not ack in time. */
  get timeouts(): number {
    return this.#timeouts;
  }

  /** Resolves when each of `routers` (those alive now) has acked delta `seq` or a later one. */
  wait(seq: number, routers: Iterable<string>): Promise<void> {
    if (seq <= 0) return Promise.resolve();
    const existing = this.#waiters.get(seq);
    if (existing !== undefined) return existing.promise;
    const waiting = new Set<string>();
    for (const r of routers) if ((this.#acked.get(r) ?? 0) < seq) waiting.add(r);
    if (waiting.size === 0) return Promise.resolve();
    const w = new Waiter(seq, waiting);
    this.#waiters.set(seq, w);
    w.timer = setTimeout(() => {
      if (this.#waiters.get(seq) !== w) return;
      this.#timeouts++;
      this.#gaveUp([...w.waiting], seq);
      this.#end(w);
    }, this.#timeoutMs);
    w.timer.unref();
    return w.promise;
  }

  /** Router `router` has applied every delta up to `seq`. */
  heard(router: string, seq: number): void {
    if (seq > (this.#acked.get(router) ?? 0)) this.#acked.set(router, seq);
    for (const w of this.#waiters.values()) {
      if (w.seq <= seq && w.waiting.delete(router) && w.waiting.size === 0) this.#end(w);
    }
  }

  /**
   * Router `router` is relearning this gateway (it asked for a snapshot): what it acked before no
   * longer holds, so later waits wait for its next ack.
   */
  forget(router: string): void {
    this.#acked.delete(router);
  }

  /** Router `router` left or expired: nobody waits for it. */
  gone(router: string): void {
    this.#acked.delete(router);
    for (const w of this.#waiters.values()) {
      if (w.waiting.delete(router) && w.waiting.size === 0) this.#end(w);
    }
  }

  /**
   * Forgets every router and ends every wait (the NATS connection came back: routers relearn
   * this gateway from a snapshot, and the connections that were resuming were told to resume).
   */
  clear(): void {
    this.#acked.clear();
    for (const w of [...this.#waiters.values()]) this.#end(w);
  }

  #end(w: Waiter): void {
    clearTimeout(w.timer);
    this.#waiters.delete(w.seq);
    w.resolve();
  }
}
