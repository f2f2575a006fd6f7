/**
 * Chooses a {@link SubscriptionStore} implementation from a URL, so commands and the server take
 * one `--store` option:
 *
 * - `sqlite:PATH` (or `sqlite://PATH`) — a SQLite file (relative paths resolve against the working directory; parent
 *   folders are created). `sqlite::memory:` is a private in-memory database, for tests.
 * - `postgres://…` or `postgresql://…` — a PostgreSQL database shared by many processes.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { LazyStore } from './lazy-store.js';
import type { Store, SubscriptionStore } from './store.js';
import { redactUrl } from './store-url.js';

/** Options for {@link openStore}. */
export interface OpenStoreOptions {
  /** Unused by the URL forms themselves; kept so callers can pass their `--data` folder. */
  readonly dataDir?: string;
  readonly logger?: Logger;
}

/** The URL forms {@link openStore} accepts, for error messages and help text. */
export const STORE_URL_FORMS = 'sqlite:PATH, sqlite::memory:, postgres://USER@HOST:PORT/DB or postgresql://…';

/** The default store: a SQLite file named `switchboard.db` in the data folder. */
export function defaultStoreUrl(dataDir: string): string {
  return `sqlite:${path.join(dataDir, 'switchboard.db')}`;
}

/**
 * Opens (and migrates, when needed) the store named by `url`. Throws {@link ConfigError} for a URL
 * of unknown form; resolves once the store is ready to answer.
 */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<Store> {
  const logger = options.logger ?? silentLogger;
  const target = parseStoreUrl(url);
  if (target.kind === 'sqlite') {
    const { SqliteStore } = await import('./sqlite-store.js');
    if (target.file === ':memory:') return SqliteStore.open(':memory:', { logger });
    makeDirectory(path.dirname(target.file));
    return SqliteStore.open(target.file, { logger });
  }
  const { PostgresStore } = await import('./postgres-store.js');
  return PostgresStore.open(url, { logger });
}

/**
 * The store named by `url`, opened at its first use ({@link LazyStore}); the URL's form is checked
 * now (ConfigError). For a process that may never read it: a cluster's gateway.
 */
export function openStoreLazily(url: string, options: OpenStoreOptions = {}): SubscriptionStore {
  const target = parseStoreUrl(url);
  return new LazyStore(target.kind, target.location, () => openStore(url, options));
}

/** A store URL's kind and where it points, checked for its form (ConfigError), nothing opened. */
function parseStoreUrl(url: string): { kind: 'sqlite' | 'postgres'; file: string; location: string } {
  if (url.startsWith('sqlite:')) {
    // `sqlite://PATH` is accepted as well: `sqlite:///abs/file.db` is the absolute path.
    const rest = url.startsWith('sqlite://') ? url.slice('sqlite://'.length) : url.slice('sqlite:'.length);
    if (rest === '')
      throw new ConfigError(`store URL ${JSON.stringify(url)} has no path; accepted: ${STORE_URL_FORMS}`);
    const file = rest === ':memory:' ? rest : path.resolve(rest);
    return { kind: 'sqlite', file, location: file };
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    return { kind: 'postgres', file: '', location: redactUrl(url) };
  }
  throw new ConfigError(`store URL ${JSON.stringify(url)} is not supported; accepted: ${STORE_URL_FORMS}`);
}

/** Pseudo file systems, where a database can never live (and `mkdir -p` may spin: Node loops on /proc/sys). */
const PSEUDO_ROOTS = ['/proc', '/sys', '/dev'];

/**
 * Creates `dir` and its parents, one level at a time and a bounded number of levels, refusing
 * pseudo file systems with a clear error instead of Node's `mkdirSync(…, {recursive})`, which
 * spins for ever under /proc/sys.
 */
export function makeDirectory(dir: string): void {
  const abs = path.resolve(dir);
  if (PSEUDO_ROOTS.some((root) => abs === root || abs.startsWith(`${root}/`))) {
    throw new ConfigError(`cannot keep data under ${abs}: ${abs.split('/')[1]} is not a place for files`);
  }
  const missing: string[] = [];
  let at = abs;
  for (let depth = 0; !existsSync(at); depth++) {
    if (depth > 64) throw new ConfigError(`cannot create ${abs}: too many missing parent directories`);
    missing.push(at);
    at = path.dirname(at);
  }
  if (!statSync(at).isDirectory()) throw new ConfigError(`cannot create ${abs}: ${at} is not a directory`);
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') {
        throw new ConfigError(`cannot create ${d}: ${(err as Error).message}`, { cause: err });
      }
    }
  }
}
