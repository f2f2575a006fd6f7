/**
 * The router half of the NATS bus: sends each message straight to the gateways that the interest
 * directory (directory.ts) says hold a recipient, then counts what it reached through tally rounds
 * (see tally.ts) addressed to those gateways; answers presence and disconnects by asking those
 * gateways only.
 *
 * Delivery batches: the sends of one event-loop turn go to each gateway as one NATS message on
 * `<prefix>.dl.<gateway id>` (nats-codec.ts `DeliveryBatch`), each send with the recipients that
 * gateway holds. NATS routes one message per gateway and turn instead of one per recipient, and
 * no gateway subscribes per id (a million NATS interests cost the server about 0.9 GB). A batch
 * goes when the turn ends (`setImmediate`), when it reaches {@link BATCH_BYTES}, or just before a
 * tally request to anyone (so a gateway has every send of a round before it is asked for it).
 *
 * That a send reaches every connection logged in when it is published rests on the directory
 * being current: a gateway waits for every router's ack of its interest deltas before it reads a
 * resuming client's history (NatsBus.settled), a router that is learning the cluster (after it
 * starts or reconnects) holds its sends until it has, and a gateway a router lost track of (lost
 * deltas, expiry) tells its resumable connections to come back when the router asks it again.
 */
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { errorMessage, InvalidInputError, PayloadTooLargeError, UnavailableError } from '../errors.js';
import { ID_PATTERN } from '../ids.js';
import type { Logger } from '../log.js';
import type { Message } from '../message.js';
import type { Directory } from './directory.js';
import type { Membership } from './membership.js';
import * as codec from './nats-codec.js';
import { type PublishResult, TallyRounds } from './tally.js';

/** What a {@link BusPublisher} needs from its bus. */
export interface BusPublisherOptions {
  readonly nc: NatsConnection;
  /** Publisher id on the wire (the bus id). */
  readonly id: string;
  /** `<prefix>.dl.`: a gateway's id appended is where its delivery batches go. */
  readonly deliverySubjectPrefix: string;
  /** `<prefix>.tally.`: a gateway's id appended is where its tally requests go. */
  readonly tallySubjectPrefix: string;
  /** `<prefix>.ctl.`: a gateway's id appended is where its control requests go. */
  readonly controlSubjectPrefix: string;
  readonly replySubject: string;
  readonly whoSubject: string;
  readonly gateways: Membership;
  readonly directory: Directory;
  readonly tallyTimeoutMs: number;
  readonly discoveryMs: number;
  /**
   * Discovery's longest wait, past `discoveryMs`, for the snapshots of the gateways heard from
   * (kept under a gateway's wait for a router's acks: it acks nothing meanwhile).
   */
  readonly discoveryCapMs: number;
  /**
   * Called when discovery is over, after the held sends went into their batches, with the
   * gateways it ended without (heard from, but their ids not all known: the cap was reached).
   */
  readonly learned?: (missing: readonly string[]) => void;
  readonly log: Logger;
  readonly bad: (subject: string, err: unknown) => void;
}

/** A delivery batch goes once it is this big, even within a turn. */
export const BATCH_BYTES = 64 * 1024;
/** Room kept in a NATS message for a record's ids when checking a send's size. */
const ID_ROOM = 4 + 256;

const NOTHING_MISSING: readonly string[] = Object.freeze([]);

/** A send made while the router is still learning the cluster: routed once it has. */
interface HeldSend {
  readonly seq: number;
  readonly record: Buffer;
  readonly recipients: readonly string[];
  readonly resolve: (r: PublishResult) => void;
  readonly reject: (err: unknown) => void;
}

/** Publishes sends and resolves each with its tally (the router half of a NATS bus). */
export class BusPublisher {
  readonly #o: BusPublisherOptions;
  readonly #tally: TallyRounds;
  readonly #batches = new Map<string, codec.DeliveryBatch>();
  readonly #headBytes: number;
  #flushScheduled = false;
  /** True while learning the cluster: sends wait in {@link #held}. */
  #learning = true;
  #held: HeldSend[] = [];
  #seq = 0;
  #discovery: NodeJS.Timeout | undefined = undefined;
  /** Past `discoveryMs`: discovery ends at the next whole snapshot that leaves none missing. */
  #discoveryWaiting = false;
  #published = 0;
  #batchesSent = 0;
  #timeouts = 0;
  #partial = 0;

