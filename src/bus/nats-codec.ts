/**
 * Wire formats of the NATS bus: how a user id becomes a subject token, how a {@link Message}
 * travels, and the tally request/reply that turns "published" into an exact delivered count.
 *
 * Binary rather than JSON: the receiving gateway reads the publisher id, sequence number and
 * event id first and skips the rest when it already holds the Message for that event id (several
 * recipients of one send on the same gateway), and one encode serves every recipient of a send.
 * `bench/bus.ts` measures both encodings.
 *
 * All numbers are little-endian. Strings are UTF-8 with a length prefix, except the body, which
 * runs to the end of the payload.
 *
 * Message (router → `<prefix>.u.<token>`, one per recipient, same bytes for all):
 *
 *     u8 format=1 | u8 P | P bytes publisher id | f64 seq | f64 ts
 *     | u16 E | E bytes eid | u16 S | S bytes subject | body …
 *
 * Tally request (router → `<prefix>.tally`, reply subject `<prefix>.tr.<router id>`):
 *
 *     u8 format=2 | u32 round | u8 P | P bytes publisher id | u32 n | n × f64 seq
 *
 * Tally reply (gateway → reply subject), only the sequence numbers it delivered to:
 *
 *     u8 format=3 | u32 round | u8 G | G bytes gateway id | u32 m | m × (u32 index, u32 count)
 *
 * `index` points into the request's seq list, so a reply is as small as the gateway's share.
 *
 * Interest delta (gateway → `<prefix>.gw.int`), ids a gateway gained and lost since its last one:
 *
 *     u8 format=4 | u8 G | G bytes gateway id | f64 seq | u32 a | u32 r | (a + r) × (u8 L | L bytes id)
 *
 * Interest snapshot (gateway → `<prefix>.snap.<router id>`, in parts), every id it holds at `seq`:
 *
 *     u8 format=5 | u8 G | G bytes gateway id | f64 seq | u32 part | u8 last | u32 n | n × (u8 L | L bytes id)
 */

import { InvalidInputError, WireFormatError } from '../errors.js';
import { Message } from '../message.js';
import type { GatewayLoad } from './bus.js';

const FORMAT_MESSAGE = 1;
const FORMAT_TALLY_REQUEST = 2;
const FORMAT_TALLY_REPLY = 3;
const FORMAT_DELTA = 4;
const FORMAT_SNAPSHOT = 5;

/**
 * A user id as one NATS subject token. `.` separates tokens in NATS, so it becomes `~`, which
 * ids never contain (see `ID_PATTERN`); `:`, `_` and `-` are plain token characters. Bijective
 * on valid ids.
 */
export function idToToken(id: string): string {
  return id.includes('.') ? id.replaceAll('.', '~') : id;
}

/** The inverse of {@link idToToken}. */
export function tokenToId(token: string): string {
  return token.includes('~') ? token.replaceAll('~', '.') : token;
}

export { WireFormatError };

