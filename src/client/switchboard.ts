/**
 * The browser client: one ESM module with no dependencies, served by the gateway at
 * `GET /switchboard.js`. It keeps the last event id across reconnects and transport fallbacks
 * (WebSocket → SSE → long-poll), reports resume gaps and disconnect reasons, honours the numbered
 * reasons (3500–3999: stop; 3005: fetch a fresh token, then reconnect) and reconnects with capped
 * exponential backoff and full jitter, so a restart of many clients does not come back as one wave.
 *
 * ```js
 * import { connect } from 'http://127.0.0.1:8000/switchboard.js';
 * const sub = connect('http://127.0.0.1:8000', { ids: ['42'] });
 * sub.on('message', (m) => console.log(m.data));
 * ```
 *
 * It touches only what every browser has (WebSocket, EventSource, fetch, setTimeout), declared
 * below so the module builds without the DOM type library.
 */

/** A message as the client sees it. `subject` is empty over SSE, which does not carry it. */
export interface ClientMessage {
  readonly id: string;
  readonly subject: string;
  readonly data: string;
  readonly ts: number | undefined;
}

export type TransportName = 'ws' | 'sse' | 'poll';
export type Status = 'connecting' | 'open' | 'reconnecting' | 'paused' | 'closed';

/** Why the server ended a stream (the numbered reasons). */
export interface DisconnectInfo {
  readonly code: number;
  readonly reason: string;
  readonly reconnect: boolean;
}

/** A resume that could not replay everything: messages after `last` may be missing. */
export interface GapInfo {
  readonly last: string;
  readonly reason: string;
}

export interface ConnectOptions {
  /** The ids to log in as: the first in the path, the others as `?also=`. */
  readonly ids: readonly string[];
  /** A client token (`switchboard token`), or a function that fetches a fresh one. */
  readonly token?: string;
  readonly getToken?: () => Promise<string>;
  /** 'auto' (default): WebSocket, then SSE, then long-poll when one cannot open. */
  readonly transport?: 'auto' | TransportName;
  /** Resume after this event id from the start. */
  readonly lastEventId?: string;
  /** Backoff: the first delay's cap and the largest (ms). Defaults 500 and 30,000. */
  readonly minDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Random in [0, 1): replaceable for tests. */
  readonly random?: () => number;
  /** Drop the connection while the page is hidden, and resume (from the last id) when it shows. */
  readonly pauseWhenHidden?: boolean;
}

interface Events {
  message: ClientMessage;
  gap: GapInfo;
  status: { status: Status; transport: TransportName | undefined };
  disconnect: DisconnectInfo;
  error: { message: string };
}

export interface Subscription {
  on<E extends keyof Events>(event: E, fn: (value: Events[E]) => void): () => void;
  /** Stops for good. */
  close(): void;
  readonly status: Status;
  readonly transport: TransportName | undefined;
  /** The id to resume after: the last message received (or the one given). */
  readonly lastEventId: string | undefined;
}

// What the module needs of the browser, declared here (no DOM library in the build).
interface WsLike {
  onopen: (() => void) | null;
  onmessage: ((e: { data: unknown }) => void) | null;
  onclose: ((e: { code: number; reason: string }) => void) | null;
  onerror: (() => void) | null;
  close(code?: number): void;
}
interface EsLike {
  onopen: (() => void) | null;
  onmessage: ((e: { data: string; lastEventId: string }) => void) | null;
  onerror: (() => void) | null;
  addEventListener(type: string, fn: (e: { data: string }) => void): void;
  close(): void;
}
interface DocumentLike {
  readonly visibilityState: string;
  addEventListener(type: string, fn: () => void): void;
  removeEventListener(type: string, fn: () => void): void;
}
interface Browser {
  document?: DocumentLike;
  WebSocket?: new (url: string) => WsLike;
  EventSource?: new (url: string) => EsLike;
  fetch(url: string, init?: { signal?: unknown }): Promise<{ status: number; json(): Promise<unknown> }>;
  AbortController: new () => { signal: unknown; abort(): void };
}

