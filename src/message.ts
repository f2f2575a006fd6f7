/**
 * A published message as it travels from the router over the bus to the gateways' connections;
 * shared by router, bus and gateway, so it lives at the root beside ids.ts.
 *
 * One `Message` object is shared by every connection that receives it: each transport encodes its
 * frame once, on first use, into the message's {@link FrameCache}. This is the "framed once per
 * message, not once per connection" rule of DESIGN.md; the only per-connection bytes are the
 * article's `#N` counter on the `/test` route.
 */

/** Longest body accepted by default (64 KB), see `maxMessageBytes`. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;

/**
 * Encoded forms of one message, filled lazily by the gateway's transports (one slot each) and
 * read only by them. Internal: not part of the public surface.
 */
export class FrameCache {
  sse: Buffer | undefined = undefined;
  ws: Buffer | undefined = undefined;
  chunk: Buffer | undefined = undefined;
  testTail: Buffer | undefined = undefined;
  json: string | undefined = undefined;
}

/** One published message: its event id, subject (the id it was sent to), body and time. */
export class Message {
  /** Event id, unique in the cluster: `<epoch>-<seq>`. SSE `id:` lines and resume use it. */
  readonly eid: string;
  /** The id the message was sent to (the article's subject: who played the song). */
  readonly subject: string;
  /** The text delivered to clients. */
  readonly body: string;
  /** Publish time, milliseconds since the Unix epoch. */
  readonly ts: number;

  /** @internal Frames encoded by the gateway's transports. */
  readonly frames = new FrameCache();

  /** @internal Receivers logged in as several ids that this message reached (gateway/hub.ts). */
  reached: WeakSet<object> | undefined = undefined;

  constructor(eid: string, subject: string, body: string, ts: number) {
    this.eid = eid;
    this.subject = subject;
    this.body = body;
    this.ts = ts;
  }

  /** Bytes of the body as UTF-8. */
  get size(): number {
    return Buffer.byteLength(this.body);
  }

  /** The message as a client sees it in JSON transports (long-poll). */
  toJSON(): { id: string; subject: string; data: string; ts: number } {
    return { id: this.eid, subject: this.subject, data: this.body, ts: this.ts };
  }
}

/**
 * Turns an API `msg` value into the body text: strings go as they are, any other JSON value is
 * serialised once.
 */
export function bodyOf(msg: unknown): string {
  return typeof msg === 'string' ? msg : JSON.stringify(msg);
}

/**
 * Issues event ids: a random epoch per process start plus a counter. Ids from different
 * processes never collide, and a client resuming with an id from an earlier process start is
 * told it cannot resume rather than being given the wrong messages.
 */
export class EventIds {
  readonly epoch: string;
  #seq = 0;

  constructor(epoch: string = randomEpoch()) {
    this.epoch = epoch;
  }

  next(): string {
    return this.eidOf(this.nextSeq());
  }

  /** Issues the next id and returns its sequence number ({@link eidOf} makes the id). */
  nextSeq(): number {
    return ++this.#seq;
  }

  /** The id of sequence number `seq` of this generator. */
  eidOf(seq: number): string {
    return `${this.epoch}-${seq}`;
  }

  /** The last id issued (`<epoch>-0` before the first): a cursor meaning "from now on". */
  current(): string {
    return this.eidOf(this.#seq);
  }

  /** The sequence number of an id issued by this generator, or `undefined` if it is foreign. */
  seqOf(eid: string): number | undefined {
    const dash = eid.lastIndexOf('-');
    if (dash <= 0 || eid.slice(0, dash) !== this.epoch) return undefined;
    const digits = eid.slice(dash + 1);
    // Decimal digits only: Number() would also take "1e0", "0x1" and " 1" as 1.
    if (!/^\d{1,15}$/.test(digits)) return undefined;
    return Number(digits);
  }
}

function randomEpoch(): string {
  const bytes = new Uint8Array(6);
  globalThis.crypto.getRandomValues(bytes);
  return Buffer.from(bytes).toString('base64url');
}
