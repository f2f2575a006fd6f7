/**
 * Request bodies for the API: read with a byte limit (413 as soon as it is passed, without
 * buffering the rest), parsed as JSON or NDJSON with errors that say where the problem is.
 */
import type { IncomingMessage } from 'node:http';
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
