/**
 * The default subscription store: one SQLite file (better-sqlite3), no server to run.
 *
 * Layout (schema version 2, created and upgraded by {@link migrate} at open, never by hand):
 *
 *     subscriptions (subscribee, subscriber)                PRIMARY KEY, WITHOUT ROWID  -> getSubscribers
 *     subscriptions_by_subscriber (subscriber, subscribee)  PRIMARY KEY, WITHOUT ROWID  -> getSubscriptions
 *     counters ('subscriptions', n)  kept in the same transaction as every write -> stats() is one row read
 *
 * The two subscription tables hold the same pairs in the two key orders; every write changes both
 * in one transaction. (Version 1 had an index on `subscriptions (subscriber)` instead, about the
 * same bytes on disk, but a bulk load then had to build the index with a sort of every row, where
 * a second table can be written in key order, or copied record by record; see sqlite-bulk-load.ts.
 * Processes sharing a file must run the same schema version: an older build writing a version 2
 * file would update one key order only. Older builds refuse a newer file at open.)
 *
 * Ids: a canonical decimal id is stored as an INTEGER, any other as TEXT (see sqlite-encoding.ts).
 * An interned `users` table (ids mapped to integers) was measured as well: its file is about as
 * small, but loads were 1.3x slower and p99 reads 40x slower, since every read joins back to names.
 *
 * Durability: WAL with `synchronous=NORMAL`. A committed write survives a crash of the process; a
 * power loss or OS crash may lose the last transactions committed before it (never corrupts the file).
 *
 * better-sqlite3 is synchronous, so every call here runs to completion on the event loop. Reads are
 * therefore cut into short keyset pages (`subscriber > last ORDER BY subscriber LIMIT n`), each its
 * own statement, with a `setImmediate` turn between pages; no cursor stays open across an await.
 */
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { ClosedError, ConfigError, errorMessage, InternalError, UnavailableError } from '../errors.js';
import { validateId } from '../ids.js';
import { type Logger, silentLogger } from '../log.js';
import { bulkLoad, insertFlat, ROWS_PER_INSERT } from './sqlite-bulk-load.js';
import { type BoundId, decodeId, encodeId, encodePairs, insertPairsSql } from './sqlite-encoding.js';
import type { BulkLoader, StoreStats, Subscription, SubscriptionStore } from './store.js';
import { READ_PAGE_SIZE, validatePageSize, validateUser } from './subscription-input.js';

/** Options for {@link SqliteStore.open}. */
export interface SqliteStoreOptions {
  readonly logger?: Logger;
  /** How long a write waits for another process's write lock before failing, ms. Default 5000. */
  readonly busyTimeoutMs?: number;
  /** SQLite page cache for normal operation, KiB. Default 32 MiB. */
  readonly cacheKiB?: number;
  /** Page cache while {@link SqliteStore.bulkLoad} writes its sorted rows, KiB. Default 64 MiB. */
  readonly bulkCacheKiB?: number;
  /**
   * Most pairs a bulk load sorts in memory, when all its ids are numbers below 2^32: 16 bytes per
   * pair at the peak (24 when the load is not symmetric). A bigger load, or one with other ids, is
   * staged in a temp file and sorted by SQLite instead (about 2x slower). 0 always stages.
   * Default 2^26 (67M pairs, about 1 GiB at the peak).
   */
  readonly bulkSortPairs?: number;
  /**
   * Subscriber ids kept in the subscriber-list cache (see {@link SqliteStore}), summed over the ids
   * cached; 0 turns the cache off. Default 1,000,000 (about 30 MB at the most).
   */
  readonly subscriberCacheIds?: number;
}

const DEFAULT_BUSY_TIMEOUT_MS = 5000;
const DEFAULT_SUBSCRIBER_CACHE_IDS = 1_000_000;
/** Shared by every cached id without subscribers. */
const NO_SUBSCRIBERS: string[] = [];
const DEFAULT_CACHE_KIB = 32 * 1024;
const DEFAULT_BULK_CACHE_KIB = 64 * 1024;
const DEFAULT_BULK_SORT_PAIRS = 2 ** 26;

/** SQLite result codes meaning the file cannot serve now (locked too long, disk full or failing). */
const UNAVAILABLE_SQLITE_CODE = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|PROTOCOL)/;

