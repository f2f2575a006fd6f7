/**
 * The throughput benchmark's peer servers (src/bench/harness/peers.ts): each one that is
 * installed starts, holds three `GET /test/<id>` streams, delivers one published message to each
 * and stops with all its processes. A peer whose packages are missing is skipped, with the
 * apt-get command in the reason.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type PeerServer, peerMissing, startMochiweb, startNchan } from '../src/bench/harness/peers.js';
import { readStartTime } from '../src/tools/proc.js';

const WAIT_MS = 5_000;

/** A zombie has finished: its parent (not this process, for nginx's workers) has yet to reap it. */
function running(pid: number): boolean {
  return readStartTime(pid) !== undefined;
}

interface Stream {
  readonly socket: Socket;
  data: string;
}

async function until(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = performance.now() + WAIT_MS;
  while (!(await ok())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A raw `GET /test/<id>`, its bytes collected as they come; resolves once the headers are in. */
async function openStream(port: number, id: string, headers: string): Promise<Stream> {
  const socket = connect({ host: '127.0.0.1', port });
  const s: Stream = { socket, data: '' };
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => {
    s.data += d;
  });
  socket.on('error', () => {});
  socket.write(`GET /test/${id} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`);
  await until(`the headers of /test/${id}`, () => s.data.includes('\r\n\r\n'));
  assert.match(s.data, /^HTTP\/1\.1 200 /);
  assert.match(s.data, /\r\nTransfer-Encoding: chunked\r\n/i);
  return s;
}

/** One request on its own connection (Connection: close); the status and the body. */
function request(
  port: number,
  method: string,
  target: string,
  body = '',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let raw = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      raw += d;
    });
    socket.once('error', reject);
    socket.once('end', () => {
      const at = raw.indexOf('\r\n\r\n');
      resolve({ status: Number(raw.slice(9, 12)), body: at === -1 ? '' : raw.slice(at + 4) });
    });
    // write, not end: a half-closed request can read to Nchan as a client that went away.
    socket.write(
      `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  });
}

async function check(peer: PeerServer): Promise<void> {
  const ids = ['101', '102', '103'];
  // Nchan answers 403 to a chunked subscriber that did not send TE: chunked.
  const te = peer.name === 'nchan' ? 'TE: chunked\r\n' : '';
  const streams = await Promise.all(ids.map((id) => openStream(peer.clientPort, id, te)));
  try {
    if (peer.name === 'mochiweb') {
      // The welcome chunk follows the router login: once it is in, a publish reaches the stream.
      for (const [i, s] of streams.entries()) {
        await until(`the welcome on /test/${ids[i]}`, () => s.data.includes(`Your Id: ${ids[i]}\n`));
      }
      const res = await request(peer.publishPort, 'POST', '/publish', `${ids.join('\n')}\n`);
      assert.deepEqual(res, { status: 200, body: '3' });
    } else {
      for (const id of ids) {
        // The channel's owner worker may hear of the subscriber after its headers went out: wait
        // until the channel info (GET on the publisher) counts it, or the message could miss it.
        await until(`a subscriber on channel ${id}`, async () =>
          /active subscribers: [1-9]/.test((await request(peer.publishPort, 'GET', `/pub/${id}`)).body),
        );
        const res = await request(peer.publishPort, 'POST', `/pub/${id}`, 'Recvd msg: x<br/>');
        assert.equal(res.status, 201, res.body);
        assert.match(res.body, /active subscribers: 1/);
      }
    }
    for (const [i, s] of streams.entries()) {
      await until(`a message on /test/${ids[i]}`, () => s.data.includes('<br/>'));
    }
    if (peer.name === 'mochiweb') assert.match(streams[0]!.data, /Recvd msg #1: 'x'<br\/>/);
    else assert.match(streams[0]!.data, /\r\n11\r\nRecvd msg: x<br\/>\r\n/);
  } finally {
    for (const s of streams) s.socket.destroy();
  }
}

for (const name of ['mochiweb', 'nchan'] as const) {
  test(`${name}: three streams each get the message published to their id`, {
    timeout: 60_000,
  }, async (t) => {
    const missing = peerMissing(name);
    if (missing !== undefined) {
      t.skip(missing);
      return;
    }
    const peer = name === 'mochiweb' ? await startMochiweb({}) : await startNchan({});
    try {
      assert.ok(peer.pids.length >= (name === 'nchan' ? 3 : 1), `pids: ${peer.pids}`);
      await check(peer);
    } finally {
      await peer.stop();
    }
    for (const pid of peer.pids) assert.ok(!running(pid), `pid ${pid} still runs after stop()`);
  });
}
