/**
 * What flood reads inside a stream's messages, byte by byte and across reads:
 *
 * - the send stamp ` t=<ms since the epoch>` that `msggen --stamp` appends (see `stampText`):
 *   the first one in a message gives one publish → receive latency sample, taken when the
 *   number ends (the time of the read that completed it);
 * - Server-Sent Events lines: an event with `data:` and no `event:` name is one message; named
 *   events are control (`disconnect`, `gap`); comments (`:`), `id:` and `retry:` are skipped.
 *
 * State lives in {@link FloodConn}'s small-integer fields; nothing received is kept.
 */
import { F_EV_DATA, F_EV_NAMED, type FloodConn, type FloodCounters } from './conn.js';

/** Stamp scanner states. */
const T_BOUND = 0; // the previous byte ends a word: a `t` here may start a stamp
const T_WORD = 1;
const T_T = 2;
const T_EQ = 3;
const T_INT = 4;
const T_FRAC = 5;
const T_DONE = 6;

/** SSE line states. */
const L_START = 0;
const L_FIELD = 1;
const L_DATA_SPACE = 2;
const L_DATA = 3;
const L_SKIP = 4;

const LF = 10;
const CR = 13;
/** Stamps below this (ms) are not epoch times (before 2001) and are ignored. */
const MIN_STAMP_MS = 1e12;
/** Digits kept in the high part of a stamp (below 2^31, a small integer in V8). */
const HI_DIGITS = 9;
/** Most digits a stamp may have (13 integer + 6 fraction, with room). */
const MAX_STAMP_DIGITS = 18;
const FIELD_DATA = 'data';
const FIELD_EVENT = 'event';

/** Scans `buf[i, end)` of one message for its stamp (chunk-per-message streams). */
export function scanBytes(conn: FloodConn, buf: Buffer, i: number, end: number, ctr: FloodCounters): void {
  for (let j = i; j < end && conn.st !== T_DONE; j++) scan(conn, buf[j]!, ctr);
}

/** A new message begins: forget any stamp. */
export function resetStamp(conn: FloodConn): void {
  conn.st = T_BOUND;
  conn.stHi = 0;
  conn.stLo = 0;
  conn.stCounts = 0;
}

function isWordByte(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || ((b | 0x20) >= 0x61 && (b | 0x20) <= 0x7a) || b === 0x5f;
}

/**
 * Adds one digit to the stamp being read. Digits go to `stHi` until it has {@link HI_DIGITS},
 * then to `stLo`; both stay small integers. `stCounts` = low digits × 32 + fraction digits.
 */
function digit(conn: FloodConn, d: number, fraction: boolean): void {
  const lowDigits = conn.stCounts >> 5;
  if (conn.stHi < 10 ** (HI_DIGITS - 1) && lowDigits === 0) conn.stHi = conn.stHi * 10 + d;
  else if (lowDigits < MAX_STAMP_DIGITS - HI_DIGITS) {
    conn.stLo = conn.stLo * 10 + d;
    conn.stCounts += 32;
  } else return;
  if (fraction) conn.stCounts++;
}

/** Feeds one byte of message text to the stamp scanner: ` t=1712345678901.123`. */
function scan(conn: FloodConn, b: number, ctr: FloodCounters): void {
  switch (conn.st) {
    case T_INT:
      if (b >= 0x30 && b <= 0x39) digit(conn, b - 0x30, false);
      else if (b === 0x2e) conn.st = T_FRAC;
      else endNumber(conn, b, ctr);
      return;
    case T_FRAC:
      if (b >= 0x30 && b <= 0x39) digit(conn, b - 0x30, true);
      else endNumber(conn, b, ctr);
      return;
    case T_EQ:
      if (b >= 0x30 && b <= 0x39) {
        conn.st = T_INT;
        digit(conn, b - 0x30, false);
      } else conn.st = isWordByte(b) ? T_WORD : T_BOUND;
      return;
    case T_T:
      conn.st = b === 0x3d ? T_EQ : isWordByte(b) ? T_WORD : T_BOUND;
      return;
    case T_BOUND:
      conn.st = b === 0x74 ? T_T : isWordByte(b) ? T_WORD : T_BOUND;
      return;
    case T_WORD:
      if (!isWordByte(b)) conn.st = T_BOUND;
      return;
    default:
      return;
  }
}

