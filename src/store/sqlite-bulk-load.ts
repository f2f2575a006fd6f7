/**
 * Bulk loads for the SQLite store. A load is one transaction (all or nothing) that writes both
 * key orders, `subscriptions (subscribee, subscriber)` and `subscriptions_by_subscriber
 * (subscriber, subscribee)`, each in key order. Two ways to get the rows sorted:
 *
 *  - **In memory** (the friends graph: every id a small number). Pairs are collected as 64-bit
 *    keys in typed arrays (sqlite-pair-keys.ts), sorted and deduplicated in JS, and inserted in key
 *    order, so SQLite sorts nothing. When the load is symmetric (every `a→b` has its `b→a`: a
 *    mutual friends load) and the store was empty, `subscriptions_by_subscriber` holds exactly
 *    the rows of `subscriptions` (with the column roles swapped), in the same key order, and is
 *    filled by one `INSERT … SELECT *` that SQLite runs as a raw record copy (0.2 µs a row,
 *    against 0.5 µs for a row bound from JS). The 30M-pair mutual friends load took 80 s with
 *    SQLite sorting (twice: table and index) and takes 40–42 s this way on a 2-core box: 10–13 s
 *    reading the file, 3 s sorting, 2 s checking symmetry, 14–16 s inserting, 5.5–6.5 s copying.
 *  - **Staged** (any other id, or a load bigger than the in-memory limit): every batch goes to a
 *    TEMP table (a temp file, memory stays bounded), then both tables are filled from it with
 *    `INSERT OR IGNORE … SELECT … ORDER BY`, which SQLite sorts.
 *
 * A load starts in memory and switches to staged (moving what it collected) the first time a
 * batch has an id that is not a small number or the limit would be passed.
 */
import { availableParallelism } from 'node:os';
import type Database from 'better-sqlite3';
import { InternalError } from '../errors.js';
import type { Logger } from '../log.js';
import { type BoundId, encodePairs, sqlId } from './sqlite-encoding.js';
import {
  isSymmetric,
  PAIR_KEYS_SUPPORTED,
  PairKeys,
  type SortedKeys,
  transposeSorted,
} from './sqlite-pair-keys.js';
import type { Subscription } from './store.js';

type Statement = Database.Statement<unknown[], unknown>;

/** Rows per multi-row INSERT: one native call per 100 rows instead of per row (≈2x faster loads). */
export const ROWS_PER_INSERT = 100;
/** Page cache while a staged load is mostly sorting (see {@link mergeStaged}), KiB. */
const MERGE_SORT_CACHE_KIB = 2048;

/** What a bulk load needs from its store. */
export interface BulkLoadContext {
  readonly db: Database.Database;
  readonly log: Logger;
  /** Throws ClosedError once the store is closed. */
  readonly check: () => void;
  /** Runs `op`, turning SQLite "cannot serve now" errors into UnavailableError. */
  readonly guard: <T>(what: string, op: () => T) => T;
  /** Page cache for normal operation, KiB (restored afterwards). */
  readonly cacheKiB: number;
  /** Page cache while merging into a table bigger than the load, KiB. */
  readonly bulkCacheKiB: number;
  /** Most pairs sorted in memory; 0 stages every load. */
  readonly sortPairs: number;
  /** A name for the TEMP staging table, unique within the connection. */
  readonly stageName: string;
}

/** Runs the insert statements over flat pairs (`[a0, b0, a1, b1, …]`), 100 rows per call; returns rows changed. */
export function insertFlat(pairs: readonly BoundId[], many: Statement, one: Statement): number {
  const args: BoundId[] = new Array(ROWS_PER_INSERT * 2);
  const whole = pairs.length - (pairs.length % (ROWS_PER_INSERT * 2));
  let changed = 0;
  let i = 0;
  for (; i < whole; i += ROWS_PER_INSERT * 2) {
    for (let k = 0; k < ROWS_PER_INSERT * 2; k++) args[k] = pairs[i + k]!;
    changed += many.run(...args).changes;
  }
  for (; i < pairs.length; i += 2) changed += one.run(pairs[i], pairs[i + 1]).changes;
  return changed;
}

