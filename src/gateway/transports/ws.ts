/**
 * WebSocket on `/feed/<id>` (`Upgrade: websocket`): the handshake, one JSON text frame per message
 * (`{"id","subject","data","ts"}`), control messages as JSON text (`welcome`, `gap`,
 * `disconnect`), pings every heartbeat and a stale cut when a client stops answering, close codes
 * from the numbered disconnect reasons.
 *
 * A push client sends only control frames; its data frames are read and dropped, but checked as
 * RFC 6455 says: fragmentation in order (1002), text valid UTF-8 across fragments (1007), no
 * message over the frame limit (1009), close codes from the registered ranges (1002).
 */
import { isUtf8 } from 'node:buffer';
import { Disconnect, type DisconnectReason } from '../../errors.js';
import type { Message } from '../../message.js';
import { PendingBytes } from '../bytes.js';
import { type Connection, State, type Transport } from '../connection.js';
import { disconnectBody } from '../frames.js';
import type { RequestHead } from '../http-head.js';
import { wsAccept } from '../responses.js';
import {
  acceptKey,
  closeFrame,
  decodeWsFrames,
  encodeWsFrame,
  unmask,
  validCloseCode,
  validKey,
  WS_OP_BINARY,
  WS_OP_CLOSE,
  WS_OP_CONT,
  WS_OP_PING,
  WS_OP_PONG,
  WS_OP_TEXT,
  type WsFrame,
  type WsProtocolError,
} from './ws-codec.js';

const WS_PING = encodeWsFrame(WS_OP_PING, Buffer.alloc(0));

/** The message as JSON text (WebSocket and long-poll), cached on the message. */
export function messageJson(msg: Message): string {
  let text = msg.frames.json;
  if (text === undefined) {
    text = JSON.stringify(msg);
    msg.frames.json = text;
  }
  return text;
}

/** One WebSocket text frame carrying the message JSON (cached on the message). */
export function wsFrame(msg: Message): Buffer {
  let frame = msg.frames.ws;
  if (frame === undefined) {
    frame = encodeWsFrame(WS_OP_TEXT, Buffer.from(messageJson(msg)));
    msg.frames.ws = frame;
  }
  return frame;
}

/** A control message as a JSON text frame (`welcome`, `gap`, `disconnect`, `tick`). */
export function wsControl(type: string, data: Record<string, unknown>): Buffer {
  return encodeWsFrame(WS_OP_TEXT, Buffer.from(JSON.stringify({ type, ...data })));
}

export const wsTransport: Transport = {
  name: 'ws',
  deliver(conn, msg) {
    conn.n++;
    conn.write(wsFrame(msg));
    conn.host.stats.deliveries++;
  },
  resumed(conn, missed, gap) {
    if (gap !== undefined) conn.write(wsControl('gap', { ...gap }));
    const stats = conn.host.stats;
    for (const m of missed) {
      conn.n++;
      conn.write(wsFrame(m));
      stats.deliveries++;
      if (conn.state !== State.Open) return;
    }
  },
  heartbeat(conn) {
    const ctx = conn.host;
    if (ctx.now - conn.since > (2 * ctx.opts.heartbeatMs) / 1000) {
      ctx.stats.stale++;
      conn.disconnect(Disconnect.Stale);
    } else {
      conn.write(WS_PING);
    }
  },
  tick(conn) {
    conn.n++;
    conn.write(wsControl('tick', { n: conn.n, id: conn.firstId }));
  },
  goodbye(conn, reason) {
    conn.write(wsControl('disconnect', disconnectBody(reason)));
    conn.write(closeFrame(reason.code, reason.reason));
  },
  input: wsInput,
};

/** Answers the upgrade (or refuses it with 400/426) and logs the connection in. */
export function startWs(
  conn: Connection,
  ids: readonly string[],
  head: RequestHead,
  last: string | undefined,
  rest: Buffer | undefined,
): void {
  const ctx = conn.host;
  if (head.upgrade?.toLowerCase() !== 'websocket' || !head.connection?.toLowerCase().includes('upgrade')) {
    ctx.reject(
      conn,
      426,
      'WebSocket needs Upgrade: websocket and Connection: Upgrade',
      'Upgrade: websocket\r\n',
    );
    return;
  }
  if (head.wsVersion !== '13') {
    ctx.reject(conn, 426, 'only WebSocket version 13 is supported', 'Sec-WebSocket-Version: 13\r\n');
    return;
  }
  if (!validKey(head.wsKey)) {
    ctx.reject(conn, 400, 'Sec-WebSocket-Key must be 16 bytes of base64');
    return;
  }
  conn.unframed = false;
  conn.closeAfter = false;
  conn.since = ctx.now;
  if (!conn.send(wsAccept(ctx.headers, acceptKey(head.wsKey)))) return;
  conn.write(wsControl('welcome', { ids }));
  if (conn.state === State.Closed) return;
  ctx.attach(conn, wsTransport, ids, last);
  if (rest !== undefined && (conn.state as State) !== State.Closed) wsInput(conn, rest);
}

