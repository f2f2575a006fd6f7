/**
 * Resume history for a NATS cluster, in a JetStream stream every process shares (the seam is
 * message-log.ts; Centrifugo keeps its per-channel history in Redis streams for the same reason).
 *
 * ```
 *   stream <prefix>_history   subjects <prefix>.h.<token>   one message per send, to its id
 *   limits                    max_age = --history-ttl, max_msgs_per_subject = --history,
 *                             max_bytes = --history-bytes, discard old, file storage,
 *                             --history-replicas copies (R3 on a three-node NATS cluster)
 *   event id                  <epoch>-<stream seq>, epoch from the stream's creation time
 * ```
 *
 * A router records each send before it publishes it (the ack gives the event id); a gateway
 * answers a resume by reading, for each subject the client wants (its ids and what they are
 * subscribed to), the messages after its last id — the stream leader's get of the next message
 * on a subject (not a direct get, which any replica answers, stale ones too) — or, when the range
 * since is short, every message of the range. The answer is exact or an explicit gap:
 * `unknown` for an id of another stream (or a recreated one) or from the future; `expired` when
 * the range reaches past the oldest message kept, or a subject hit its per-subject limit (older
 * messages of it may be gone). A resume the stream's description cannot bound truly — no leader,
 * or one cut off from its replicas ({@link staleness}) — is refused as unavailable instead.
 */
