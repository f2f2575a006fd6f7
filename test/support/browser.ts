/**
 * Test support for tests that drive a real browser: Debian's headless Chromium, spoken to over
 * the Chrome DevTools Protocol (CDP) with the `ws` client we already have.
 *
 * CDP is used directly rather than through Playwright because the tests need three commands
 * (open a tab, evaluate an expression, close) and no browser download: CDP is Chromium's own
 * protocol, and the flat-session mode used here has been stable since Chromium 77.
 *
 * ```
 *   chromium --remote-debugging-port=0 … ──stderr──▶ "DevTools listening on ws://…/browser/<id>"
 *   test ──ws──▶ browser target ── Target.createTarget(url) ─▶ tab
 *                               ── Target.attachToTarget(flatten) ─▶ sessionId
 *                               ── Runtime.evaluate {sessionId} ─▶ value from the page
 * ```
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';

/** The Chromium binary: Debian's package, or `$CHROMIUM` to point elsewhere. */
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/**
 * Flags for a headless Chromium on a machine without internet: no sandbox (we run as root), and
 * none of the background fetches (updates, sync, safe browsing lists) that would fail here.
 */
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--remote-debugging-port=0',
];

/**
 * Why the browser tests cannot run here, or `undefined` when Chromium is installed. The text is
 * a skip message: it says how to install the browser.
 */
export function chromiumMissing(): string | undefined {
  try {
    accessSync(CHROMIUM, constants.X_OK);
    return undefined;
  } catch {
    return (
      `Chromium not found at ${CHROMIUM}: install it with ` +
      '`apt-get install -y --no-install-recommends chromium` (or set CHROMIUM to a Chromium binary)'
    );
  }
}

interface CdpReply {
  id?: number;
  method?: string;
  sessionId?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
}

/** A headless Chromium this process started, with its own empty profile folder. */
export class Browser {
  readonly #child: ChildProcess;
  readonly #profile: string;
  readonly #ws: WebSocket;
  readonly #pending = new Map<number, { resolve: (r: CdpReply) => void; reject: (e: Error) => void }>();
  readonly #pages = new Map<string, Page>();
  #nextId = 0;
  /** What Chromium wrote on stderr (kept for error messages). */
  stderr = '';

  private constructor(child: ChildProcess, profile: string, ws: WebSocket, stderr: string) {
    this.#child = child;
    this.#profile = profile;
    this.#ws = ws;
    this.stderr = stderr;
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    ws.on('message', (data: Buffer) => this.#receive(JSON.parse(data.toString()) as CdpReply));
    ws.on('close', () => {
      for (const p of this.#pending.values())
        p.reject(new Error(`browser connection closed\n${this.stderr}`));
      this.#pending.clear();
    });
  }

  /** Starts Chromium and connects to it; rejects with its stderr if it does not come up in `ms`. */
  static async launch(ms = 30_000): Promise<Browser> {
    const profile = mkdtempSync(path.join(tmpdir(), 'sb-chromium-'));
    // Own process group, so that close() can take the renderer and zygote children down too.
    const child = spawn(CHROMIUM, [...FLAGS, `--user-data-dir=${profile}`, 'about:blank'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    let stderr = '';
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`Chromium did not start within ${ms} ms:\n${stderr}`)),
          ms,
        );
        child.stderr?.on('data', (d: Buffer) => {
          stderr += d.toString();
          const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
          if (m !== null) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
        child.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        child.once('exit', (code, signal) => {
          clearTimeout(timer);
          reject(new Error(`Chromium exited (${code ?? signal}) before it listened:\n${stderr}`));
        });
      });
      const ws = new WebSocket(url, { perMessageDeflate: false });
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      child.stderr?.removeAllListeners('data');
      child.removeAllListeners('exit');
      return new Browser(child, profile, ws, stderr);
    } catch (err) {
      killGroup(child);
      rmSync(profile, { recursive: true, force: true });
      throw err;
    }
  }