/**
 * `INSERT OR IGNORE` of `rows` rows of two numbers into `table (first, second)`. Plain multi-row
 * VALUES with a CAST per value: the numbers bind as REALs, and the CAST makes them the INTEGERs
 * every canonical numeric id is stored as. Measured 1.2x faster than `SELECT … FROM (VALUES …)`.
 */
function insertNumbersSql(table: string, first: string, second: string, rows: number): string {
  const row = '(CAST(? AS INTEGER), CAST(? AS INTEGER))';
  return `INSERT OR IGNORE INTO ${table} (${first}, ${second}) VALUES ${Array.from({ length: rows }, () => row).join(', ')}`;
}

/** Inserts sorted keys as `(hi, lo)` rows, in key order; returns rows changed. */
function insertKeys(keys: SortedKeys, many: Statement, one: Statement): number {
  const { words, count } = keys;
  const args: number[] = new Array(ROWS_PER_INSERT * 2);
  const whole = count - (count % ROWS_PER_INSERT);
  let changed = 0;
  let i = 0;
  for (; i < whole; i += ROWS_PER_INSERT) {
    for (let k = 0; k < ROWS_PER_INSERT; k++) {
      args[2 * k] = words[2 * (i + k) + 1]!;
      args[2 * k + 1] = words[2 * (i + k)]!;
    }
    changed += many.run(...args).changes;
  }
  for (; i < count; i++) changed += one.run(words[2 * i + 1], words[2 * i]).changes;
  return changed;
}

/** The TEMP table a staged load collects its batches in, created on first use. */
class Stage {
  readonly #db: Database.Database;
  readonly #name: string;
  #insert: ((pairs: readonly BoundId[]) => void) | undefined;

  constructor(db: Database.Database, name: string) {
    this.#db = db;
    this.#name = name;
  }

  get table(): string {
    return `temp.${this.#name}`;
  }

  /** Appends flat encoded pairs `[subscribee, subscriber, …]` in one short transaction. */
  add(pairs: readonly BoundId[]): void {
    this.#insert ??= this.#create();
    this.#insert(pairs);
  }

  /** Appends collected key words (`[subscriber, subscribee, …]`, see sqlite-pair-keys.ts). */
  addWords(words: Uint32Array): void {
    const pairs: number[] = new Array(words.length);
    for (let i = 0; i < words.length; i += 2) {
      pairs[i] = words[i + 1]!;
      pairs[i + 1] = words[i]!;
    }
    this.add(pairs);
  }

  #create(): (pairs: readonly BoundId[]) => void {
    const db = this.#db;
    db.exec(`CREATE TEMP TABLE ${this.#name} (subscribee ANY NOT NULL, subscriber ANY NOT NULL) STRICT`);
    // Numbers are staged as the REALs they bind as and made INTEGERs by the merge's SELECT:
    // plain VALUES stage 1.6x faster than converting row by row here.
    const one = db.prepare(`INSERT INTO ${this.table} VALUES (?, ?)`);
    const many = db.prepare(
      `INSERT INTO ${this.table} VALUES ${Array.from({ length: ROWS_PER_INSERT }, () => '(?, ?)').join(', ')}`,
    );
    return db.transaction((pairs: readonly BoundId[]): void => {
      insertFlat(pairs, many, one);
    });
  }

  drop(): void {
    if (this.#insert !== undefined && this.#db.open) this.#db.exec(`DROP TABLE IF EXISTS ${this.table}`);
  }
}

/** Milliseconds since `t`, rounded. */
const since = (t: number): number => Math.round(performance.now() - t);

