/**
 * The publish/admin API (default 127.0.0.1:8001), on `node:http`: it holds no long-lived
 * connections, so the convenience is worth its per-request cost here.
 *
 * | method | path                      | body / answer                                               |
 * |--------|---------------------------|-------------------------------------------------------------|
 * | POST   | /api/send                 | `{"id","msg"}` → `{"delivered":N}` (`"partial":true` if a gateway did not report in time) |
 * | POST   | /api/send/batch           | JSON array or NDJSON of `{"id","msg"}` → `{"messages","delivered"}` |
 * | POST   | /api/subscriptions        | `[{"subscriber","subscribee"}]` → `{"added":N}`              |
 * | DELETE | /api/subscriptions        | `[{"subscriber","subscribee"}]` → `{"removed":N}`            |
 * | GET    | /api/subscribers/<id>     | `{"id","subscribers":[…]}`                                   |
 * | GET    | /api/subscriptions/<id>   | `{"id","subscriptions":[…]}`                                 |
 * | GET    | /api/presence/<id>        | `{"id","online","connections"}` across every gateway        |
 * | POST   | /api/presence             | JSON array of ids → `{"presence":[{"id","online","connections"}…]}` |
 * | POST   | /api/disconnect           | `{"id","reconnect"?}` → `{"disconnected":N}`, on every gateway |
 * | GET    | /api/stats                | counters (see metrics.ts)                                   |
 * | GET    | /metrics                  | the same, Prometheus text                                   |
 * | GET    | /healthz                  | 200 when serving, 503 when the bus is down or draining      |
 *
 * Errors are JSON `{"error":{"code","message"}}` with the status of the error class. A batch is
 * validated whole before any message is sent: a bad item rejects it, naming the item, and
 * nothing is sent. With an API key set, every path but `/healthz` needs
 * `Authorization: Bearer <key>` (or `X-Api-Key`).
 */
import { once } from 'node:events';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  Disconnect,
  InvalidInputError,
  internalError,
  isSwitchboardError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  type SwitchboardError,
  UnavailableError,
} from '../errors.js';
import { validateId } from '../ids.js';
import type { Logger } from '../log.js';
import { http } from '../node-http.js';
import { type Outgoing, type Router, SLICE_MS } from '../router/router.js';
import type { LoopLag } from '../stall-watch.js';
import type { Subscription, SubscriptionStore } from '../store/store.js';
import { ApiKey } from './api-key.js';
import { asObject, parseBatchInSlices, parseJson, readBody } from './body.js';
import { dashboardPage } from './dashboard.js';
import { LoadShedder } from './load-shedder.js';
import { type ApiLoad, Metrics, type StatsSnapshot } from './metrics.js';

/** Largest `limit=` of a paged subscriber or subscription list. */
const MAX_LIST_PAGE = 10_000;
/** Most ids one presence request may ask about. */
const MAX_PRESENCE_IDS = 10_000;

/** What the API serves from. */
export interface ApiBackend {
  readonly router: Router;
  readonly store: SubscriptionStore;
  stats(): Promise<StatsSnapshot>;
  /** Whether the process can serve publishes now, with reasons when not. */
  health(): { ok: boolean; checks: Record<string, boolean> };
}

export interface ApiOptions {
  readonly port: number;
  readonly host: string;
  readonly apiKey: string;
  /** Largest request body, bytes. */
  readonly maxBodyBytes: number;
  /** Largest single message body, bytes (a send request may be up to twice this, for JSON escaping). */
  readonly maxMessageBytes: number;
  /** Messages being sent at once before new publishes get 503; 0: no limit. */
  readonly maxInflight: number;
  /** Event-loop lag (ms) past which new publishes get 503; 0: no limit. */
  readonly maxLagMs: number;
}

/** The answer to one send. */
export interface SendAnswer {
  readonly delivered: number;
  /** A gateway did not report in time: `delivered` may be short. */
  readonly partial?: true;
}

