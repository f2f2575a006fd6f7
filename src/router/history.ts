/**
 * Recent messages of the embedded server, for resume after reconnect (SSE `Last-Event-ID`,
 * WebSocket and long-poll `?last=`): the in-process {@link MessageLog}. A ring of the last
 * `maxMessages` messages sent by this router, also bounded by bytes and age. (With a NATS bus the
 * history lives in JetStream instead: bus/jetstream-log.ts.) Each entry is the message sent to a
 * subject; a client that resumes gets the messages whose subject is one of its ids or one of the
 * ids it is subscribed to now.
 *
 * Event ids are `<epoch>-<seq>` with consecutive `seq`, so the position of an id in the ring is
 * arithmetic. A client whose id is from another epoch (another process, or before a restart) is
 * told it cannot resume (a `gap`), never silently given a partial replay.
 *
 * A quiet client's last id is often older than the ring (at 1,000 messages a second, 10,000 last
 * ten seconds). It can still resume as long as nothing it wanted was pushed out: the ring remembers,
 * for the age bound, the newest seq each subject lost to the count or byte bounds, and the time
 * of every 256th seq, so a resume older than the ring is answered `expired` only when one of its
 * subjects did lose a message after it, or it is older than the age bound.
 *
 * The ring keeps each message as columns — subject, body, time — not the Message that was
 * delivered: a Message carries its encoded frames, and at tens of thousands of messages a second
 * everything the ring holds lives long enough to be promoted to the old generation, so what it
 * holds is what the garbage collector pays for. A replay makes Messages again (same event ids).
 */
import type { MessageLog, Replay } from '../bus/message-log.js';
import { type EventIds, Message } from '../message.js';

export type { Replay } from '../bus/message-log.js';

export interface HistoryOptions {
  /** Most messages kept (0 turns history off). */
  readonly maxMessages: number;
  /** Most body bytes kept. */
  readonly maxBytes: number;
  /** Oldest message kept, ms. */
  readonly ttlMs: number;
}

/** Every this many seqs, the ring notes the time (see {@link History}). */
const MARK_EVERY = 256;
/** Fewest losses between two sweeps of the pushed-out subjects. */
const SWEEP_EVERY = 4096;

export class History implements MessageLog {
  readonly #ids: EventIds;
  readonly #opts: HistoryOptions;
  /** Ring storage by column; `#start` is the index of the oldest entry, `#count` how many are held. */
  readonly #subjects: (string | undefined)[];
  readonly #bodies: (string | undefined)[];
  readonly #times: Float64Array;
  #start = 0;
  #count = 0;
  #bytes = 0;
  /** Sequence number of the oldest entry held (or of the next one, when empty). */
  #firstSeq = 1;
  /**
   * Subjects that lost messages to the count or byte bound: the newest such seq. Updated in place
   * (one hash lookup per message pushed out), and swept of seqs older than the age bound once
   * every {@link SWEEP_EVERY} losses or as many as it holds, whichever is more (see {@link #expire}).
   */
  readonly #pushedOut = new Map<string, number>();
  #lossesSinceSweep = 0;
  /** The time of every {@link MARK_EVERY}th seq, oldest first, for the age of a seq no longer held. */
  readonly #marks: { seq: number; ts: number }[] = [];

  constructor(ids: EventIds, opts: HistoryOptions) {
    this.#ids = ids;
    this.#opts = opts;
    const size = Math.max(0, opts.maxMessages);
    this.#subjects = new Array<string | undefined>(size);
    this.#bodies = new Array<string | undefined>(size);
    this.#times = new Float64Array(size);
  }

  get enabled(): boolean {
    return this.#opts.maxMessages > 0;
  }

  get kind(): 'memory' | 'off' {
    return this.enabled ? 'memory' : 'off';
  }

  /** Issues the next event id for a message to `subject` and keeps it. */
  append(subject: string, body: string, ts: number): Promise<Message> {
    return Promise.resolve(this.appendNow(subject, body, ts));
  }

