/**
 * `msggen`: the article's msggen.erl — `generators` senders, each sending `count` messages to a
 * random id in `minId..maxId`, waiting `interval` ms after each reply:
 *
 * ```erlang
 * [spawn(fun() -> msggen:start(1000000, 100, 10000) end) || _ <- lists:seq(1,100)]
 * ```
 *
 * is `runMsggen({ count: 1_000_000, interval: 100, maxId: 10_000, generators: 100 })`. That loop
 * is closed: a slow server slows the senders down and hides its own latency. `rate` switches to
 * an open loop, sends scheduled on a clock at a constant total rate whatever the replies do.
 *
 * Every message is counted: sent (a 2xx answer), failed (by status or error code), and the API's
 * `delivered` figures summed. With `stamp`, each body ends in ` t=<ms since the epoch>` (with
 * fractions, from `performance.timeOrigin + performance.now()`), which `flood` reads back to
 * measure publish → receive latency. In the open loop the stamp is the message's scheduled
 * time, so sending late counts as latency rather than vanishing from the figures.
 *
 * This folder is the message generator and the two pieces it shares with the other load tools:
 * `latency` (the mergeable latency histogram flood and bench c10k also report with) and `random`
 * (the seeded generator behind msggen's ids and `friends generate`'s graph).
 */
import type { Agent } from 'node:http';
import type { NatsConnection } from '@nats-io/transport-node';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_PREFIX } from '../../bus/nats-options.js';
import { ConfigError, errorMessage, UnavailableError } from '../../errors.js';
import { http } from '../../node-http.js';
import { formatMs, LatencyHistogram, type LatencySummary } from './latency.js';
import { Xoshiro128 } from './random.js';

/** Default publish API address. */
export const DEFAULT_API = 'http://127.0.0.1:8001';
/** Longest a request may take before it counts as failed (`ETIMEDOUT`). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Largest batch accepted by {@link runMsggen}. */
export const MAX_BATCH = 10_000;

/** A send stamp for a message body: ` t=1712345678901.123` (the token flood scans for). */
export function stampText(nowMs: number = performance.timeOrigin + performance.now()): string {
  return ` t=${nowMs.toFixed(3)}`;
}

/** What to send and how. */
export interface MsggenOptions {
  /** Publish API base URL (default {@link DEFAULT_API}). */
  readonly api?: string;
  /** Messages per generator (the article's `Num`). With `rate`, the total is count × generators. */
  readonly count: number;
  /** Milliseconds a generator waits after each reply (closed loop; the article's `Interval`). */
  readonly interval?: number;
  /** Ids are drawn uniformly from minId..maxId (the article's `Max`; minId defaults to 1). */
  readonly maxId: number;
  readonly minId?: number;
  /** Senders in parallel (default 1). */
  readonly generators?: number;
  /** Open loop: messages per second in total, on a clock. */
  readonly rate?: number;
  /** Messages per request (`/api/send/batch` when above 1). */
  readonly batch?: number;
  /** Stop after this many ms. */
  readonly duration?: number;
  /** Seed for the id choice (default: random, reported in the summary). */
  readonly seed?: number;
  /** Append a send stamp to every body, for flood's latency figures. */
  readonly stamp?: boolean;
  /** Keep-alive connections to the API at most (default: generators, or 64 with `rate`; ≤ 1024). */
  readonly maxSockets?: number;
  /** Open loop: most requests in flight; beyond it the schedule falls behind (default maxSockets × 16). */
  readonly maxInFlight?: number;
  /** API key (`Authorization: Bearer`). */
  readonly apiKey?: string;
  /** Per-request timeout, ms. */
  readonly timeout?: number;
  /** Publish as NATS requests through this server (`nats://host:port[,…]`) instead of the HTTP API. */
  readonly bus?: string;
  /** The deployment's subject prefix on the bus (default {@link DEFAULT_PREFIX}). */
  readonly busPrefix?: string;
  /** Milliseconds between reports (default 10 s). */
  readonly reportEvery?: number;
}

/** Callbacks while sending. */
export interface MsggenHooks {
  readonly signal?: AbortSignal;
  onReport?(report: MsggenReport): void;
}

