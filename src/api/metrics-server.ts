/**
 * `--metrics-port`: a port that serves only `GET /metrics`, so a process without the publish API
 * (a cluster's gateway) can be scraped, and each router on its own (the routers of a cluster
 * share one API port, so a scrape of it reaches one of them at random). Same key rules as the API.
 */
import { once } from 'node:events';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isSwitchboardError, MethodNotAllowedError, NotFoundError } from '../errors.js';
import type { Logger } from '../log.js';
import { http } from '../node-http.js';
import type { LoopLag } from '../stall-watch.js';
import { ApiKey } from './api-key.js';
import { Metrics, type StatsSnapshot } from './metrics.js';

export interface MetricsServerOptions {
  readonly host: string;
  readonly port: number;
  /** '' for none. */
  readonly apiKey: string;
}

export class MetricsServer {
  readonly #server: Server;
  readonly #metrics = new Metrics();
  readonly #key: ApiKey;
  readonly #opts: MetricsServerOptions;

  constructor(stats: () => Promise<StatsSnapshot>, opts: MetricsServerOptions, log: Logger, loop: LoopLag) {
    this.#opts = opts;
    this.#key = new ApiKey(opts.apiKey);
    loop.observe?.((ms) => this.#metrics.lag(ms));
    this.#server = http.createServer({ maxHeaderSize: 16 * 1024 }, (req, res) => {
      this.#handle(req, res, stats).catch((err: unknown) => {
        const e = isSwitchboardError(err) ? err : undefined;
        if (e === undefined) log.error('metrics request failed', { err });
        if (res.headersSent) {
          res.destroy();
          return;
        }
        const status = e?.status ?? 500;
        const headers: Record<string, string> = { 'Content-Type': 'text/plain; charset=utf-8' };
        if (e instanceof MethodNotAllowedError) headers.Allow = 'GET';
        res.writeHead(status, headers);
        res.end(`${e?.message ?? 'internal error, see the server log'}\n`);
      });
    });
    this.#server.keepAliveTimeout = 10_000;
  }

  async #handle(
    req: IncomingMessage,
    res: ServerResponse,
    stats: () => Promise<StatsSnapshot>,
  ): Promise<void> {
    this.#key.check(req);
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics') throw new NotFoundError(`only /metrics is served here, not ${path}`);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      throw new MethodNotAllowedError(`${req.method} is not allowed on /metrics`, ['GET']);
    }
    const text = await this.#metrics.render(await stats());
    res.writeHead(200, { 'Content-Type': this.#metrics.contentType });
    res.end(req.method === 'HEAD' ? undefined : text);
  }

  async listen(): Promise<AddressInfo> {
    this.#server.listen({ port: this.#opts.port, host: this.#opts.host });
    await once(this.#server, 'listening');
    return this.#server.address() as AddressInfo;
  }

  address(): AddressInfo {
    return this.#server.address() as AddressInfo;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
    });
  }
}
