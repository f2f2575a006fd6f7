/**
 * The gateway half of the NATS bus: turns delivery batches into `deliver()` calls, answers tally
 * requests with what they reached, and answers a router's control requests (connections per id
 * for presence; disconnecting an id).
 *
 * A send reaches a gateway as one record of a batch naming every recipient the gateway holds, so
 * a connection logged in as two of them gets it once (the hub delivers to each connection at
 * most once per Message). One message can also come as several records: a send too wide for one
 * record, or the pages of a big fan-out (router.ts), each page its own send with the same event
 * id, maybe with another router's sends between them. The receiver keeps each publisher's last
 * Message and reuses it for a record with the same event id, so the same holds.
 */
import { Disconnect, type DisconnectReason, WireFormatError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Message } from '../message.js';
import type { Deliverer, GatewayLoad } from './bus.js';
import * as codec from './nats-codec.js';
import { DeliveryCounts } from './tally.js';

/** Publishers whose last Message is kept (the routers of a cluster; beyond that, old ones gone). */
const MAX_PUBLISHERS = 256;

/** Where the receiver reports payloads it cannot decode. */
export type BadPayloadHandler = (subject: string, err: unknown) => void;

/** What a {@link GatewayReceiver} needs from its bus. */
export interface GatewayReceiverOptions {
  readonly deliverer: Deliverer;
  /** This gateway's id, sent in tally replies. */
  readonly gatewayId: string;
  /** Counts of a publisher whose tally never comes are dropped after this long. */
  readonly countsIdleMs: number;
  readonly log: Logger;
  readonly bad: BadPayloadHandler;
}

/** Receives the delivery batches sent to one gateway and answers tally requests. */
export class GatewayReceiver {
  readonly #deliverer: Deliverer;
  readonly #gatewayId: string;
  readonly #counts: DeliveryCounts;
  readonly #log: Logger;
  readonly #bad: BadPayloadHandler;
  readonly #visit: codec.DeliveryVisitor;
  #received = 0;
  #batches = 0;
  /** Each publisher's last Message: the records of one message share it. */
  readonly #lastByPub = new Map<string, Message>();

  constructor(o: GatewayReceiverOptions) {
    this.#deliverer = o.deliverer;
    this.#gatewayId = o.gatewayId;
    this.#counts = new DeliveryCounts(o.countsIdleMs);
    this.#log = o.log;
    this.#bad = o.bad;
    this.#visit = (pubId, seq, msg, ids) => this.#deliver(pubId, seq, msg, ids);
  }

  /** Sends received (records of delivery batches). */
  get received(): number {
    return this.#received;
  }

  /** Delivery batches received. */
  get batches(): number {
    return this.#batches;
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

  /** Hands every send of a delivery batch to the deliverer and counts what each reached. */
  onDeliveries(subject: string, data: Uint8Array): void {
    this.#batches++;
    try {
      codec.decodeDeliveries(data, this.#visit);
    } catch (err) {
      this.#bad(subject, err);
    }
  }

  #deliver(pubId: string, seq: number, decoded: Message, ids: readonly string[]): void {
    this.#received++;
    let msg = decoded;
    const last = this.#lastByPub.get(pubId);
    if (last !== undefined && last.eid === decoded.eid) msg = last;
    else {
      if (last === undefined && this.#lastByPub.size >= MAX_PUBLISHERS) {
        // A publisher long gone; routers are few.
        this.#lastByPub.delete(this.#lastByPub.keys().next().value as string);
      }
      this.#lastByPub.set(pubId, msg);
    }
    let n = 0;
    try {
      n = this.#deliverer.deliver(msg, ids);
    } catch (err) {
      this.#log.error('deliverer failed', { ids: ids.slice(0, 10), eid: msg.eid, err });
    }
    if (n > 0) this.#counts.add(pubId, seq, n);
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
}

/** The numbered disconnect reason for `code` (the API's force reconnect/disconnect). */
function reasonOf(code: unknown): DisconnectReason {
  for (const r of Object.values(Disconnect)) if (r.code === code) return r;
  return Disconnect.ForceReconnect;
}