/**
 * Loads every pair of `batches` (see the file comment). All or nothing: a bad pair, a failing
 * source or a close() leaves the store as it was. The final merge blocks the event loop for its
 * whole run (seconds for millions of pairs): bulk loads are for `friends load`, not a serving
 * process. Other processes keep reading the previous snapshot meanwhile (WAL).
 */
export async function bulkLoad(
  ctx: BulkLoadContext,
  batches: AsyncIterable<readonly Subscription[]>,
): Promise<{ added: number; seen: number }> {
  const { db, check, guard } = ctx;
  let keys = ctx.sortPairs > 0 && PAIR_KEYS_SUPPORTED ? new PairKeys(ctx.sortPairs) : undefined;
  const stage = new Stage(db, ctx.stageName);
  const started = performance.now();
  try {
    let seen = 0;
    let batchNo = 0;
    for await (const batch of batches) {
      check();
      const what = `bulk load batch ${batchNo}: subscriptions`;
      if (keys !== undefined && !keys.add(batch, what)) {
        // From here on SQLite sorts: move what was collected to the stage.
        const moving = keys;
        keys = undefined;
        guard('staging a bulk load', () => {
          for (const words of moving.drain()) stage.addWords(words);
        });
      }
      if (keys === undefined) {
        const pairs = encodePairs(batch, what);
        guard('staging a bulk load', () => stage.add(pairs));
      }
      seen += batch.length;
      batchNo++;
    }
    check();
    if (seen === 0) return { added: 0, seen };
    const collectMs = since(started);
    const { added, ...phases } =
      keys !== undefined
        ? mergeSorted(ctx, keys)
        : guard('merging a bulk load', () => mergeStaged(ctx, stage, seen));
    const checkpointed = performance.now();
    // Moves the load from the WAL into the file and empties the WAL. A reader still on an older
    // snapshot makes it wait (busy timeout) and return busy instead; the next checkpoint finishes it.
    const checkpoint =
      added > 0 ? guard('checkpointing a bulk load', () => db.pragma('wal_checkpoint(TRUNCATE)')) : undefined;
    ctx.log.info('bulk load done', {
      seen,
      added,
      collectMs,
      ...phases,
      checkpointMs: since(checkpointed),
      checkpoint,
    });
    return { added, seen };
  } finally {
    stage.drop();
  }
}

/** Counter update shared by both merges. */
function addCount(db: Database.Database, added: number): void {
  if (added > 0) db.prepare(`UPDATE counters SET value = value + ? WHERE name = 'subscriptions'`).run(added);
}

/** Throws when the two key orders did not change by the same number of rows (a damaged file). */
function checkSameChanges(added: number, addedBySubscriber: number): void {
  if (added !== addedBySubscriber) {
    throw new InternalError(
      `bulk load added ${added} subscriptions but ${addedBySubscriber} rows by subscriber; rolled back`,
    );
  }
}

