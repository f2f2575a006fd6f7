/**
 * The subscription store: who is subscribed to whom (the article's `subsmanager`, Mnesia bag
 * with an index on subscribee). A subscription `{subscriber, subscribee}` means: a message sent
 * to `subscribee` also reaches `subscriber`.
 *
 * Implementations: SQLite (default, a file under `--data`) and PostgreSQL (shared by many
 * hosts). Both pass the same contract suite (`test/store-contract.ts`).
 */

/** One subscription: `subscriber` receives what is sent to `subscribee`. */
export interface Subscription {
  readonly subscriber: string;
  readonly subscribee: string;
}

/** Counters a store reports for `/api/stats` and `/metrics`. */
export interface StoreStats {
  readonly subscriptions: number;
}

export interface SubscriptionStore {
  /** `sqlite` or `postgres`. */
  readonly kind: string;
  /** Where the data lives, safe to log (no password). */
  readonly location: string;

  /**
   * Adds subscriptions with set semantics (a pair already present is kept once), all or
   * nothing. Resolves to how many pairs were new.
   */
  addSubscriptions(subs: readonly Subscription[]): Promise<number>;

  /** Removes subscriptions, all or nothing; absent pairs are ignored. Resolves to how many were removed. */
  removeSubscriptions(subs: readonly Subscription[]): Promise<number>;

  /** Everyone subscribed to `user`, in no particular order, each once. */
  getSubscribers(user: string): Promise<string[]>;

  /** Everyone `user` is subscribed to, each once. */
  getSubscriptions(user: string): Promise<string[]>;

  /**
   * The subscribers of `user` in pages of at most `pageSize`, so a user with 100,000 subscribers
   * can be fanned out without one long blocking read. Pages are disjoint and their union is
   * {@link getSubscribers}. Each page is its own read, so the pages are not one snapshot.
   */
  subscriberPages(user: string, pageSize: number): AsyncIterable<string[]>;

  /**
   * Optional fast path: the whole subscriber list of `user` when the store can answer at once
   * (without a turn of the event loop) and it has fewer than `pageSize` entries; `undefined` when
   * it cannot (then use {@link subscriberPages}). As fresh as `subscriberPages`. Must not be mutated.
   */
  subscribersNow?(user: string, pageSize: number): readonly string[] | undefined;

  /**
   * Optional, for a store a round trip away (PostgreSQL): the subscriber lists of many users in
   * one read. The map holds each user (once, however often given) with fewer than `pageSize`
   * subscribers; a user left out has more (then use {@link subscriberPages}). As fresh as
   * `subscriberPages` at the moment of the read.
   */
  subscribersOfMany?(users: readonly string[], pageSize: number): Promise<Map<string, string[]>>;

  /**
   * One page of `user`'s subscribers or subscriptions for a client that pages with a cursor (the
   * HTTP API's `?limit=&after=`): at most `limit` ids after the id `after` (from the start when
   * undefined), in the store's own order, and `next`, the cursor for the following page, or null
   * once this page is short. Each call is its own read (keyset, no offsets).
   */
  listPage(
    direction: 'subscribers' | 'subscriptions',
    user: string,
    after: string | undefined,
    limit: number,
  ): Promise<{ ids: string[]; next: string | null }>;

  stats(): Promise<StoreStats>;

  close(): Promise<void>;
}

/**
 * The loading side of a store, apart from what a serving process uses: only `friends load` needs
 * it. Every store implements both; {@link openStore} returns both.
 */
export interface BulkLoader {
  /**
   * Bulk load: adds every pair from `batches` as fast as the backend allows, with set semantics.
   * All or nothing for the whole load: a bad pair, a failing source, an outage or `close()` leave
   * the store unchanged. Memory stays bounded: by one batch, or by a fixed per-store limit when
   * the store sorts the load in memory (SQLite: `bulkSortPairs`, 16–24 bytes per pair). On SQLite
   * the final write blocks the event loop: bulk loads are for `friends load`, not a serving process.
   */
  bulkLoad(batches: AsyncIterable<readonly Subscription[]>): Promise<{ added: number; seen: number }>;
}

/** A store as `openStore` returns it: serving and loading. */
export type Store = SubscriptionStore & BulkLoader;
