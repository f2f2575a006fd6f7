/**
 * Presence events for backends: an id coming online (its first connection anywhere in the
 * cluster) or going offline (its last one gone), debounced and batched, delivered to a webhook and
 * to a NATS subject. (Centrifugo's users ask for this more than for anything else.)
 *
 * ```
 *   bus changes ─▶ debounce ─▶ batch (≤ 1 s, ≤ 1,000) ─▶ webhook POST  (retried, signed)
 *                  offline held --presence-debounce;     └▶ <prefix>.presence (NATS)
 *                  back online meanwhile: no event at all
 * ```
 *
 * The webhook body is `{"events":[{"id","online","at"}…]}`; with an API key set it carries
 * `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the body under the API key>`. A failed
 * delivery (network error, non-2xx) is retried with capped exponential backoff and jitter; the
 * queue holds at most `maxQueued` events, past which the oldest are dropped and counted.
 * Delivery is at least once: a batch that times out after the receiver took it is sent again.
 */
import { createHmac } from 'node:crypto';
import type { Bus, PresenceChange } from '../bus/bus.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

export interface PresenceEventsOptions {
  /** Webhook URL; empty for none. */
  readonly webhook: string;
  /** Signs webhook bodies when set (the API key). */
  readonly secret: string;
  /** An offline change waits this long for the id to come back, ms. */
  readonly debounceMs: number;
  /** Most events queued for the webhook. */
  readonly maxQueued?: number;
  /** Also publishes each batch here (the NATS subject), if given. */
  readonly publish?: (body: string) => void;
  readonly log: Logger;
}

/** Counters, for stats. */
export interface PresenceEventStats {
  readonly emitted: number;
  readonly delivered: number;
  readonly queued: number;
  readonly dropped: number;
  readonly retries: number;
  readonly failures: number;
}

const FLUSH_MS = 1000;
const BATCH_MAX = 1000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;

export class PresenceEvents {
  readonly #o: PresenceEventsOptions;
  readonly #maxQueued: number;
  /** Offline changes waiting out the debounce: id → when it went offline. */
  readonly #offline = new Map<string, PresenceChange>();
  /** Changes to send with the next flush. */
  #batch: PresenceChange[] = [];
  readonly #queue: PresenceChange[][] = [];
  #queued = 0;
  #timer: NodeJS.Timeout;
  #sending = false;
  #closed = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #emitted = 0;
  #delivered = 0;
  #dropped = 0;
  #retries = 0;
  #failures = 0;

  constructor(bus: Bus, o: PresenceEventsOptions) {
    this.#o = o;
    this.#maxQueued = o.maxQueued ?? 10_000;
    bus.onPresence((changes) => {
      for (const c of changes) this.change(c);
    });
    this.#timer = setInterval(() => this.#tick(), Math.min(FLUSH_MS, Math.max(50, o.debounceMs / 4)));
    this.#timer.unref();
  }

  /** One change from the bus. */
  change(c: PresenceChange): void {
    if (this.#closed) return;
    if (!c.online) {
      this.#offline.set(c.id, c);
      return;
    }
    // Back within the debounce: it never went offline as far as backends are concerned.
    if (this.#offline.delete(c.id)) return;
    this.#add(c);
  }

  #add(c: PresenceChange): void {
    this.#batch.push(c);
    this.#emitted++;
    if (this.#batch.length >= BATCH_MAX) this.#flush();
  }

  #tick(): void {
    const due = Date.now() - this.#o.debounceMs;
    for (const [id, c] of this.#offline) {
      if (c.at > due) break; // insertion order is time order
      this.#offline.delete(id);
      this.#add(c);
    }
    this.#flush();
  }

  #flush(): void {
    if (this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    const body = JSON.stringify({ events: batch });
    try {
      this.#o.publish?.(body);
    } catch (err) {
      this.#o.log.warn('presence events not published on the bus', { err });
    }
    if (!this.#o.webhook) return;
    this.#queue.push(batch);
    this.#queued += batch.length;
    while (this.#queued > this.#maxQueued && this.#queue.length > 1) {
      const dropped = this.#queue.shift()!;
      this.#queued -= dropped.length;
      this.#dropped += dropped.length;
      this.#o.log.warn('presence webhook queue full: oldest events dropped', { dropped: dropped.length });
    }
    void this.#send(0);
  }

  /** Sends queued batches in order; on failure waits and retries the same batch. */
  async #send(attempt: number): Promise<void> {
    if (this.#sending || this.#closed) return;
    const batch = this.#queue[0];
    if (batch === undefined) return;
    this.#sending = true;
    const body = JSON.stringify({ events: batch });
    let ok = false;
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (this.#o.secret) {
        headers['x-switchboard-signature'] =
          `sha256=${createHmac('sha256', this.#o.secret).update(body).digest('hex')}`;
      }
      const res = await fetch(this.#o.webhook, {
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      await res.arrayBuffer().catch(() => undefined);
      ok = res.ok;
      if (!ok) this.#o.log.warn('presence webhook refused a batch', { status: res.status, attempt });
    } catch (err) {
      this.#o.log.warn('presence webhook not reached', { err: errorMessage(err), attempt });
    }
    this.#sending = false;
    if (ok) {
      if (this.#queue[0] === batch) {
        this.#queue.shift();
        this.#queued -= batch.length;
      }
      this.#delivered += batch.length;
      void this.#send(0);
      return;
    }
    this.#failures++;
    if (this.#closed) return;
    const cap = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** attempt);
    const wait = cap / 2 + Math.random() * (cap / 2);
    this.#retries++;
    this.#retryTimer = setTimeout(() => void this.#send(attempt + 1), wait);
    this.#retryTimer.unref();
  }

  stats(): PresenceEventStats {
    return {
      emitted: this.#emitted,
      delivered: this.#delivered,
      queued: this.#queued,
      dropped: this.#dropped,
      retries: this.#retries,
      failures: this.#failures,
    };
  }

  /** Stops; what is not delivered yet is dropped (with a log line saying how much). */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#retryTimer);
    if (this.#queued > 0)
      this.#o.log.warn('presence events not delivered at shutdown', { events: this.#queued });
  }
}
