/**
 * The hub: which connections of this gateway are logged in as which ids — the article's two ets
 * bags (`id2pid`, `pid2id`), kept lean for a million entries and O(1) for an id shared by
 * 100,000 connections.
 *
 * ```
 *   byId: Map<id, Receiver | Set<Receiver>>   one receiver stored bare, a Set once an id is shared
 *   receiver.ids: id | id[] | null             the reverse mapping lives on the receiver itself
 * ```
 *
 * Login and logout are O(1) per (receiver, id) pair. A delivery iterates the Set of an id; a
 * receiver logged out meanwhile (its write cut it off as a slow consumer, say) is deleted from the
 * Set, which a running `for…of` then skips — removal during a delivery needs no copy. A receiver
 * that closed mid-delivery answers `false` from `push` and is not counted: the article's
 * disconnect race. When a shared id is down to one receiver it goes back to being stored bare;
 * an iteration still running over the old Set sees at most receivers that answer `false`.
 */
import type { Deliverer, GatewayLoad } from '../bus/bus.js';
import type { DisconnectReason } from '../errors.js';
import type { Message } from '../message.js';

/** A connection as the hub sees it. The hub owns `ids`. */
export interface Receiver {
  /**
   * Ids this receiver is logged in as: one string, an array for several, null for none. With
   * several, one send can name two of them (A and a subscriber of A), and the connection must get
   * the message once: such receivers are marked on the Message they were given
   * (`Message.reached`), so a second copy is recognised however many other messages came in
   * between (over NATS each recipient id is a message of its own, and other sends interleave).
   */
  ids: string | string[] | null;
  /** Writes `msg` to the client; false when the receiver is closed or was just cut off. */
  push(msg: Message): boolean;
  /** Ends the connection telling the client why (the numbered reasons). */
  disconnect(reason: DisconnectReason): void;
}

/** Told when an id gets its first local receiver or loses its last (the bus takes interest). */
export interface InterestListener {
  interest(id: string): void;
  disinterest(id: string): void;
}

/** The connection index of one gateway. */
export class Hub implements Deliverer {
  readonly #byId = new Map<string, Receiver | Set<Receiver>>();
  readonly #listener: InterestListener | undefined;
  #logins = 0;
  #receivers = 0;

  constructor(listener?: InterestListener) {
    this.#listener = listener;
  }

  /** Ids with at least one receiver. */
  get ids(): number {
    return this.#byId.size;
  }

  /** (receiver, id) pairs currently held. */
  get logins(): number {
    return this.#logins;
  }

  /** Receivers logged in as at least one id. */
  get receivers(): number {
    return this.#receivers;
  }

  /** What this hub holds (the gateway reports its open sockets instead of receivers). */
  load(): GatewayLoad {
    return { connections: this.#receivers, ids: this.#byId.size };
  }

  /** Logs `r` in as `id`; a second login of the same pair is a no-op. */
  login(id: string, r: Receiver): void {
    const ids = r.ids;
    if (ids === id || (Array.isArray(ids) && ids.includes(id))) return;
    if (ids === null) {
      r.ids = id;
      this.#receivers++;
    } else if (typeof ids === 'string') {
      r.ids = [ids, id];
    } else {
      r.ids = [...ids, id];
    }
    this.#logins++;
    const entry = this.#byId.get(id);
    if (entry === undefined) {
      this.#byId.set(id, r);
      this.#listener?.interest(id);
    } else if (entry instanceof Set) {
      entry.add(r);
    } else {
      this.#byId.set(id, new Set([entry, r]));
    }
  }

  /** Logs `r` out of every id. Safe to call twice and during a delivery. */
  logout(r: Receiver): void {
    const ids = r.ids;
    if (ids === null) return;
    r.ids = null;
    this.#receivers--;
    if (typeof ids === 'string') this.#remove(ids, r);
    else for (const id of ids) this.#remove(id, r);
  }

  #remove(id: string, r: Receiver): void {
    const entry = this.#byId.get(id);
    if (entry === undefined) return;
    if (entry === r) {
      this.#byId.delete(id);
      this.#logins--;
      this.#listener?.disinterest(id);
      return;
    }
    if (!(entry instanceof Set) || !entry.delete(r)) return;
    this.#logins--;
    if (entry.size === 1) this.#byId.set(id, entry.values().next().value as Receiver);
  }

  /** Number of receivers logged in as `id`. */
  count(id: string): number {
    const entry = this.#byId.get(id);
    return entry === undefined ? 0 : entry instanceof Set ? entry.size : 1;
  }

  /** True when some receiver is logged in as `id`. */
  has(id: string): boolean {
    return this.#byId.has(id);
  }

  /** Every receiver logged in as `id` now (a copy: for acting on them, e.g. disconnecting). */
  receiversOf(id: string): Receiver[] {
    const entry = this.#byId.get(id);
    return entry === undefined ? [] : entry instanceof Set ? [...entry] : [entry];
  }

  /** Ends every receiver of `id` with `reason`; returns how many. */
  disconnect(id: string, reason: DisconnectReason): number {
    const all = this.receiversOf(id);
    for (const r of all) r.disconnect(reason);
    return all.length;
  }

  /** Every id with a receiver. */
  heldIds(): Iterable<string> {
    return this.#byId.keys();
  }

  /**
   * Pushes `msg` to every receiver of every id in `recipients`, each receiver at most once.
   * Returns how many receivers took it.
   */
  deliver(msg: Message, recipients: readonly string[]): number {
    let n = 0;
    for (let i = 0; i < recipients.length; i++) {
      const entry = this.#byId.get(recipients[i]!);
      if (entry === undefined) continue;
      if (entry instanceof Set) {
        for (const r of entry) n += push(r, msg);
      } else {
        n += push(entry, msg);
      }
    }
    return n;
  }
}

function push(r: Receiver, msg: Message): number {
  if (Array.isArray(r.ids)) {
    // Weak: a message kept for resume must not keep closed connections alive.
    msg.reached ??= new WeakSet();
    if (msg.reached.has(r)) return 0;
    msg.reached.add(r);
  }
  return r.push(msg) ? 1 : 0;
}
