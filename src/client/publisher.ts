/**
 * The backend's side: a publisher for the HTTP API, for Node (18+) or anything with `fetch`.
 * Keep-alive comes with the runtime's fetch (undici's pool in Node). A 503 (overload, draining,
 * bus or store down: nothing was sent) is retried after the server's `Retry-After`, up to
 * `retries` times; every other error rejects at once as a {@link PublishError} carrying the API's
 * error code, so a caller can tell a bad id (`ERR_INVALID_ID`) from a message too big
 * (`ERR_PAYLOAD_TOO_LARGE`).
 *
 * ```js
 * import { Publisher } from 'switchboard/publisher';
 * const pub = new Publisher('http://127.0.0.1:8001', { apiKey: process.env.SWITCHBOARD_API_KEY });
 * await pub.send('42', 'Hello World');           // → { delivered: 1 }
 * ```
 */

/** An API error: the HTTP status, the API's code (`ERR_…`) and its message. */
export class PublishError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'PublishError';
    this.status = status;
    this.code = code;
  }
}

export interface PublisherOptions {
  /** Sent as `Authorization: Bearer`. */
  readonly apiKey?: string;
  /** How many times a 503 is retried (default 3). */
  readonly retries?: number;
  /** Longest wait between retries, whatever Retry-After says (ms, default 10,000). */
  readonly maxRetryDelayMs?: number;
  /** Per request (ms, default 30,000). */
  readonly timeoutMs?: number;
}

export interface SendResult {
  readonly delivered: number;
  /** Present and true when a gateway did not report in time: `delivered` is a lower bound. */
  readonly partial?: boolean;
}

export interface Presence {
  readonly id: string;
  readonly online: boolean;
  readonly connections: number;
}

export class Publisher {
  readonly #base: string;
  readonly #o: Required<Omit<PublisherOptions, 'apiKey'>> & { apiKey: string | undefined };

  constructor(apiUrl: string, options: PublisherOptions = {}) {
    this.#base = apiUrl.replace(/\/+$/, '');
    this.#o = {
      apiKey: options.apiKey,
      retries: options.retries ?? 3,
      maxRetryDelayMs: options.maxRetryDelayMs ?? 10_000,
      timeoutMs: options.timeoutMs ?? 30_000,
    };
  }

  /** `send(id, msg)`: reaches `id` and its subscribers. `msg`: a string or any JSON value. */
  send(id: string, msg: unknown): Promise<SendResult> {
    return this.#call('POST', '/api/send', { id, msg });
  }

  /** Many sends in one request, delivered in order; `messages`: how many were sent. */
  batch(messages: readonly { id: string; msg: unknown }[]): Promise<SendResult & { messages: number }> {
    return this.#call('POST', '/api/send/batch', messages);
  }

  subscribe(pairs: readonly { subscriber: string; subscribee: string }[]): Promise<{ added: number }> {
    return this.#call('POST', '/api/subscriptions', pairs);
  }

  unsubscribe(pairs: readonly { subscriber: string; subscribee: string }[]): Promise<{ removed: number }> {
    return this.#call('DELETE', '/api/subscriptions', pairs);
  }

  async presence(ids: readonly string[]): Promise<Presence[]> {
    return (await this.#call<{ presence: Presence[] }>('POST', '/api/presence', ids)).presence;
  }

  /** Ends every connection of `id`; `reconnect: false` tells clients not to come back. */
  disconnect(id: string, reconnect = false): Promise<{ disconnected: number }> {
    return this.#call('POST', '/api/disconnect', { id, reconnect });
  }

  async #call<T>(method: string, path: string, body: unknown): Promise<T> {
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (this.#o.apiKey !== undefined) headers.Authorization = `Bearer ${this.#o.apiKey}`;
    const payload = JSON.stringify(body);
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(this.#base + path, {
        method,
        headers,
        body: payload,
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
      const text = await res.text();
      if (res.ok) return JSON.parse(text) as T;
      let code = 'ERR_HTTP';
      let message = `${res.status} ${text.slice(0, 200)}`;
      try {
        const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
        if (e?.code !== undefined) code = e.code;
        if (e?.message !== undefined) message = e.message;
      } catch {
        // not JSON: keep the text
      }
      if (res.status !== 503 || attempt >= this.#o.retries) throw new PublishError(res.status, code, message);
      const after = Number(res.headers.get('retry-after'));
      const ms = Number.isFinite(after) && after >= 0 ? after * 1000 : 1000;
      await new Promise((r) => setTimeout(r, Math.min(ms, this.#o.maxRetryDelayMs)));
    }
  }
}