/**
 * Frames from the client: answer pings, note pongs, honour close, check and drop data. Partial
 * frames wait in `conn.pending` until the bytes the frame needs have arrived (joined once).
 */
function wsInput(conn: Connection, bytes: Buffer): void {
  let buf = bytes;
  const pending = conn.pending;
  if (pending !== undefined) {
    pending.push(bytes);
    if (pending.length < pending.need) return;
    buf = pending.join();
    conn.pending = undefined;
  }
  const ctx = conn.host;
  const got = decodeWsFrames(buf, ctx.opts.maxClientFrameBytes);
  if ('closeCode' in got) {
    fail(conn, got);
    return;
  }
  conn.since = ctx.now;
  for (const frame of got.frames) {
    const problem = frame.opcode >= WS_OP_CLOSE ? control(conn, frame) : data(conn, frame);
    if (problem !== undefined) {
      fail(conn, problem);
      return;
    }
    if (conn.state !== State.Open && conn.state !== State.Resuming) return;
  }
  if (got.rest !== undefined) {
    const keep = new PendingBytes();
    keep.push(got.rest);
    keep.need = got.need;
    conn.pending = keep;
  }
}

/** A ping, pong or close frame; returns a protocol problem, if any. */
function control(conn: Connection, frame: WsFrame): WsProtocolError | undefined {
  if (frame.opcode === WS_OP_PING) {
    conn.write(encodeWsFrame(WS_OP_PONG, unmask(frame)));
    return undefined;
  }
  if (frame.opcode !== WS_OP_CLOSE) return undefined; // a pong: conn.since was refreshed
  const payload = unmask(frame);
  let reply = 1000;
  if (payload.length === 1) return { closeCode: 1002, reason: 'close frame with a 1-byte payload' };
  if (payload.length >= 2) {
    const code = payload.readUInt16BE(0);
    if (!validCloseCode(code)) return { closeCode: 1002, reason: `invalid close code ${code}` };
    if (!isUtf8(payload.subarray(2))) return { closeCode: 1007, reason: 'close reason is not valid UTF-8' };
    reply = code;
  }
  conn.host.finish(conn, closeFrame(reply, ''));
  return undefined;
}

/** A data frame: checked (fragmentation, size, UTF-8) and dropped. */
function data(conn: Connection, frame: WsFrame): WsProtocolError | undefined {
  const frag = conn.fragments;
  if (frame.opcode === WS_OP_CONT) {
    if (frag === null) return { closeCode: 1002, reason: 'continuation frame without a message' };
  } else if (frag !== null) {
    return { closeCode: 1002, reason: 'new data frame inside a fragmented message' };
  }
  const opcode = frag?.opcode ?? frame.opcode;
  const length = (frag?.length ?? 0) + frame.masked.length;
  const max = conn.host.opts.maxClientFrameBytes;
  if (length > max) return { closeCode: 1009, reason: `message over ${max} bytes` };
  if (opcode === WS_OP_TEXT) {
    const payload = unmask(frame);
    if (frame.fin && frag === null) {
      if (!isUtf8(payload)) return { closeCode: 1007, reason: 'text frame is not valid UTF-8' };
    } else {
      const utf8 = frag?.utf8 ?? new TextDecoder('utf-8', { fatal: true });
      try {
        utf8.decode(payload, { stream: !frame.fin });
      } catch {
        return { closeCode: 1007, reason: 'text message is not valid UTF-8' };
      }
      if (!frame.fin) conn.fragments = frag ?? { opcode, length, utf8 };
    }
  } else if (!frame.fin && frag === null && opcode === WS_OP_BINARY) {
    conn.fragments = { opcode, length, utf8: undefined };
  }
  if (conn.fragments !== null) {
    if (frame.fin) conn.fragments = null;
    else conn.fragments.length = length;
  }
  return undefined;
}

/** Ends the connection for a protocol error: a disconnect notice, then the close code. */
function fail(conn: Connection, problem: WsProtocolError): void {
  const reason: DisconnectReason =
    problem.closeCode === 1009 ? Disconnect.MessageTooBig : Disconnect.BadRequest;
  conn.write(wsControl('disconnect', disconnectBody(reason)));
  conn.host.finish(conn, closeFrame(problem.closeCode, problem.reason));
}
