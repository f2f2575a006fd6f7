/**
 * Recent messages, for resume after reconnect (SSE `Last-Event-ID`, WebSocket and long-poll
 * `?last=`). A ring of the last `maxMessages` messages sent by this router, also bounded by bytes
 * and age. Each entry is the message sent to a subject; a client that resumes gets the messages
 * whose subject is one of its ids or one of the ids it is subscribed to now.
 *
 * Event ids are `<epoch>-<seq>` with consecutive `seq`, so the position of an id in the ring is
 * arithmetic. A client whose id is from another epoch (another process, or before a restart) or
 * older than the ring is told it cannot resume (a `gap`), never silently given a partial replay.
 */
import type { EventIds, Message } from '../message.js';

export interface HistoryOptions {
  /** Most messages kept (0 turns history off). */
  readonly maxMessages: number;
  /** Most body bytes kept. */
  readonly maxBytes: number;
  /** Oldest message kept, ms. */
  readonly ttlMs: number;
}

/** The answer to a resume request. */
export type Replay =
  | { readonly ok: true; readonly messages: Message[] }
  | { readonly ok: false; readonly reason: 'unknown' | 'expired' };

export class History {
  readonly #ids: EventIds;
  readonly #opts: HistoryOptions;
  /** Ring storage; `#start` is the index of the oldest entry, `#count` how many are held. */
  readonly #ring: (Message | undefined)[];
  #start = 0;
  #count = 0;
  #bytes = 0;
  /** Sequence number of the oldest entry held (or of the next one, when empty). */
  #firstSeq = 1;

  constructor(ids: EventIds, opts: HistoryOptions) {
    this.#ids = ids;
    this.#opts = opts;
    this.#ring = new Array<Message | undefined>(Math.max(0, opts.maxMessages));
  }

  get enabled(): boolean {
    return this.#opts.maxMessages > 0;
  }

  /** Messages held. */
  get size(): number {
    return this.#count;
  }

  /** Appends `msg`, which must carry the next event id of this router's {@link EventIds}. */
  append(msg: Message): void {
    if (!this.enabled) return;
    const seq = this.#ids.seqOf(msg.eid);
    if (seq === undefined) return;
    if (this.#count === 0) this.#firstSeq = seq;
    else if (seq !== this.#firstSeq + this.#count) {
      // Out of order (cannot happen with one EventIds): start over rather than mis-index.
      this.#clear();
      this.#firstSeq = seq;
    }
    if (this.#count === this.#ring.length) this.#dropOldest();
    this.#ring[(this.#start + this.#count) % this.#ring.length] = msg;
    this.#count++;
    this.#bytes += msg.body.length;
    while (this.#bytes > this.#opts.maxBytes && this.#count > 1) this.#dropOldest();
    this.#expire(msg.ts);
  }

  /**
   * Messages after `lastEid` whose subject passes `wanted`, oldest first; or why resuming is not
   * possible. `now` is used to expire old entries first.
   */
  since(lastEid: string, wanted: (subject: string) => boolean, now = Date.now()): Replay {
    const seq = this.#ids.seqOf(lastEid);
    if (seq === undefined) return { ok: false, reason: 'unknown' };
    this.#expire(now);
    const next = this.#firstSeq + this.#count;
    // An id this router has not issued yet: from a reset counter we cannot vouch for.
    if (seq >= next) return { ok: false, reason: 'unknown' };
    if (seq < this.#firstSeq - 1) return { ok: false, reason: 'expired' };
    const messages: Message[] = [];
    for (let s = seq + 1; s < next; s++) {
      const m = this.#ring[(this.#start + (s - this.#firstSeq)) % this.#ring.length]!;
      if (wanted(m.subject)) messages.push(m);
    }
    return { ok: true, messages };
  }

  #expire(now: number): void {
    const oldest = now - this.#opts.ttlMs;
    while (this.#count > 0 && this.#ring[this.#start]!.ts < oldest) this.#dropOldest();
  }

  #dropOldest(): void {
    const m = this.#ring[this.#start]!;
    this.#ring[this.#start] = undefined;
    this.#start = (this.#start + 1) % this.#ring.length;
    this.#count--;
    this.#bytes -= m.body.length;
    this.#firstSeq++;
  }

  #clear(): void {
    this.#ring.fill(undefined);
    this.#start = 0;
    this.#count = 0;
    this.#bytes = 0;
  }
}
