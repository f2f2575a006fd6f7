/**
 * The registry of logged-in connections on one gateway: the article's two ets bags (`id2pid`,
 * `pid2id`), kept lean for a million entries.
 *
 * ```
 *   byId: Map<id, Receiver | Receiver[]>     one receiver stored bare, an array only when shared
 *   receiver.ids: id | id[] | null            the reverse mapping lives on the receiver itself
 * ```
 *
 * Arrays are copy-on-write: logging a receiver out replaces the array instead of splicing it, so
 * a fan-out that is iterating the old array (and whose write just cut a slow consumer, which logs
 * it out) keeps a consistent view. This closes the article's disconnect race: a receiver that
 * closed mid-delivery answers `false` from `push` and is not counted.
 */
import type { Deliverer, GatewayLoad } from '../bus/bus.js';
import type { Message } from './message.js';

/** Size of the dedupe window of a receiver logged in as several ids. */
const RECENT = 8;

/** A connection as the registry sees it. The registry owns `ids` and `recent`. */
export interface Receiver {
  /** Ids this receiver is logged in as: one string, an array for several, null for none. */
  ids: string | string[] | null;
  /**
   * Last messages pushed, only for receivers logged in as several ids: one send can name two of
   * its ids (A and a subscriber of A), and the connection must get the message once.
   */
  recent: Message[] | null;
  /** Writes `msg` to the client; false when the receiver is closed or was just cut off. */
  push(msg: Message): boolean;
}

/** Told when an id gets its first local receiver or loses its last (the bus takes interest). */
export interface InterestListener {
  interest(id: string): void;
  disinterest(id: string): void;
}

export class Registry implements Deliverer {
  readonly #byId = new Map<string, Receiver | Receiver[]>();
  readonly #listener: InterestListener | undefined;
  #logins = 0;
  /** Open connections of the gateway this registry belongs to (for {@link load}). */
  connections: () => number = () => 0;

  constructor(listener?: InterestListener) {
    this.#listener = listener;
  }

  /** What this gateway holds, announced to the cluster. */
  load(): GatewayLoad {
    return { connections: this.connections(), ids: this.#byId.size };
  }

  /** Ids with at least one receiver. */
  get ids(): number {
    return this.#byId.size;
  }

  /** Logins (receiver, id) pairs currently held. */
  get logins(): number {
    return this.#logins;
  }

  /** Logs `r` in as `id`; a second login of the same pair is a no-op. */
  login(id: string, r: Receiver): void {
    const ids = r.ids;
    if (ids === id || (Array.isArray(ids) && ids.includes(id))) return;
    if (ids === null) {
      r.ids = id;
    } else {
      r.ids = typeof ids === 'string' ? [ids, id] : [...ids, id];
      r.recent ??= [];
    }
    this.#logins++;
    const entry = this.#byId.get(id);
    if (entry === undefined) {
      this.#byId.set(id, r);
      this.#listener?.interest(id);
    } else if (Array.isArray(entry)) {
      this.#byId.set(id, [...entry, r]);
    } else {
      this.#byId.set(id, [entry, r]);
    }
  }

  /** Logs `r` out of every id. Safe to call twice and during a delivery. */
  logout(r: Receiver): void {
    const ids = r.ids;
    if (ids === null) return;
    r.ids = null;
    r.recent = null;
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
    if (!Array.isArray(entry)) return;
    const i = entry.indexOf(r);
    if (i === -1) return;
    this.#logins--;
    if (entry.length === 2) this.#byId.set(id, entry[1 - i]!);
    else
      this.#byId.set(
        id,
        entry.filter((x) => x !== r),
      );
  }

  /** Number of receivers logged in as `id`. */
  count(id: string): number {
    const entry = this.#byId.get(id);
    return entry === undefined ? 0 : Array.isArray(entry) ? entry.length : 1;
  }

  /** True when some receiver is logged in as `id`. */
  has(id: string): boolean {
    return this.#byId.has(id);
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
      if (Array.isArray(entry)) {
        for (let j = 0; j < entry.length; j++) n += push(entry[j]!, msg);
      } else {
        n += push(entry, msg);
      }
    }
    return n;
  }
}

function push(r: Receiver, msg: Message): number {
  const recent = r.recent;
  if (recent !== null) {
    if (recent.includes(msg)) return 0;
    if (recent.length >= RECENT) recent.shift();
    recent.push(msg);
  }
  return r.push(msg) ? 1 : 0;
}