  /** Sends one CDP command (to the browser, or to a page's session) and resolves to its result. */
  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<CdpReply> {
    const id = ++this.#nextId;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#ws.send(JSON.stringify({ id, method, params, sessionId }));
    });
  }

  #receive(msg: CdpReply): void {
    if (msg.id !== undefined) {
      const p = this.#pending.get(msg.id);
      if (p === undefined) return;
      this.#pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`CDP: ${msg.error.message}`));
      else p.resolve(msg);
      return;
    }
    if (msg.sessionId !== undefined) this.#pages.get(msg.sessionId)?.event(msg);
  }

  /** Opens a new tab at `url` and resolves once its `load` event fired. */
  async open(url: string): Promise<Page> {
    const created = await this.send('Target.createTarget', { url: 'about:blank' });
    const targetId = String(created.result?.targetId);
    const attached = await this.send('Target.attachToTarget', { targetId, flatten: true });
    const sessionId = String(attached.result?.sessionId);
    const page = new Page(this, sessionId);
    this.#pages.set(sessionId, page);
    await this.send('Runtime.enable', {}, sessionId);
    await this.send('Page.enable', {}, sessionId);
    const loaded = page.next('Page.loadEventFired');
    const nav = await this.send('Page.navigate', { url }, sessionId);
    if (nav.result?.errorText) throw new Error(`navigating to ${url}: ${String(nav.result.errorText)}`);
    await loaded;
    return page;
  }

  /** Closes the browser, kills what is left of its process group, and removes its profile. */
  async close(): Promise<void> {
    const child = this.#child;
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    await Promise.race([this.send('Browser.close').catch(() => undefined), delay(5000)]);
    this.#ws.terminate();
    await Promise.race([exited, delay(5000)]);
    killGroup(child);
    await Promise.race([exited, delay(2000)]);
    rmSync(this.#profile, { recursive: true, force: true });
  }
}

/** One tab: evaluates expressions and keeps what the page logged or threw. */
export class Page {
  readonly #browser: Browser;
  readonly #sessionId: string;
  readonly #waiters: { method: string; resolve: (m: CdpReply) => void }[] = [];
  /** Console messages and uncaught exceptions from the page, as text. */
  readonly console: string[] = [];

  constructor(browser: Browser, sessionId: string) {
    this.#browser = browser;
    this.#sessionId = sessionId;
  }

  /** A CDP event for this tab (called by the browser's dispatcher). */
  event(msg: CdpReply): void {
    if (msg.method === 'Runtime.consoleAPICalled') {
      const args = (msg.params?.args ?? []) as { value?: unknown; description?: string }[];
      this.console.push(
        `${String(msg.params?.type)}: ${args.map((a) => String(a.value ?? a.description)).join(' ')}`,
      );
    } else if (msg.method === 'Runtime.exceptionThrown') {
      const details = msg.params?.exceptionDetails as { exception?: { description?: string }; text?: string };
      this.console.push(`exception: ${details.exception?.description ?? details.text}`);
    }
    for (let i = 0; i < this.#waiters.length; i++) {
      const w = this.#waiters[i]!;
      if (w.method === msg.method) {
        this.#waiters.splice(i, 1);
        w.resolve(msg);
        return;
      }
    }
  }

  /** Resolves at the next event named `method`. */
  next(method: string): Promise<CdpReply> {
    return new Promise((resolve) => this.#waiters.push({ method, resolve }));
  }

  /**
   * Evaluates `expression` in the page (awaiting a promise it returns) and resolves to its value,
   * copied out as JSON. A page-side exception rejects with its description.
   */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.#browser.send(
      'Runtime.evaluate',
      { expression, awaitPromise: true, returnByValue: true },
      this.#sessionId,
    );
    const details = r.result?.exceptionDetails as { exception?: { description?: string } } | undefined;
    if (details !== undefined)
      throw new Error(`in the page: ${details.exception?.description ?? 'exception'} (${expression})`);
    const result = r.result?.result as { value: T } | undefined;
    return result?.value as T;
  }

  /** Writes a PNG of the tab to `file`, for people to look at. */
  async screenshot(file: string): Promise<void> {
    const { writeFileSync, mkdirSync } = await import('node:fs');
    const r = await this.#browser.send('Page.captureScreenshot', { format: 'png' }, this.#sessionId);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, Buffer.from(String(r.result?.data), 'base64'));
  }

  /**
   * Polls `expression` every 20 ms until it is truthy; rejects after `ms` with `what`, the last
   * value of `show` and the page's console.
   */
  async waitFor(expression: string, what: string, show = expression, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await this.evaluate<boolean>(`Boolean(${expression})`))) {
      if (Date.now() > deadline) {
        const seen = await this.evaluate<unknown>(`JSON.stringify(${show})`);
        throw new Error(
          `timed out waiting for ${what}; ${show} = ${String(seen)}; console: ${this.console.join('\n')}`,
        );
      }
      await delay(20);
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** SIGKILLs the process group of `child` (a Chromium this process started), if it is still there. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** A page server on a port of its own (a second origin): every request gets `html`. */
export async function servePage(html: string): Promise<{ origin: string; close(): void }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(html);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}
