/**
 * The router half of the NATS bus: publishes a message once per recipient subject, then counts
 * what it reached through tally rounds (see tally.ts) addressed to the gateways that the interest
 * directory (directory.ts) says hold a recipient; answers presence and disconnects by asking
 * those gateways only.
 *
 * Framed publishing: a send makes one `nc.publish()` per recipient, each with a subject check, an
 * options object, a TextEncoder call for the PUB line and a buffer push. With `framedPublish` the
 * PUB frames of all recipients are built into one buffer (nats-codec.ts `encodePubFrames`) and
 * handed to the client's protocol handler in one `sendCommand`. Router CPU per recipient,
 * `bench/bus.ts --parts publish`: 2.4–2.9 µs with `nc.publish()`, 0.6–1.0 µs framed. The client
 * still owns the socket, buffering and reconnects; the frames are the plain NATS `PUB` protocol.
 * Falls back to `nc.publish()` when the handler does not have the expected shape.
 */
import { type Msg, type NatsConnection, NatsConnectionImpl } from '@nats-io/transport-node';
import {
  ClosedError,
  errorMessage,
  InvalidInputError,
  PayloadTooLargeError,
  UnavailableError,
} from '../errors.js';
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
  /** `<prefix>.u.` */
  readonly userSubjectPrefix: string;
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
  readonly log: Logger;
  readonly bad: (subject: string, err: unknown) => void;
  /** Publish through one PUB-frame buffer per send (see above). */
  readonly framedPublish: boolean;
}

type FrameWriter = (frames: Uint8Array) => void;

/** Writes ready PUB frames through the protocol handler of `nc`, if it has the expected shape. */
function frameWriter(nc: NatsConnection): FrameWriter | undefined {
  if (!(nc instanceof NatsConnectionImpl)) return undefined;
  const ph = nc.protocol;
  if (typeof ph?.sendCommand !== 'function' || typeof ph.isClosed !== 'function') return undefined;
  return (frames) => {
    if (ph.isClosed() || ph.noMorePublishing)
      throw new ClosedError('the NATS connection is closed or draining');
    ph.sendCommand(frames);
  };
}

const NOTHING_MISSING: readonly string[] = Object.freeze([]);

/** Publishes sends and resolves each with its tally (the router half of a NATS bus). */
export class BusPublisher {
  readonly #o: BusPublisherOptions;
  readonly #tally: TallyRounds;
  readonly #frames: FrameWriter | undefined;
  #seq = 0;
  #discovery: NodeJS.Timeout | undefined = undefined;
  #published = 0;
  #timeouts = 0;
  #partial = 0;

  constructor(o: BusPublisherOptions) {
    this.#o = o;
    this.#frames = o.framedPublish ? frameWriter(o.nc) : undefined;
    this.#tally = new TallyRounds(o.gateways, o.tallyTimeoutMs, {
      send: (round, gateway, seqs) => {
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

  /** True when sends go out as PUB-frame buffers. */
  get framed(): boolean {
    return this.#frames !== undefined;
  }

  /** Per-recipient messages published. */
  get published(): number {
    return this.#published;
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
    return this.#tally.pending;
  }

  /** Publishes `msg` to each recipient's subject; resolves with its tally. Caller checks the link. */
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
    const { nc, userSubjectPrefix } = this.#o;
    const seq = ++this.#seq;
    const payload = codec.encodeMessage(this.#o.id, seq, msg);
    const max = nc.info?.max_payload;
    if (max !== undefined && payload.length > max) {
      const text = `message ${msg.eid} is ${payload.length} bytes on the bus, NATS max_payload is ${max}`;
      return Promise.reject(new PayloadTooLargeError(text, max));
    }
    const candidates = this.#o.directory.candidates(recipients);
    if (candidates.length > 0) this.#tally.willAdd();
    try {
      if (this.#frames !== undefined)
        this.#frames(codec.encodePubFrames(userSubjectPrefix, recipients, payload));
      else for (const r of recipients) nc.publish(userSubjectPrefix + codec.idToToken(r), payload);
    } catch (err) {
      return Promise.reject(
        new UnavailableError(`NATS publish failed: ${errorMessage(err)}`, { cause: err }),
      );
    }
    this.#published += recipients.length;
    return this.#tally.add(seq, candidates);
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
   * Learns the live gateways after (re)connecting: asks who is there and holds tally rounds for
   * `discoveryMs`, so the first counts do not miss gateways whose heartbeat is not yet due.
   */
  discover(): void {
    this.#tally.hold();
    this.#o.nc.publish(this.#o.whoSubject, `who ${this.#o.id}`);
    clearTimeout(this.#discovery);
    this.#discovery = setTimeout(() => this.#tally.release(), this.#o.discoveryMs);
  }

  /** Stops waiting for `id` (bye or expiry). */
  gatewayGone(id: string, expired: boolean): void {
    this.#tally.gatewayGone(id, expired);
  }

  /** Rejects every publish still waiting for its count. */
  failAll(err: unknown): void {
    this.#tally.failAll(err);
  }

  /** For abort: no more discovery, every waiting publish rejects with `err`. */
  stop(err: unknown): void {
    clearTimeout(this.#discovery);
    this.#tally.failAll(err);
  }

  /** For close: sends any held round and resolves when every waiting publish has its count. */
  finish(): Promise<void> {
    clearTimeout(this.#discovery);
    this.#tally.release();
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
