/**
 * The API key check shared by the API port and the metrics port: `Authorization: Bearer <key>`
 * or `X-Api-Key`. The given key and the real one are compared as HMACs under a random key, so
 * the comparison leaks neither the key's bytes nor its length through timing.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { UnauthorizedError } from '../errors.js';

export class ApiKey {
  readonly #macKey = randomBytes(32);
  readonly #keyMac: Buffer | undefined;

  /** `key`: the API key, or '' for none (then every request passes). */
  constructor(key: string) {
    this.#keyMac = key ? this.#mac(key) : undefined;
  }

  /**
   * Throws UnauthorizedError unless `req` carries the key (or there is none). `fromQuery`: a key
   * given in the URL, for the routes a browser loads as pages (the dashboard).
   */
  check(req: IncomingMessage, fromQuery?: string): void {
    if (this.#keyMac === undefined) return;
    const auth = req.headers.authorization;
    const given =
      (auth?.toLowerCase().startsWith('bearer ') ? auth.slice(7).trim() : req.headers['x-api-key']) ??
      fromQuery;
    if (!timingSafeEqual(this.#mac(typeof given === 'string' ? given : ''), this.#keyMac)) {
      throw new UnauthorizedError('a valid API key is required (Authorization: Bearer <key> or X-Api-Key)');
    }
  }

  #mac(text: string): Buffer {
    return createHmac('sha256', this.#macKey).update(text).digest();
  }
}