/** Figures so far. */
export interface MsggenReport {
  readonly elapsedMs: number;
  /** Messages the API accepted (2xx). */
  readonly sent: number;
  /** Messages in requests that failed, by `HTTP_<status>[ <code>]` or network error code. */
  readonly failed: number;
  readonly errors: Readonly<Record<string, number>>;
  /** Sum of the API's `delivered` answers. */
  readonly delivered: number;
  readonly requests: number;
  readonly inFlight: number;
  /** Accepted messages per second since the start, and over the last report interval. */
  readonly sentPerSecond: number;
  readonly recentPerSecond: number;
  /** API round-trip time per request. */
  readonly apiLatency: LatencySummary;
}

/** What {@link runMsggen} resolves to. */
export interface MsggenSummary extends MsggenReport {
  readonly mode: 'closed' | 'open';
  /** Messages it set out to send. */
  readonly planned: number;
  /** Open loop: the rate asked for; closed loop: null. */
  readonly targetRate: number | null;
  /** Open loop: messages that went out later than scheduled because maxInFlight was reached. */
  readonly behind: number;
  readonly seed: number;
  readonly stoppedBy: 'done' | 'signal' | 'duration';
}

interface Outgoing {
  readonly id: string;
  readonly msg: string;
}

/** The tallies of a sender, whichever way it sends. */
abstract class Sender {
  readonly latency = new LatencyHistogram();
  readonly errors = new Map<string, number>();
  sent = 0;
  failed = 0;
  delivered = 0;
  requests = 0;
  inFlight = 0;
  #drained: (() => void) | undefined;

  /** Sends `items` (one: a send; several: a batch); never rejects. */
  abstract send(items: readonly Outgoing[]): Promise<void>;
  abstract close(): void;

  /** A request goes out; the function it returns settles it, once. */
  protected begin(items: readonly Outgoing[]): (error: string | undefined, delivered: number) => void {
    this.requests++;
    this.inFlight++;
    const t0 = performance.now();
    let settled = false;
    return (error, delivered) => {
      if (settled) return;
      settled = true;
      this.inFlight--;
      this.latency.record(performance.now() - t0);
      if (error === undefined) {
        this.sent += items.length;
        this.delivered += delivered;
      } else {
        this.failed += items.length;
        this.errors.set(error, (this.errors.get(error) ?? 0) + items.length);
      }
      if (this.inFlight === 0 && this.#drained) this.#drained();
    };
  }

  /** Resolves when no request is in flight (or after `ms`). */
  async drain(ms: number): Promise<void> {
    if (this.inFlight === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => {
        this.#drained = resolve;
      }),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
    ]);
    clearTimeout(timer);
    this.#drained = undefined;
  }
}

/**
 * The answer body of a send or batch: its delivered count, or the error's name for the tallies —
 * `<what>[ <code>]`, where `what` is the HTTP status (`HTTP_503`) or, when undefined, the
 * `BUS_<status>` an error answer from the bus carries.
 */
function answerOf(
  body: string,
  ok: boolean,
  what?: string,
): { error: string | undefined; delivered: number } {
  let parsed: { delivered?: unknown; error?: { code?: unknown; status?: unknown } } | undefined;
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    parsed = undefined;
  }
  if (ok && parsed !== undefined && parsed.error === undefined) {
    const d = parsed.delivered;
    return { error: undefined, delivered: typeof d === 'number' ? d : 0 };
  }
  const code = parsed?.error?.code;
  const name = what ?? (parsed === undefined ? 'BUS_BAD_ANSWER' : `BUS_${String(parsed.error?.status)}`);
  return { error: `${name}${typeof code === 'string' ? ` ${code}` : ''}`, delivered: 0 };
}

/** Sends through the HTTP API: /api/send, /api/send/batch. */
class HttpSender extends Sender {
  readonly #agent: Agent;
  readonly #host: string;
  readonly #port: number;
  readonly #base: string;
  readonly #headers: Record<string, string>;
  readonly #timeout: number;

  constructor(api: URL, maxSockets: number, apiKey: string | undefined, timeout: number) {
    super();
    this.#agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
    this.#host = api.hostname.startsWith('[') ? api.hostname.slice(1, -1) : api.hostname;
    this.#port = api.port === '' ? 80 : Number(api.port);
    this.#base = api.pathname.replace(/\/+$/, '');
    this.#headers = { 'content-type': 'application/json' };
    if (apiKey) this.#headers.authorization = `Bearer ${apiKey}`;
    this.#timeout = timeout;
  }

