/**
 * Property-based fuzzing (fast-check) of everything that reads untrusted bytes: the request-head
 * parser, the WebSocket frame decoder and the publish body parser, each in process and through
 * a real server. The property: any input ends in a valid answer or a clean close, never a throw
 * out of a handler (the gateway counts those in `stats.errors`) and never a 5xx.
 *
 * A fixed seed and a bounded run count keep `npm test` repeatable and quick; for a longer run:
 * `FUZZ_RUNS=20000 FUZZ_SEED=$RANDOM node --test dist/test/fuzz.test.js` (see BENCHMARKS.md).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { asObject, parseBatch, parseBatchInSlices, parseJson } from '../src/api/body.js';
import { isSwitchboardError } from '../src/errors.js';
import type { PendingBytes } from '../src/gateway/bytes.js';
import { isHeadError, readHead } from '../src/gateway/http-head.js';
import { decodeWsFrames } from '../src/gateway/transports/ws-codec.js';
import { api, get, RawClient, startServer, type TestServer } from './support/server.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const params = (scale = 1): fc.Parameters<unknown> => ({
  seed: SEED,
  numRuns: Math.max(1, Math.round(RUNS * scale)),
});

/** Request heads: valid ones, then mutated byte by byte, with random noise mixed in. */
const headBytes = fc.oneof(
  fc.uint8Array({ maxLength: 600 }),
  fc
    .tuple(
      fc.constantFrom(
        get('/feed/a', { Accept: 'text/event-stream' }),
        get('/test/1'),
        get('/feed/a?transport=poll&also=b,c'),
        'OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n',
        'HEAD /feed/x HTTP/1.0\r\n\r\n',
        get('/feed/w', {
          Upgrade: 'websocket',
          Connection: 'Upgrade',
          'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        }),
      ),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
    )
    .map(([text, edits]) => {
      const b = Buffer.from(text, 'latin1');
      for (const [at, byte] of edits) b[at % b.length] = byte;
      return new Uint8Array(b);
    }),
);

/** Splits `bytes` into pieces at the given cut points. */
function pieces(bytes: Uint8Array, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of [...at, bytes.length]) {
    if (c > from) out.push(Buffer.from(bytes.subarray(from, c)));
    from = c;
  }
  return out;
}

describe('in process', () => {
  test('the head parser: any bytes, in any pieces, give a head, a 4xx/5xx reason, or a need for more', () => {
    fc.assert(
      fc.property(headBytes, fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        let pending: PendingBytes | undefined;
        for (const piece of pieces(bytes, cuts)) {
          const got = readHead(pending, piece, 16 * 1024);
          pending = got.pending;
          if (got.result !== undefined) {
            if (isHeadError(got.result)) assert.ok([400, 431, 501, 505].includes(got.result.status));
            else assert.equal(typeof got.result.path, 'string');
            return;
          }
        }
      }),
      params(10),
    );
  });

  test('the sliced batch parser reads exactly what JSON.parse reads, or refuses with a 400', async () => {
    const text = fc.oneof(
      fc.array(fc.jsonValue({ maxDepth: 3 }), { maxLength: 6 }).map((a) => JSON.stringify(a)),
      fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }).map((a) => ` ${JSON.stringify(a, null, 1)} `),
      fc.string({ maxLength: 60 }).map((t) => `[${t}]`),
      // Found by a long run: a closing brace where an element should end.
      fc.constantFrom('[0}0]', '[{}}]', '[1,}]', '[[}]]'),
      fc.string({ maxLength: 60 }),
    );
    await fc.assert(
      fc.asyncProperty(text, async (body) => {
        let whole: unknown;
        let wholeErr = false;
        try {
          whole = parseBatch(body).map((i) => i.value);
        } catch {
          wholeErr = true;
        }
        try {
          const sliced = (await parseBatchInSlices(body, 1)).map((i) => i.value);
          assert.equal(wholeErr, false, `sliced accepted what JSON.parse refused: ${body}`);
          assert.deepEqual(sliced, whole);
        } catch (err) {
          if (err instanceof assert.AssertionError) throw err;
          assert.ok(isSwitchboardError(err) && err.status === 400, String(err));
          assert.equal(wholeErr, true, `sliced refused what JSON.parse accepted: ${body}`);
        }
      }),
      params(10),
    );
  });

  test('the WebSocket decoder: any bytes give frames and a rest, or a 1002/1009 close', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 125, max: 4096 }), (bytes, max) => {
        const got = decodeWsFrames(Buffer.from(bytes), max);
        if ('closeCode' in got) {
          assert.ok([1002, 1009].includes(got.closeCode));
          return;
        }
        let used = 0;
        for (const f of got.frames) {
          assert.ok(f.masked.length <= max);
          used += f.masked.length;
        }
        assert.ok(used <= bytes.length);
        if (got.rest !== undefined) assert.ok(got.need > got.rest.length || got.need >= 2);
      }),
      params(10),
    );
  });

  test('the publish body parser: any text gives items or a 400, never another error', () => {
    const text = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.json({ maxDepth: 4 }),
      fc.array(fc.json({ maxDepth: 3 }), { maxLength: 5 }).map((lines) => lines.join('\n')),
    );
    fc.assert(
      fc.property(text, (body) => {
        try {
          for (const item of parseBatch(body)) asObject(item.value, item.where);
          parseJson(body);
        } catch (err) {
          assert.ok(isSwitchboardError(err) && err.status === 400, String(err));
        }
      }),
      params(10),
    );
  });
});