/** The answer to a batch. */
export interface BatchAnswer extends SendAnswer {
  readonly messages: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse, param: string) => Promise<void>;

export class ApiServer {
  readonly #server: Server;
  readonly #backend: ApiBackend;
  readonly #opts: ApiOptions;
  readonly #log: Logger;
  readonly #key: ApiKey;
  readonly #loop: LoopLag;
  readonly #shedder: LoadShedder;
  /** Routes: exact paths, then prefixes ending in `/` whose rest is passed as `param`. */
  readonly #routes: [path: string, methods: Record<string, Handler>][];
  /** Open `/api/stats/stream` responses and how to stop each (the API's close ends them). */
  readonly #streams = new Map<ServerResponse, () => void>();
  /** Made when the API listens: prom-client's default metrics sample the event loop. */
  #prom: Metrics | undefined;

  /** `loop`: the process's event-loop lag (its StallWatch), which the overload protection reads. */
  constructor(backend: ApiBackend, opts: ApiOptions, log: Logger, loop: LoopLag) {
    this.#backend = backend;
    this.#opts = opts;
    this.#log = log;
    this.#key = new ApiKey(opts.apiKey);
    this.#loop = loop;
    this.#shedder = new LoadShedder({ maxInflight: opts.maxInflight, maxLagMs: opts.maxLagMs }, loop);
    this.#routes = [
      ['/api/send', { POST: (req, res) => this.#send(req, res) }],
      ['/api/send/batch', { POST: (req, res) => this.#batch(req, res) }],
      [
        '/api/subscriptions',
        {
          POST: (req, res) => this.#subscribe(req, res, true),
          DELETE: (req, res) => this.#subscribe(req, res, false),
        },
      ],
      ['/api/subscribers/', { GET: (req, res, id) => this.#list(req, res, id, 'subscribers') }],
      ['/api/subscriptions/', { GET: (req, res, id) => this.#list(req, res, id, 'subscriptions') }],
      ['/api/presence', { POST: (req, res) => this.#presenceMany(req, res) }],
      ['/api/presence/', { GET: (_req, res, id) => this.#presenceOne(res, id) }],
      ['/api/disconnect', { POST: (req, res) => this.#disconnect(req, res) }],
      ['/api/stats', { GET: async (_req, res) => json(res, 200, await this.#backend.stats()) }],
      ['/metrics', { GET: (_req, res) => this.#metrics(res) }],
      ['/healthz', { GET: (_req, res) => this.#health(res) }],
      ['/dashboard', { GET: async (_req, res) => this.#page(res, dashboardPage()) }],
      ['/api/stats/stream', { GET: (req, res) => this.#statsStream(req, res) }],
    ];
    this.#server = http.createServer({ maxHeaderSize: 16 * 1024 }, (req, res) => {
      const t0 = performance.now();
      const at: { route: string } = { route: 'none' };
      res.once('finish', () => {
        const labels = { method: req.method ?? '', route: at.route, status: String(res.statusCode) };
        this.#prom?.request(labels, (performance.now() - t0) / 1000);
      });
      this.#handle(req, res, at).catch((err: unknown) => this.#fail(res, err));
    });
    this.#server.keepAliveTimeout = 10_000;
  }

  async listen(): Promise<AddressInfo> {
    this.#shedder.start();
    const prom = new Metrics();
    this.#prom = prom;
    this.#loop.observe?.((ms) => prom.lag(ms));
    this.#server.listen({ port: this.#opts.port, host: this.#opts.host });
    await once(this.#server, 'listening');
    return this.address();
  }

  address(): AddressInfo {
    return this.#server.address() as AddressInfo;
  }

  /** Messages in flight, refused, and event-loop lag. */
  load(): ApiLoad {
    const delay = this.#shedder.delay();
    return {
      inflight: this.#shedder.inflight,
      shed: this.#shedder.shed,
      eventLoopLagMs: this.#shedder.lagMs,
      eventLoopDelayP99Ms: delay.p99,
      eventLoopDelayMaxMs: delay.max,
    };
  }

  /** Stops accepting, finishes requests in flight, closes idle keep-alive sockets. */
  close(): Promise<void> {
    this.#shedder.close();
    for (const [res, stop] of this.#streams) {
      stop();
      res.end();
    }
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
    });
  }

  /** `at.route` is set to the matched route, for the request histogram's label. */
  async #handle(req: IncomingMessage, res: ServerResponse, at: { route: string }): Promise<void> {
    const url = req.url ?? '/';
    const path = url.split('?', 1)[0]!;
    // Authenticate first: without the key, routes and methods cannot be enumerated by 404/405.
    // A page load cannot carry a header: the dashboard and its stream also take ?key=.
    const viaQuery = path === '/dashboard' || path === '/api/stats/stream';
    if (path !== '/healthz') this.#key.check(req, viaQuery ? queryKey(url) : undefined);
    const found = this.#match(path);
    if (found === undefined) throw new NotFoundError(`no API route for ${path}`);
    const [methods, param, route] = found;
    at.route = route;
    const handler = methods[req.method ?? ''];
    if (handler === undefined) {
      throw new MethodNotAllowedError(`${req.method} is not allowed on ${path}`, Object.keys(methods));
    }
    await handler(req, res, param);
  }

  #match(path: string): [Record<string, Handler>, string, string] | undefined {
    for (const [route, methods] of this.#routes) {
      if (route.endsWith('/')) {
        if (path.startsWith(route) && path.length > route.length)
          return [methods, decodeURIComponent(path.slice(route.length)), `${route}:id`];
      } else if (path === route) {
        return [methods, '', route];
      }
    }
    return undefined;
  }

  async #send(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, this.#sendLimit());
    json(res, 200, await this.#sendOne(parseJson(body.toString())));
  }

  async #batch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    json(res, 200, await this.#sendBatch((await readBody(req, this.#opts.maxBodyBytes)).toString()));
  }

  /**
   * The largest body of a single send. The message limit counts the message, not its JSON
   * escaping: a control character is six bytes as \u0000, so the body may be up to six times the message.
   */
  #sendLimit(): number {
    return Math.min(this.#opts.maxBodyBytes, 6 * this.#opts.maxMessageBytes + 1024);
  }

  /**
   * A publish given whole, as the bus's `<prefix>.publish` subject takes it (NatsBus.answerPublishes): a
   * JSON object is one send, answered `{"delivered"…}` as `/api/send` is; a JSON array or NDJSON
   * lines are a batch, answered as `/api/send/batch` is. Same limits, validation, admission and
   * errors as over HTTP.
   */
  async publish(body: Uint8Array): Promise<SendAnswer | BatchAnswer> {
    const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString();
    // One JSON object (pretty-printed or not) is a send; anything else is read as a batch.
    let one: unknown;
    if (text.trimStart().startsWith('{')) {
      try {
        one = JSON.parse(text);
      } catch {
        // Not one object: NDJSON lines, or bad JSON that the batch parser names by line.
      }
    }
    const limit = one === undefined ? this.#opts.maxBodyBytes : this.#sendLimit();
    if (body.byteLength > limit) {
      throw new PayloadTooLargeError(
        `request body is ${body.byteLength} bytes, the limit is ${limit}`,
        limit,
      );
    }
    return one === undefined ? this.#sendBatch(text) : this.#sendOne(one);
  }

  async #sendOne(value: unknown): Promise<SendAnswer> {
    const obj = asObject(value, 'request body');
    const out = this.#backend.router.prepare(obj.id, obj.msg);
    const r = await this.#admitted(1, () => this.#backend.router.sendPrepared(out));
    return r.complete ? { delivered: r.delivered } : { delivered: r.delivered, partial: true };
  }

  async #sendBatch(text: string): Promise<BatchAnswer> {
    const router = this.#backend.router;
    const items = await parseBatchInSlices(text, SLICE_MS);
    const max = this.#opts.maxInflight;
    if (max > 0 && items.length > max) {
      throw new PayloadTooLargeError(
        `a batch of ${items.length} messages is over the in-flight limit of ${max}; split it`,
        max,
      );
    }
    // Validated whole before anything is sent, in slices: 200,000 checks in one go would hold
    // the event loop for longer than any client should wait.
    const outs: Outgoing[] = [];
    let slice = performance.now();
    for (const { value, where } of items) {
      const obj = asObject(value, where);
      outs.push(router.prepare(obj.id, obj.msg, where));
      if ((outs.length & 1023) === 0 && performance.now() - slice > SLICE_MS) {
        await nextTurn();
        slice = performance.now();
      }
    }
    const r = await this.#admitted(outs.length, () => router.sendAll(outs));
    return { messages: outs.length, delivered: r.delivered, ...(r.complete ? {} : { partial: true }) };
  }

  /**
   * Runs a send of `n` messages if the server can take it: 503 + Retry-After (nothing sent) while
   * draining or overloaded; 413 for a batch larger than the in-flight limit itself.
   */
  async #admitted<T>(n: number, send: () => Promise<T>): Promise<T> {
    if (!this.#backend.health().checks.accepting) {
      throw new UnavailableError('the server is shutting down; message not sent, retry on another server');
    }
    const max = this.#opts.maxInflight;
    if (max > 0 && n > max) {
      throw new PayloadTooLargeError(
        `a batch of ${n} messages is over the in-flight limit of ${max}; split it`,
        max,
      );
    }
    const refused = this.#shedder.acquire(n);
    if (refused !== undefined) throw new UnavailableError(refused.reason);
    try {
      return await send();
    } finally {
      this.#shedder.release(n);
    }
  }

  async #presenceOne(res: ServerResponse, rawId: string): Promise<void> {
    const id = validateId(rawId);
    const p = await this.#backend.router.presence([id]);
    const connections = p.counts.get(id) ?? 0;
    json(res, 200, { id, online: connections > 0, connections, ...(p.complete ? {} : { partial: true }) });
  }

  async #presenceMany(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const value = parseJson((await readBody(req, this.#opts.maxBodyBytes)).toString());
    if (!Array.isArray(value)) throw new InvalidInputError('request body must be a JSON array of ids');
    if (value.length > MAX_PRESENCE_IDS) {
      throw new PayloadTooLargeError(
        `${value.length} ids asked for, at most ${MAX_PRESENCE_IDS} per request`,
        MAX_PRESENCE_IDS,
      );
    }
    const ids = value.map((id, i) => validateId(id, `ids[${i}]`));
    const p = await this.#backend.router.presence(ids);
    const presence = ids.map((id) => {
      const connections = p.counts.get(id) ?? 0;
      return { id, online: connections > 0, connections };
    });
    json(res, 200, { presence, ...(p.complete ? {} : { partial: true }) });
  }

  async #disconnect(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const obj = asObject(parseJson((await readBody(req, 64 * 1024)).toString()), 'request body');
    const id = validateId(obj.id);
    if (obj.reconnect !== undefined && typeof obj.reconnect !== 'boolean') {
      throw new InvalidInputError('reconnect must be true or false');
    }
    const reason = obj.reconnect === false ? Disconnect.ForceDisconnect : Disconnect.ForceReconnect;
    const r = await this.#backend.router.disconnect(id, reason);
    json(res, 200, { disconnected: r.disconnected, ...(r.complete ? {} : { partial: true }) });
  }

  async #subscribe(req: IncomingMessage, res: ServerResponse, add: boolean): Promise<void> {
    const value = parseJson((await readBody(req, this.#opts.maxBodyBytes)).toString());
    const list = Array.isArray(value) ? value : [value];
    const subs: Subscription[] = list.map((item, i) => {
      const obj = asObject(item, `subscriptions[${i}]`);
      return { subscriber: obj.subscriber as string, subscribee: obj.subscribee as string };
    });
    const store = this.#backend.store;
    if (add) json(res, 200, { added: await store.addSubscriptions(subs) });
    else json(res, 200, { removed: await store.removeSubscriptions(subs) });
  }

  /**
   * The whole list, sorted; or with `?limit=N` (1–10,000) one page in the store's order and
   * `next`, the `after=` cursor of the following page (null on the last).
   */
  async #list(
    req: IncomingMessage,
    res: ServerResponse,
    rawId: string,
    which: 'subscribers' | 'subscriptions',
  ): Promise<void> {
    const id = validateId(rawId);
    const store = this.#backend.store;
    const query = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
    const limit = query.get('limit');
    const after = query.get('after');
    if (limit === null) {
      if (after !== null) throw new InvalidInputError('after= pages a list: give limit= too');
      const ids = which === 'subscribers' ? await store.getSubscribers(id) : await store.getSubscriptions(id);
      json(res, 200, { id, [which]: ids.sort() });
      return;
    }
    const n = Number(limit);
    if (!/^\d+$/.test(limit) || n < 1 || n > MAX_LIST_PAGE) {
      throw new InvalidInputError(
        `limit must be a whole number from 1 to ${MAX_LIST_PAGE}, got ${JSON.stringify(limit)}`,
      );
    }
    const page = await store.listPage(which, id, after === null ? undefined : validateId(after, 'after'), n);
    json(res, 200, { id, [which]: page.ids, next: page.next });
  }

  async #metrics(res: ServerResponse): Promise<void> {
    // Requests are served only once listen() has made the registry.
    const prom = this.#prom!;
    const text = await prom.render(await this.#backend.stats());
    res.writeHead(200, { 'Content-Type': prom.contentType });
    res.end(text);
  }

  #page(res: ServerResponse, html: string): void {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(html);
  }

  /** The stats snapshot once a second as SSE, until the client goes or the API closes. */
  async #statsStream(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      'X-Accel-Buffering': 'no',
    });
    const push = async (): Promise<void> => {
      try {
        res.write(`data: ${JSON.stringify(await this.#backend.stats())}\n\n`);
      } catch (err) {
        this.#log.warn('stats stream write failed', { err });
      }
    };
    const timer = setInterval(() => void push(), 1000);
    const end = (): void => {
      clearInterval(timer);
      this.#streams.delete(res);
    };
    this.#streams.set(res, end);
    req.once('close', end);
    await push();
  }

  async #health(res: ServerResponse): Promise<void> {
    const h = this.#backend.health();
    json(res, h.ok ? 200 : 503, { status: h.ok ? 'ok' : 'unavailable', checks: h.checks });
  }

  #fail(res: ServerResponse, err: unknown): void {
    let e: SwitchboardError;
    if (isSwitchboardError(err)) e = err;
    else if (err instanceof URIError) e = new InvalidInputError('path is not valid percent-encoding');
    else {
      this.#log.error('API request failed', { err });
      e = internalError();
    }
    if (e.status >= 500) this.#log.warn('API request failed', { err: e });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // A body we refused to read must not be drained into the next request on this socket.
    if (e.status === 413) res.setHeader('Connection', 'close');
    if (e.status === 401) res.setHeader('WWW-Authenticate', 'Bearer');
    if (e.status === 503) res.setHeader('Retry-After', '1');
    if (e instanceof MethodNotAllowedError) res.setHeader('Allow', e.allow.join(', '));
    json(res, e.status, e.toJSON());
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** The `key` query parameter of a request target, if any. */
function queryKey(url: string): string | undefined {
  const q = url.indexOf('?');
  if (q === -1) return undefined;
  return new URLSearchParams(url.slice(q + 1)).get('key') ?? undefined;
}
