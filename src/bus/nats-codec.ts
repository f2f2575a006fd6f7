/**
 * Wire formats of the NATS bus: how a user id becomes a subject token, how a {@link Message}
 * travels, and the tally request/reply that turns "published" into an exact delivered count.
 *
 * Binary rather than JSON: a router encodes a send once for all the gateways it goes to, and a
 * gateway reads many sends out of one NATS message. `bench/bus.ts` measures the encodings.
 *
 * All numbers are little-endian. Strings are UTF-8 or ASCII with a length prefix.
 *
 * Delivery batch (router → `<prefix>.dl.<gateway id>`): the sends of one event-loop turn for
 * the recipients that gateway holds, in send order; a send too wide for one record (many ids)
 * comes as several records with the same seq, back to back:
 *
 *     u8 format=6 | u8 P | P bytes publisher id | records to the end:
 *       f64 seq | f64 ts | u16 E | eid | u16 S | subject | u32 B | body
 *       | u32 k | k × (u8 L | L bytes id)
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

const FORMAT_TALLY_REQUEST = 2;
const FORMAT_TALLY_REPLY = 3;
const FORMAT_DELTA = 4;
const FORMAT_SNAPSHOT = 5;
const FORMAT_DELIVERIES = 6;

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

/**
 * The part of a delivery record that is the same for every gateway a send goes to:
 * `f64 seq | f64 ts | u16 E | eid | u16 S | subject | u32 B | body`. Encoded once per send.
 */
export function encodeSendRecord(seq: number, msg: Message): Buffer {
  const e = Buffer.byteLength(msg.eid);
  const s = Buffer.byteLength(msg.subject);
  const b = Buffer.byteLength(msg.body);
  if (e > 0xffff || s > 0xffff) throw new InvalidInputError('event id or subject longer than 65535 bytes');
  const buf = Buffer.allocUnsafe(8 + 8 + 2 + e + 2 + s + 4 + b);
  let o = buf.writeDoubleLE(seq, 0);
  o = buf.writeDoubleLE(msg.ts, o);
  o = buf.writeUInt16LE(e, o);
  o += buf.write(msg.eid, o, 'utf8');
  o = buf.writeUInt16LE(s, o);
  o += buf.write(msg.subject, o, 'utf8');
  o = buf.writeUInt32LE(b, o);
  buf.write(msg.body, o, 'utf8');
  return buf;
}

/** Bytes of a delivery batch's head for publisher `pubId`. */
export function deliveriesHeadBytes(pubId: string): number {
  return 2 + Buffer.byteLength(pubId, 'latin1');
}

/** Bytes one record of `send` (from {@link encodeSendRecord}) for `ids` takes in a batch. */
export function recordBytes(send: Uint8Array, ids: readonly string[]): number {
  return send.length + 4 + idsBytes(ids);
}

/**
 * A delivery batch being built for one gateway: the records of the sends of one event-loop turn
 * (or until it is big enough to go), written into one growing buffer.
 */
export class DeliveryBatch {
  readonly #head: Buffer;
  #buf: Buffer;
  #o: number;
  /** Records written since the last {@link take}. */
  records = 0;

  constructor(pubId: string, capacity = 4096) {
    const p = Buffer.byteLength(pubId, 'latin1');
    if (p > 255) throw new InvalidInputError(`publisher id is ${p} bytes, the limit is 255`);
    this.#head = Buffer.allocUnsafe(2 + p);
    this.#head[0] = FORMAT_DELIVERIES;
    this.#head[1] = p;
    this.#head.write(pubId, 2, 'latin1');
    this.#buf = Buffer.allocUnsafe(Math.max(capacity, this.#head.length));
    this.#o = this.#head.copy(this.#buf, 0);
  }

  /** Bytes the batch would be on the wire now. */
  get size(): number {
    return this.#o;
  }

