/**
 * The router: the article's `router.erl` with `router.erl.2`'s pub/sub fan-out.
 *
 * - `send(id, msg)` resolves the recipients — `id` itself plus every subscriber of `id` from the
 *   {@link SubscriptionStore} — and hands the message and its recipients to the bus, which
 *   delivers it only where a recipient is logged in. It answers how many connections were reached.
 *
 * - `replay(ids, last)`: what a resuming client missed, from the message log (in-process ring
 *   embedded, JetStream over NATS); `presence(ids)` and `disconnect(id)` across the cluster.
 *
 * Big fan-outs are paged (`pageSize` subscribers per bus publish) with a turn of the event loop
 * between pages, so a user with 100,000 subscribers does not freeze the gateway's other clients.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Bus, PresenceCounts } from '../bus/bus.js';
import type { MessageLog, Replay } from '../bus/message-log.js';
import {
  type DisconnectReason,
  InvalidInputError,
  PayloadTooLargeError,
  UnavailableError,
} from '../errors.js';
import { validateId } from '../ids.js';
import { bodyOf, type Message } from '../message.js';
import { DEFAULTS } from '../options.js';
import type { SubscriptionStore } from '../store/store.js';

export interface RouterOptions {
  readonly bus: Bus;
  readonly store: SubscriptionStore;
  /** Where messages are recorded for resume and get their event ids. */
  readonly log: MessageLog;
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
/** Messages of a batch whose subscribers a store a round trip away reads in one go. */
const PREFETCH = 256;

export class Router {
  readonly #bus: Bus;
  readonly #store: SubscriptionStore;
  readonly #log: MessageLog;
  readonly #pageSize: number;
  readonly #maxBytes: number;
  #messagesIn = 0;
  #delivered = 0;
  #recipients = 0;
  #partialSends = 0;
  /** Sends gone the asynchronous way whose message is not yet published. */
  #starting = 0;

