/**
 * How the SQLite store writes ids, and the one-pass check-and-encode used on every write.
 *
 * A canonical decimal id (`"42"`; not `"042"`, `"-1"` or `"1e3"`; at most 15 digits, so exact as a
 * JS number) is stored as an INTEGER; every other id as TEXT. SQLite never treats an INTEGER and
 * a TEXT as equal, so `"42"` and `"042"` stay two ids, and reading turns an INTEGER back into
 * exactly the string it came from. The article's benchmark ids are numbers: as integers the
 * 30M-pair table is about 30% smaller and sorts faster.
 *
 * better-sqlite3 binds a JS number as REAL, so inserts wrap each value in {@link sqlId}, which
 * turns a REAL into the INTEGER it equals. (Binding BigInts instead costs a BigInt per id, about
 * as much as the rest of the bulk-load encoding together.) Lookups bind the number as is: SQLite
 * compares REAL 42.0 and INTEGER 42 as equal, in indexes too.
 */
import { InternalError } from '../errors.js';
import { MAX_ID_LENGTH } from '../ids.js';
import type { Subscription } from './store.js';
import { validateSubscriptions } from './subscription-input.js';

/** A stored id value as bound: a canonical number, or the id string. */
export type BoundId = number | string;

/** Per ASCII code: 0 not in the id alphabet, 1 a digit, 2 another allowed character. */
const ID_CHAR = (() => {
  const table = new Uint8Array(128);
  for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz:_.-') table[c.charCodeAt(0)] = 2;
  for (const c of '0123456789') table[c.charCodeAt(0)] = 1;
  return table;
})();

/** Longest digit string stored as an INTEGER (exact as a JS number). */
const MAX_INTEGER_DIGITS = 15;

/**
 * The bound value for `id`, or `undefined` when `id` is not a valid id at all (the caller then
 * asks {@link validateSubscriptions} for the message). One pass over the characters: the same
 * checks as `idProblem`, about 3x faster on the bulk-load path.
 */
export function encodeId(id: unknown): BoundId | undefined {
  if (typeof id !== 'string') return undefined;
  const n = id.length;
  if (n === 0 || n > MAX_ID_LENGTH) return undefined;
  let digits = true;
  for (let i = 0; i < n; i++) {
    const c = id.charCodeAt(i);
    const k = c < 128 ? ID_CHAR[c]! : 0;
    if (k === 0) return undefined;
    if (k === 2) digits = false;
  }
  if (digits && n <= MAX_INTEGER_DIGITS && (n === 1 || id.charCodeAt(0) !== 48)) return Number(id);
  return id;
}

/** The id for a stored value (INTEGERs come back as JS numbers, exact below 2^53). */
export function decodeId(value: unknown): string {
  return typeof value === 'string' ? value : String(value);
}

/**
 * Checks every pair of `subs` and returns them encoded, flat: `[subscribee0, subscriber0,
 * subscribee1, …]`. Throws the same {@link InvalidInputError} as {@link validateSubscriptions}
 * (naming the index, prefixed by `what`) when any pair is bad, before anything is written.
 */
export function encodePairs(subs: readonly Subscription[], what = 'subscriptions'): BoundId[] {
  if (!Array.isArray(subs)) validateSubscriptions(subs, what);
  const out: BoundId[] = new Array(subs.length * 2);
  for (let i = 0; i < subs.length; i++) {
    const s = subs[i];
    const ee = s === null || typeof s !== 'object' ? undefined : encodeId(s.subscribee);
    const er = ee === undefined ? undefined : encodeId(s!.subscriber);
    if (ee === undefined || er === undefined || ee === er) {
      validateSubscriptions(subs, what); // throws, naming the first bad pair
      throw new InternalError(`pair ${i} failed the fast id check but passed validation`);
    }
    out[2 * i] = ee;
    out[2 * i + 1] = er;
  }
  return out;
}

/** SQL for a bound id parameter or column: a REAL (a bound JS number) becomes its INTEGER. */
export function sqlId(expr: string): string {
  return `iif(typeof(${expr}) = 'real', CAST(${expr} AS INTEGER), ${expr})`;
}

/** `INSERT [OR IGNORE] INTO table (subscribee, subscriber)` for `rows` bound pairs at once. */
export function insertPairsSql(verb: string, table: string, rows: number): string {
  const values = Array.from({ length: rows }, () => '(?, ?)').join(', ');
  return `${verb} INTO ${table} (subscribee, subscriber)
    SELECT ${sqlId('column1')}, ${sqlId('column2')} FROM (VALUES ${values})`;
}