/**
 * Schema migrations, applied in order; `PRAGMA user_version` records how many have run. Append
 * only: a published step is never edited.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE subscriptions (
     subscribee ANY NOT NULL,
     subscriber ANY NOT NULL,
     PRIMARY KEY (subscribee, subscriber)
   ) STRICT, WITHOUT ROWID;
   CREATE INDEX subscriptions_by_subscriber ON subscriptions (subscriber);
   CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT, WITHOUT ROWID;
   INSERT INTO counters (name, value) VALUES ('subscriptions', 0);`,
  // The index becomes a table. Copied in index order (no sort): about 0.5 s per million rows.
  `CREATE TABLE subscriptions_by_subscriber_v2 (
     subscriber ANY NOT NULL,
     subscribee ANY NOT NULL,
     PRIMARY KEY (subscriber, subscribee)
   ) STRICT, WITHOUT ROWID;
   INSERT INTO subscriptions_by_subscriber_v2 (subscriber, subscribee)
     SELECT subscriber, subscribee FROM subscriptions INDEXED BY subscriptions_by_subscriber
     ORDER BY subscriber, subscribee;
   DROP INDEX subscriptions_by_subscriber;
   ALTER TABLE subscriptions_by_subscriber_v2 RENAME TO subscriptions_by_subscriber;`,
];

/** The schema version this build writes. */
export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length;

type Statement = Database.Statement<unknown[], unknown>;

/** Prepared statements, made once per connection. `…Er` ones write `subscriptions_by_subscriber`. */
interface Statements {
  readonly insertOne: Statement;
  readonly insertMany: Statement;
  readonly insertOneEr: Statement;
  readonly insertManyEr: Statement;
  readonly deleteOne: Statement;
  readonly deleteOneEr: Statement;
  readonly subscribersFirst: Statement;
  readonly subscribersAfter: Statement;
  readonly subscriptionsFirst: Statement;
  readonly subscriptionsAfter: Statement;
  readonly count: Statement;
  readonly addCount: Statement;
  readonly dataVersion: Statement;
}

/** Throws (rolling the transaction back) when the two key orders did not change alike: a damaged file. */
function sameChanges(what: string, n: number, nEr: number): number {
  if (n !== nEr) throw new InternalError(`${what} changed ${n} subscriptions but ${nEr} rows by subscriber`);
  return n;
}

/** Which way a paged read goes. */
type Direction = 'subscribers' | 'subscriptions';

/** {@link SubscriptionStore} on a SQLite file. Open with {@link SqliteStore.open}. */
export class SqliteStore implements SubscriptionStore, BulkLoader {
  readonly kind = 'sqlite';
  readonly location: string;
  readonly #db: Database.Database;
  readonly #st: Statements;
  readonly #log: Logger;
  readonly #cacheKiB: number;
  readonly #bulkCacheKiB: number;
  readonly #bulkSortPairs: number;
  /** Inserts encoded pairs in one transaction, updates the counter, returns how many were new. */
  readonly #insertTx: (pairs: readonly BoundId[]) => number;
  /** Deletes encoded pairs in one transaction, updates the counter, returns how many were removed. */
  readonly #removeTx: (pairs: readonly BoundId[]) => number;
  #closed = false;
  #stageSeq = 0;
  /**
   * Subscriber lists of ids whose whole list fits in one page, as read this event-loop turn: a
   * send to an id with no (or few) subscribers needs no read of the file, which costs a query and
   * two lock syscalls each time. Fresh as of the start of each turn: the first read of a turn asks
   * SQLite for `data_version`, which changes when another process (another connection) committed,
   * and then the cache starts over; this process's own changes drop the ids they touch at once.
   */
  readonly #subscribers = new Map<string, string[]>();
  readonly #maxCachedIds: number;
  #cachedIds = 0;
  #dataVersion: unknown = undefined;
  #checkedThisTurn = false;