/** Codes of the numbered reasons that mean "do not reconnect". */
const isFinal = (code: number): boolean => code >= 3500 && code <= 3999;
const TOKEN_EXPIRED = 3005;
const ORDER: readonly TransportName[] = ['ws', 'sse', 'poll'];

/**
 * Full jitter: a delay drawn uniformly below min(maxMs, minMs × 2^attempt), so clients that lost
 * the server together spread their returns over the whole window.
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  return Math.floor(random() * Math.min(maxMs, minMs * 2 ** attempt));
}

/** Connects to the gateway at `base` (`http://host:port`) and keeps the subscription up. */
export function connect(base: string, options: ConnectOptions): Subscription {
  const g = globalThis as unknown as Browser;
  if (options.ids.length === 0) throw new Error('connect: give at least one id');
  const listeners: { [E in keyof Events]?: ((v: Events[E]) => void)[] } = {};
  const emit = <E extends keyof Events>(event: E, value: Events[E]): void => {
    for (const fn of listeners[event] ?? []) fn(value);
  };
  const random = options.random ?? Math.random;
  const minMs = options.minDelayMs ?? 500;
  const maxMs = options.maxDelayMs ?? 30_000;
  const choices =
    options.transport === undefined || options.transport === 'auto' ? ORDER : [options.transport];
  let token = options.token;
  let last = options.lastEventId;
  let status: Status = 'connecting';
  let current: TransportName | undefined;
  let choice = 0;
  let attempt = 0;
  let stop: (() => void) | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  const setStatus = (s: Status): void => {
    status = s;
    emit('status', { status: s, transport: current });
  };

  const url = (transport: TransportName): string => {
    const u = new URL(`/feed/${encodeURIComponent(options.ids[0]!)}`, base);
    if (options.ids.length > 1) u.searchParams.set('also', options.ids.slice(1).join(','));
    if (token !== undefined) u.searchParams.set('token', token);
    if (last !== undefined) u.searchParams.set('last', last);
    if (transport === 'poll') u.searchParams.set('transport', 'poll');
    if (transport === 'ws') u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.toString();
  };

  const received = (m: ClientMessage): void => {
    last = m.id;
    emit('message', m);
  };

  /** The stream ended. `opened`: it had opened (then the same transport is tried again). */
  const ended = (opened: boolean, reason?: DisconnectInfo): void => {
    stop = undefined;
    if (closed) return;
    if (reason !== undefined) {
      emit('disconnect', reason);
      if (isFinal(reason.code) || !reason.reconnect) {
        closed = true;
        setStatus('closed');
        return;
      }
      if (reason.code === TOKEN_EXPIRED && options.getToken !== undefined) {
        const getToken = options.getToken;
        setStatus('reconnecting');
        getToken().then(
          (t) => {
            token = t;
            attempt = 0;
            schedule(0);
          },
          (err: unknown) => {
            emit('error', { message: `getToken failed: ${String(err)}` });
            schedule(backoffDelay(attempt++, minMs, maxMs, random));
          },
        );
        return;
      }
    }
    // A transport that never opened: the next one, at once; after the last, wait and start over.
    if (!opened && choice + 1 < choices.length) {
      choice++;
      schedule(0);
      return;
    }
    if (!opened) choice = 0;
    setStatus('reconnecting');
    schedule(backoffDelay(attempt++, minMs, maxMs, random));
  };

  const schedule = (ms: number): void => {
    if (closed) return;
    timer = setTimeout(open, ms);
  };

  const opened = (): void => {
    attempt = 0;
    setStatus('open');
  };

  const openWs = (): (() => void) => {
    const ws = new g.WebSocket!(url('ws'));
    let isOpen = false;
    let reason: DisconnectInfo | undefined;
    ws.onopen = () => {
      isOpen = true;
      opened();
    };
    ws.onmessage = (e) => {
      const f = JSON.parse(String(e.data)) as Record<string, unknown>;
      if (f.type === 'gap') emit('gap', { last: String(f.last), reason: String(f.reason) });
      else if (f.type === 'disconnect')
        reason = { code: Number(f.code), reason: String(f.reason), reconnect: f.reconnect === true };
      else if (f.type === undefined)
        received({ id: String(f.id), subject: String(f.subject), data: String(f.data), ts: Number(f.ts) });
    };
    ws.onclose = (e) => {
      if (reason === undefined && e.code >= 3000 && e.code <= 4999)
        reason = { code: e.code, reason: e.reason, reconnect: !isFinal(e.code) };
      ended(isOpen, reason);
    };
    return () => {
      ws.onclose = null;
      ws.close(1000);
    };
  };

  const openSse = (): (() => void) => {
    const es = new g.EventSource!(url('sse'));
    let isOpen = false;
    let done = false;
    const finish = (reason?: DisconnectInfo): void => {
      if (done) return;
      done = true;
      es.close(); // the browser's own reconnect would not send our ?last=, token or backoff
      ended(isOpen, reason);
    };
    es.onopen = () => {
      isOpen = true;
      opened();
    };
    es.onmessage = (e) => received({ id: e.lastEventId, subject: '', data: e.data, ts: undefined });
    es.addEventListener('gap', (e) => emit('gap', JSON.parse(e.data) as GapInfo));
    es.addEventListener('disconnect', (e) => finish(JSON.parse(e.data) as DisconnectInfo));
    es.onerror = () => finish();
    return () => {
      done = true;
      es.close();
    };
  };

  const openPoll = (): (() => void) => {
    let live = true;
    let ctl = new g.AbortController();
    const poll = async (): Promise<void> => {
      let first = true;
      while (live) {
        ctl = new g.AbortController();
        let res: { status: number; json(): Promise<unknown> };
        try {
          res = await g.fetch(url('poll'), { signal: ctl.signal });
        } catch {
          if (live) ended(!first);
          return;
        }
        if (res.status !== 200) {
          if (live) {
            emit('error', { message: `long-poll answered ${res.status}` });
            ended(!first);
          }
          return;
        }
        const body = (await res.json()) as {
          messages: { id: string; subject: string; data: string; ts: number }[];
          last: string;
          gap?: string;
          disconnect?: DisconnectInfo;
        };
        if (!live) return;
        if (first) opened();
        first = false;
        if (body.gap !== undefined) emit('gap', { last: last ?? '', reason: body.gap });
        for (const m of body.messages) received(m);
        last = body.last;
        if (body.disconnect !== undefined) {
          ended(true, body.disconnect);
          return;
        }
      }
    };
    void poll();
    return () => {
      live = false;
      ctl.abort();
    };
  };

  function open(): void {
    timer = undefined;
    if (closed) return;
    current = choices[choice]!;
    if (status !== 'reconnecting') setStatus('connecting');
    const available = current === 'ws' ? g.WebSocket : current === 'sse' ? g.EventSource : g.fetch;
    if (available === undefined) {
      ended(false);
      return;
    }
    stop = current === 'ws' ? openWs() : current === 'sse' ? openSse() : openPoll();
  }

  const doc = options.pauseWhenHidden === true ? g.document : undefined;
  const onVisibility = (): void => {
    if (closed) return;
    if (doc?.visibilityState === 'hidden') {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      stop?.();
      stop = undefined;
      setStatus('paused');
    } else if (status === 'paused') {
      attempt = 0;
      setStatus('connecting');
      open();
    }
  };
  doc?.addEventListener('visibilitychange', onVisibility);
  // In a microtask, so listeners added right after connect() hear the first status too.
  queueMicrotask(() => (doc?.visibilityState === 'hidden' ? setStatus('paused') : open()));
  return {
    on(event, fn) {
      listeners[event] ??= [];
      const list = listeners[event] as ((v: Events[typeof event]) => void)[];
      list.push(fn);
      return () => {
        const i = list.indexOf(fn);
        if (i !== -1) list.splice(i, 1);
      };
    },
    close() {
      if (closed) return;
      closed = true;
      doc?.removeEventListener('visibilitychange', onVisibility);
      if (timer !== undefined) clearTimeout(timer);
      stop?.();
      stop = undefined;
      setStatus('closed');
    },
    get status() {
      return status;
    },
    get transport() {
      return current;
    },
    get lastEventId() {
      return last;
    },
  };
}
