/**
 * The router: the article's `router.erl` with `router.erl.2`'s pub/sub fan-out.
 *
 * - `send(id, msg)` resolves the recipients — `id` itself plus every subscriber of `id` from the
 *   {@link SubscriptionStore} — and publishes the message once per recipient id on the bus, which
 *   delivers only where there is interest. It answers how many connections were reached.
 *
 * Big fan-outs are paged (`pageSize` subscribers per bus publish) with a turn of the event loop
 * between pages, so a user with 100,000 subscribers does not freeze the gateway's other clients.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Bus } from '../bus/bus.js';
import { InvalidInputError, PayloadTooLargeError, UnavailableError } from '../errors.js';
import { validateId } from '../ids.js';
import { bodyOf, type EventIds, Message } from '../message.js';
import { DEFAULTS } from '../options.js';
import type { SubscriptionStore } from '../store/store.js';
import type { History, Replay } from './history.js';

export interface RouterOptions {
  readonly bus: Bus;
  readonly store: SubscriptionStore;
  readonly ids: EventIds;
  readonly history?: History;
  /** Subscribers per bus publish. */
  readonly pageSize?: number;
  /** Largest message body, bytes. */
  readonly maxMessageBytes: number;
}

/** One validated message, ready to send. */
export interface Outgoing {
  readonly id: string;
  readonly body: string;
}

/** What a send reached. */
export interface SendResult {
  /** Connections reached (a lower bound when `complete` is false). */
  readonly delivered: number;
  /** False when some gateway did not report its count in time (see the NATS bus tally). */
  readonly complete: boolean;
}

/** Router counters. */
export interface RouterStats {
  /** Messages accepted by `send`. */
  readonly messagesIn: number;
  /** Connections reached, summed over all sends. */
  readonly delivered: number;
  /** Recipient ids resolved (id plus subscribers), summed over all sends. */
  readonly recipients: number;
  /** Sends whose delivered count is a lower bound (a gateway did not report in time). */
  readonly partialSends: number;
}

/** Longest run of a batch between two event-loop turns, ms. */
export const SLICE_MS = 20;

export class Router {
  readonly #bus: Bus;
  readonly #store: SubscriptionStore;
  readonly #ids: EventIds;
  readonly #history: History | undefined;
  readonly #pageSize: number;
  readonly #maxBytes: number;
  #messagesIn = 0;
  #delivered = 0;
  #recipients = 0;
  #partialSends = 0;

  constructor(opts: RouterOptions) {
    this.#bus = opts.bus;
    this.#store = opts.store;
    this.#ids = opts.ids;
    this.#history = opts.history;
    this.#pageSize = opts.pageSize ?? DEFAULTS.pageSize;
    this.#maxBytes = opts.maxMessageBytes;
  }

  /**
   * Checks an API message: a valid id and a body within the size limit. `where` names it in
   * errors (e.g. `messages[3]`). Throws InvalidInputError or PayloadTooLargeError.
   */
  prepare(id: unknown, msg: unknown, where = ''): Outgoing {
    const at = where ? `${where}.` : '';
    const valid = validateId(id, `${at}id`);
    if (msg === undefined) throw new InvalidInputError(`${at}msg is missing`);
    let body: string;
    try {
      body = bodyOf(msg);
    } catch (err) {
      // JSON.stringify of a deeply nested value overflows the stack: the input's fault, a 400.
      throw new InvalidInputError(`${at}msg is nested too deeply to send`, { cause: err });
    }
    const bytes = Buffer.byteLength(body);
    if (bytes > this.#maxBytes) {
      throw new PayloadTooLargeError(
        `${at}msg is ${bytes} bytes, the limit is ${this.#maxBytes}`,
        this.#maxBytes,
      );
    }
    return { id: valid, body };
  }

  /** The article's `send(Id, Msg)`: reaches `id` and its subscribers; resolves to connections reached. */
  async send(id: string, msg: unknown): Promise<number> {
    return (await this.sendPrepared(this.prepare(id, msg))).delivered;
  }

  /** Sends a message already checked by {@link prepare}. */
  async sendPrepared(out: Outgoing): Promise<SendResult> {
    let msg: Message | undefined;
    let delivered = 0;
    let complete = true;
    const publish = async (recipients: readonly string[]): Promise<void> => {
      if (msg === undefined) {
        // Only now, with recipients known and the bus about to take it, does the message exist:
        // a send the store or the bus refused gets no event id and never shows up in a replay.
        if (!this.#bus.connected) throw this.#busDown();
        msg = new Message(this.#ids.next(), out.id, out.body, Date.now());
        this.#messagesIn++;
        this.#history?.append(msg);
      }
      this.#recipients += recipients.length;
      const outcome = await this.#bus.publishDetailed(msg, recipients);
      delivered += outcome.delivered;
      complete &&= outcome.complete;
    };
    let first = true;
    for await (const page of this.#store.subscriberPages(out.id, this.#pageSize)) {
      // A macrotask turn between pages: awaits on an in-process store and bus settle as
      // microtasks, which would let a 100,000-subscriber fan-out run without one socket read.
      if (!first) await nextTurn();
      await publish(first ? [out.id, ...page] : page);
      first = false;
    }
    if (first) await publish([out.id]);
    this.#delivered += delivered;
    if (!complete) this.#partialSends++;
    return { delivered, complete };
  }

  /**
   * Sends messages in order (each after the previous one's delivery), as the batch API does.
   * Validate them all with {@link prepare} first, so a bad one rejects the batch before any is sent.
   * Embedded, every await here settles as a microtask, so a big batch would hold the event loop
   * for seconds: it goes in slices of at most {@link SLICE_MS} of work, with a turn between.
   */
  async sendAll(outs: readonly Outgoing[]): Promise<SendResult> {
    let delivered = 0;
    let complete = true;
    let sliceStart = performance.now();
    for (const out of outs) {
      const r = await this.sendPrepared(out);
      delivered += r.delivered;
      complete &&= r.complete;
      if (performance.now() - sliceStart > SLICE_MS) {
        await nextTurn();
        sliceStart = performance.now();
      }
    }
    return { delivered, complete };
  }

  /**
   * What a client logged in as `ids` missed since `lastEid`: messages sent to one of its ids or
   * to an id it is subscribed to.
   */
  async replay(ids: readonly string[], lastEid: string): Promise<Replay> {
    if (this.#history === undefined || !this.#history.enabled) return { ok: false, reason: 'expired' };
    const subjects = new Set<string>(ids);
    for (const id of ids) for (const s of await this.#store.getSubscriptions(id)) subjects.add(s);
    return this.#history.since(lastEid, (subject) => subjects.has(subject));
  }

  #busDown(): UnavailableError {
    return new UnavailableError(`the ${this.#bus.kind} bus is disconnected; message not sent`);
  }

  /** The newest event id this router issued: a resume cursor meaning "from now on". */
  lastEid(): string {
    return this.#ids.current();
  }

  stats(): RouterStats {
    return {
      messagesIn: this.#messagesIn,
      delivered: this.#delivered,
      recipients: this.#recipients,
      partialSends: this.#partialSends,
    };
  }
}
