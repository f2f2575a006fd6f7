/**
 * WebSocket input as RFC 6455 says, with hand-made frames: invalid UTF-8 in text (1007), stray
 * continuation frames and bad close codes (1002), messages over the limit across fragments
 * (1009); valid fragmented text is accepted; a frame trickled one byte per write is read.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { get, RawClient, startServer, type TestServer } from './support/server.js';

let s: TestServer;
before(async () => {
  s = await startServer({ maxClientFrameBytes: 1024 });
});
after(() => s.stop());

/** A masked client frame. */
function frame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  const body = Buffer.from(payload);
  const mask = randomBytes(4);
  const len = body.length;
  const head = len < 126 ? Buffer.from([0, len]) : Buffer.from([0, 126, len >> 8, len & 0xff]);
  head[0] = (fin ? 0x80 : 0) | opcode;
  head[1]! |= 0x80;
  return Buffer.concat([head, mask, Buffer.from(body.map((b, i) => b ^ mask[i & 3]!))]);
}

function close(code: number, reason = ''): Buffer {
  const p = Buffer.alloc(2 + Buffer.byteLength(reason));
  p.writeUInt16BE(code);
  p.write(reason, 2);
  return frame(8, p);
}

async function upgraded(id: string): Promise<RawClient> {
  const key = randomBytes(16).toString('base64');
  const c = new RawClient(
    s.clientPort,
    get(`/feed/${id}`, {
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Key': key,
      'Sec-WebSocket-Version': '13',
    }),
  );
  await c.waitFor('"welcome"');
  return c;
}

/** The close code the server sent, once it has closed. */
async function closeCode(c: RawClient): Promise<number> {
  await c.waitClosed();
  const bytes = c.bytes;
  const at = bytes.lastIndexOf(Buffer.from([0x88]));
  assert.ok(at !== -1, 'a close frame');
  return bytes.readUInt16BE(at + 2);
}

/** Sends a ping after `frames` and resolves true if its pong comes back (the connection lives). */
async function alive(c: RawClient, ...frames: Buffer[]): Promise<boolean> {
  for (const f of frames) c.socket.write(f);
  c.socket.write(frame(9, 'still-here'));
  await c.waitFor('still-here');
  return !c.closed;
}

describe('WebSocket frames from the client', () => {
  for (const [what, frames, code] of [
    ['invalid UTF-8 in a text frame', [frame(1, Buffer.from([0xff, 0xfe, 0xc3, 0x28]))], 1007],
    [
      'invalid UTF-8 split across fragments',
      [frame(1, Buffer.from([0xe2, 0x82]), false), frame(0, Buffer.from([0x28]))],
      1007,
    ],
    ['a continuation frame with no message started', [frame(0, 'cont')], 1002],
    ['a new text frame inside a fragmented message', [frame(1, 'a', false), frame(1, 'b')], 1002],
    [
      'a fragmented message over the size limit',
      [frame(2, Buffer.alloc(800), false), frame(0, Buffer.alloc(800))],
      1009,
    ],
    ['close code 999', [close(999)], 1002],
    ['close code 1004', [close(1004)], 1002],
    ['close code 1005', [close(1005)], 1002],
    ['close code 2000', [close(2000)], 1002],
    ['close code 5000', [close(5000)], 1002],
    ['a 1-byte close payload', [frame(8, Buffer.from([3]))], 1002],
    ['a close reason that is not UTF-8', [frame(8, Buffer.from([0x03, 0xe8, 0xff, 0xfe]))], 1007],
  ] as const) {
    test(`${what}: closed with ${code}`, async () => {
      const c = await upgraded('strict');
      for (const f of frames) c.socket.write(f);
      assert.equal(await closeCode(c), code);
    });
  }

  for (const code of [1000, 1001, 1011, 3000, 4999]) {
    test(`close code ${code} is echoed`, async () => {
      const c = await upgraded('strict');
      c.socket.write(close(code, 'bye'));
      assert.equal(await closeCode(c), code);
    });
  }

  test('valid fragmented text, with a ping between its fragments, is accepted', async () => {
    const c = await upgraded('frag');
    const euro = Buffer.from('€'); // 3 bytes, split over two fragments
    assert.ok(
      await alive(c, frame(1, euro.subarray(0, 2), false), frame(9, 'mid'), frame(0, euro.subarray(2))),
    );
    c.close();
  });

  test('a frame trickled one byte per write is read', async () => {
    const c = await upgraded('trickle');
    for (const b of frame(9, 'slowly')) {
      c.socket.write(Buffer.from([b]));
      await new Promise((r) => setImmediate(r));
    }
    await c.waitFor('slowly');
    c.close();
  });
});
