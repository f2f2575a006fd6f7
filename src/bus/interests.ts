/**
 * A gateway's interest subscriptions, one NATS subscription per user id with a local connection.
 *
 * A gateway holds up to ~20,000 of them, so their size matters. The client's public
 * `subscribe()` builds a `SubscriptionImpl`, an async iterator with three promises and their
 * resolver closures even when a callback is given. {@link LeanInterests} registers a plain object
 * with the client's own protocol handler instead, which is all the handler touches
 * (`sid`, `subject`, `queue`, `max`, `received`, `callback`, `close`, `drain`). Heap per interest,
 * subject string and map entries included, 20,000 interests, nats.js 3.4.0, Node 20
 * (`node --expose-gc dist/bench/bus.js --parts heap`): public 1,220 bytes, lean 210. The handler
 * still owns SUB/UNSUB, resubscribes every interest after a reconnect, and drains them on close.
 * Both come from the official client (`@nats-io/transport-node` re-exports nats-core's
 * internals); the shapes used are checked when the table is made, and {@link PublicInterests}
 * (the public API) is the fallback.
 */
import {
  type Msg,
  type NatsConnection,
  NatsConnectionImpl,
  type ProtocolHandler,
  type Subscription,
  type SubscriptionImpl,
} from '@nats-io/transport-node';

/** Receives every message for an interest: its NATS subject and payload. */
export type InterestHandler = (subject: string, data: Uint8Array) => void;

/** The interests of one bus: NATS subject per user id. */
export interface InterestTable {
  /** True when subscriptions are the lean kind. */
  readonly lean: boolean;
  readonly size: number;
  has(id: string): boolean;
  /** Subscribes `subject` for `id`; false when `id` was already there. */
  add(id: string, subject: string): boolean;
  /** Unsubscribes `id`; false when it was not there. */
  remove(id: string): boolean;
}

/**
 * The subscription object the protocol handler sees. No per-id closure: `callback` is a
 * prototype method (the handler calls `sub.callback(err, msg)`), the table is a back-reference.
 */
class LeanSub {
  sid = 0;
  received = 0;
  max: number | undefined = undefined;
  queue: string | undefined = undefined;
  readonly subject: string;
  readonly table: LeanInterests;

  constructor(subject: string, table: LeanInterests) {
    this.subject = subject;
    this.table = table;
  }

  callback(err: Error | null, msg: Msg): void {
    // An error here is a permission violation on this subject; the handler drops the sub.
    if (err === null) this.table.handler(this.subject, msg.data);
  }

  close(): void {
    // Nothing to release: no timers, no promises.
  }

  drain(): Promise<void> {
    this.table.protocol.unsub(this as unknown as SubscriptionImpl);
    return Promise.resolve();
  }
}

/** Interests as {@link LeanSub}s on the client's protocol handler. */
export class LeanInterests implements InterestTable {
  readonly lean = true;
  readonly protocol: ProtocolHandler;
  readonly handler: InterestHandler;
  readonly #subs = new Map<string, LeanSub>();

  constructor(protocol: ProtocolHandler, handler: InterestHandler) {
    this.protocol = protocol;
    this.handler = handler;
  }

  get size(): number {
    return this.#subs.size;
  }

  has(id: string): boolean {
    return this.#subs.has(id);
  }

  add(id: string, subject: string): boolean {
    if (this.#subs.has(id)) return false;
    const sub = new LeanSub(subject, this);
    this.protocol.subscribe(sub as unknown as SubscriptionImpl);
    this.#subs.set(id, sub);
    return true;
  }

  remove(id: string): boolean {
    const sub = this.#subs.get(id);
    if (sub === undefined) return false;
    this.#subs.delete(id);
    if (!this.protocol.isClosed()) this.protocol.unsubscribe(sub as unknown as SubscriptionImpl);
    return true;
  }
}

/** Interests through the public `subscribe()` API, one shared callback. */
export class PublicInterests implements InterestTable {
  readonly lean = false;
  readonly #nc: NatsConnection;
  readonly #subs = new Map<string, Subscription>();
  readonly #callback: (err: Error | null, msg: Msg) => void;

  constructor(nc: NatsConnection, handler: InterestHandler) {
    this.#nc = nc;
    this.#callback = (err, msg) => {
      if (err === null) handler(msg.subject, msg.data);
    };
  }

  get size(): number {
    return this.#subs.size;
  }

  has(id: string): boolean {
    return this.#subs.has(id);
  }

  add(id: string, subject: string): boolean {
    if (this.#subs.has(id)) return false;
    this.#subs.set(id, this.#nc.subscribe(subject, { callback: this.#callback }));
    return true;
  }

  remove(id: string): boolean {
    const sub = this.#subs.get(id);
    if (sub === undefined) return false;
    this.#subs.delete(id);
    if (!this.#nc.isClosed()) sub.unsubscribe();
    return true;
  }
}

/** The protocol handler of `nc`, when it has the shape {@link LeanInterests} relies on. */
function leanProtocol(nc: NatsConnection): ProtocolHandler | undefined {
  if (!(nc instanceof NatsConnectionImpl)) return undefined;
  const ph = nc.protocol;
  const ok =
    typeof ph?.subscribe === 'function' &&
    typeof ph.unsubscribe === 'function' &&
    typeof ph.unsub === 'function' &&
    typeof ph.isClosed === 'function' &&
    typeof ph.subscriptions?.get === 'function';
  return ok ? ph : undefined;
}

/** Lean interests when `preferLean` and the client allows it, public ones otherwise. */
export function createInterests(
  nc: NatsConnection,
  handler: InterestHandler,
  preferLean: boolean,
): InterestTable {
  const ph = preferLean ? leanProtocol(nc) : undefined;
  return ph === undefined ? new PublicInterests(nc, handler) : new LeanInterests(ph, handler);
}
