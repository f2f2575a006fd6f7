/**
 * `node:http`, loaded with `require`. An ESM `import` of it builds a namespace of every export,
 * and on Node 22+ that reads the lazy `WebSocket`, `CloseEvent` and `MessageEvent` getters, which
 * load Node's bundled undici: about 2 MB of heap in every process that imports `node:http`
 * (measured on Node 24 in an empty gateway; a million users run 53 of them). `require` leaves
 * the getters alone.
 */
import { createRequire } from 'node:module';

type Http = typeof import('node:http');

export const http: Http = createRequire(import.meta.url)('node:http') as Http;
