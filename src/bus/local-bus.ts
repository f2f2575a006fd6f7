/**
 * The in-process bus: router and gateway share one process, so "publishing" is a direct call into
 * the gateway's registry. Interest is tracked only for stats; delivery already goes only to ids
 * with local connections.
 */
import { ClosedError, ConfigError } from '../errors.js';
import type { Message } from '../message.js';
import type { Bus, BusStats, BusStatusListener, Deliverer, PublishOutcome } from './bus.js';

export class LocalBus implements Bus {
  readonly kind = 'local';
  #deliverer: Deliverer | undefined;
  #interests = 0;
  #published = 0;
  #received = 0;
  #closed = false;

  get connected(): boolean {
    return !this.#closed;
  }

  attach(deliverer: Deliverer): void {
    if (this.#deliverer !== undefined) throw new ConfigError('a deliverer is already attached to this bus');
    this.#deliverer = deliverer;
  }

  interest(_id: string): void {
    this.#interests++;
  }

  disinterest(_id: string): void {
    this.#interests--;
  }

  publish(msg: Message, recipients: readonly string[]): Promise<number> {
    if (this.#closed) return Promise.reject(new ClosedError('the bus is closed'));
    this.#published += recipients.length;
    if (this.#deliverer === undefined) return Promise.resolve(0);
    this.#received += recipients.length;
    try {
      return Promise.resolve(this.#deliverer.deliver(msg, recipients));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  publishDetailed(msg: Message, recipients: readonly string[]): Promise<PublishOutcome> {
    return this.publish(msg, recipients).then((delivered) => ({ delivered, complete: true }));
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