  constructor(o: BusPublisherOptions) {
    this.#o = o;
    this.#headBytes = codec.deliveriesHeadBytes(o.id);
    this.#tally = new TallyRounds(o.gateways, o.tallyTimeoutMs, {
      send: (round, gateway, seqs) => {
        // Every send of the round must be with its gateways before the question is.
        this.#flush();
        try {
          o.nc.publish(o.tallySubjectPrefix + gateway, codec.encodeTallyRequest(round, o.id, seqs), {
            reply: o.replySubject,
          });
        } catch (err) {
          throw new UnavailableError(`NATS tally request failed: ${errorMessage(err)}`, { cause: err });
        }
      },
      timedOut: (round, missing, publishes) => {
        this.#timeouts++;
        this.#partial += publishes;
        o.log.warn('tally round timed out; delivered counts are partial', {
          round,
          missing,
          publishes,
          timeoutMs: o.tallyTimeoutMs,
        });
      },
    });
    o.nc.subscribe(o.replySubject, {
      callback: (err, m) => {
        if (err === null) this.#onReply(m);
      },
    });
  }

  /** (recipient, gateway) pairs sent in delivery batches. */
  get published(): number {
    return this.#published;
  }
  /** Delivery batches (NATS messages) sent to gateways. */
  get batches(): number {
    return this.#batchesSent;
  }
  get tallyRounds(): number {
    return this.#tally.roundsSent;
  }
  get tallyTimeouts(): number {
    return this.#timeouts;
  }
  get partialPublishes(): number {
    return this.#partial;
  }
  get pending(): number {
    return this.#tally.pending + this.#held.length;
  }
  /** True while sends wait for this router to learn the cluster. */
  get learning(): boolean {
    return this.#learning;
  }

  /** Sends `msg` to the gateways holding a recipient; resolves with its tally. Caller checks the link. */
  publish(msg: Message, recipients: readonly string[]): Promise<PublishResult> {
    for (let i = 0; i < recipients.length; i++) {
      const r = recipients[i] as string;
      if (!ID_PATTERN.test(r)) {
        return Promise.reject(
          new InvalidInputError(`recipients[${i}] ${JSON.stringify(r)} is not a valid id`),
        );
      }
    }
    if (recipients.length === 0)
      return Promise.resolve({ delivered: 0, complete: true, missing: NOTHING_MISSING });
    const seq = ++this.#seq;
    const record = codec.encodeSendRecord(seq, msg);
    const max = this.#o.nc.info?.max_payload;
    const size = this.#headBytes + record.length + ID_ROOM;
    if (max !== undefined && size > max) {
      const text = `message ${msg.eid} is ${size} bytes on the bus, NATS max_payload is ${max}`;
      return Promise.reject(new PayloadTooLargeError(text, max));
    }
    if (this.#learning) {
      return new Promise((resolve, reject) => this.#held.push({ seq, record, recipients, resolve, reject }));
    }
    return this.#route(seq, record, recipients);
  }

  /** Puts send `seq` in the batch of every gateway holding a recipient and counts it in a round. */
  #route(seq: number, record: Buffer, recipients: readonly string[]): Promise<PublishResult> {
    let candidates: string[];
    if (recipients.length === 1) {
      candidates = this.#o.directory.holders(recipients[0] as string);
      for (const gw of candidates) this.#add(gw, record, recipients);
    } else {
      const groups = this.#o.directory.groups(recipients);
      candidates = [...groups.keys()];
      for (const [gw, ids] of groups) this.#add(gw, record, ids);
    }
    if (candidates.length === 0)
      return Promise.resolve({ delivered: 0, complete: true, missing: NOTHING_MISSING });
    this.#tally.willAdd();
    return this.#tally.add(seq, candidates);
  }

  #add(gateway: string, record: Buffer, ids: readonly string[]): void {
    let batch = this.#batches.get(gateway);
    if (batch === undefined) {
      batch = new codec.DeliveryBatch(this.#o.id);
      this.#batches.set(gateway, batch);
    }
    this.#published += ids.length;
    const bytes = codec.recordBytes(record, ids);
    // A server with a max_payload below BATCH_BYTES gets batches that fit it.
    const most = Math.min(BATCH_BYTES, this.#o.nc.info?.max_payload ?? BATCH_BYTES);
    if (this.#headBytes + bytes <= most) {
      if (batch.size + bytes > most) this.#send(gateway, batch);
      batch.add(record, ids);
    } else {
      // A wide send: its ids in records of about `most` bytes each, one NATS message per record.
      // (A send with a big body gets records up to max_payload, checked to leave ID_ROOM.)
      const fixed = this.#headBytes + record.length + 4;
      const limit = fixed <= most / 2 ? most : (this.#o.nc.info?.max_payload ?? 2 * fixed);
      const room = Math.max(256, limit - fixed);
      let from = 0;
      let used = 0;
      for (let i = 0; i < ids.length; i++) {
        const b = 1 + (ids[i] as string).length;
        if (used + b > room && i > from) {
          this.#sendRecord(gateway, batch, record, ids.slice(from, i));
          from = i;
          used = 0;
        }
        used += b;
      }
      this.#sendRecord(gateway, batch, record, ids.slice(from));
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => {
        this.#flushScheduled = false;
        this.#flush();
      });
    }
  }

  /** Sends what `batch` holds, then one record on its own. */
  #sendRecord(gateway: string, batch: codec.DeliveryBatch, record: Buffer, ids: readonly string[]): void {
    if (batch.records > 0) this.#send(gateway, batch);
    batch.add(record, ids);
    this.#send(gateway, batch);
  }

  /** Sends every gateway's batch. */
  #flush(): void {
    for (const [gateway, batch] of this.#batches) if (batch.records > 0) this.#send(gateway, batch);
  }

  #send(gateway: string, batch: codec.DeliveryBatch): void {
    const payload = batch.take();
    this.#batchesSent++;
    try {
      this.#o.nc.publish(this.#o.deliverySubjectPrefix + gateway, payload);
    } catch (err) {
      // The connection is closing or gone (the tally then rejects these sends), or the batch was
      // refused: its sends are counted short of what was asked, and an operator should know.
      this.#o.log.warn('delivery batch not sent', { gateway, bytes: payload.length, err });
    }
  }

  /** Asks `gateway` a control question (see GatewayReceiver.control); undefined when it does not answer in time. */
  async #ask(gateway: string, request: unknown): Promise<Record<string, unknown> | undefined> {
    try {
      const m = await this.#o.nc.request(this.#o.controlSubjectPrefix + gateway, JSON.stringify(request), {
        timeout: this.#o.tallyTimeoutMs,
      });
      return JSON.parse(m.string()) as Record<string, unknown>;
    } catch (err) {
      this.#o.log.warn('gateway did not answer a control request', { gateway, err });
      return undefined;
    }
  }

  /** Connections of each id, summed over the gateways that hold it. */
  async presence(ids: readonly string[]): Promise<{ counts: Map<string, number>; complete: boolean }> {
    const counts = new Map<string, number>();
    const byGateway = new Map<string, string[]>();
    for (const id of ids) {
      counts.set(id, 0);
      for (const gw of this.#o.directory.holders(id)) {
        const list = byGateway.get(gw);
        if (list === undefined) byGateway.set(gw, [id]);
        else list.push(id);
      }
    }
    let complete = true;
    await Promise.all(
      [...byGateway].map(async ([gw, list]) => {
        const answer = await this.#ask(gw, { op: 'count', ids: list });
        const got = answer?.counts;
        if (!Array.isArray(got)) {
          complete = false;
          return;
        }
        for (const [i, id] of list.entries()) counts.set(id, (counts.get(id) ?? 0) + (Number(got[i]) || 0));
      }),
    );
    return { counts, complete };
  }

  /** Ends every connection of `id` on every gateway holding it. */
  async disconnect(id: string, code: number): Promise<{ disconnected: number; complete: boolean }> {
    let disconnected = 0;
    let complete = true;
    await Promise.all(
      this.#o.directory.holders(id).map(async (gw) => {
        const answer = await this.#ask(gw, { op: 'disconnect', id, code });
        if (typeof answer?.disconnected === 'number') disconnected += answer.disconnected;
        else complete = false;
      }),
    );
    return { disconnected, complete };
  }

  /**
   * Learns the live gateways after (re)connecting: asks who is there, holds sends (they wait,
   * unrouted) and tally rounds, so no send is routed on a directory that lacks a gateway whose
   * snapshot has not arrived yet. Discovery lasts `discoveryMs` and then until every gateway heard
   * from has its ids in the directory ({@link snapshotIn}), `discoveryCapMs` at most: at a million
   * ids a cluster's snapshots can take longer than `discoveryMs`, and a send routed before one is
   * in would miss that gateway's clients.
   */
  discover(): void {
    this.#tally.hold();
    this.#learning = true;
    this.#discoveryWaiting = false;
    this.#o.nc.publish(this.#o.whoSubject, `who ${this.#o.id}`);
    clearTimeout(this.#discovery);
    this.#discovery = setTimeout(() => {
      if (this.#knowsEveryGateway()) {
        this.#learned();
        return;
      }
      this.#discoveryWaiting = true;
      this.#discovery = setTimeout(() => {
        const missing = [...this.#o.gateways.ids()].filter((g) => !this.#o.directory.whole(g));
        if (missing.length > 0) {
          this.#o.log.warn('discovery ended without the snapshots of some gateways; they are asked again', {
            missing: missing.length,
            waitedMs: this.#o.discoveryMs + this.#o.discoveryCapMs,
          });
        }
        this.#learned(missing);
      }, this.#o.discoveryCapMs);
    }, this.#o.discoveryMs);
  }

  /** A gateway's snapshot is whole (or it left): discovery may be over. */
  snapshotIn(): void {
    if (this.#discoveryWaiting && this.#knowsEveryGateway()) this.#learned();
  }

  /** Every gateway heard from has all its ids in the directory. */
  #knowsEveryGateway(): boolean {
    for (const g of this.#o.gateways.ids()) if (!this.#o.directory.whole(g)) return false;
    return true;
  }

  /** Discovery is over: the held sends are routed, in order, and rounds go as usual. */
  #learned(missing: readonly string[] = []): void {
    clearTimeout(this.#discovery);
    this.#learning = false;
    this.#discoveryWaiting = false;
    const held = this.#held;
    this.#held = [];
    for (const h of held) this.#route(h.seq, h.record, h.recipients).then(h.resolve, h.reject);
    this.#tally.release();
    this.#o.learned?.(missing);
  }

  /** Stops waiting for `id` (bye or expiry); what was batched for it is dropped. */
  gatewayGone(id: string, expired: boolean): void {
    this.#batches.delete(id);
    this.#tally.gatewayGone(id, expired);
    // The membership has forgotten `id` already: discovery need not wait for it.
    this.snapshotIn();
  }

  /** Rejects every publish still waiting for its count, and drops what was not sent yet. */
  failAll(err: unknown): void {
    // Unsent batches go (delivery unknown, the sends are rejected), and so do the gateways'
    // builders: after a reconnect the cluster is relearned, some of them may be gone.
    this.#batches.clear();
    const held = this.#held;
    this.#held = [];
    for (const h of held) h.reject(err);
    this.#tally.failAll(err);
  }

  /** For abort: no more discovery, every waiting publish rejects with `err`. */
  stop(err: unknown): void {
    clearTimeout(this.#discovery);
    this.#discoveryWaiting = false;
    this.failAll(err);
  }

  /** For close: routes held sends, sends any held round and resolves when every publish has its count. */
  finish(): Promise<void> {
    this.#learned();
    this.#flush();
    return this.#tally.idle();
  }

  #onReply(m: Msg): void {
    let reply: codec.TallyReply;
    try {
      reply = codec.decodeTallyReply(m.data);
    } catch (err) {
      this.#o.bad(m.subject, err);
      return;
    }
    this.#o.gateways.seen(reply.gatewayId, Date.now());
    this.#tally.onReply(reply);
  }
}
