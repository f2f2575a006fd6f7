/**
 * Which gateways (or routers) are alive, as one bus instance sees them. Gateways announce themselves on `<prefix>.gw.hb` (`hb <id>` every heartbeat period and in
 * answer to a router's `who`, `bye <id>` on close); one not heard from for `timeoutMs` is gone.
 *
 * Expiry is careful about this process's own stalls: time in which the event loop was blocked
 * is not counted against anyone (heartbeats were likely waiting unread in the socket), and the
 * expiry check runs after the event loop has polled for I/O once more.
 */
import type { Logger } from '../log.js';
import type { GatewayLoad } from './bus.js';
import { type Announcement, decodeAnnouncement } from './nats-codec.js';

/** The live gateways, by id, with the time each was last heard from. */
export class Membership {
  readonly timeoutMs: number;
  readonly #lastSeen = new Map<string, number>();
  /** The load each live gateway last announced. */
  readonly #load = new Map<string, GatewayLoad>();
  readonly #log: Logger;
  readonly #gone: (id: string, expired: boolean) => void;

  readonly #what: string;

  /**
   * `gone` is called for every member that says bye (`expired` false) or expires (true); `what`
   * names members in logs.
   */
  constructor(
    timeoutMs: number,
    log: Logger,
    gone: (id: string, expired: boolean) => void,
    what = 'gateway',
  ) {
    this.timeoutMs = timeoutMs;
    this.#log = log;
    this.#gone = gone;
    this.#what = what;
  }

  /** Handles an announcement payload and returns it; throws `WireFormatError` when it is not one. */
  hear(data: Uint8Array, now: number): Announcement {
    const a = decodeAnnouncement(data);
    if (a.kind === 'hb') {
      if (this.seen(a.gatewayId, now)) this.#log.debug(`${this.#what} joined`, { id: a.gatewayId });
      this.#load.set(a.gatewayId, { connections: a.connections, ids: a.ids });
    } else if (this.#forget(a.gatewayId)) {
      this.#log.debug(`${this.#what} left`, { id: a.gatewayId });
      this.#gone(a.gatewayId, false);
    }
    return a;
  }

  /** Records a sign of life (heartbeat or tally answer); true when `id` was not known. */
  seen(id: string, now: number): boolean {
    const known = this.#lastSeen.has(id);
    this.#lastSeen.set(id, now);
    return !known;
  }

  /**
   * Periodic: expires the gateways not heard from for longer than `timeoutMs`. `stalledMs` is how
   * much later than planned this call runs; that much time is forgiven to every gateway.
   */
  sweep(stalledMs: number, isClosed: () => boolean): void {
    if (stalledMs > 0) {
      for (const [id, at] of this.#lastSeen) this.#lastSeen.set(id, at + stalledMs);
    }
    // In the check phase, after this turn has read whatever heartbeats arrived.
    setImmediate(() => {
      if (isClosed()) return;
      const now = Date.now();
      for (const [id, at] of this.#lastSeen) {
        if (now - at <= this.timeoutMs) continue;
        this.#forget(id);
        this.#log.info(`${this.#what} expired (no heartbeat)`, { id, silentMs: now - at });
        this.#gone(id, true);
      }
    });
  }

  #forget(id: string): boolean {
    this.#load.delete(id);
    return this.#lastSeen.delete(id);
  }

  /** Forgets everyone (after a reconnect membership is relearned). */
  clear(): void {
    this.#lastSeen.clear();
    this.#load.clear();
  }

  /** The summed load of the live gateways, as they last announced it. */
  load(): GatewayLoad {
    let connections = 0;
    let ids = 0;
    for (const l of this.#load.values()) {
      connections += l.connections;
      ids += l.ids;
    }
    return { connections, ids };
  }

  /** Each live gateway's load, as it last announced it. */
  loads(): Record<string, GatewayLoad> {
    return Object.fromEntries(this.#load);
  }

  has(id: string): boolean {
    return this.#lastSeen.has(id);
  }

  get size(): number {
    return this.#lastSeen.size;
  }

  ids(): IterableIterator<string> {
    return this.#lastSeen.keys();
  }
}
