/**
 * Test support for tests across hosts (src/bench/harness/netns.ts): an agent on a host that opens
 * streams and calls HTTP and NATS for the test (netns-agent.ts). The services it starts on the
 * hosts are the harness's (services.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TestNetwork } from '../../src/bench/harness/netns.js';

const AGENT = fileURLToPath(new URL('./netns-agent.js', import.meta.url));

/** A stream the agent holds open: the bytes so far, and waits on them. */
export class RemoteStream {
  text = '';
  closed = false;
  #waiters: (() => void)[] = [];
  readonly name: string;
  readonly #agent: Agent;

  constructor(agent: Agent, name: string) {
    this.#agent = agent;
    this.name = name;
  }

  /** @internal */
  push(data: string | undefined, closed: boolean): void {
    if (data !== undefined) this.text += data;
    if (closed) this.closed = true;
    for (const w of this.#waiters.splice(0)) w();
  }

  async #until(ok: () => boolean, what: string, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!ok()) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`${this.name}: timed out waiting for ${what}; got ${JSON.stringify(this.text)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  waitFor(pattern: RegExp | string, ms = 10_000): Promise<void> {
    const test = (): boolean =>
      typeof pattern === 'string' ? this.text.includes(pattern) : pattern.test(this.text);
    return this.#until(
      () => {
        if (!test() && this.closed)
          throw new Error(`${this.name} closed before ${String(pattern)}: ${this.text}`);
        return test();
      },
      String(pattern),
      ms,
    );
  }

  waitClosed(ms = 10_000): Promise<void> {
    return this.#until(() => this.closed, 'the close', ms);
  }

  close(): Promise<unknown> {
    return this.#agent.call({ op: 'close', stream: this.name });
  }
}

/** The agent process on one host. */
export class Agent {
  readonly child: ChildProcess;
  readonly #pending = new Map<
    number,
    { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }
  >();
  readonly #streams = new Map<string, RemoteStream>();
  #next = 1;

  constructor(net: TestNetwork, host: string) {
    this.child = net.spawn(host, process.execPath, [AGENT], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: this.child.stdout! });
    lines.on('line', (line) => {
      const m = JSON.parse(line) as Record<string, unknown>;
      if (typeof m.stream === 'string') {
        this.#streams.get(m.stream)?.push(m.data as string | undefined, m.closed === true);
        return;
      }
      const p = this.#pending.get(m.id as number);
      if (p === undefined) return;
      this.#pending.delete(m.id as number);
      if (typeof m.error === 'string') p.reject(new Error(m.error));
      else p.resolve(m);
    });
    this.child.once('exit', () => {
      for (const p of this.#pending.values()) p.reject(new Error('the agent exited'));
      this.#pending.clear();
    });
  }

  call(command: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.child.stdin!.write(`${JSON.stringify({ id, ...command })}\n`);
    });
  }

  /** An HTTP request from this host; the body parsed as JSON when it is. */
  async http(
    url: string,
    init: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
  ): Promise<{ status: number; body: unknown }> {
    const body =
      init.body === undefined
        ? undefined
        : typeof init.body === 'string'
          ? init.body
          : JSON.stringify(init.body);
    const r = await this.call({
      op: 'http',
      url,
      method: init.method ?? (body === undefined ? 'GET' : 'POST'),
      headers: init.headers ?? {},
      ...(body === undefined ? {} : { body }),
    });
    let parsed: unknown = r.body;
    try {
      parsed = JSON.parse(String(r.body));
    } catch {
      // Not JSON.
    }
    return { status: Number(r.status), body: parsed };
  }

  /** Opens a raw TCP stream to `host:port` and sends `request` (an HTTP request head). */
  async open(name: string, host: string, port: number, request: string): Promise<RemoteStream> {
    const s = new RemoteStream(this, name);
    this.#streams.set(name, s);
    await this.call({ op: 'open', stream: name, host, port, request });
    return s;
  }

  async nats(servers: string, subject: string, data: string, timeoutMs = 5000): Promise<string> {
    return String((await this.call({ op: 'nats', servers, subject, data, timeoutMs })).reply);
  }

  /** Resolves once `host:port` accepts a connection from this host; rejects after `ms`. */
  async reachable(host: string, port: number, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      try {
        await this.call({ op: 'tcp', host, port });
        return;
      } catch (err) {
        if (Date.now() > deadline)
          throw new Error(`${host}:${port} not reachable: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  stop(): void {
    this.child.stdin?.end();
    this.child.kill('SIGKILL');
  }
}