/** `data` as a Buffer; the client hands out Buffers already, so this is usually free. */
export function view(data: Uint8Array): Buffer {
  return data instanceof Buffer ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function need(buf: Buffer, end: number, what: string): void {
  if (end > buf.length) throw new WireFormatError(`truncated ${what}: needs ${end} bytes, has ${buf.length}`);
}

/** Encodes `msg` once for all recipients of one send by publisher `pubId`, send number `seq`. */
export function encodeMessage(pubId: string, seq: number, msg: Message): Buffer {
  const p = Buffer.byteLength(pubId, 'latin1');
  const e = Buffer.byteLength(msg.eid);
  const s = Buffer.byteLength(msg.subject);
  const b = Buffer.byteLength(msg.body);
  if (p > 255) throw new InvalidInputError(`publisher id is ${p} bytes, the limit is 255`);
  if (e > 0xffff || s > 0xffff) throw new InvalidInputError('event id or subject longer than 65535 bytes');
  const buf = Buffer.allocUnsafe(1 + 1 + p + 8 + 8 + 2 + e + 2 + s + b);
  let o = buf.writeUInt8(FORMAT_MESSAGE, 0);
  o = buf.writeUInt8(p, o);
  o += buf.write(pubId, o, 'latin1');
  o = buf.writeDoubleLE(seq, o);
  o = buf.writeDoubleLE(msg.ts, o);
  o = buf.writeUInt16LE(e, o);
  o += buf.write(msg.eid, o, 'utf8');
  o = buf.writeUInt16LE(s, o);
  o += buf.write(msg.subject, o, 'utf8');
  buf.write(msg.body, o, 'utf8');
  return buf;
}

/**
 * The head of a message payload: enough to count the delivery and to find a cached Message.
 * `rest` is where the subject starts, for {@link decodeMessageRest}.
 */
export interface MessageHead {
  readonly pubId: string;
  readonly seq: number;
  readonly ts: number;
  readonly eid: string;
  readonly rest: number;
}

/** Reads the head of a message payload; throws {@link WireFormatError} on a foreign payload. */
export function decodeMessageHead(data: Uint8Array): MessageHead {
  const buf = view(data);
  need(buf, 2, 'message');
  if (buf[0] !== FORMAT_MESSAGE) throw new WireFormatError(`not a bus message (format byte ${buf[0]})`);
  const p = buf.readUInt8(1);
  need(buf, 2 + p + 18, 'message head');
  const pubId = buf.toString('latin1', 2, 2 + p);
  let o = 2 + p;
  const seq = buf.readDoubleLE(o);
  const ts = buf.readDoubleLE(o + 8);
  o += 16;
  const e = buf.readUInt16LE(o);
  o += 2;
  need(buf, o + e + 2, 'event id');
  const eid = buf.toString('utf8', o, o + e);
  return { pubId, seq, ts, eid, rest: o + e };
}

/**
 * True when `buf` is a message of the send identified by publisher id bytes `pubId` and `seq`,
 * read without decoding any string: the receiver's fast path for the several recipients of one
 * send that arrive back to back.
 */
export function isSameSend(buf: Buffer, pubId: Uint8Array, seq: number): boolean {
  const p = pubId.length;
  if (buf[0] !== FORMAT_MESSAGE || buf[1] !== p || buf.length < 2 + p + 16) return false;
  for (let i = 0; i < p; i++) if (buf[2 + i] !== pubId[i]) return false;
  return buf.readDoubleLE(2 + p) === seq;
}

/** Builds the Message of a payload whose head is `head`. */
export function decodeMessageRest(data: Uint8Array, head: MessageHead): Message {
  const buf = view(data);
  const s = buf.readUInt16LE(head.rest);
  const o = head.rest + 2;
  need(buf, o + s, 'subject');
  return new Message(
    head.eid,
    buf.toString('utf8', o, o + s),
    buf.toString('utf8', o + s, buf.length),
    head.ts,
  );
}

/**
 * NATS protocol frames publishing `payload` once per recipient, as one buffer:
 * `PUB <subjectPrefix><token> <length>\r\n<payload>\r\n` per recipient. Subjects are ASCII (ids and
 * prefix are validated), so their length in characters is their length in bytes.
 */
export function encodePubFrames(
  subjectPrefix: string,
  recipients: readonly string[],
  payload: Uint8Array,
): Buffer {
  const tail = ` ${payload.length}\r\n`;
  const heads = new Array<string>(recipients.length);
  let size = 0;
  for (let i = 0; i < recipients.length; i++) {
    const head = `PUB ${subjectPrefix}${idToToken(recipients[i] as string)}${tail}`;
    heads[i] = head;
    size += head.length + payload.length + 2;
  }
  const buf = Buffer.allocUnsafe(size);
  let o = 0;
  for (const head of heads) {
    o += buf.write(head, o, 'latin1');
    buf.set(payload, o);
    o += payload.length;
    buf[o++] = 13;
    buf[o++] = 10;
  }
  return buf;
}

/** A tally request as a gateway reads it. */
export interface TallyRequest {
  readonly round: number;
  readonly pubId: string;
  readonly seqs: readonly number[];
}

/** Encodes the request for round `round` of publisher `pubId`, asking for `seqs`. */
export function encodeTallyRequest(round: number, pubId: string, seqs: readonly number[]): Buffer {
  const p = Buffer.byteLength(pubId, 'latin1');
  const buf = Buffer.allocUnsafe(1 + 4 + 1 + p + 4 + 8 * seqs.length);
  let o = buf.writeUInt8(FORMAT_TALLY_REQUEST, 0);
  o = buf.writeUInt32LE(round, o);
  o = buf.writeUInt8(p, o);
  o += buf.write(pubId, o, 'latin1');
  o = buf.writeUInt32LE(seqs.length, o);
  for (const seq of seqs) o = buf.writeDoubleLE(seq, o);
  return buf;
}

/** Reads a tally request; throws {@link WireFormatError} on anything else. */
export function decodeTallyRequest(data: Uint8Array): TallyRequest {
  const buf = view(data);
  need(buf, 6, 'tally request');
  if (buf[0] !== FORMAT_TALLY_REQUEST)
    throw new WireFormatError(`not a tally request (format byte ${buf[0]})`);
  const round = buf.readUInt32LE(1);
  const p = buf.readUInt8(5);
  need(buf, 6 + p + 4, 'tally request head');
  const pubId = buf.toString('latin1', 6, 6 + p);
  let o = 6 + p;
  const n = buf.readUInt32LE(o);
  o += 4;
  need(buf, o + 8 * n, 'tally request seqs');
  const seqs = new Array<number>(n);
  for (let i = 0; i < n; i++, o += 8) seqs[i] = buf.readDoubleLE(o);
  return { round, pubId, seqs };
}

/** A gateway's answer: `pairs` is flat `[index, count, index, count, …]`. */
export interface TallyReply {
  readonly round: number;
  readonly gatewayId: string;
  readonly pairs: readonly number[];
}

/** Encodes a gateway's answer to tally `round`; `pairs` as in {@link TallyReply}. */
export function encodeTallyReply(round: number, gatewayId: string, pairs: readonly number[]): Buffer {
  const g = Buffer.byteLength(gatewayId, 'latin1');
  const buf = Buffer.allocUnsafe(1 + 4 + 1 + g + 4 + 4 * pairs.length);
  let o = buf.writeUInt8(FORMAT_TALLY_REPLY, 0);
  o = buf.writeUInt32LE(round, o);
  o = buf.writeUInt8(g, o);
  o += buf.write(gatewayId, o, 'latin1');
  o = buf.writeUInt32LE(pairs.length / 2, o);
  for (const v of pairs) o = buf.writeUInt32LE(v, o);
  return buf;
}

/** Reads a tally reply; throws {@link WireFormatError} on anything else. */
export function decodeTallyReply(data: Uint8Array): TallyReply {
  const buf = view(data);
  need(buf, 6, 'tally reply');
  if (buf[0] !== FORMAT_TALLY_REPLY) throw new WireFormatError(`not a tally reply (format byte ${buf[0]})`);
  const round = buf.readUInt32LE(1);
  const g = buf.readUInt8(5);
  need(buf, 6 + g + 4, 'tally reply head');
  const gatewayId = buf.toString('latin1', 6, 6 + g);
  let o = 6 + g;
  const m = buf.readUInt32LE(o);
  o += 4;
  need(buf, o + 8 * m, 'tally reply pairs');
  const pairs = new Array<number>(2 * m);
  for (let i = 0; i < 2 * m; i++, o += 4) pairs[i] = buf.readUInt32LE(o);
  return { round, gatewayId, pairs };
}

/** Bytes an id list takes in a delta or snapshot (ids are ASCII, at most 255 bytes: ids.ts). */
function idsBytes(ids: readonly string[]): number {
  let n = 0;
  for (const id of ids) n += 1 + id.length;
  return n;
}

function writeIds(buf: Buffer, o: number, ids: readonly string[]): number {
  for (const id of ids) {
    buf[o++] = id.length;
    o += buf.write(id, o, 'latin1');
  }
  return o;
}

function readIds(buf: Buffer, o: number, n: number, what: string): [string[], number] {
  const ids = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    need(buf, o + 1, what);
    const len = buf[o]!;
    need(buf, o + 1 + len, what);
    ids[i] = buf.toString('latin1', o + 1, o + 1 + len);
    o += 1 + len;
  }
  return [ids, o];
}