describe('through a real server', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ headTimeoutMs: 1000, lingerMs: 1000, maxMessageBytes: 1024 });
  });
  after(() => s.stop());

  /** Sends `chunks` and resolves with what came back once the server closes or goes quiet. */
  function exchange(chunks: Buffer[]): Promise<string> {
    return new Promise((resolve) => {
      const sock = net.connect(s.clientPort, '127.0.0.1');
      let text = '';
      let timer = setTimeout(finish, 120);
      function finish(): void {
        clearTimeout(timer);
        sock.destroy();
        resolve(text);
      }
      sock.setEncoding('latin1');
      sock.on('data', (d: string) => {
        text += d;
        clearTimeout(timer);
        timer = setTimeout(finish, 40);
      });
      sock.on('error', () => undefined);
      sock.on('close', finish);
      sock.on('connect', () => {
        for (const c of chunks) sock.write(c);
      });
    });
  }

  test('random request heads: every answer is a valid HTTP status line; no handler throws', async () => {
    await fc.assert(
      fc.asyncProperty(headBytes, fc.array(fc.nat(), { maxLength: 4 }), async (bytes, cuts) => {
        const text = await exchange(pieces(bytes, cuts));
        if (text !== '') assert.match(text, /^HTTP\/1\.1 \d{3} /);
      }),
      params(0.5),
    );
    assert.equal(s.sb.gateway!.stats.errors, 0);
    const c = new RawClient(s.clientPort, get('/test/alive'));
    await c.waitFor('Your Id: alive');
    c.close();
  });

  test('random bytes after a WebSocket upgrade: a close frame or nothing; no handler throws', async () => {
    const key = randomBytes(16).toString('base64');
    const hs = get('/feed/fz', {
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': key,
    });
    // Masked frames with random headers and payloads, so the decoder gets past the mask check.
    const frame = fc
      .tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 200 }), fc.boolean())
      .map(([b0, payload, long]) => {
        const len = payload.length;
        const head = long
          ? Buffer.from([b0, 0x80 | 126, len >> 8, len & 0xff])
          : Buffer.from([b0, 0x80 | Math.min(len, 125)]);
        return Buffer.concat([head, randomBytes(4), Buffer.from(long ? payload : payload.subarray(0, 125))]);
      });
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 6 }), async (frames) => {
        const text = await exchange([Buffer.from(hs), ...frames]);
        assert.match(text, /^HTTP\/1\.1 101 /);
      }),
      params(0.3),
    );
    assert.equal(s.sb.gateway!.stats.errors, 0);
  });

  test('random publish bodies get 200, 400 or 413, never a 5xx', async () => {
    const body = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.json({ maxDepth: 5 }),
      fc
        .record({
          id: fc.oneof(fc.string({ maxLength: 20 }), fc.integer()),
          msg: fc.jsonValue({ maxDepth: 4 }),
        })
        .map((o) => JSON.stringify(o)),
      fc
        .array(fc.record({ id: fc.string({ maxLength: 10 }), msg: fc.string({ maxLength: 20 }) }), {
          maxLength: 5,
        })
        .map((a) => JSON.stringify(a)),
    );
    await fc.assert(
      fc.asyncProperty(body, fc.boolean(), async (text, batch) => {
        const r = await api(s.apiUrl, batch ? '/api/send/batch' : '/api/send', text, { raw: true });
        assert.ok(
          [200, 400, 413].includes(r.status),
          `${r.status} ${JSON.stringify(r.body)} for ${text.slice(0, 80)}`,
        );
      }),
      params(0.5),
    );
  });
});
