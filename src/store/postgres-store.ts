/**
 * The subscription store on PostgreSQL (the `postgres` client), for several processes or hosts
 * sharing one set of subscriptions. Same semantics as the SQLite store; the same contract suite.
 *
 * Layout (schema version 1, created by {@link migrate} at open under an advisory lock, so two
 * processes opening a fresh database at once do not race):
 *
 *     switchboard_subscriptions (subscribee, subscriber) PRIMARY KEY   -> getSubscribers
 *     switchboard_subscriptions_by_subscriber (subscriber, subscribee) -> getSubscriptions
 *     switchboard_counters ('subscriptions', n)  updated in the same statement as every write
 *     switchboard_schema (version)
 *
 * Ids are `text COLLATE "C"`: byte order, so keyset pages (`subscriber > $last`) follow the index.
 *
 * Failures: anything meaning "the database cannot be reached" (refused, reset, terminated by the
 * server, connect timeout, too many connections) rejects with {@link UnavailableError} keeping the
 * cause — never an empty answer. Calls after close() reject with {@link ClosedError}.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import postgres from 'postgres';
import { ClosedError, ConfigError, errorMessage, UnavailableError } from '../errors.js';
import { validateId } from '../ids.js';
import { type Logger, silentLogger } from '../log.js';
import { mergeStage, migrate } from './postgres-schema.js';
import type { BulkLoader, StoreStats, Subscription, SubscriptionStore } from './store.js';
import { redactUrl } from './store-url.js';
import { validatePageSize, validateSubscriptions, validateUser } from './subscription-input.js';

/** Options for {@link PostgresStore.open}. */
export interface PostgresStoreOptions {
  readonly logger?: Logger;
  /** Most connections this process keeps open. Default 10. */
  readonly maxConnections?: number;
  /** How long setting up a connection may take before the call fails as unavailable, ms. Default 5000. */
  readonly connectTimeoutMs?: number;
  /** Idle connections are closed after this long, ms. Default 60000. */
  readonly idleTimeoutMs?: number;
  /** How long close() lets running queries finish before cutting them off, ms. Default 5000. */
  readonly closeTimeoutMs?: number;
}

const DEFAULT_MAX_CONNECTIONS = 10;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
const DEFAULT_CLOSE_TIMEOUT_MS = 5000;
/** Rows per page when getSubscribers reads a big fan-out: one round trip each. */
const PG_READ_PAGE_SIZE = 5000;
/** Error codes that mean the server cannot be reached or dropped us (not a bad query). */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ENOENT',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
  '53300', // too_many_connections
  '55000', // object_not_in_prerequisite_state: the database does not accept connections now
]);

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** True when `err` says the database is unreachable rather than that the request was wrong. */
export function isUnreachable(err: unknown): boolean {
  const code = errorCode(err);
  if (code === undefined) return false;
  // Class 08: connection exception; 57P0x: the server shut down or terminated this backend.
  return UNREACHABLE_CODES.has(code) || code.startsWith('08') || code.startsWith('57P');
}

/** {@link SubscriptionStore} on PostgreSQL. Open with {@link PostgresStore.open}. */
export class PostgresStore implements SubscriptionStore, BulkLoader {
  readonly kind = 'postgres';
  readonly location: string;
  /** The full URL (with any password), for the bulk loader's own connection. */
  readonly #url: string;
  readonly #clientOptions: postgres.Options<Record<string, never>>;
  readonly #sql: postgres.Sql;
  readonly #log: Logger;
  readonly #closeTimeoutMs: number;
  /** Bulk loads in progress: close() aborts them instead of waiting for their sources. */
  readonly #bulkAborts = new Set<() => void>();
  #closed = false;
  /** Since the last call that failed for an unreachable server, until one succeeds: logged once each way. */
  #down = false;
  /** Calls running now; close() lets them finish (up to closeTimeoutMs) before ending the pool. */
  #inflight = 0;
  #drained: (() => void) | undefined;

  private constructor(
    url: string,
    location: string,
    clientOptions: postgres.Options<Record<string, never>>,
    options: PostgresStoreOptions,
  ) {
    this.#url = url;
    this.location = location;
    this.#clientOptions = clientOptions;
    this.#sql = postgres(url, clientOptions);
    this.#log = options.logger ?? silentLogger;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
  }