function writeHead(format: number, gatewayId: string, seq: number, extra: number): [Buffer, number] {
  const g = Buffer.byteLength(gatewayId, 'latin1');
  const buf = Buffer.allocUnsafe(1 + 1 + g + 8 + extra);
  let o = buf.writeUInt8(format, 0);
  o = buf.writeUInt8(g, o);
  o += buf.write(gatewayId, o, 'latin1');
  o = buf.writeDoubleLE(seq, o);
  return [buf, o];
}

function readHead(buf: Buffer, format: number, what: string): { gatewayId: string; seq: number; o: number } {
  need(buf, 2, what);
  if (buf[0] !== format) throw new WireFormatError(`not ${what} (format byte ${buf[0]})`);
  const g = buf[1]!;
  need(buf, 2 + g + 8, what);
  return { gatewayId: buf.toString('latin1', 2, 2 + g), seq: buf.readDoubleLE(2 + g), o: 2 + g + 8 };
}

/** An interest delta: what one gateway gained (`adds`) and lost (`removes`), numbered `seq`. */
export interface InterestDelta {
  readonly gatewayId: string;
  readonly seq: number;
  readonly adds: readonly string[];
  readonly removes: readonly string[];
}

export function encodeDelta(
  gatewayId: string,
  seq: number,
  adds: readonly string[],
  removes: readonly string[],
): Buffer {
  const [buf, start] = writeHead(FORMAT_DELTA, gatewayId, seq, 8 + idsBytes(adds) + idsBytes(removes));
  let o = buf.writeUInt32LE(adds.length, start);
  o = buf.writeUInt32LE(removes.length, o);
  writeIds(buf, writeIds(buf, o, adds), removes);
  return buf;
}

