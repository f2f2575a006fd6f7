/**
 * A store opened on first use. A gateway of a cluster reads the store only when a client resumes
 * (the ids it subscribes to), and the article's `/test` streams never do; opening SQLite at start
 * cost every gateway its driver and a connection (about 0.75 MB private each on Node 24, 53
 * gateways at a million). The URL's form is checked at start, by the caller; the open itself, and
 * any error it has, happen at the first call, and a failed open is tried again at the next.
 */
import { ClosedError } from '../errors.js';
import type { StoreStats, Subscription, SubscriptionStore } from './store.js';

export class LazyStore implements SubscriptionStore {
  readonly kind: string;
  readonly location: string;
  readonly #open: () => Promise<SubscriptionStore>;
  #store: Promise<SubscriptionStore> | undefined = undefined;
  #closed = false;

  constructor(kind: string, location: string, open: () => Promise<SubscriptionStore>) {
    this.kind = kind;
    this.location = location;
    this.#open = open;
  }

  /** True once the first call opened (or began to open) the store. */
  get opened(): boolean {
    return this.#store !== undefined;
  }

  #get(): Promise<SubscriptionStore> {
    if (this.#closed) return Promise.reject(new ClosedError(`store ${this.location} is closed`));
    this.#store ??= this.#open().catch((err: unknown) => {
      this.#store = undefined;
      throw err;
    });
    return this.#store;
  }

  async addSubscriptions(subs: readonly Subscription[]): Promise<number> {
    return (await this.#get()).addSubscriptions(subs);
  }

  async removeSubscriptions(subs: readonly Subscription[]): Promise<number> {
    return (await this.#get()).removeSubscriptions(subs);
  }

  async getSubscribers(user: string): Promise<string[]> {
    return (await this.#get()).getSubscribers(user);
  }

  async getSubscriptions(user: string): Promise<string[]> {
    return (await this.#get()).getSubscriptions(user);
  }

  async *subscriberPages(user: string, pageSize: number): AsyncIterable<string[]> {
    yield* (await this.#get()).subscriberPages(user, pageSize);
  }

  async listPage(
    direction: 'subscribers' | 'subscriptions',
    user: string,
    after: string | undefined,
    limit: number,
  ): Promise<{ ids: string[]; next: string | null }> {
    return (await this.#get()).listPage(direction, user, after, limit);
  }

  async stats(): Promise<StoreStats> {
    return (await this.#get()).stats();
  }

  async close(): Promise<void> {
    this.#closed = true;
    const store = await this.#store?.catch(() => undefined);
    await store?.close();
  }
}