  /**
   * Connects to the database at `url` (`postgres://user:pass@host:port/db`), creating or upgrading
   * the schema. Rejects with {@link UnavailableError} when the server cannot be reached.
   */
  static async open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const location = redactUrl(url);
    const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    if (!Number.isInteger(maxConnections) || maxConnections < 1) {
      throw new ConfigError(`maxConnections must be a whole number ≥ 1, got ${maxConnections}`);
    }
    const log = options.logger ?? silentLogger;
    const store = new PostgresStore(
      url,
      location,
      {
        max: maxConnections,
        connect_timeout: (options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) / 1000,
        idle_timeout: (options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS) / 1000,
        // "relation already exists, skipping" and friends are not worth a console line.
        onnotice: () => {},
        connection: { application_name: 'switchboard' },
      },
      options,
    );
    try {
      await store.#call('migrating the schema', () => migrate(store.#sql, log, location));
    } catch (err) {
      await store.#sql.end({ timeout: 0 }).catch(() => undefined);
      throw err;
    }
    return store;
  }

  /** Runs `op`, turning "database unreachable" into UnavailableError and use-after-close into ClosedError. */
  async #call<T>(what: string, op: () => Promise<T>, counted = true): Promise<T> {
    if (this.#closed) throw new ClosedError(`PostgreSQL store ${this.location} is closed`);
    if (counted) this.#inflight++;
    try {
      const out = await op();
      if (this.#down) {
        this.#down = false;
        this.#log.info('PostgreSQL reachable again', { store: this.location });
      }
      return out;
    } catch (err) {
      const e = this.#translate(what, err);
      if (e instanceof UnavailableError && !this.#down) {
        this.#down = true;
        // Once per outage, not once per refused call.
        this.#log.warn('PostgreSQL unavailable: calls get 503 until it is back', { err: e });
      }
      throw e;
    } finally {
      if (counted && --this.#inflight === 0) this.#drained?.();
    }
  }

  #translate(what: string, err: unknown): unknown {
    if (err instanceof ClosedError || err instanceof UnavailableError) return err;
    if (this.#closed) return new ClosedError(`PostgreSQL store ${this.location} was closed while ${what}`);
    if (isUnreachable(err)) {
      return new UnavailableError(
        `PostgreSQL at ${this.location} is unavailable (${what}): ${errorMessage(err)}`,
        {
          cause: err,
        },
      );
    }
    const code = errorCode(err);
    if (code === '3D000' || code === '28000' || code === '28P01') {
      // No such database, or not allowed in: the URL is wrong, retrying will not help.
      return new ConfigError(`PostgreSQL at ${this.location}: ${errorMessage(err)}`, { cause: err });
    }
    return err;
  }

  async addSubscriptions(subs: readonly Subscription[]): Promise<number> {
    const [subscribees, subscribers] = columns(validateSubscriptions(subs));
    if (subscribees.length === 0) return this.#call('adding subscriptions', async () => 0);
    return this.#call('adding subscriptions', async () => {
      // One statement: the insert and the counter move together or not at all.
      const [row] = await this.#sql`
        WITH added AS (
          INSERT INTO switchboard_subscriptions (subscribee, subscriber)
          SELECT * FROM unnest(${subscribees}::text[], ${subscribers}::text[])
          ON CONFLICT DO NOTHING
          RETURNING 1
        ), counted AS (
          UPDATE switchboard_counters SET value = value + (SELECT count(*) FROM added)
          WHERE name = 'subscriptions' AND EXISTS (SELECT 1 FROM added)
        )
        SELECT count(*)::int AS n FROM added`;
      return Number(row?.n ?? 0);
    });
  }

  async removeSubscriptions(subs: readonly Subscription[]): Promise<number> {
    const [subscribees, subscribers] = columns(validateSubscriptions(subs));
    if (subscribees.length === 0) return this.#call('removing subscriptions', async () => 0);
    return this.#call('removing subscriptions', async () => {
      const [row] = await this.#sql`
        WITH removed AS (
          DELETE FROM switchboard_subscriptions s
          USING unnest(${subscribees}::text[], ${subscribers}::text[]) AS d (subscribee, subscriber)
          WHERE s.subscribee = d.subscribee AND s.subscriber = d.subscriber
          RETURNING 1
        ), counted AS (
          UPDATE switchboard_counters SET value = value - (SELECT count(*) FROM removed)
          WHERE name = 'subscriptions' AND EXISTS (SELECT 1 FROM removed)
        )
        SELECT count(*)::int AS n FROM removed`;
      return Number(row?.n ?? 0);
    });
  }

  async getSubscribers(user: string): Promise<string[]> {
    const id = validateUser(user);
    const out: string[] = [];
    for await (const page of this.#pages('subscribers', id, PG_READ_PAGE_SIZE)) {
      for (const x of page) out.push(x);
    }
    return out;
  }

  async getSubscriptions(user: string): Promise<string[]> {
    const id = validateUser(user);
    const out: string[] = [];
    for await (const page of this.#pages('subscriptions', id, PG_READ_PAGE_SIZE)) {
      for (const x of page) out.push(x);
    }
    return out;
  }

  async *subscriberPages(user: string, pageSize: number): AsyncIterable<string[]> {
    const id = validateUser(user);
    yield* this.#pages('subscribers', id, validatePageSize(pageSize));
  }

  async subscribersOfMany(users: readonly string[], pageSize: number): Promise<Map<string, string[]>> {
    const ids = [...new Set(users.map(validateUser))];
    const size = validatePageSize(pageSize);
    if (ids.length === 0) return new Map();
    return this.#call('reading subscribers', async () => {
      // One statement for all: each user's first `size` subscribers by the primary key's order.
      const rows = await this.#sql`
        SELECT u.id AS k, s.subscriber AS v
        FROM unnest(${ids}::text[]) AS u (id)
        CROSS JOIN LATERAL (
          SELECT subscriber FROM switchboard_subscriptions
          WHERE subscribee = u.id ORDER BY subscriber LIMIT ${size}
        ) s`;
      const out = new Map<string, string[]>(ids.map((id) => [id, []]));
      for (const r of rows) out.get(String(r.k))!.push(String(r.v));
      for (const [id, list] of out) if (list.length >= size) out.delete(id);
      return out;
    });
  }

  async listPage(
    direction: 'subscribers' | 'subscriptions',
    user: string,
    after: string | undefined,
    limit: number,
  ): Promise<{ ids: string[]; next: string | null }> {
    const id = validateUser(user);
    const size = validatePageSize(limit);
    const ids = await this.#page(direction, id, after === undefined ? '' : validateId(after, 'after'), size);
    return { ids, next: ids.length === size ? ids[ids.length - 1]! : null };
  }

  /** Keyset pages, each its own short statement; ids are never empty, so `> ''` starts at the first. */
  async *#pages(
    direction: 'subscribers' | 'subscriptions',
    id: string,
    size: number,
  ): AsyncGenerator<string[]> {
    let last = '';
    for (;;) {
      const page = await this.#page(direction, id, last, size);
      if (page.length > 0) yield page;
      if (page.length < size) return;
      last = page[page.length - 1]!;
    }
  }

  /** One keyset page: at most `size` ids after `last` ('' for the first). */
  #page(
    direction: 'subscribers' | 'subscriptions',
    id: string,
    last: string,
    size: number,
  ): Promise<string[]> {
    return this.#call(`reading ${direction}`, async () => {
      const rows =
        direction === 'subscribers'
          ? await this.#sql`
              SELECT subscriber AS v FROM switchboard_subscriptions
              WHERE subscribee = ${id} AND subscriber > ${last} ORDER BY subscriber LIMIT ${size}`
          : await this.#sql`
              SELECT subscribee AS v FROM switchboard_subscriptions
              WHERE subscriber = ${id} AND subscribee > ${last} ORDER BY subscribee LIMIT ${size}`;
      return rows.map((r) => String(r.v));
    });
  }

  /**
   * Streams every batch with COPY into a session TEMP table (memory stays one batch plus the socket
   * buffer), then moves it into the table with one `INSERT … SELECT … ORDER BY … ON CONFLICT DO
   * NOTHING` and the counter update, in one transaction. The whole load is all or nothing: a bad
   * pair in any batch, a failing source, an outage or a close() leave the table as it was.
   *
   * The load runs on a connection of its own (a one-connection client), not one of the pool's: it
   * does not hold a pool slot for minutes, and that client's `onclose` tells us when the server
   * cuts the connection — postgres.js would otherwise leave a finishing COPY waiting forever.
   */
  async bulkLoad(batches: AsyncIterable<readonly Subscription[]>): Promise<{ added: number; seen: number }> {
    this.#throwIfClosed();
    let connectionLost: (err: Error) => void = () => {};
    const lost = new Promise<never>((_, reject) => {
      connectionLost = reject;
    });
    lost.catch(() => {}); // only raced against; never unhandled
    const bulk = postgres(this.#url, {
      ...this.#clientOptions,
      max: 1,
      onclose: () =>
        connectionLost(
          Object.assign(new Error('bulk load connection closed'), { code: 'CONNECTION_CLOSED' }),
        ),
    });
    let copy: Writable | undefined;
    const abort = (): void => {
      copy?.destroy(new ClosedError('store closed during bulk load'));
      void bulk.end({ timeout: 0 }).catch(() => undefined);
    };
    this.#bulkAborts.add(abort);
    try {
      return await this.#call(
        'bulk loading',
        async () => {
          await bulk`CREATE TEMP TABLE switchboard_bulk_stage (subscribee text COLLATE "C" NOT NULL, subscriber text COLLATE "C" NOT NULL)`;
          const stream =
            await bulk`COPY switchboard_bulk_stage (subscribee, subscriber) FROM STDIN`.writable();
          copy = stream;
          let copyError: unknown;
          // Without a listener an aborted COPY would be an uncaught 'error'; keep it for the caller.
          stream.on('error', (err) => {
            copyError ??= err;
          });
          let seen = 0;
          let batchNo = 0;
          const started = performance.now();
          for await (const batch of batches) {
            this.#throwIfClosed();
            const valid = validateSubscriptions(batch, `bulk load batch ${batchNo}: subscriptions`);
            batchNo++;
            if (valid.length === 0) continue;
            // COPY text format: the id alphabet has no tab, newline or backslash, so no escaping.
            let text = '';
            for (const s of valid) text += `${s.subscribee}\t${s.subscriber}\n`;
            seen += valid.length;
            if (copyError !== undefined) throw copyError;
            if (!stream.write(text)) await Promise.race([once(stream, 'drain'), lost]);
          }
          this.#throwIfClosed();
          stream.end();
          await Promise.race([finished(stream), lost]);
          copy = undefined;
          const staged = performance.now();
          const added = await bulk.begin((tx) => mergeStage(tx));
          this.#log.info('bulk load done', {
            seen,
            added,
            copyMs: Math.round(staged - started),
            mergeMs: Math.round(performance.now() - staged),
          });
          return { added, seen };
          // Not counted as in flight: close() aborts a bulk load instead of waiting for its source.
        },
        false,
      );
    } catch (err) {
      if (copy !== undefined && !copy.destroyed)
        copy.destroy(err instanceof Error ? err : new Error(String(err)));
      throw err;
    } finally {
      this.#bulkAborts.delete(abort);
      // Ending the session drops the stage table too.
      await bulk.end({ timeout: 0 }).catch(() => undefined);
    }
  }

  #throwIfClosed(): void {
    if (this.#closed) throw new ClosedError(`PostgreSQL store ${this.location} is closed`);
  }

  /** Reads the exact count kept in `switchboard_counters` (one row), never `count(*)` over the table. */
  async stats(): Promise<StoreStats> {
    return this.#call('reading stats', async () => {
      const [row] = await this.#sql`SELECT value FROM switchboard_counters WHERE name = 'subscriptions'`;
      return { subscriptions: Number(row?.value ?? 0) };
    });
  }

  /**
   * Aborts bulk loads, lets running calls finish for up to `closeTimeoutMs`, then ends every
   * connection at once. (postgres.js's own graceful end can wait out its whole timeout on a
   * connection that failed during an outage, so the waiting is done here, on our own calls.)
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const abort of this.#bulkAborts) abort();
    if (this.#inflight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => {
          this.#drained = resolve;
        }),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.#closeTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    await this.#sql.end({ timeout: 0 });
  }
}

/** The pairs as two parallel arrays, sorted so concurrent writers lock rows in one order. */
function columns(subs: readonly Subscription[]): [string[], string[]] {
  const sorted = [...subs].sort((a, b) =>
    a.subscribee < b.subscribee
      ? -1
      : a.subscribee > b.subscribee
        ? 1
        : a.subscriber < b.subscriber
          ? -1
          : a.subscriber > b.subscriber
            ? 1
            : 0,
  );
  return [sorted.map((s) => s.subscribee), sorted.map((s) => s.subscriber)];
}
