/**
 * The in-process bus: router and gateway share one process, so "publishing" is a direct call into
 * the gateway's hub, presence is the hub's own count, and an id's first login and last logout are
 * its presence changes.
 */
import { ClosedError, ConfigError, type DisconnectReason } from '../errors.js';
import type { Message } from '../message.js';
import type {
  Bus,
  BusStats,
  BusStatusListener,
  Deliverer,
  PresenceChange,
  PresenceCounts,
  PublishOutcome,
} from './bus.js';

export class LocalBus implements Bus {
  readonly kind = 'local';
  #deliverer: Deliverer | undefined;
  #interests = 0;
  #published = 0;
  #received = 0;
  #closed = false;
  readonly #presence: ((changes: readonly PresenceChange[]) => void)[] = [];

  get connected(): boolean {
    return !this.#closed;
  }

  attach(deliverer: Deliverer): void {
    if (this.#deliverer !== undefined) throw new ConfigError('a deliverer is already attached to this bus');
    this.#deliverer = deliverer;
  }

  interest(id: string): void {
    this.#interests++;
    this.#change(id, true);
  }

  disinterest(id: string): void {
    this.#interests--;
    this.#change(id, false);
  }

  #change(id: string, online: boolean): void {
    if (this.#presence.length === 0 || this.#closed) return;
    const changes = [{ id, online, at: Date.now() }];
    for (const listener of this.#presence) listener(changes);
  }

  publish(msg: Message, recipients: readonly string[]): Promise<PublishOutcome> {
    try {
      return Promise.resolve(this.publishNow(msg, recipients));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  publishNow(msg: Message, recipients: readonly string[]): PublishOutcome {
    if (this.#closed) throw new ClosedError('the bus is closed');
    this.#published += recipients.length;
    if (this.#deliverer === undefined) return { delivered: 0, complete: true };
    this.#received += recipients.length;
    return { delivered: this.#deliverer.deliver(msg, recipients), complete: true };
  }

  presence(ids: readonly string[]): Promise<PresenceCounts> {
    if (this.#closed) return Promise.reject(new ClosedError('the bus is closed'));
    const counts = new Map<string, number>();
    for (const id of ids) counts.set(id, this.#deliverer?.count(id) ?? 0);
    return Promise.resolve({ counts, complete: true });
  }

  disconnect(id: string, reason: DisconnectReason): Promise<{ disconnected: number; complete: boolean }> {
    if (this.#closed) return Promise.reject(new ClosedError('the bus is closed'));
    return Promise.resolve({ disconnected: this.#deliverer?.disconnect(id, reason) ?? 0, complete: true });
  }

  onPresence(listener: (changes: readonly PresenceChange[]) => void): void {
    this.#presence.push(listener);
  }

  onStatus(_listener: BusStatusListener): void {
    // The in-process bus never goes down while open.
  }

  stats(): BusStats {
    return {
      gateways: this.#deliverer === undefined ? 0 : 1,
      published: this.#published,
      received: this.#received,
      cluster: this.#deliverer?.load() ?? { connections: 0, ids: 0 },
      partialPublishes: 0,
    };
  }

  /** Ids with local interest (for tests and stats). */
  get interests(): number {
    return this.#interests;
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}