export function decodeDelta(data: Uint8Array): InterestDelta {
  const buf = view(data);
  const h = readHead(buf, FORMAT_DELTA, 'an interest delta');
  need(buf, h.o + 8, 'an interest delta');
  const a = buf.readUInt32LE(h.o);
  const r = buf.readUInt32LE(h.o + 4);
  const [adds, o] = readIds(buf, h.o + 8, a, 'interest delta adds');
  const [removes] = readIds(buf, o, r, 'interest delta removes');
  return { gatewayId: h.gatewayId, seq: h.seq, adds, removes };
}

/** One part of an interest snapshot. */
export interface InterestSnapshot {
  readonly gatewayId: string;
  readonly seq: number;
  readonly part: number;
  readonly last: boolean;
  readonly ids: readonly string[];
}

export function encodeSnapshot(
  gatewayId: string,
  seq: number,
  part: number,
  last: boolean,
  ids: readonly string[],
): Buffer {
  const [buf, start] = writeHead(FORMAT_SNAPSHOT, gatewayId, seq, 9 + idsBytes(ids));
  let o = buf.writeUInt32LE(part, start);
  o = buf.writeUInt8(last ? 1 : 0, o);
  o = buf.writeUInt32LE(ids.length, o);
  writeIds(buf, o, ids);
  return buf;
}

export function decodeSnapshot(data: Uint8Array): InterestSnapshot {
  const buf = view(data);
  const h = readHead(buf, FORMAT_SNAPSHOT, 'an interest snapshot');
  need(buf, h.o + 9, 'an interest snapshot');
  const part = buf.readUInt32LE(h.o);
  const last = buf[h.o + 4] === 1;
  const n = buf.readUInt32LE(h.o + 5);
  const [ids] = readIds(buf, h.o + 9, n, 'interest snapshot ids');
  return { gatewayId: h.gatewayId, seq: h.seq, part, last, ids };
}

/**
 * Membership announcements on `<prefix>.gw.hb` (gateways) and `<prefix>.rt.hb` (routers): text,
 * so `nats sub 'sb.gw.>'` is readable. A gateway's heartbeat carries its load and the seq of its
 * last interest delta: `hb <id> <connections> <ids> <seq>`.
 */
export type Announcement = {
  readonly kind: 'hb' | 'bye';
  readonly gatewayId: string;
  readonly connections: number;
  readonly ids: number;
  /** Seq of the gateway's last interest delta (0 when it sent none or does not say). */
  readonly seq: number;
  /** A router's heartbeat number, counting from 1 (-1: not numbered). A gap means lost messages. */
  readonly beat: number;
};

/** `hb <id> [<connections> <ids> <seq> [<beat>]]` or `bye <id>`. */
export function encodeAnnouncement(
  kind: 'hb' | 'bye',
  gatewayId: string,
  load?: GatewayLoad,
  seq = 0,
  beat = -1,
): string {
  if (load === undefined || kind === 'bye') return `${kind} ${gatewayId}`;
  const head = `${kind} ${gatewayId} ${load.connections} ${load.ids} ${seq}`;
  return beat < 0 ? head : `${head} ${beat}`;
}

/** Reads an announcement; throws {@link WireFormatError} on anything else. */
export function decodeAnnouncement(data: Uint8Array): Announcement {
  const text = view(data).toString('latin1');
  const [kind, gatewayId, connections = '0', ids = '0', seqText = '0', beatText = '-1', ...extra] =
    text.split(' ');
  const c = Number(connections);
  const i = Number(ids);
  const seq = Number(seqText);
  const beat = Number(beatText);
  if (
    gatewayId === undefined ||
    gatewayId.length === 0 ||
    (kind !== 'hb' && kind !== 'bye') ||
    extra.length > 0 ||
    !Number.isSafeInteger(c) ||
    !Number.isSafeInteger(i) ||
    c < 0 ||
    i < 0 ||
    !Number.isSafeInteger(seq) ||
    seq < 0 ||
    !Number.isSafeInteger(beat) ||
    beat < -1
  ) {
    throw new WireFormatError(`not a gateway announcement: ${JSON.stringify(text.slice(0, 40))}`);
  }
  return { kind, gatewayId, connections: c, ids: i, seq, beat };
}
