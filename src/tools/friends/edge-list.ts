/**
 * Streaming reader for edge-list files (`fakefriends.txt`): one edge per line, two ids separated
 * by spaces or tabs, as igraph's `write_edgelist` and `friends generate` write them.
 *
 *     # comments and blank lines are skipped
 *     2 1
 *     user:17	user:4        ← any ids from the id alphabet (src/ids.ts), tab or spaces between
 *
 * Input is read in large chunks and parsed by scanning character codes (no regex or split per
 * line); edges come out in batches of flat id arrays, so memory stays at one chunk plus one batch
 * whatever the file size. A malformed line stops the reader with an {@link EdgeListError} naming
 * the file, the 1-based line number and the line; the batch it was in is never yielded.
 */
import { createReadStream } from 'node:fs';
import { InvalidInputError } from '../../errors.js';
import { MAX_ID_LENGTH } from '../../ids.js';

/** Default edges per batch. */
export const DEFAULT_BATCH_EDGES = 25_000;
/** Read size for files. */
export const READ_CHUNK_BYTES = 1024 * 1024;
/** A line longer than this is an error (it cannot hold two ids), and keeps memory bounded. */
export const MAX_LINE_BYTES = 4096;
/** How much of a bad line an error message shows. */
const SHOWN_LINE_CHARS = 80;

/** One batch of edges. */
export interface EdgeBatch {
  /** Flat: edge i is (`ids[2i]`, `ids[2i+1]`), in file order. */
  readonly ids: string[];
  /** Input bytes consumed up to the end of this batch's last line (for progress). */
  readonly bytes: number;
  /** Lines read so far, comments and blank lines included. */
  readonly lines: number;
}

/** A line that is not `id id`. */
export class EdgeListError extends InvalidInputError {
  /** Name of the input (file path, or `stdin`). */
  readonly file: string;
  /** 1-based line number. */
  readonly line: number;
  /** The line as read, cut to {@link SHOWN_LINE_CHARS} characters. */
  readonly text: string;
  /** What is wrong with it, e.g. `3 fields`. */
  readonly problem: string;

  /** `line` is the raw line; it is shortened for the message. `note` is appended in parentheses. */
  constructor(file: string, line: number, text: string, problem: string, note?: string) {
    const shown = text.length > SHOWN_LINE_CHARS ? `${text.slice(0, SHOWN_LINE_CHARS)}…` : text;
    super(
      `${file}:${line}: ${problem}; expected two ids separated by a space, got ${JSON.stringify(shown)}` +
        (note === undefined ? '' : ` (${note})`),
    );
    this.file = file;
    this.line = line;
    this.text = shown;
    this.problem = problem;
  }

  /** The same error with `note` added to the message (e.g. what was loaded before it). */
  withNote(note: string): EdgeListError {
    return new EdgeListError(this.file, this.line, this.text, this.problem, note);
  }
}

/** Options for {@link readEdgeBatches}. */
export interface EdgeListOptions {
  /** Name used in error messages, e.g. the file path. */
  readonly name: string;
  /** Edges per batch; default {@link DEFAULT_BATCH_EDGES}. */
  readonly batchEdges?: number;
  /** Stops at the next batch boundary when aborted (the generator just returns). */
  readonly signal?: AbortSignal;
}

// Character classes, by char code: 1 = id character, 2 = separator (space, tab, CR).
const CLASS = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.-')
  CLASS[c.charCodeAt(0)] = 1;
CLASS[32] = 2;
CLASS[9] = 2;
CLASS[13] = 2;
const HASH = 35;

function classOf(code: number): number {
  return code < 128 ? CLASS[code]! : 0;
}

/** Why a line that failed the fast scan is bad, in words. */
function describe(line: string): string {
  const fields = line.trim().split(/[ \t]+/);
  if (fields.length === 1) return 'only one id';
  if (fields.length > 2) return `${fields.length} fields`;
  for (const f of fields) {
    if (f.length > MAX_ID_LENGTH)
      return `an id is ${f.length} characters long, the limit is ${MAX_ID_LENGTH}`;
    const bad = [...f].find((c) => classOf(c.charCodeAt(0)) !== 1 || c.length > 1);
    if (bad !== undefined)
      return `an id contains ${JSON.stringify(bad)}; allowed are letters, digits and : _ . -`;
  }
  return 'not an edge';
}