  send(items: readonly Outgoing[]): Promise<void> {
    const single = items.length === 1;
    const body = JSON.stringify(single ? items[0] : items);
    const path = `${this.#base}${single ? '/api/send' : '/api/send/batch'}`;
    const settle = this.begin(items);
    return new Promise<void>((resolve) => {
      let retried = false;
      const done = (error: string | undefined, delivered: number): void => {
        settle(error, delivered);
        resolve();
      };
      const attempt = (): void => {
        let responded = false;
        const req = http.request(
          {
            agent: this.#agent,
            host: this.#host,
            port: this.#port,
            path,
            method: 'POST',
            headers: { ...this.#headers, 'content-length': String(Buffer.byteLength(body)) },
            timeout: this.#timeout,
          },
          (res) => {
            responded = true;
            const parts: Buffer[] = [];
            res.on('data', (b: Buffer) => parts.push(b));
            res.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? 'ERESPONSE', 0));
            res.on('end', () => {
              const status = res.statusCode ?? 0;
              const a = answerOf(
                Buffer.concat(parts).toString('utf8'),
                status >= 200 && status < 300,
                `HTTP_${status}`,
              );
              done(a.error, a.delivered);
            });
          },
        );
        req.on('timeout', () =>
          req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })),
        );
        req.on('error', (err: NodeJS.ErrnoException) => {
          // The server closed an idle keep-alive socket just as we reused it: the request never
          // reached it (Node's documented `reusedSocket` race), so sending it again is safe.
          if (!responded && !retried && req.reusedSocket && err.code === 'ECONNRESET') {
            retried = true;
            attempt();
            return;
          }
          done(err.code ?? errorMessage(err), 0);
        });
        req.end(body);
      };
      attempt();
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

/**
 * Sends as NATS requests on `<prefix>.publish` (the router answers as the API does), the way a
 * backend already on NATS publishes without HTTP. An error answer is tallied as `BUS_<status> <code>`.
 */
class BusSender extends Sender {
  readonly #nc: NatsConnection;
  readonly #subject: string;
  readonly #timeout: number;

  constructor(nc: NatsConnection, prefix: string, timeout: number) {
    super();
    this.#nc = nc;
    this.#subject = `${prefix}.publish`;
    this.#timeout = timeout;
  }

  send(items: readonly Outgoing[]): Promise<void> {
    const settle = this.begin(items);
    const body = JSON.stringify(items.length === 1 ? items[0] : items);
    return this.#nc.request(this.#subject, body, { timeout: this.#timeout }).then(
      (m) => {
        const a = answerOf(m.string(), true);
        settle(a.error, a.delivered);
      },
      (err: unknown) => {
        const e = err as { code?: unknown; message?: string };
        const why = /no responders/i.test(e.message ?? '')
          ? 'BUS_NO_RESPONDERS'
          : /timeout/i.test(e.message ?? '')
            ? 'ETIMEDOUT'
            : `BUS ${String(e.code ?? errorMessage(err))}`;
        settle(why, 0);
      },
    );
  }

  close(): void {
    void this.#nc.close();
  }
}

function check(name: string, value: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (value !== undefined && (!Number.isFinite(value) || value < min || value > max)) {
    throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
  }
}

function parseApi(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`--api ${JSON.stringify(text)} is not a URL such as ${DEFAULT_API}`);
  }
  if (url.protocol !== 'http:') throw new ConfigError(`--api must be an http:// URL, got ${url.protocol}//`);
  return url;
}