  appendNow(subject: string, body: string, ts: number): Message {
    const seq = this.#ids.nextSeq();
    this.#put(seq, subject, body, ts);
    return new Message(this.#ids.eidOf(seq), subject, body, ts);
  }

  /** {@link since}, synchronously. */
  replay(lastEid: string, subjects: ReadonlySet<string>, now = Date.now()): Replay {
    if (!this.enabled) return { ok: false, reason: 'expired' };
    return this.#since(lastEid, subjects, now);
  }

  current(): string {
    return this.#ids.current();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Messages held. */
  get size(): number {
    return this.#count;
  }

  /** Subjects remembered as having lost a message to the count or byte bound. */
  get lostSubjects(): number {
    return this.#pushedOut.size;
  }

  #put(seq: number, subject: string, body: string, ts: number): void {
    if (!this.enabled) return;
    if (this.#count === 0) this.#firstSeq = seq;
    else if (seq !== this.#firstSeq + this.#count) {
      // Out of order (cannot happen with one EventIds): start over rather than mis-index.
      this.#clear();
      this.#firstSeq = seq;
    }
    const size = this.#subjects.length;
    if (this.#count === size) this.#dropOldest(true);
    const at = (this.#start + this.#count) % size;
    this.#subjects[at] = subject;
    this.#bodies[at] = body;
    this.#times[at] = ts;
    this.#count++;
    this.#bytes += body.length;
    if (seq % MARK_EVERY === 0 || this.#marks.length === 0) this.#marks.push({ seq, ts });
    while (this.#bytes > this.#opts.maxBytes && this.#count > 1) this.#dropOldest(true);
    this.#expire(ts);
  }

  /**
   * Messages after `lastEid` sent to one of `subjects`, oldest first; or why resuming is not
   * possible. Old entries are expired first.
   */
  since(lastEid: string, subjects: ReadonlySet<string>): Promise<Replay> {
    return Promise.resolve(this.replay(lastEid, subjects));
  }

  #since(lastEid: string, subjects: ReadonlySet<string>, now: number): Replay {
    const seq = this.#ids.seqOf(lastEid);
    if (seq === undefined) return { ok: false, reason: 'unknown' };
    this.#expire(now);
    const next = this.#firstSeq + this.#count;
    // An id this router has not issued yet: from a reset counter we cannot vouch for.
    if (seq >= next) return { ok: false, reason: 'unknown' };
    if (seq < this.#firstSeq - 1 && !this.#nothingLost(seq, subjects, now)) {
      return { ok: false, reason: 'expired' };
    }
    const messages: Message[] = [];
    const size = this.#subjects.length;
    for (let s = Math.max(seq + 1, this.#firstSeq); s < next; s++) {
      const at = (this.#start + (s - this.#firstSeq)) % size;
      const subject = this.#subjects[at] as string;
      if (subjects.has(subject)) {
        messages.push(
          new Message(this.#ids.eidOf(s), subject, this.#bodies[at] as string, this.#times[at] as number),
        );
      }
    }
    return { ok: true, messages };
  }

  /**
   * For a resume from `seq`, older than the ring: true when the messages after it that the ring
   * no longer holds were all within the age bound and none was for one of `subjects`.
   */
  #nothingLost(seq: number, subjects: ReadonlySet<string>, now: number): boolean {
    // The time of seq + 1 is at least that of the newest mark at or before it; no such mark: too old.
    let at: number | undefined;
    for (const mark of this.#marks) {
      if (mark.seq > seq + 1) break;
      at = mark.ts;
    }
    if (at === undefined || at < now - this.#opts.ttlMs) return false;
    for (const s of subjects) {
      const lost = this.#pushedOut.get(s);
      if (lost !== undefined && lost > seq) return false;
    }
    return true;
  }

  #expire(now: number): void {
    const oldest = now - this.#opts.ttlMs;
    while (this.#count > 0 && (this.#times[this.#start] as number) < oldest) this.#dropOldest(false);
    // Keep one mark older than the bound: the time of seqs between it and the next is unknown.
    while (this.#marks.length > 1 && this.#marks[1]!.ts < oldest) this.#marks.shift();
    // A loss at a seq before that mark is older than the bound: no resume it could refuse is
    // still answered from the ring (#nothingLost refuses those by age first), so keeping it a
    // while longer changes no answer; the sweep only bounds the map.
    if (this.#lossesSinceSweep < Math.max(SWEEP_EVERY, this.#pushedOut.size)) return;
    const mark = this.#marks[0];
    if (mark === undefined || mark.ts >= oldest) return;
    this.#lossesSinceSweep = 0;
    for (const [subject, seq] of this.#pushedOut) if (seq < mark.seq) this.#pushedOut.delete(subject);
  }

  /** Drops the oldest entry; `pushedOut` when it goes for room (count, bytes), not age. */
  #dropOldest(pushedOut: boolean): void {
    const at = this.#start;
    const subject = this.#subjects[at] as string;
    this.#bytes -= (this.#bodies[at] as string).length;
    this.#subjects[at] = undefined;
    this.#bodies[at] = undefined;
    this.#start = (at + 1) % this.#subjects.length;
    this.#count--;
    if (pushedOut) {
      this.#pushedOut.set(subject, this.#firstSeq);
      this.#lossesSinceSweep++;
    }
    this.#firstSeq++;
  }

  #clear(): void {
    this.#pushedOut.clear();
    this.#lossesSinceSweep = 0;
    this.#marks.length = 0;
    this.#subjects.fill(undefined);
    this.#bodies.fill(undefined);
    this.#start = 0;
    this.#count = 0;
    this.#bytes = 0;
  }
}