/**
 * Parses the complete lines in `text` (which ends just after a newline, or is the file's last
 * line), appending ids to `out`. Returns the index just past the last line handled: it stops early
 * once `out` holds `maxIds` ids so batches keep their size. Throws {@link EdgeListError}.
 */
function parseLines(
  text: string,
  from: number,
  out: string[],
  maxIds: number,
  state: { line: number; name: string },
): number {
  const end = text.length;
  let p = from;
  while (p < end && out.length < maxIds) {
    const lineStart = p;
    let nl = text.indexOf('\n', p);
    if (nl === -1) nl = end;
    state.line++;
    // Skip leading separators; a blank or comment line carries no edge.
    while (p < nl && classOf(text.charCodeAt(p)) === 2) p++;
    if (p === nl || text.charCodeAt(p) === HASH) {
      p = nl + 1;
      continue;
    }
    const a = p;
    while (p < nl && classOf(text.charCodeAt(p)) === 1) p++;
    const aEnd = p;
    while (p < nl && classOf(text.charCodeAt(p)) === 2) p++;
    const b = p;
    while (p < nl && classOf(text.charCodeAt(p)) === 1) p++;
    const bEnd = p;
    while (p < nl && classOf(text.charCodeAt(p)) === 2) p++;
    if (p !== nl || aEnd === b || bEnd === b || aEnd - a > MAX_ID_LENGTH || bEnd - b > MAX_ID_LENGTH) {
      const line = text.slice(lineStart, nl).replace(/\r$/, '');
      throw new EdgeListError(state.name, state.line, line, describe(line));
    }
    out.push(text.slice(a, aEnd), text.slice(b, bEnd));
    p = nl + 1;
  }
  return p;
}

/**
 * Reads `input` (Buffer or string chunks, e.g. a file stream) and yields batches of edges.
 * Only whole lines are parsed; a chunk's trailing partial line waits for the next chunk.
 */
export async function* readEdgeBatches(
  input: AsyncIterable<Buffer | string>,
  options: EdgeListOptions,
): AsyncGenerator<EdgeBatch, void, undefined> {
  const maxIds = 2 * (options.batchEdges ?? DEFAULT_BATCH_EDGES);
  const state = { line: 0, name: options.name };
  let carry: Buffer = Buffer.alloc(0);
  let consumed = 0; // bytes before `carry`
  let ids: string[] = [];

  /** Parses complete lines in `bytes`; yields every full batch. */
  async function* handle(bytes: Buffer): AsyncGenerator<EdgeBatch, void, undefined> {
    const text = bytes.toString('utf8');
    let at = 0;
    // Map string positions back to bytes only when the text is not plain ASCII.
    const ascii = text.length === bytes.length;
    while (at < text.length) {
      at = parseLines(text, at, ids, maxIds, state);
      if (ids.length >= maxIds) {
        const done = ascii ? at : Buffer.byteLength(text.slice(0, at), 'utf8');
        const batch: EdgeBatch = { ids, bytes: consumed + Math.min(done, bytes.length), lines: state.line };
        ids = [];
        yield batch;
        if (options.signal?.aborted) return;
      }
    }
  }

  for await (const chunk of input) {
    if (options.signal?.aborted) return;
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    const lastNl = buf.lastIndexOf(10);
    if (lastNl === -1) {
      carry = carry.length === 0 ? buf : Buffer.concat([carry, buf]);
      if (carry.length > MAX_LINE_BYTES) {
        const text = carry.subarray(0, SHOWN_LINE_CHARS * 4).toString('utf8');
        throw new EdgeListError(state.name, state.line + 1, text, `line longer than ${MAX_LINE_BYTES} bytes`);
      }
      continue;
    }
    const whole =
      carry.length === 0 ? buf.subarray(0, lastNl + 1) : Buffer.concat([carry, buf.subarray(0, lastNl + 1)]);
    yield* handle(whole);
    if (options.signal?.aborted) return;
    consumed += whole.length;
    // Copy the tail so the (large) chunk it came from can be freed.
    carry = Buffer.from(buf.subarray(lastNl + 1));
  }
  if (carry.length > 0) {
    yield* handle(carry);
    consumed += carry.length;
  }
  if (ids.length > 0 && !options.signal?.aborted) yield { ids, bytes: consumed, lines: state.line };
}

/** A file read stream sized for {@link readEdgeBatches}. */
export function openEdgeListFile(file: string): AsyncIterable<Buffer> {
  return createReadStream(file, { highWaterMark: READ_CHUNK_BYTES });
}