/** Sorts the collected keys and writes both tables in key order, in one transaction. */
function mergeSorted(ctx: BulkLoadContext, keys: PairKeys): { added: number } & Record<string, unknown> {
  const { db } = ctx;
  let t = performance.now();
  const byEe = keys.sortUnique();
  const sortMs = since(t);
  t = performance.now();
  // A symmetric load is its own by-subscriber order; only another one needs a transposed copy.
  const symmetric = isSymmetric(byEe);
  const byEr = symmetric ? byEe : transposeSorted(byEe);
  const transposeMs = since(t);

  const st = {
    many: db.prepare(insertNumbersSql('subscriptions', 'subscribee', 'subscriber', ROWS_PER_INSERT)),
    one: db.prepare(insertNumbersSql('subscriptions', 'subscribee', 'subscriber', 1)),
    manyEr: db.prepare(
      insertNumbersSql('subscriptions_by_subscriber', 'subscriber', 'subscribee', ROWS_PER_INSERT),
    ),
    oneEr: db.prepare(insertNumbersSql('subscriptions_by_subscriber', 'subscriber', 'subscribee', 1)),
    // Positional: column 1 (subscribee) goes to column 1 (subscriber). Only run when the load is
    // symmetric, so that is the same set of pairs. Into an empty table of the same shape SQLite
    // copies the records as they are, in order ("xfer optimization").
    copy: db.prepare('INSERT INTO subscriptions_by_subscriber SELECT * FROM subscriptions'),
    empty: db
      .prepare(
        `SELECT NOT EXISTS (SELECT 1 FROM subscriptions) AND NOT EXISTS (SELECT 1 FROM subscriptions_by_subscriber)`,
      )
      .pluck(),
  };
  let insertMs = 0;
  let bySubscriberMs = 0;
  let copied = false;
  db.pragma(`cache_size = -${ctx.bulkCacheKiB}`);
  try {
    const added = ctx.guard('merging a bulk load', () =>
      db
        .transaction((): number => {
          const wasEmpty = st.empty.get() === 1;
          t = performance.now();
          const n = insertKeys(byEe, st.many, st.one);
          insertMs = since(t);
          t = performance.now();
          copied = symmetric && wasEmpty;
          const nEr = copied ? st.copy.run().changes : insertKeys(byEr, st.manyEr, st.oneEr);
          bySubscriberMs = since(t);
          checkSameChanges(n, nEr);
          addCount(db, n);
          return n;
        })
        .immediate(),
    );
    return {
      added,
      path: 'sorted',
      unique: byEe.count,
      symmetric,
      copied,
      sortMs,
      transposeMs,
      insertMs,
      bySubscriberMs,
    };
  } finally {
    db.pragma(`cache_size = -${ctx.cacheKiB}`);
  }
}

/** Fills both tables from the staging table, each with one sorted INSERT OR IGNORE, in one transaction. */
function mergeStaged(
  ctx: BulkLoadContext,
  stage: Stage,
  seen: number,
): { added: number } & Record<string, unknown> {
  const { db } = ctx;
  const existing = Number(
    db.prepare(`SELECT value FROM counters WHERE name = 'subscriptions'`).pluck().get(),
  );
  // The page cache also sizes the sorter's in-memory runs. For the sorts of a load as big as the
  // store, small runs merged from temp files beat big ones (they stay in CPU cache): 5M pairs
  // merged and indexed in 8.6 s with 2 MiB against 18.7 s with 256 MiB (schema version 1).
  // Merging a small load into a big table is random B-tree updates instead, which want a big cache.
  db.pragma(`cache_size = -${seen >= existing ? MERGE_SORT_CACHE_KIB : ctx.bulkCacheKiB}`);
  // The sorter can use helper threads for big sorts: 1.3x faster on 2 cores.
  db.pragma(`threads = ${Math.min(4, availableParallelism())}`);
  let insertMs = 0;
  let bySubscriberMs = 0;
  try {
    const added = db
      .transaction((): number => {
        let t = performance.now();
        const n = db
          .prepare(
            `INSERT OR IGNORE INTO subscriptions (subscribee, subscriber)
             SELECT ${sqlId('subscribee')} AS ee, ${sqlId('subscriber')} AS er FROM ${stage.table} ORDER BY ee, er`,
          )
          .run().changes;
        insertMs = since(t);
        t = performance.now();
        const nEr = db
          .prepare(
            `INSERT OR IGNORE INTO subscriptions_by_subscriber (subscriber, subscribee)
             SELECT ${sqlId('subscriber')} AS er, ${sqlId('subscribee')} AS ee FROM ${stage.table} ORDER BY er, ee`,
          )
          .run().changes;
        bySubscriberMs = since(t);
        checkSameChanges(n, nEr);
        addCount(db, n);
        return n;
      })
      .immediate();
    return { added, path: 'staged', insertMs, bySubscriberMs };
  } finally {
    db.pragma(`cache_size = -${ctx.cacheKiB}`);
    db.pragma('threads = 0');
  }
}
