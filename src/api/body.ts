/**
 * Request bodies for the API: read with a byte limit (413 as soon as it is passed, without
 * buffering the rest), parsed as JSON or NDJSON with errors that say where the problem is.
 */
import type { IncomingMessage } from 'node:http';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { InvalidInputError, PayloadTooLargeError } from '../errors.js';

/** Reads the whole body, failing with 413 once it passes `limit` bytes. */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    throw new PayloadTooLargeError(`request body is ${declared} bytes, the limit is ${limit}`, limit);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const piece of req) {
    const buf = piece as Buffer;
    total += buf.length;
    if (total > limit)
      throw new PayloadTooLargeError(`request body is over the limit of ${limit} bytes`, limit);
    chunks.push(buf);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/** Parses JSON, turning a syntax error into a 400 that says so. */
export function parseJson(text: string, what = 'request body'): unknown {
  if (text.trim() === '') throw new InvalidInputError(`${what} is empty; expected JSON`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InvalidInputError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

/** One item of a batch with where it came from, for error messages. */
export interface BatchItem {
  readonly value: unknown;
  /** `messages[3]` or `line 4`. */
  readonly where: string;
}

/**
 * A batch body: a JSON array, or NDJSON (one JSON value per line, blank lines skipped). The form
 * is chosen by the first non-blank character, so `curl -d` works whatever Content-Type it sends.
 */
export function parseBatch(text: string): BatchItem[] {
  const first = text.trimStart()[0];
  if (first === undefined)
    throw new InvalidInputError('batch body is empty; expected a JSON array or NDJSON lines');
  if (first === '[') {
    const value = parseJson(text, 'batch body');
    if (!Array.isArray(value)) throw new InvalidInputError('batch body must be a JSON array');
    return value.map((v, i) => ({ value: v, where: `messages[${i}]` }));
  }
  const items: BatchItem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    items.push({ value: parseJson(line, `line ${i + 1}`), where: `line ${i + 1}` });
  }
  return items;
}

/** Checks `value` is a plain JSON object, naming `what` otherwise. */
export function asObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidInputError(`${what} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

/**
 * {@link parseBatch} in slices of at most `sliceMs` of work with an event-loop turn between:
 * one `JSON.parse` of a 200,000-message array holds the loop for about 300 ms. The top-level
 * array is split into its elements by a scan that only tracks strings and nesting, and each
 * element is parsed on its own, so errors name the element.
 */
export async function parseBatchInSlices(text: string, sliceMs: number): Promise<BatchItem[]> {
  const first = text.trimStart()[0];
  if (first !== '[') {
    const items: BatchItem[] = [];
    const lines = text.split('\n');
    let slice = performance.now();
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line !== '') items.push({ value: parseJson(line, `line ${i + 1}`), where: `line ${i + 1}` });
      if ((i & 1023) === 1023 && performance.now() - slice > sliceMs) {
        await nextTurn();
        slice = performance.now();
      }
    }
    if (items.length === 0)
      throw new InvalidInputError('batch body is empty; expected a JSON array or NDJSON lines');
    return items;
  }
  const items: BatchItem[] = [];
  let slice = performance.now();
  for (const [start, end] of arrayElements(text)) {
    const where = `messages[${items.length}]`;
    items.push({ value: parseJson(text.slice(start, end), where), where });
    if ((items.length & 1023) === 0 && performance.now() - slice > sliceMs) {
      await nextTurn();
      slice = performance.now();
    }
  }
  return items;
}

const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13;

/**
 * The [start, end) ranges of the elements of the JSON array `text`, found by tracking strings
 * and nesting only (each element is then parsed, which checks it). Throws {@link InvalidInputError}
 * for text around the array that is not whitespace, and for an array that does not end.
 */
function* arrayElements(text: string): Generator<[number, number]> {
  const n = text.length;
  let i = 0;
  while (i < n && isSpace(text.charCodeAt(i))) i++;
  i++; // the '[' the caller saw
  while (i < n && isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) === 93) {
    i++;
  } else {
    for (;;) {
      const start = i;
      let depth = 0;
      let inString = false;
      for (; i < n; i++) {
        const c = text.charCodeAt(i);
        if (inString) {
          if (c === 92) i++;
          else if (c === 34) inString = false;
        } else if (c === 34) inString = true;
        else if (c === 123 || c === 91) depth++;
        else if (c === 125 || c === 93) {
          if (depth === 0) break;
          depth--;
        } else if (c === 44 && depth === 0) break;
      }
      if (i >= n) throw new InvalidInputError('batch body is not valid JSON: the array does not end');
      if (text.charCodeAt(i) === 125) {
        throw new InvalidInputError(`batch body is not valid JSON: unexpected } at position ${i}`);
      }
      yield [start, i];
      if (text.charCodeAt(i++) === 93) break;
    }
  }
  while (i < n && isSpace(text.charCodeAt(i))) i++;
  if (i < n)
    throw new InvalidInputError(
      `batch body is not valid JSON: unexpected text after the array at position ${i}`,
    );
}