import {
  type ClusterInfo,
  type JetStreamManager,
  jetstreamManager,
  type StoredMsg,
} from '@nats-io/jetstream';
import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { errorMessage, UnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import { Message } from '../message.js';
import type { MessageLog, Replay } from './message-log.js';
import { idToToken, tokenToId, view } from './nats-codec.js';

export interface JetStreamLogOptions {
  /** The bus's subject prefix. */
  readonly prefix: string;
  /** Oldest message kept, ms. */
  readonly ttlMs: number;
  /** Most messages kept per id. */
  readonly maxPerSubject: number;
  /** Most bytes kept in all. */
  readonly maxBytes: number;
  /** Copies on a NATS cluster (1 on a single server). */
  readonly replicas: number;
  readonly log: Logger;
  /** JetStream API request timeout, ms. */
  readonly timeoutMs?: number;
}

/** How long an append answered as failed is watched for an ack that comes after all, ms. */
const LATE_WATCH_MS = 60_000;
/** Most appends watched that way (the oldest are let go first). */
const LATE_WATCH_MAX = 10_000;
/** Removals of a late-stored message retried this many times. */
const LATE_REMOVE_RETRIES = 5;

/**
 * Appends waiting for their ack, by reply token. An append is a plain publish with a reply
 * subject under one inbox this log subscribes to once: nats.js's request() builds two Error
 * objects with stack traces per call (one on every success), which was a sixth of a router's
 * CPU under load, and a timer each.
 *
 * An append that timed out may still be stored (the stream's leader was being elected, or its
 * node was frozen, and took the publish later): the sender was told "not sent" and nobody got it
 * live, so a resume must not replay it. Its token is watched for a while, and an ack that comes
 * late is handed to `onLate` (the log removes that message).
 */
class Acks {
  /** By token: a number, written in decimal at the end of the reply subject. */
  readonly #pending = new Map<
    number,
    { at: number; resolve: (seq: number) => void; reject: (e: Error) => void }
  >();
  /** Tokens of appends answered as failed, with when: oldest first. */
  readonly #late = new Map<number, number>();
  readonly #timeoutMs: number;
  readonly #prefix: string;
  readonly #sub: Subscription;
  readonly #onLate: (seq: number) => void;
  #next = 0;
  #sweep: NodeJS.Timeout | undefined;

  constructor(nc: NatsConnection, timeoutMs: number, onLate: (seq: number) => void) {
    this.#timeoutMs = timeoutMs;
    this.#onLate = onLate;
    const inbox = createInbox();
    this.#prefix = `${inbox}.`;
    this.#sub = nc.subscribe(`${inbox}.*`, {
      callback: (err, m) => (err ? this.failAll(err) : this.#ack(m)),
    });
  }

  /** A reply subject for one append, and the promise of its stream seq. */
  expect(): { reply: string; seq: Promise<number> } {
    const token = this.#next++;
    const seq = new Promise<number>((resolve, reject) => {
      this.#pending.set(token, { at: performance.now(), resolve, reject });
    });
    this.#sweep ??= setInterval(() => this.#expire(), Math.max(50, this.#timeoutMs / 4)).unref();
    return { reply: this.#prefix + token, seq };
  }

  #ack(m: Msg): void {
    const token = tokenOf(m.subject, this.#prefix.length);
    const p = this.#pending.get(token);
    if (p === undefined) {
      if (this.#late.delete(token)) {
        const late = parseAck(m);
        if (typeof late === 'number') this.#onLate(late);
      }
      return;
    }
    this.#pending.delete(token);
    const ack = parseAck(m);
    if (typeof ack === 'number') p.resolve(ack);
    else p.reject(ack);
  }

  /** Rejects the appends older than the timeout (the map keeps them oldest first). */
  #expire(): void {
    const now = performance.now();
    for (const [token, p] of this.#pending) {
      if (now - p.at < this.#timeoutMs) break;
      this.#pending.delete(token);
      this.#watch(token, now);
      p.reject(new Error(`no ack within ${this.#timeoutMs} ms`));
    }
    for (const [token, at] of this.#late) {
      if (now - at < LATE_WATCH_MS) break;
      this.#late.delete(token);
    }
    if (this.#pending.size === 0 && this.#late.size === 0 && this.#sweep !== undefined) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }

  #watch(token: number, now: number): void {
    this.#late.set(token, now);
    if (this.#late.size > LATE_WATCH_MAX) this.#late.delete(this.#late.keys().next().value!);
  }

  failAll(err: unknown): void {
    const now = performance.now();
    for (const [token, p] of this.#pending) {
      this.#watch(token, now);
      p.reject(new Error(errorMessage(err)));
    }
    this.#pending.clear();
  }

  close(): void {
    this.failAll(new Error('the history log is closed'));
    this.#late.clear();
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#sweep = undefined;
    this.#sub.unsubscribe();
  }
}

/** The decimal token at the end of `subject` from `from` on (-1 when it is not one). */
function tokenOf(subject: string, from: number): number {
  let n = 0;
  if (from >= subject.length) return -1;
  for (let i = from; i < subject.length; i++) {
    const d = subject.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

const ACK_HEAD = Buffer.from('{"stream":"');
const SEQ_KEY = Buffer.from('"seq":');

/**
 * The seq of a success ack read from its bytes, `{"stream":"<name>","seq":<n>…}` (what JetStream
 * sends, with `domain` or `duplicate` after it at times); -1 for anything else, which
 * {@link parseAck} then reads as JSON. A router reads one ack per send: JSON.parse and a
 * TextDecoder each time were 3% of its CPU in bench/throughput.
 */
export function fastAckSeq(data: Uint8Array): number {
  const buf = view(data);
  if (buf.length < ACK_HEAD.length || buf.compare(ACK_HEAD, 0, ACK_HEAD.length, 0, ACK_HEAD.length) !== 0)
    return -1;
  const end = buf.indexOf(34, ACK_HEAD.length); // the stream name's closing quote
  if (
    end === -1 ||
    end + 2 + SEQ_KEY.length > buf.length ||
    buf.compare(SEQ_KEY, 0, SEQ_KEY.length, end + 2, end + 2 + SEQ_KEY.length) !== 0 ||
    buf[end + 1] !== 44
  )
    return -1;
  let i = end + 2 + SEQ_KEY.length;
  let n = 0;
  const start = i;
  for (; i < buf.length; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
  }
  // (JetStream numbers from 1: a 0 is no success either.)
  if (i === start || i - start > 15 || (buf[i] !== 44 && buf[i] !== 125) || n === 0) return -1;
  return n;
}

/** The stream seq an ack carries, or why there is none. */
function parseAck(m: Msg): number | Error {
  // No JetStream behind the subject: the server answers "no responders" (status 503, no data).
  if (m.data.length === 0) {
    return new Error(m.headers?.code === 503 ? 'no responders: is JetStream on?' : 'empty ack');
  }
  const fast = fastAckSeq(m.data);
  if (fast >= 0) return fast;
  let ack: { seq?: unknown; error?: { description?: unknown } };
  try {
    ack = JSON.parse(new TextDecoder().decode(m.data)) as typeof ack;
  } catch {
    return new Error('an ack that is not JSON');
  }
  if (typeof ack.seq === 'number') return ack.seq;
  return new Error(String(ack.error?.description ?? 'no seq in the ack'));
}

/** How often a process that does not publish refreshes its "from now on" cursor, ms. */
const CURSOR_REFRESH_MS = 1000;

/** The stream name for a subject prefix (names cannot hold `.`). */
export function historyStreamName(prefix: string): string {
  return `${prefix.replaceAll('.', '_')}_history`;
}

/**
 * A replica of a stream that has not heard from a majority of its group within this many ms
 * answers from a copy that may be stale. The leader hears from each replica about once a second
 * (JetStream's raft heartbeat); it keeps calling itself leader for 10 s and more after it was cut
 * off (measured on nats-server 2.9: 15 s).
 */
export const REPLICA_HEARD_MS = 3000;

/**
 * Why the stream's description cannot bound a resume, or undefined when it can: on a NATS cluster
 * only a leader that has heard from a majority of the group recently knows everything acked. With
 * no leader (one being elected, or this node cut off) every replica answers from its own copy,
 * which may lack what the others stored; so does a leader cut off from the rest, until it steps
 * down. A resume bounded by such a copy would leave those messages out without a word.
 */
export function staleness(cluster: ClusterInfo | undefined, copies: number): string | undefined {
  if (cluster === undefined) return undefined; // one server: its copy is the stream
  if (!cluster.leader) return 'the history stream has no leader (JetStream is electing one)';
  // The group is the stream's configured copies: the list may also hold peers it is moving to.
  const replicas = cluster.replicas ?? [];
  // A peer never heard from shows active 0; one known to be down is flagged offline.
  const heard = replicas.filter(
    (r) => !r.offline && r.active > 0 && r.active / 1e6 < REPLICA_HEARD_MS,
  ).length;
  if (2 * (heard + 1) <= copies) {
    return `the history stream's leader ${cluster.leader} has not heard from most of its replicas for ${REPLICA_HEARD_MS / 1000} s`;
  }
  return undefined;
}

/** The payload stored: publish time (f64) and the body. */
function encode(ts: number, body: string): Buffer {
  const len = Buffer.byteLength(body);
  const buf = Buffer.allocUnsafe(8 + len);
  buf.writeDoubleLE(ts, 0);
  buf.write(body, 8);
  return buf;
}

export class JetStreamLog implements MessageLog {
  readonly kind = 'jetstream';
  readonly stream: string;
  readonly #nc: NatsConnection;
  readonly #timeoutMs: number;
  /** Made on the first append: gateways never append. */
  #acks: Acks | undefined;
  readonly #jsm: JetStreamManager;
  readonly #subjectPrefix: string;
  readonly #epoch: string;
  readonly #maxPerSubject: number;
  readonly #log: Logger;
  /** Newest stream seq this process knows of. */
  #last = 0;
  #lastRefresh = 0;
  /** A state request in flight and when it was sent (resumes started before it may share it). */
  #state: { readonly sentAt: number; readonly answer: Promise<{ first: number; last: number }> } | undefined;

  private constructor(
    nc: NatsConnection,
    timeoutMs: number,
    jsm: JetStreamManager,
    o: JetStreamLogOptions,
    epoch: string,
    last: number,
  ) {
    this.#nc = nc;
    this.#timeoutMs = timeoutMs;
    this.#jsm = jsm;
    this.stream = historyStreamName(o.prefix);
    this.#subjectPrefix = `${o.prefix}.h.`;
    this.#epoch = epoch;
    this.#maxPerSubject = o.maxPerSubject;
    this.#log = o.log;
    this.#last = last;
    this.#lastRefresh = Date.now();
  }

  /**
   * Opens the history stream, creating it (or bringing its limits to these options) as needed.
   * Rejects with {@link UnavailableError} saying what to do when JetStream is not there.
   */
  static async open(nc: NatsConnection, o: JetStreamLogOptions): Promise<JetStreamLog> {
    const timeout = o.timeoutMs ?? 5000;
    const name = historyStreamName(o.prefix);
    const config = {
      name,
      subjects: [`${o.prefix}.h.*`],
      max_age: o.ttlMs * 1e6,
      max_msgs_per_subject: o.maxPerSubject,
      max_bytes: o.maxBytes,
      num_replicas: o.replicas,
    };
    try {
      const jsm = await jetstreamManager(nc, { timeout });
      let info: Awaited<ReturnType<JetStreamManager['streams']['info']>>;
      try {
        info = await jsm.streams.info(name);
        const c = info.config;
        if (
          c.max_age !== config.max_age ||
          c.max_msgs_per_subject !== config.max_msgs_per_subject ||
          c.max_bytes !== config.max_bytes ||
          c.num_replicas !== config.num_replicas
        ) {
          info = await jsm.streams.update(name, { ...c, ...config });
          o.log.info('history stream limits updated', { stream: name });
        }
      } catch (err) {
        if (!/stream not found/i.test(errorMessage(err))) throw err;
        info = await jsm.streams.add({ ...config, discard: 'old' } as Parameters<typeof jsm.streams.add>[0]);
        o.log.info('history stream created', { stream: name, replicas: o.replicas });
      }
      const epoch = Date.parse(info.created).toString(36);
      return new JetStreamLog(nc, timeout, jsm, o, epoch, info.state.last_seq);
    } catch (err) {
      throw new UnavailableError(
        `resume history needs JetStream on the NATS server (${errorMessage(err)}): start nats-server with -js, or set --history 0 to run without resume`,
        { cause: err },
      );
    }
  }

  async append(subject: string, body: string, ts: number): Promise<Message> {
    let seq: number;
    try {
      this.#acks ??= new Acks(this.#nc, this.#timeoutMs, (seq) => this.#removeLate(seq));
      const { reply, seq: acked } = this.#acks.expect();
      this.#nc.publish(this.#subjectPrefix + idToToken(subject), encode(ts, body), { reply });
      seq = await acked;
    } catch (err) {
      throw new UnavailableError(
        `the history stream did not take the message (${errorMessage(err)}); not sent`,
        {
          cause: err,
        },
      );
    }
    if (seq > this.#last) this.#last = seq;
    return new Message(`${this.#epoch}-${seq}`, subject, body, ts);
  }

  /**
   * A message stored after its append was answered as failed: removed, so no resume replays it.
   * Late acks come while JetStream changes leaders, when a removal may time out too: retried with
   * backoff (1, 2, 4, 8, 16 s), then given up on, saying so.
   */
  #removeLate(seq: number, attempt = 0): void {
    if (attempt === 0)
      this.#log.warn('a send answered as not sent was stored late; removing it from the history', { seq });
    this.#jsm.streams.deleteMessage(this.stream, seq, false).then(
      (removed) => {
        if (!removed) this.#log.warn('a late-stored message was already gone from the history', { seq });
      },
      (err: unknown) => {
        if (/no message found|not found/i.test(errorMessage(err))) return; // gone already (a limit)
        if (attempt >= LATE_REMOVE_RETRIES) {
          this.#log.error(
            'a late-stored message could not be removed from the history; a resume may replay it',
            {
              seq,
              err,
            },
          );
          return;
        }
        setTimeout(() => this.#removeLate(seq, attempt + 1), 1000 * 2 ** attempt).unref();
      },
    );
  }

  current(): string {
    if (Date.now() - this.#lastRefresh > CURSOR_REFRESH_MS) {
      this.#lastRefresh = Date.now();
      this.#fresh(performance.now()).catch((err: unknown) =>
        this.#log.debug('history cursor not refreshed', { err }),
      );
    }
    return `${this.#epoch}-${this.#last}`;
  }

  /** The stream's first and last seq, as of a request sent no earlier than `since` (performance.now()). */
  #fresh(since: number): Promise<{ first: number; last: number }> {
    const pending = this.#state;
    if (pending !== undefined && pending.sentAt >= since) return pending.answer;
    const sentAt = performance.now();
    const answer = this.#jsm.streams.info(this.stream).then((info) => {
      const stale = staleness(info.cluster, info.config.num_replicas);
      if (stale !== undefined) throw new UnavailableError(`${stale}; resume later`);
      if (info.state.last_seq > this.#last) this.#last = info.state.last_seq;
      return { first: info.state.first_seq, last: info.state.last_seq };
    });
    const state = { sentAt, answer };
    this.#state = state;
    const clear = (): void => {
      if (this.#state === state) this.#state = undefined;
    };
    answer.then(clear, clear);
    return answer;
  }

  async since(lastEid: string, subjects: ReadonlySet<string>): Promise<Replay> {
    const dash = lastEid.lastIndexOf('-');
    const digits = lastEid.slice(dash + 1);
    if (dash <= 0 || lastEid.slice(0, dash) !== this.#epoch || !/^\d{1,15}$/.test(digits)) {
      return { ok: false, reason: 'unknown' };
    }
    const after = Number(digits);
    const { first, last } = await this.#fresh(performance.now());
    if (after > last) return { ok: false, reason: 'unknown' };
    if (after < first - 1) return { ok: false, reason: 'expired' };
    const scanned = last - after <= 2 * subjects.size ? await this.#scan(after, last, subjects) : undefined;
    const found = scanned ?? (await this.#bySubject(after, last, subjects));
    if (found === 'expired') return { ok: false, reason: 'expired' };
    found.sort((a, b) => a.seq - b.seq);
    const messages = found.map((f) => {
      const buf = Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength);
      return new Message(`${this.#epoch}-${f.seq}`, f.subject, buf.toString('utf8', 8), buf.readDoubleLE(0));
    });
    return { ok: true, messages };
  }

  /**
   * A short range read whole, keeping the wanted subjects; undefined when a message in it has been
   * removed, by a limit or as stored late (its subject is unknown: {@link #bySubject} can tell
   * whether it mattered).
   */
  async #scan(after: number, last: number, subjects: ReadonlySet<string>): Promise<Found[] | undefined> {
    const found: Found[] = [];
    for (let seq = after + 1; seq <= last; seq++) {
      const m = await this.#get({ seq });
      if (m === null) return undefined;
      const id = tokenToId(m.subject.slice(this.#subjectPrefix.length));
      if (subjects.has(id)) found.push({ seq: m.seq, subject: id, data: m.data });
    }
    return found;
  }

  /**
   * The messages of each wanted subject after `after`, by JetStream's next-by-subject get. A
   * subject with as many as the per-subject limit keeps may have lost older ones: `expired`.
   */
  async #bySubject(after: number, last: number, subjects: ReadonlySet<string>): Promise<Found[] | 'expired'> {
    const found: Found[] = [];
    for (const id of subjects) {
      const subject = this.#subjectPrefix + idToToken(id);
      let n = 0;
      for (let seq = after + 1; seq <= last; ) {
        const m = await this.#get({ next_by_subj: subject, seq });
        if (m === null || m.seq > last) break;
        found.push({ seq: m.seq, subject: id, data: m.data });
        seq = m.seq + 1;
        if (++n >= this.#maxPerSubject) return 'expired';
      }
    }
    return found;
  }

  /**
   * One stored message, read from the stream's leader. Not a direct get: that is answered by any
   * replica, and one catching up after a partition answers "no such message" for what it has not
   * received yet — a resume that silently leaves messages out (the across-hosts test caught it).
   */
  #get(query: { seq: number } | { seq: number; next_by_subj: string }): Promise<StoredMsg | null> {
    // nats.js types the leader's get without next_by_subj; the server takes it (2.9 and later).
    return this.#jsm.streams.getMessage(this.stream, query as { seq: number });
  }

  close(): Promise<void> {
    this.#acks?.close();
    return Promise.resolve();
  }
}

/** A stored message found for a resume. */
interface Found {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
}
