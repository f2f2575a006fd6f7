/**
 * The gateway half of the NATS bus: turns bus messages into `deliver()` calls, answers tally
 * requests with what they reached, and answers a router's control requests (connections per id
 * for presence; disconnecting an id).
 *
 * One send to several recipients arrives as one NATS message per recipient. The local registry
 * counts a connection logged in as two of them once only if it sees the same Message object both
 * times, so the receiver reuses the Message of the send just before (the copies of one send come
 * back to back) and, while some local connection is logged in as several ids, keeps the last
 * `recentMessages` Messages by eid to reuse them too (and skip decoding the body again).
 */
import { Disconnect, type DisconnectReason, WireFormatError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Message } from '../message.js';
import type { Deliverer, GatewayLoad } from './bus.js';
import * as codec from './nats-codec.js';
import { DeliveryCounts } from './tally.js';

/** Where the receiver reports payloads it cannot decode. */
export type BadPayloadHandler = (subject: string, err: unknown) => void;

/** What a {@link GatewayReceiver} needs from its bus. */
export interface GatewayReceiverOptions {
  readonly deliverer: Deliverer;
  /** This gateway's id, sent in tally replies. */
  readonly gatewayId: string;
  /** `<prefix>.u.`: stripped from a subject to get the recipient's token. */
  readonly userSubjectPrefix: string;
  readonly recentMessages: number;
  /** Counts of a publisher whose tally never comes are dropped after this long. */
  readonly countsIdleMs: number;
  readonly log: Logger;
  readonly bad: BadPayloadHandler;
}

/** Receives the bus messages of one gateway's interests and answers tally requests. */
export class GatewayReceiver {
  readonly #deliverer: Deliverer;
  readonly #gatewayId: string;
  readonly #prefixLength: number;
  readonly #maxRecent: number;
  readonly #recent = new Map<string, Message>();
  readonly #counts: DeliveryCounts;
  readonly #log: Logger;
  readonly #bad: BadPayloadHandler;
  #received = 0;
  /** The last send seen (publisher id bytes, seq, Message, id), for the back-to-back fast path. */
  #lastPubBytes: Uint8Array = new Uint8Array(0);
  #lastPubId = '';
  #lastSeq = -1;
  #lastMsg: Message | undefined = undefined;

  constructor(o: GatewayReceiverOptions) {
    this.#deliverer = o.deliverer;
    this.#gatewayId = o.gatewayId;
    this.#prefixLength = o.userSubjectPrefix.length;
    this.#maxRecent = o.recentMessages;
    this.#counts = new DeliveryCounts(o.countsIdleMs);
    this.#log = o.log;
    this.#bad = o.bad;
  }

  /** Messages received for our interests. */
  get received(): number {
    return this.#received;
  }

  /** What the attached gateway holds now, for heartbeats. */
  load(): GatewayLoad {
    return this.#deliverer.load();
  }

  /** Every id the attached gateway holds (for an interest snapshot). */
  heldIds(): Iterable<string> {
    return this.#deliverer.heldIds();
  }

  /** Per-publish counts waiting for their tally. */
  get heldCounts(): number {
    return this.#counts.size;
  }

  /** Hands one bus message (one recipient) to the deliverer and counts what it reached. */
  onUserMessage(subject: string, data: Uint8Array): void {
    this.#received++;
    const buf = codec.view(data);
    let msg = this.#lastMsg;
    if (msg === undefined || !codec.isSameSend(buf, this.#lastPubBytes, this.#lastSeq)) {
      try {
        msg = this.#decode(buf);
      } catch (err) {
        this.#bad(subject, err);
        return;
      }
    }
    const id = codec.tokenToId(subject.slice(this.#prefixLength));
    let n = 0;
    try {
      n = this.#deliverer.deliver(msg, [id]);
    } catch (err) {
      this.#log.error('deliverer failed', { id, eid: msg.eid, err });
    }
    if (n > 0) this.#counts.add(this.#lastPubId, this.#lastSeq, n);
  }

  /** Reads a payload of a send not seen just before, and makes it the last send. */
  #decode(buf: Buffer): Message {
    const head = codec.decodeMessageHead(buf);
    // No connection here is logged in as two ids: no copy of a send can reach one twice.
    const shared = this.#deliverer.multiIdReceivers !== 0;
    let msg = shared ? this.#recent.get(head.eid) : undefined;
    if (msg === undefined) {
      msg = codec.decodeMessageRest(buf, head);
      if (shared) this.#remember(msg);
    }
    if (head.pubId !== this.#lastPubId) {
      this.#lastPubId = head.pubId;
      this.#lastPubBytes = Buffer.from(head.pubId, 'latin1');
    }
    this.#lastSeq = head.seq;
    this.#lastMsg = msg;
    return msg;
  }

  /** The reply payload for a tally request, or `undefined` if the request is not one. */
  answer(subject: string, data: Uint8Array): Buffer | undefined {
    let req: codec.TallyRequest;
    try {
      req = codec.decodeTallyRequest(data);
    } catch (err) {
      this.#bad(subject, err);
      return undefined;
    }
    return codec.encodeTallyReply(req.round, this.#gatewayId, this.#counts.take(req.pubId, req.seqs));
  }

  /**
   * Answers a control request (JSON): `{"op":"count","ids":[…]}` → `{"counts":[…]}` (local
   * connections per id), `{"op":"disconnect","id","code"}` → `{"disconnected":N}`.
   */
  control(subject: string, data: Uint8Array): Uint8Array | undefined {
    let req: { op?: unknown; ids?: unknown; id?: unknown; code?: unknown };
    try {
      req = JSON.parse(codec.view(data).toString()) as typeof req;
    } catch (err) {
      this.#bad(subject, err);
      return undefined;
    }
    let answer: unknown;
    if (req.op === 'count' && Array.isArray(req.ids)) {
      answer = { counts: req.ids.map((id) => (typeof id === 'string' ? this.#deliverer.count(id) : 0)) };
    } else if (req.op === 'disconnect' && typeof req.id === 'string') {
      answer = { disconnected: this.#deliverer.disconnect(req.id, reasonOf(req.code)) };
    } else {
      this.#bad(subject, new WireFormatError(`unknown control request ${JSON.stringify(req).slice(0, 80)}`));
      return undefined;
    }
    return Buffer.from(JSON.stringify(answer));
  }

  /** Messages may have been lost: the deliverer ends its resumable connections; how many. */
  missed(): number {
    try {
      return this.#deliverer.missedMessages?.() ?? 0;
    } catch (err) {
      this.#log.error('deliverer failed to end connections after lost messages', { err });
      return 0;
    }
  }

  /** Periodic: advances the counts' clock and drops counts of vanished publishers. */
  sweep(now: number): void {
    this.#counts.sweep(now);
  }

  #remember(msg: Message): void {
    this.#recent.set(msg.eid, msg);
    if (this.#recent.size > this.#maxRecent) {
      const oldest = this.#recent.keys().next();
      if (oldest.done !== true) this.#recent.delete(oldest.value);
    }
  }
}

/** The numbered disconnect reason for `code` (the API's force reconnect/disconnect). */
function reasonOf(code: unknown): DisconnectReason {
  for (const r of Object.values(Disconnect)) if (r.code === code) return r;
  return Disconnect.ForceReconnect;
}