/**
 * A number after `t=` ended at byte `b`: when it is an epoch time, record the latency now
 * (this read's arrival) and stop scanning this message; else scan on.
 */
function endNumber(conn: FloodConn, b: number, ctr: FloodCounters): void {
  const low = conn.stCounts >> 5;
  const frac = conn.stCounts & 31;
  const stamp = (conn.stHi * 10 ** low + conn.stLo) / 10 ** frac;
  conn.stHi = 0;
  conn.stLo = 0;
  conn.stCounts = 0;
  if (stamp >= MIN_STAMP_MS) {
    ctr.latency.record(performance.timeOrigin + performance.now() - stamp);
    conn.st = T_DONE;
  } else conn.st = isWordByte(b) ? T_WORD : T_BOUND;
}

/** The message ended; a number still being read is complete. */
export function finishStamp(conn: FloodConn, ctr: FloodCounters): void {
  if (conn.st === T_INT || conn.st === T_FRAC) endNumber(conn, 0x20, ctr);
}

/** Feeds de-chunked bytes of an SSE stream to the line scanner. */
export function sseBytes(conn: FloodConn, buf: Buffer, i: number, end: number, ctr: FloodCounters): void {
  for (; i < end; i++) {
    const b = buf[i]!;
    switch (conn.ln) {
      case L_START:
        if (b === LF) dispatch(conn, ctr);
        else if (b === 0x3a) conn.ln = L_SKIP;
        else if (b !== CR) {
          conn.ln = L_FIELD;
          conn.field = 3;
          fieldByte(conn, b);
        }
        break;
      case L_FIELD:
        if (b === 0x3a || b === LF) {
          const pos = conn.field >> 2;
          const isData = (conn.field & 1) !== 0 && pos === FIELD_DATA.length;
          if ((conn.field & 2) !== 0 && pos === FIELD_EVENT.length) conn.flags |= F_EV_NAMED;
          if (isData) {
            // A second data line: the newline between them ends a word for the scanner.
            if ((conn.flags & F_EV_DATA) !== 0 && conn.st !== T_DONE) scan(conn, LF, ctr);
            conn.flags |= F_EV_DATA;
          }
          if (b === LF) conn.ln = L_START;
          else conn.ln = isData ? L_DATA_SPACE : L_SKIP;
        } else if (b !== CR) fieldByte(conn, b);
        break;
      case L_DATA_SPACE:
        conn.ln = L_DATA;
        if (b === 0x20) break;
        if (b === LF) {
          conn.ln = L_START;
          break;
        }
        if (conn.st !== T_DONE) scan(conn, b, ctr);
        break;
      case L_DATA:
        if (b === LF) {
          conn.ln = L_START;
          finishStamp(conn, ctr);
        } else if (b !== CR && conn.st !== T_DONE) scan(conn, b, ctr);
        break;
      default:
        // L_SKIP: comment, id:, retry:, event: values
        if (b === LF) conn.ln = L_START;
        break;
    }
  }
}

/** Matches one byte of a field name against `data` (bit 1) and `event` (bit 2). */
function fieldByte(conn: FloodConn, b: number): void {
  const pos = conn.field >> 2;
  let bits = conn.field & 3;
  if (pos >= FIELD_DATA.length || FIELD_DATA.charCodeAt(pos) !== b) bits &= ~1;
  if (pos >= FIELD_EVENT.length || FIELD_EVENT.charCodeAt(pos) !== b) bits &= ~2;
  conn.field = ((pos + 1) << 2) | bits;
}

/** A blank line ends an SSE event: one message if it had data and no event name. */
function dispatch(conn: FloodConn, ctr: FloodCounters): void {
  if ((conn.flags & F_EV_DATA) !== 0) {
    if ((conn.flags & F_EV_NAMED) !== 0) ctr.controls++;
    else {
      ctr.chunks++;
      finishStamp(conn, ctr);
    }
  }
  conn.flags &= ~(F_EV_DATA | F_EV_NAMED);
  resetStamp(conn);
}