  /** Appends one record: `send` (see {@link encodeSendRecord}) for `ids`. */
  add(send: Uint8Array, ids: readonly string[]): void {
    const need = recordBytes(send, ids);
    if (this.#o + need > this.#buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(2 * this.#buf.length, this.#o + need));
      this.#buf.copy(bigger, 0, 0, this.#o);
      this.#buf = bigger;
    }
    const buf = this.#buf;
    buf.set(send, this.#o);
    let o = buf.writeUInt32LE(ids.length, this.#o + send.length);
    o = writeIds(buf, o, ids);
    this.#o = o;
    this.records++;
  }

  /** The batch as a payload; the builder starts a new one (the payload is not reused). */
  take(): Buffer {
    const payload = this.#buf.subarray(0, this.#o);
    // The next batch is likely about as big as this one.
    this.#buf = Buffer.allocUnsafe(Math.max(4096, Math.min(2 * this.#o, 1 << 20)));
    this.#o = this.#head.copy(this.#buf, 0);
    this.records = 0;
    return payload;
  }
}

/** Called for each record of a delivery batch. */
export type DeliveryVisitor = (pubId: string, seq: number, msg: Message, ids: readonly string[]) => void;

/**
 * Reads a delivery batch, calling `visit` per record in order. Throws {@link WireFormatError} on a
 * foreign or truncated payload (records before the bad one have been visited).
 */
export function decodeDeliveries(data: Uint8Array, visit: DeliveryVisitor): number {
  const buf = view(data);
  need(buf, 2, 'delivery batch');
  if (buf[0] !== FORMAT_DELIVERIES) throw new WireFormatError(`not a delivery batch (format byte ${buf[0]})`);
  const p = buf[1]!;
  need(buf, 2 + p, 'delivery batch head');
  const pubId = buf.toString('latin1', 2, 2 + p);
  let o = 2 + p;
  let records = 0;
  while (o < buf.length) {
    need(buf, o + 18, 'delivery record');
    const seq = buf.readDoubleLE(o);
    const ts = buf.readDoubleLE(o + 8);
    const e = buf.readUInt16LE(o + 16);
    o += 18;
    need(buf, o + e + 2, 'delivery record event id');
    const eid = buf.toString('utf8', o, o + e);
    o += e;
    const s = buf.readUInt16LE(o);
    o += 2;
    need(buf, o + s + 4, 'delivery record subject');
    const subject = buf.toString('utf8', o, o + s);
    o += s;
    const b = buf.readUInt32LE(o);
    o += 4;
    need(buf, o + b + 4, 'delivery record body');
    const body = buf.toString('utf8', o, o + b);
    o += b;
    const k = buf.readUInt32LE(o);
    const [ids, end] = readIds(buf, o + 4, k, 'delivery record ids');
    o = end;
    records++;
    visit(pubId, seq, new Message(eid, subject, body, ts), ids);
  }
  return records;
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
  need(buf, o + n, what); // every id takes a byte at least: no array bigger than the payload
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

/**
 * A router's word to a gateway (`<prefix>.ia.<gateway id>`) that it has applied that gateway's
 * interest deltas up to `seq`: `ia <router id> <seq>`. Text, like the announcements.
 */
export function encodeInterestAck(routerId: string, seq: number): string {
  return `ia ${routerId} ${seq}`;
}

/** Reads an interest ack; throws {@link WireFormatError} on anything else. */
export function decodeInterestAck(data: Uint8Array): { readonly routerId: string; readonly seq: number } {
  const text = view(data).toString('latin1');
  const [kind, routerId, seqText, ...extra] = text.split(' ');
  const seq = Number(seqText);
  if (
    kind !== 'ia' ||
    routerId === undefined ||
    routerId === '' ||
    extra.length > 0 ||
    !Number.isSafeInteger(seq) ||
    seq < 0
  )
    throw new WireFormatError(`not an interest ack: ${JSON.stringify(text.slice(0, 40))}`);
  return { routerId, seq };
}
