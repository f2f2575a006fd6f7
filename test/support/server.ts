/**
 * Test support: a real Switchboard on port 0 with a fresh data folder, and small clients that
 * keep the raw bytes of what the server sent, so tests can check framing byte for byte.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type StartOptions, Switchboard } from '../../src/server.js';

/** A started server and its data folder; `stop()` closes it and removes the folder. */
export interface TestServer {
  readonly sb: Switchboard;
  readonly clientPort: number;
  readonly apiUrl: string;
  stop(): Promise<void>;
}

export async function startServer(opts: StartOptions = {}): Promise<TestServer> {
  const data = mkdtempSync(path.join(tmpdir(), 'sb-test-'));
  const sb = await Switchboard.start({
    port: 0,
    host: '127.0.0.1',
    apiPort: 0,
    apiHost: '127.0.0.1',
    data,
    logLevel: 'silent',
    // Functional tests must not get 503s because a loaded CI box stalls for a second; the
    // overload test (load-shedder.test.ts) turns it on.
    maxLagMs: 0,
    ...opts,
  });
  return {
    sb,
    clientPort: sb.gateway?.address().port ?? 0,
    apiUrl: sb.apiUrl,
    async stop() {
      await sb.close();
      rmSync(data, { recursive: true, force: true });
    },
  };
}

/** POSTs JSON (or raw text) to the API; resolves to status and parsed body. */
export async function api(
  base: string,
  pathName: string,
  body?: unknown,
  init: { method?: string; headers?: Record<string, string>; raw?: boolean } = {},
): Promise<{ status: number; body: unknown; headers: Headers }> {
  const res = await fetch(`${base}${pathName}`, {
    method: init.method ?? (body === undefined ? 'GET' : 'POST'),
    headers: init.headers,
    body: body === undefined ? undefined : init.raw ? String(body) : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON (metrics): keep the text.
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/**
 * A raw TCP client: sends `request` and collects every byte the server sends, with helpers to
 * wait for text to appear and for the server to close.
 */
export class RawClient {
  readonly socket: net.Socket;
  #data = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  closed = false;
  readonly closedP: Promise<void>;

  constructor(port: number, request?: string, opts: { localAddress?: string } = {}) {
    this.socket = net.connect({ port, host: '127.0.0.1', ...opts });
    this.socket.on('data', (d: Buffer) => {
      this.#data = Buffer.concat([this.#data, d]);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.socket.on('error', () => undefined);
    this.closedP = new Promise((resolve) => {
      this.socket.on('close', () => {
        this.closed = true;
        for (const w of this.#waiters.splice(0)) w();
        resolve();
      });
    });
    if (request !== undefined) this.socket.write(request);
  }

  /** Everything received so far, as latin1 text (byte-exact). */
  get text(): string {
    return this.#data.toString('latin1');
  }

  /** Everything received so far, as bytes. */
  get bytes(): Buffer {
    return this.#data;
  }

  /** Resolves when the received text matches `pattern`; rejects after `ms` showing what came. */
  async waitFor(pattern: RegExp | string, ms = 5000): Promise<string> {
    const test = (): boolean =>
      typeof pattern === 'string' ? this.text.includes(pattern) : pattern.test(this.text);
    const deadline = Date.now() + ms;
    while (!test()) {
      if (this.closed)
        throw new Error(`connection closed before ${String(pattern)}; got ${JSON.stringify(this.text)}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${String(pattern)}; got ${JSON.stringify(this.text)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.text;
  }

  /** Resolves when the server has closed the connection; rejects after `ms`. */
  async waitClosed(ms = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closedP,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`not closed within ${ms} ms; got ${JSON.stringify(this.text)}`)),
          ms,
        );
      }),
    ]);
    clearTimeout(timer);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A GET request head for `target`. */
export function get(target: string, headers: Record<string, string> = {}, method = 'GET'): string {
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: test'];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** Waits until `check()` is true, polling every 10 ms; rejects after `ms` with `what`. */
export async function until(check: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Decodes a chunked body: returns the chunks' payloads (as latin1 text) after the head. */
export function chunksOf(raw: string): string[] {
  const start = raw.indexOf('\r\n\r\n');
  let rest = raw.slice(start + 4);
  const out: string[] = [];
  while (rest.length > 0) {
    const eol = rest.indexOf('\r\n');
    if (eol === -1) break;
    const size = Number.parseInt(rest.slice(0, eol), 16);
    if (Number.isNaN(size) || rest.length < eol + 2 + size + 2) break;
    out.push(rest.slice(eol + 2, eol + 2 + size));
    rest = rest.slice(eol + 2 + size + 2);
    if (size === 0) break;
  }
  return out;
}
