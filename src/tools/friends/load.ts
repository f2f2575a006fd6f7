/**
 * Bulk load of a friends edge list into the subscription store — the article's `readfriends.erl`
 * plus `subsmanager:add_subscriptions/1`, streamed instead of read whole into memory.
 *
 * Friendship is mutual by default: the line `a b` becomes {subscriber: a, subscribee: b} and
 * {subscriber: b, subscribee: a}, so each sees the other's messages. `oneWay` reproduces
 * readfriends.erl exactly: subscriber = first id, subscribee = second only.
 *
 * Failure semantics, chosen so a 15M-line file needs one pass and no validating pre-pass: a
 * malformed line stops the reader before its batch is handed to the store, so nothing from that
 * batch is written. Whether earlier batches stay depends on the store: the SQLite store stages the
 * whole load and merges it in one transaction (all or nothing: the store is left unchanged), a
 * store that commits per batch keeps them. Either way the error says which happened (from the
 * store's count before and after), and the load is idempotent — the store has set semantics — so
 * fixing the line and running the same command again gives the same store as one clean run.
 * (`dryRun` parses the whole file and writes nothing, to check a file first.)
 *
 * A self-loop line (`5 5`) is skipped and counted: the store refuses self-subscriptions, since a
 * message sent to an id already reaches it.
 */
import type { Store, Subscription } from '../../store/store.js';
import { DEFAULT_BATCH_EDGES, type EdgeBatch, EdgeListError, readEdgeBatches } from './edge-list.js';

/** Options for {@link loadFriends}. */
export interface FriendsLoadOptions {
  /** Where to load; ignored (may be undefined) when `dryRun`. */
  readonly store: Store | undefined;
  /** The edge list: a file stream or any chunk iterable. */
  readonly input: AsyncIterable<Buffer | string>;
  /** Name of the input for messages (the file path). */
  readonly name: string;
  /** `a b` → only {subscriber: a, subscribee: b}, as readfriends.erl. Default false (mutual). */
  readonly oneWay?: boolean;
  /** Edges per batch (a mutual batch holds twice as many subscriptions). */
  readonly batchEdges?: number;
  /** Parse and count only; nothing is written. */
  readonly dryRun?: boolean;
  /** Stops at the next batch boundary; the result says `complete: false`. */
  readonly signal?: AbortSignal;
  /** Called as batches are consumed, with input bytes and edges handled so far. */
  readonly onProgress?: (bytes: number, edges: number) => void;
  /** Called once the whole input has been read and handed over (the store may still be committing). */
  readonly onInputDone?: () => void;
}

/** What {@link loadFriends} did. */
export interface FriendsLoadResult {
  /** Edge lines read. */
  readonly edges: number;
  /** Lines read, comments and blank lines included. */
  readonly lines: number;
  readonly bytes: number;
  /** Subscriptions handed to the store (2 × edges when mutual). */
  readonly subscriptions: number;
  /** Of those, how many were new (0 for a dry run). */
  readonly added: number;
  /** Lines `a a`, skipped. */
  readonly selfLoops: number;
  /**
   * False when interrupted by the signal: the store was asked to abandon the load, and `added` is
   * what it kept anyway (0 for an all-or-nothing store such as SQLite).
   */
  readonly complete: boolean;
}

/** Thrown into the store's bulk load to make it abandon the load on abort. */
class LoadInterrupted extends Error {}

/**
 * Subscriptions for the edges in a flat id array (see {@link EdgeBatch.ids}); self-loops are left
 * out. `skipped` (when given) counts them.
 */
export function edgesToSubscriptions(
  ids: readonly string[],
  oneWay: boolean,
  skipped?: { selfLoops: number },
): Subscription[] {
  const subs: Subscription[] = [];
  for (let i = 0; i < ids.length; i += 2) {
    const a = ids[i]!;
    const b = ids[i + 1]!;
    if (a === b) {
      if (skipped) skipped.selfLoops++;
      continue;
    }
    subs.push({ subscriber: a, subscribee: b });
    if (!oneWay) subs.push({ subscriber: b, subscribee: a });
  }
  return subs;
}

/** How many subscriptions {@link edgesToSubscriptions} would make, without making them (dry run). */
function countSubscriptions(ids: readonly string[], oneWay: boolean, skipped: { selfLoops: number }): number {
  let n = 0;
  for (let i = 0; i < ids.length; i += 2) {
    if (ids[i] === ids[i + 1]) skipped.selfLoops++;
    else n += oneWay ? 1 : 2;
  }
  return n;
}

/**
 * Streams the edge list into the store through `store.bulkLoad`, one transaction per batch.
 * Throws {@link EdgeListError} for a malformed line (see the file comment for what is then in the store).
 */
export async function loadFriends(options: FriendsLoadOptions): Promise<FriendsLoadResult> {
  const oneWay = options.oneWay === true;
  const progress = { edges: 0, lines: 0, bytes: 0, subscriptions: 0, selfLoops: 0 };
  let parseError: EdgeListError | undefined;
  const batches = readEdgeBatches(options.input, {
    name: options.name,
    batchEdges: options.batchEdges ?? DEFAULT_BATCH_EDGES,
    signal: options.signal,
  });

  // Counts a batch only once the store asks for the next one, i.e. once it has been written.
  const consumed = (batch: EdgeBatch, subscriptions: number): void => {
    progress.edges += batch.ids.length / 2;
    progress.subscriptions += subscriptions;
    progress.lines = batch.lines;
    progress.bytes = batch.bytes;
    options.onProgress?.(progress.bytes, progress.edges);
  };
  async function* subscriptions(): AsyncGenerator<Subscription[], void, undefined> {
    try {
      for await (const batch of batches) {
        const subs = edgesToSubscriptions(batch.ids, oneWay, progress);
        yield subs;
        consumed(batch, subs.length);
      }
      // The reader just stops on abort; throwing instead makes the store roll back rather than
      // commit (and, for SQLite, spend a long merge on) a partial load nobody waits for.
      if (options.signal?.aborted) throw new LoadInterrupted('interrupted');
      options.onInputDone?.();
    } catch (err) {
      // Keep our own error even if the store wraps whatever its source threw.
      if (err instanceof EdgeListError) parseError = err;
      throw err;
    }
  }

  let added = 0;
  const store = options.dryRun ? undefined : options.store;
  const before = store === undefined ? 0 : (await store.stats()).subscriptions;
  try {
    if (store === undefined) {
      for await (const batch of batches) consumed(batch, countSubscriptions(batch.ids, oneWay, progress));
    } else {
      added = (await store.bulkLoad(subscriptions())).added;
    }
  } catch (err) {
    if (parseError === undefined && options.signal?.aborted && store !== undefined) {
      const kept = (await store.stats()).subscriptions - before;
      return { ...progress, added: kept, complete: false };
    }
    const bad = parseError ?? (err instanceof EdgeListError ? err : undefined);
    if (bad === undefined) throw err;
    if (store === undefined) throw bad.withNote('dry run: nothing was written');
    const kept = (await store.stats()).subscriptions - before;
    throw bad.withNote(
      kept === 0
        ? 'nothing was loaded: the store is as it was'
        : `${kept} new subscriptions from lines before it were loaded; loading is idempotent: fix the line and run the same command again`,
    );
  }
  return { ...progress, added, complete: !options.signal?.aborted };
}