/** A {@link BusSender} connected to `url`; a ConfigError when the URL is not one, Unavailable when no server answers. */
async function busSender(url: string, prefix: string, timeout: number): Promise<BusSender> {
  // Loaded only when asked for: publishing over HTTP never pays for the NATS client.
  const { parseNatsUrl } = await import('../../bus/open-bus.js');
  const { connect } = await import('@nats-io/transport-node');
  const servers = parseNatsUrl(url);
  try {
    const nc = await connect({ servers, noRandomize: true, timeout: DEFAULT_CONNECT_TIMEOUT_MS });
    return new BusSender(nc, prefix, timeout);
  } catch (err) {
    throw new UnavailableError(`cannot connect to NATS at ${url}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Sleeps `ms`, or less when `stop` resolves first. */
function sleep(ms: number, stop: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([stop, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

/**
 * Sends the messages; resolves to the summary when all are answered, or when stopped by the
 * signal or the duration (requests in flight are awaited, up to the request timeout).
 */
export async function runMsggen(options: MsggenOptions, hooks: MsggenHooks = {}): Promise<MsggenSummary> {
  const api = parseApi(options.api ?? DEFAULT_API);
  const generators = options.generators ?? 1;
  const minId = options.minId ?? 1;
  check('--count', options.count, 1);
  check('--interval', options.interval, 0);
  check('--max-id', options.maxId, 1);
  check('--min-id', minId, 0, options.maxId);
  check('--generators', generators, 1, 100_000);
  check('--rate', options.rate, Number.MIN_VALUE);
  check('--batch', options.batch, 1, MAX_BATCH);
  check('--max-sockets', options.maxSockets, 1, 1024);
  check('--max-in-flight', options.maxInFlight, 1);
  check('--seed', options.seed, Number.MIN_SAFE_INTEGER);
  if (options.seed !== undefined && !Number.isSafeInteger(options.seed)) {
    throw new ConfigError(`--seed must be a whole number, got ${options.seed}`);
  }
  const open = options.rate !== undefined;
  const batch = options.batch ?? 1;
  const interval = options.interval ?? 0;
  const maxSockets = options.maxSockets ?? Math.min(1024, open ? 64 : generators);
  const maxInFlight = options.maxInFlight ?? maxSockets * 16;
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  const rng = new Xoshiro128(seed);
  const span = options.maxId - minId + 1;
  const stamp = options.stamp ?? false;
  const planned = options.count * generators;
  const timeout = options.timeout ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const sender =
    options.bus === undefined
      ? new HttpSender(api, maxSockets, options.apiKey, timeout)
      : await busSender(options.bus, options.busPrefix ?? DEFAULT_PREFIX, timeout);

  // `dueAt` (performance clock): open-loop messages are stamped with their place on the
  // schedule, so a late send shows as latency instead of hiding (no coordinated omission).
  const message = (num: number, dueAt?: number): Outgoing => ({
    id: String(minId + rng.below(span)),
    msg: `Fake message Num = ${num}${stamp ? stampText(dueAt === undefined ? undefined : performance.timeOrigin + dueAt) : ''}`,
  });

  let stoppedBy: MsggenSummary['stoppedBy'] = 'done';
  let stopped = false;
  let onStop: () => void = () => undefined;
  const stopSignal = new Promise<void>((resolve) => {
    onStop = resolve;
  });
  const stop = (why: MsggenSummary['stoppedBy']): void => {
    if (stopped) return;
    stopped = true;
    stoppedBy = why;
    onStop();
  };
  const abort = (): void => stop('signal');
  hooks.signal?.addEventListener('abort', abort, { once: true });
  if (hooks.signal?.aborted) stop('signal');
  const timers: NodeJS.Timeout[] = [];
  if (options.duration !== undefined && options.duration > 0) {
    timers.push(setTimeout(() => stop('duration'), options.duration));
  }

  const t0 = performance.now();
  let lastSent = 0;
  let lastAt = t0;
  let behind = 0;
  const report = (): MsggenReport => {
    const now = performance.now();
    const recent = now > lastAt ? ((sender.sent - lastSent) * 1000) / (now - lastAt) : 0;
    lastSent = sender.sent;
    lastAt = now;
    return {
      elapsedMs: Math.round(now - t0),
      sent: sender.sent,
      failed: sender.failed,
      errors: Object.fromEntries(sender.errors),
      delivered: sender.delivered,
      requests: sender.requests,
      inFlight: sender.inFlight,
      sentPerSecond: now > t0 ? Math.round((sender.sent * 1000 * 10) / (now - t0)) / 10 : 0,
      recentPerSecond: Math.round(recent * 10) / 10,
      apiLatency: sender.latency.summary(),
    };
  };
  if (hooks.onReport)
    timers.push(setInterval(() => hooks.onReport?.(report()), options.reportEvery ?? 10_000));

  try {
    if (!open) {
      // Closed loop, as msggen.erl: send, wait for the reply, wait `interval`, repeat.
      const generator = async (): Promise<void> => {
        let num = options.count;
        while (num > 0 && !stopped) {
          const n = Math.min(batch, num);
          const items: Outgoing[] = [];
          for (let k = 0; k < n; k++) items.push(message(num - k));
          num -= n;
          await sender.send(items);
          if (interval > 0 && num > 0 && !stopped) await sleep(interval, stopSignal);
        }
      };
      await Promise.all(Array.from({ length: generators }, generator));
    } else {
      // Open loop: message k is due at k / rate seconds; whole batches go out as they fill up.
      const rate = options.rate!;
      let scheduled = 0;
      while (scheduled < planned && !stopped) {
        const now = performance.now();
        const due = Math.min(planned, Math.floor(((now - t0) * rate) / 1000) + 1);
        while (scheduled < due && !stopped) {
          const pending = due - scheduled;
          if (pending < batch && due < planned) break;
          if (sender.inFlight >= maxInFlight) {
            behind = Math.max(behind, pending);
            break;
          }
          const n = Math.min(batch, pending);
          const items: Outgoing[] = [];
          for (let k = 0; k < n; k++)
            items.push(message(scheduled + k + 1, t0 + ((scheduled + k) * 1000) / rate));
          scheduled += n;
          void sender.send(items);
        }
        if (scheduled >= planned || stopped) break;
        // Message k is due at t0 + k/rate; the next batch is complete when its last one is due.
        const nextDue = t0 + ((scheduled + batch - 1) * 1000) / rate;
        const wait =
          sender.inFlight >= maxInFlight ? 1 : Math.min(100, Math.max(1, nextDue - performance.now()));
        await sleep(wait, stopSignal);
      }
      await sender.drain(options.timeout ?? DEFAULT_REQUEST_TIMEOUT_MS);
    }
  } finally {
    for (const t of timers) clearTimeout(t);
    hooks.signal?.removeEventListener('abort', abort);
    await sender.drain(options.timeout ?? DEFAULT_REQUEST_TIMEOUT_MS);
    sender.close();
  }
  return {
    ...report(),
    mode: open ? 'open' : 'closed',
    planned,
    targetRate: open ? options.rate! : null,
    behind,
    seed,
    stoppedBy,
  };
}

/** One report line: `[  10.0s] sent 9990 (999.0/s, last 1000.2/s) delivered 9990 failed 0 api p50 0.4ms p99 2.1ms`. */
export function formatMsggenReport(r: MsggenReport): string {
  const t = `[${(r.elapsedMs / 1000).toFixed(1).padStart(7)}s]`;
  const errs = Object.entries(r.errors)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return (
    `${t} sent ${r.sent} (${r.sentPerSecond}/s, last ${r.recentPerSecond}/s) delivered ${r.delivered} ` +
    `failed ${r.failed}${errs ? ` (${errs})` : ''} in flight ${r.inFlight} ` +
    `api p50 ${formatMs(r.apiLatency.p50)} p99 ${formatMs(r.apiLatency.p99)}`
  );
}

/** The end-of-run summary, several lines. */
export function formatMsggenSummary(s: MsggenSummary): string {
  const lines = [
    `msggen: ${s.mode === 'open' ? `open loop at ${s.targetRate} msg/s` : 'closed loop'}, seed ${s.seed}`,
    `  sent         ${s.sent} of ${s.planned} messages in ${s.requests} requests, ${s.sentPerSecond} msg/s over ${(s.elapsedMs / 1000).toFixed(1)}s`,
    `  delivered    ${s.delivered} (sum of the API's delivered counts)`,
    `  failed       ${s.failed}${
      Object.keys(s.errors).length
        ? ` — ${Object.entries(s.errors)
            .map(([k, v]) => `${k}: ${v}`)
            .join(', ')}`
        : ''
    }`,
    `  api latency  p50 ${formatMs(s.apiLatency.p50)}  p99 ${formatMs(s.apiLatency.p99)}  max ${formatMs(s.apiLatency.max)}`,
  ];
  if (s.behind > 0) lines.push(`  behind       up to ${s.behind} messages late (max in flight reached)`);
  lines.push(`  stopped by   ${s.stoppedBy}`);
  return `${lines.join('\n')}\n`;
}