  private constructor(location: string, db: Database.Database, options: SqliteStoreOptions) {
    this.location = location;
    this.#db = db;
    this.#log = options.logger ?? silentLogger;
    this.#cacheKiB = options.cacheKiB ?? DEFAULT_CACHE_KIB;
    this.#bulkCacheKiB = options.bulkCacheKiB ?? DEFAULT_BULK_CACHE_KIB;
    this.#bulkSortPairs = options.bulkSortPairs ?? DEFAULT_BULK_SORT_PAIRS;
    this.#maxCachedIds = options.subscriberCacheIds ?? DEFAULT_SUBSCRIBER_CACHE_IDS;
    const p = (sql: string): Statement => db.prepare(sql);
    this.#st = {
      insertOne: p(insertPairsSql('INSERT OR IGNORE', 'subscriptions', 1)),
      insertMany: p(insertPairsSql('INSERT OR IGNORE', 'subscriptions', ROWS_PER_INSERT)),
      insertOneEr: p(insertPairsSql('INSERT OR IGNORE', 'subscriptions_by_subscriber', 1)),
      insertManyEr: p(insertPairsSql('INSERT OR IGNORE', 'subscriptions_by_subscriber', ROWS_PER_INSERT)),
      deleteOne: p('DELETE FROM subscriptions WHERE subscribee = ? AND subscriber = ?'),
      deleteOneEr: p('DELETE FROM subscriptions_by_subscriber WHERE subscribee = ? AND subscriber = ?'),
      subscribersFirst: p(
        'SELECT subscriber FROM subscriptions WHERE subscribee = ? ORDER BY subscriber LIMIT ?',
      ).pluck(),
      subscribersAfter: p(
        'SELECT subscriber FROM subscriptions WHERE subscribee = ? AND subscriber > ? ORDER BY subscriber LIMIT ?',
      ).pluck(),
      subscriptionsFirst: p(
        'SELECT subscribee FROM subscriptions_by_subscriber WHERE subscriber = ? ORDER BY subscribee LIMIT ?',
      ).pluck(),
      subscriptionsAfter: p(
        'SELECT subscribee FROM subscriptions_by_subscriber WHERE subscriber = ? AND subscribee > ? ORDER BY subscribee LIMIT ?',
      ).pluck(),
      count: p(`SELECT value FROM counters WHERE name = 'subscriptions'`).pluck(),
      dataVersion: p('PRAGMA data_version').pluck(),
      addCount: p(`UPDATE counters SET value = value + ? WHERE name = 'subscriptions'`),
    };
    const st = this.#st;
    this.#insertTx = db.transaction((pairs: readonly BoundId[]): number => {
      const added = sameChanges(
        'adding',
        insertFlat(pairs, st.insertMany, st.insertOne),
        insertFlat(pairs, st.insertManyEr, st.insertOneEr),
      );
      if (added > 0) st.addCount.run(added);
      return added;
    });
    this.#removeTx = db.transaction((pairs: readonly BoundId[]): number => {
      let removed = 0;
      let removedEr = 0;
      for (let i = 0; i < pairs.length; i += 2) {
        removed += st.deleteOne.run(pairs[i], pairs[i + 1]).changes;
        removedEr += st.deleteOneEr.run(pairs[i], pairs[i + 1]).changes;
      }
      sameChanges('removing', removed, removedEr);
      if (removed > 0) st.addCount.run(-removed);
      return removed;
    });
  }

  /**
   * Opens (creating if needed) the SQLite file at `file`, or a private in-memory database for
   * `':memory:'`, and brings its schema up to date. The parent folder must exist.
   */
  static async open(file: string, options: SqliteStoreOptions = {}): Promise<SqliteStore> {
    const log = options.logger ?? silentLogger;
    let db: Database.Database;
    try {
      db = new Database(file, { timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
    } catch (err) {
      throw new UnavailableError(`cannot open SQLite store ${file}: ${errorMessage(err)}`, { cause: err });
    }
    try {
      await enableWal(db, options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS);
      db.pragma('synchronous = NORMAL');
      db.pragma(`cache_size = -${options.cacheKiB ?? DEFAULT_CACHE_KIB}`);
      // Bulk-load staging and big sorts spill to a temp file, not RAM: memory stays bounded.
      db.pragma('temp_store = FILE');
      // After a checkpoint, shrink a WAL that a bulk load grew to hundreds of MB.
      db.pragma('journal_size_limit = 67108864');
      migrate(db, log);
      return new SqliteStore(file, db, options);
    } catch (err) {
      db.close();
      throw translate(err, file, 'opening');
    }
  }

  #check(): void {
    if (this.#closed) throw new ClosedError(`SQLite store ${this.location} is closed`);
  }

  /** Runs `op`; a locked, full or failing file becomes {@link UnavailableError} (HTTP 503). */
  #guard<T>(what: string, op: () => T): T {
    try {
      return op();
    } catch (err) {
      throw translate(err, this.location, what);
    }
  }

  async addSubscriptions(subs: readonly Subscription[]): Promise<number> {
    this.#check();
    const pairs = encodePairs(subs);
    try {
      return this.#guard('adding subscriptions', () => this.#insertTx(pairs));
    } finally {
      this.#forget(subs);
    }
  }

  async removeSubscriptions(subs: readonly Subscription[]): Promise<number> {
    this.#check();
    const pairs = encodePairs(subs);
    try {
      return this.#guard('removing subscriptions', () => this.#removeTx(pairs));
    } finally {
      this.#forget(subs);
    }
  }

  /** Drops the cached lists of the subscribees of `subs` (this process changed them). */
  #forget(subs: readonly Subscription[]): void {
    for (const s of subs) this.#uncache(s.subscribee);
  }

  #uncache(user: string): void {
    const list = this.#subscribers.get(user);
    if (list === undefined) return;
    this.#subscribers.delete(user);
    this.#cachedIds -= list.length + 1;
  }

  #clearCache(): void {
    this.#subscribers.clear();
    this.#cachedIds = 0;
  }

  /**
   * The cached list of `user`, fresh as of this turn (see #subscribers), or undefined when it is
   * not cached or the cache is off.
   */
  #cached(user: string): string[] | undefined {
    if (this.#maxCachedIds === 0) return undefined;
    if (!this.#checkedThisTurn) {
      this.#checkedThisTurn = true;
      setImmediate(() => {
        this.#checkedThisTurn = false;
      });
      const version = this.#guard('reading the data version', () => this.#st.dataVersion.get());
      if (version !== this.#dataVersion) {
        this.#dataVersion = version;
        this.#clearCache();
      }
    }
    return this.#subscribers.get(user);
  }

  #cache(user: string, list: string[]): void {
    if (this.#maxCachedIds === 0) return;
    this.#subscribers.set(user, list.length === 0 ? NO_SUBSCRIBERS : list);
    this.#cachedIds += list.length + 1;
    // The oldest entries go first (a Map keeps insertion order).
    for (const old of this.#subscribers.keys()) {
      if (this.#cachedIds <= this.#maxCachedIds) break;
      this.#uncache(old);
    }
  }

  async getSubscribers(user: string): Promise<string[]> {
    return this.#collect('subscribers', user);
  }

  async getSubscriptions(user: string): Promise<string[]> {
    return this.#collect('subscriptions', user);
  }

  /** All of `user`'s rows one way, read page by page with an event-loop turn between pages. */
  async #collect(direction: Direction, user: string): Promise<string[]> {
    this.#check();
    const id = encodeId(validateUser(user))!;
    const first = this.#page(direction, id, undefined, READ_PAGE_SIZE);
    // Most users fit in one page: answer without an extra turn.
    if (first.length < READ_PAGE_SIZE) return first.map(decodeId);
    const out = first.map(decodeId);
    let last: unknown = first[first.length - 1];
    for (;;) {
      await nextTurn();
      this.#check();
      const page = this.#page(direction, id, last, READ_PAGE_SIZE);
      for (const v of page) out.push(decodeId(v));
      if (page.length < READ_PAGE_SIZE) return out;
      last = page[page.length - 1];
    }
  }

  /** One keyset page: the raw stored values after `after` (all from the start when undefined). */
  #page(direction: Direction, id: BoundId, after: unknown, limit: number): unknown[] {
    return this.#guard(`reading ${direction}`, () => this.#pageQuery(direction, id, after, limit));
  }

  #pageQuery(direction: Direction, id: BoundId, after: unknown, limit: number): unknown[] {
    const st = this.#st;
    if (direction === 'subscribers') {
      return after === undefined
        ? st.subscribersFirst.all(id, limit)
        : st.subscribersAfter.all(id, after, limit);
    }
    return after === undefined
      ? st.subscriptionsFirst.all(id, limit)
      : st.subscriptionsAfter.all(id, after, limit);
  }

  async listPage(
    direction: Direction,
    user: string,
    after: string | undefined,
    limit: number,
  ): Promise<{ ids: string[]; next: string | null }> {
    this.#check();
    const id = encodeId(validateUser(user))!;
    const size = validatePageSize(limit);
    // The cursor is an id as returned; encoded, it is the stored key the keyset continues from.
    const from = after === undefined ? undefined : encodeId(validateId(after, 'after'));
    const page = this.#page(direction, id, from, size);
    const ids = page.map(decodeId);
    return { ids, next: ids.length === size ? ids[ids.length - 1]! : null };
  }

  subscribersNow(user: string, pageSize: number): readonly string[] | undefined {
    this.#check();
    const valid = validateUser(user);
    const size = validatePageSize(pageSize);
    const hit = this.#cached(valid);
    if (hit !== undefined) return hit.length < size ? hit : undefined;
    const page = this.#page('subscribers', encodeId(valid)!, undefined, size);
    if (page.length >= size) return undefined;
    const ids = page.map(decodeId);
    this.#cache(valid, ids);
    return ids;
  }

  async *subscriberPages(user: string, pageSize: number): AsyncIterable<string[]> {
    this.#check();
    const valid = validateUser(user);
    const size = validatePageSize(pageSize);
    const hit = this.#cached(valid);
    if (hit !== undefined && hit.length < size) {
      // A copy: the cached list is shared, and a page is the caller's to keep or change.
      if (hit.length > 0) yield hit.slice();
      return;
    }
    const id = encodeId(valid)!;
    let last: unknown;
    for (let first = true; ; first = false) {
      this.#check();
      const page = this.#page('subscribers', id, last, size);
      const ids = page.map(decodeId);
      // The whole list in one page, read this turn: cache it (no await between read and cache).
      if (first && page.length < size) this.#cache(valid, ids);
      if (ids.length > 0) yield ids;
      if (page.length < size) return;
      last = page[page.length - 1];
    }
  }

  /**
   * Loads every pair of `batches` in one transaction (all or nothing), writing both key orders
   * in key order: sorted in memory when every id is a number below 2^32 and the load has at most
   * `bulkSortPairs` pairs (`friends load` of 30M pairs: 480 MB of keys, 646 MB peak RSS for the
   * whole process), else staged in a TEMP table and sorted by SQLite. See sqlite-bulk-load.ts. The
   * final merge blocks the event loop (seconds for millions of pairs): bulk loads are for
   * `friends load`, not a serving process. Other processes keep reading the previous snapshot
   * meanwhile (WAL).
   */
  async bulkLoad(batches: AsyncIterable<readonly Subscription[]>): Promise<{ added: number; seen: number }> {
    this.#check();
    try {
      return await this.#bulk(batches);
    } finally {
      // Lists cached before or while the load ran are from before it.
      this.#clearCache();
    }
  }

  #bulk(batches: AsyncIterable<readonly Subscription[]>): Promise<{ added: number; seen: number }> {
    return bulkLoad(
      {
        db: this.#db,
        log: this.#log,
        check: () => this.#check(),
        guard: (what, op) => this.#guard(what, op),
        cacheKiB: this.#cacheKiB,
        bulkCacheKiB: this.#bulkCacheKiB,
        sortPairs: this.#bulkSortPairs,
        stageName: `bulk_stage_${process.pid}_${++this.#stageSeq}`,
      },
      batches,
    );
  }

  /** Reads the exact count kept in `counters` (one row), never `COUNT(*)` over the table. */
  async stats(): Promise<StoreStats> {
    this.#check();
    return { subscriptions: Number(this.#guard('reading stats', () => this.#st.count.get()) ?? 0) };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}

/**
 * `err` as {@link UnavailableError} when it says the file cannot serve now, as
 * {@link ConfigError} naming the file when it is not a (sound) SQLite database, else unchanged.
 */
function translate(err: unknown, location: string, what: string): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new ConfigError(
      `SQLite store ${location} is not a sound SQLite database (${code}, ${what}): restore it from a backup or move it away`,
      { cause: err },
    );
  }
  if (typeof code === 'string' && UNAVAILABLE_SQLITE_CODE.test(code)) {
    return new UnavailableError(`SQLite store ${location} is unavailable (${what}): ${errorMessage(err)}`, {
      cause: err,
    });
  }
  return err;
}

/**
 * Brings the schema to {@link SQLITE_SCHEMA_VERSION} inside one `BEGIN IMMEDIATE` transaction, so
 * two processes opening a new file at once do not both create it (the second waits, then sees the
 * version the first wrote).
 */
/**
 * Switches the file to WAL. On a new file that another connection is writing (two processes
 * opening it together), SQLite answers SQLITE_BUSY at once instead of calling the busy handler,
 * since waiting there could deadlock: retry, with a short pause, until the busy timeout.
 */
async function enableWal(db: Database.Database, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'SQLITE_BUSY' || performance.now() >= deadline) throw err;
      await sleep(25);
    }
  }
}

function migrate(db: Database.Database, log: Logger): void {
  db.transaction(() => {
    const version = Number(db.pragma('user_version', { simple: true }));
    if (version > MIGRATIONS.length) {
      throw new ConfigError(
        `SQLite store ${db.name} has schema version ${version}, newer than this build knows (${MIGRATIONS.length}); upgrade Switchboard`,
      );
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      log.info('migrating SQLite store', { file: db.name, from: v, to: v + 1 });
      db.exec(MIGRATIONS[v]!);
    }
    if (version !== MIGRATIONS.length) db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}