  constructor(opts: RouterOptions) {
    this.#bus = opts.bus;
    this.#store = opts.store;
    this.#log = opts.log;
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
    return (await this.#start(out)).done;
  }

  /**
   * The send started at once, when the store can answer without a turn of the event loop
   * (SQLite) and the id has fewer subscribers than a page: no generator, no await before the
   * log and the bus are asked. Embedded (the in-process ring and bus) it is done then and there;
   * over NATS the publish (or the JetStream append it waits for) is issued now, so the sends of a
   * batch leave without a turn between them and go out in few socket writes. `undefined` when the
   * store cannot.
   */
  #sendNow(out: Outgoing, known?: readonly string[]): SendResult | Promise<SendResult> | undefined {
    // A send started earlier that has yet to publish goes first: this one must not overtake it.
    if (this.#starting > 0) return undefined;
    const subscribers = known ?? this.#store.subscribersNow?.(out.id, this.#pageSize);
    if (subscribers === undefined) return undefined;
    if (!this.#bus.connected) throw this.#busDown();
    const recipients = subscribers.length === 0 ? [out.id] : [out.id, ...subscribers];
    const appendNow = this.#log.appendNow;
    if (appendNow === undefined) {
      // A log that answers later (JetStream): the append is issued now and the publish follows
      // its answer. The log answers in the order it was asked, so sends started one after another
      // still publish in that order, and a batch's appends leave together.
      return this.#log.append(out.id, out.body, Date.now()).then((msg) => this.#publish(msg, recipients));
    }
    const msg = appendNow.call(this.#log, out.id, out.body, Date.now());
    const publishNow = this.#bus.publishNow;
    if (publishNow === undefined) return this.#publish(msg, recipients);
    this.#messagesIn++;
    this.#recipients += recipients.length;
    return this.#counted(publishNow.call(this.#bus, msg, recipients));
  }

  #publish(msg: Message, recipients: readonly string[]): Promise<SendResult> {
    this.#messagesIn++;
    this.#recipients += recipients.length;
    return this.#bus.publish(msg, recipients).then((r) => this.#counted(r));
  }

  #counted(r: SendResult): SendResult {
    this.#delivered += r.delivered;
    if (!r.complete) this.#partialSends++;
    return r;
  }

  /**
   * Starts one send: resolves the first page of recipients, records the message (which gives it
   * its event id) and publishes it. Resolves once that first publish is issued, with `done`, its
   * delivered count (later pages of a big fan-out follow with an event-loop turn between).
   *
   * Sends started one after another publish in that order, whatever their counts take: the log
   * answers in the order it was asked (JetStream acks one connection's publishes in order), and
   * each publish waits for its own message's id.
   */
  async #start(out: Outgoing, tryNow = true): Promise<{ done: Promise<SendResult> }> {
    const now = tryNow ? this.#sendNow(out) : undefined;
    if (now !== undefined) {
      const done = Promise.resolve(now);
      // Awaited by the caller, maybe later than its rejection: not an unhandled one meanwhile.
      done.catch(() => undefined);
      return { done };
    }
    // Counted until its message is published (or the send fails), so no later send overtakes it.
    this.#starting++;
    let recorded: Promise<Message>;
    let first: IteratorResult<string[]>;
    const pages = this.#store.subscriberPages(out.id, this.#pageSize)[Symbol.asyncIterator]();
    try {
      first = await pages.next();
      // Only now, with recipients known and the bus about to take it, does the message exist:
      // a send the store or the bus refused gets no event id and never shows up in a replay.
      if (!this.#bus.connected) throw this.#busDown();
      recorded = this.#log.append(out.id, out.body, Date.now());
    } catch (err) {
      this.#starting--;
      throw err;
    }
    const done = (async (): Promise<SendResult> => {
      let msg: Message;
      try {
        msg = await recorded;
      } finally {
        this.#starting--;
      }
      this.#messagesIn++;
      const recipients = first.done === true ? [out.id] : [out.id, ...first.value];
      this.#recipients += recipients.length;
      const outcomes = [this.#bus.publish(msg, recipients)];
      if (first.done !== true) {
        for (;;) {
          // A macrotask turn between pages: awaits on an in-process store and bus settle as
          // microtasks, which would let a 100,000-subscriber fan-out run without one socket read.
          await nextTurn();
          const page = await pages.next();
          if (page.done === true) break;
          this.#recipients += page.value.length;
          outcomes.push(this.#bus.publish(msg, page.value));
        }
      }
      let delivered = 0;
      let complete = true;
      for (const o of await Promise.all(outcomes)) {
        delivered += o.delivered;
        complete &&= o.complete;
      }
      this.#delivered += delivered;
      if (!complete) this.#partialSends++;
      return { delivered, complete };
    })();
    // Awaited by the caller, maybe later than its rejection: not an unhandled one meanwhile.
    done.catch(() => undefined);
    return { done };
  }

  /**
   * Sends messages in order, as the batch API does: each is published once the previous one has
   * been, without waiting for its count, and the counts of the whole batch are gathered at the
   * end (over NATS one tally round can cover them all). Validate them all with {@link prepare}
   * first, so a bad one rejects the batch before any is sent. Embedded, every await here settles
   * as a microtask, so a big batch would hold the event loop for seconds: it goes in slices of at
   * most {@link SLICE_MS} of work, with a turn between.
   */
  async sendAll(outs: readonly Outgoing[]): Promise<SendResult> {
    // Counts are summed as each send settles: holding 200,000 promises to Promise.all them at the
    // end costs a long pause of its own.
    let delivered = 0;
    let complete = true;
    let outstanding = 0;
    let failure: unknown;
    let allSettled: (() => void) | undefined;
    const settled = (): void => {
      if (--outstanding === 0) allSettled?.();
    };
    let sliceStart = performance.now();
    // A store a round trip away reads the subscribers of a chunk of the batch at once, instead of
    // a round trip per message (the sends stay in order: each chunk is read before it is sent).
    const many = this.#store.subscribersNow === undefined ? this.#store.subscribersOfMany : undefined;
    let known: Map<string, string[]> | undefined;
    try {
      for (let i = 0; i < outs.length; i++) {
        const out = outs[i]!;
        if (many !== undefined && i % PREFETCH === 0) {
          const ids = outs.slice(i, i + PREFETCH).map((o) => o.id);
          known = await many.call(this.#store, ids, this.#pageSize);
        }
        // While a send of the batch that went the asynchronous way (a big fan-out) has yet to
        // publish, the next ones wait behind it: the batch's order is the order of delivery.
        const now = this.#sendNow(out, known?.get(out.id));
        if (now !== undefined && !(now instanceof Promise)) {
          delivered += now.delivered;
          complete &&= now.complete;
        } else {
          const { done } = now === undefined ? await this.#start(out, false) : { done: now };
          outstanding++;
          done.then(
            (r) => {
              delivered += r.delivered;
              complete &&= r.complete;
              settled();
            },
            (err: unknown) => {
              failure ??= err;
              settled();
            },
          );
        }
        if (performance.now() - sliceStart > SLICE_MS) {
          await nextTurn();
          sliceStart = performance.now();
        }
      }
    } finally {
      // Whatever happened to the rest, the sends already out finish (and are counted).
      if (outstanding > 0) await new Promise<void>((resolve) => (allSettled = resolve));
    }
    if (failure !== undefined) throw failure;
    return { delivered, complete };
  }

  /**
   * What a client logged in as `ids` missed since `lastEid`: messages sent to one of its ids or
   * to an id it is subscribed to (now).
   */
  async replay(ids: readonly string[], lastEid: string): Promise<Replay> {
    if (this.#log.kind === 'off') return { ok: false, reason: 'expired' };
    // The routers must know this gateway holds `ids` first, or a send between the read and then is lost.
    await this.#bus.settled?.();
    const subjects = new Set<string>(ids);
    for (const id of ids) for (const s of await this.#store.getSubscriptions(id)) subjects.add(s);
    return this.#log.since(lastEid, subjects);
  }

  /** Connections of each id across the cluster (0: offline). */
  presence(ids: readonly string[]): Promise<PresenceCounts> {
    if (!this.#bus.connected) return Promise.reject(this.#busDown());
    return this.#bus.presence(ids);
  }

  /** Ends every connection of `id` on every gateway, telling each why. */
  disconnect(id: string, reason: DisconnectReason): Promise<{ disconnected: number; complete: boolean }> {
    if (!this.#bus.connected) return Promise.reject(this.#busDown());
    return this.#bus.disconnect(id, reason);
  }

  #busDown(): UnavailableError {
    return new UnavailableError(`the ${this.#bus.kind} bus is disconnected; message not sent`);
  }

  /** A resume cursor meaning "from now on". */
  lastEid(): string {
    return this.#log.current();
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
