/**
 * WebSocket (RFC 6455) for the gateway: the opening handshake, server frames, and a decoder for
 * the few frames a push client sends (ping, pong, close; data frames are read and ignored up to
 * the size limit). Written here rather than taken from `ws` because the gateway owns its raw
 * sockets: a `ws` WebSocket adds a Receiver stream and a Sender per connection, which would eat
 * most of the idle-connection budget. Tests talk to it with the `ws` client.
 */
import { createHash } from 'node:crypto';

export const WS_OP_CONT = 0x0;
export const WS_OP_TEXT = 0x1;
export const WS_OP_BINARY = 0x2;
export const WS_OP_CLOSE = 0x8;
export const WS_OP_PING = 0x9;
export const WS_OP_PONG = 0xa;

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`. */
export function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

/** True when `key` is a valid `Sec-WebSocket-Key`: base64 of 16 bytes. */
export function validKey(key: string | undefined): key is string {
  return key !== undefined && /^[A-Za-z0-9+/]{22}==$/.test(key);
}

/** An unmasked server frame (FIN set) with `payload`. */
export function encodeWsFrame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const headLen = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(headLen + len);
  out[0] = 0x80 | opcode;
  if (len < 126) {
    out[1] = len;
  } else if (len < 65536) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
  payload.copy(out, headLen);
  return out;
}

/** A close frame with `code` and a short `reason` (truncated to fit a control frame). */
export function closeFrame(code: number, reason: string): Buffer {
  const text = Buffer.from(reason).subarray(0, 123);
  const payload = Buffer.allocUnsafe(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  return encodeWsFrame(WS_OP_CLOSE, payload);
}

/**
 * A client frame as read off the wire: its payload is still masked, a view into the read buffer
 * (valid until the next read). {@link unmask} copies it out when it is needed: control frames
 * and text (for the UTF-8 check); binary data is dropped without ever being unmasked.
 */
export interface WsFrame {
  readonly fin: boolean;
  readonly opcode: number;
  readonly masked: Buffer;
  readonly mask: Buffer;
}

/** The payload of `frame`, unmasked, in a new buffer. */
export function unmask(frame: WsFrame): Buffer {
  const { masked, mask } = frame;
  const out = Buffer.allocUnsafe(masked.length);
  for (let i = 0; i < masked.length; i++) out[i] = masked[i]! ^ mask[i & 3]!;
  return out;
}

/** Why the decoder or the receiving side gave up: a close code and reason. */
export interface WsProtocolError {
  /** 1002 protocol error, 1007 invalid UTF-8, 1009 too big. */
  readonly closeCode: 1002 | 1007 | 1009;
  readonly reason: string;
}

/** What {@link decodeWsFrames} read: complete frames, the rest, and how many bytes the next needs. */
export interface WsFrames {
  readonly frames: WsFrame[];
  /** Bytes after the last complete frame (a view into the input), if any. */
  readonly rest: Buffer | undefined;
  /** Total bytes `rest` must grow to before the next frame can be read. */
  readonly need: number;
}

/**
 * Decodes as many complete frames as `buf` holds. Client frames must be masked; control frames
 * must be final and at most 125 bytes; reserved bits and opcodes are refused (1002); a frame
 * longer than `maxPayload` is refused from its header, before it is buffered (1009).
 */
export function decodeWsFrames(buf: Buffer, maxPayload: number): WsFrames | WsProtocolError {
  const frames: WsFrame[] = [];
  let off = 0;
  let need = 2;
  while (buf.length - off >= 2) {
    const b0 = buf[off]!;
    const b1 = buf[off + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if ((b0 & 0x70) !== 0) return { closeCode: 1002, reason: 'reserved bits set' };
    if ((b1 & 0x80) === 0) return { closeCode: 1002, reason: 'client frames must be masked' };
    const control = opcode >= 0x8;
    if (control && opcode > WS_OP_PONG) return { closeCode: 1002, reason: `unknown opcode ${opcode}` };
    if (!control && opcode > WS_OP_BINARY) return { closeCode: 1002, reason: `unknown opcode ${opcode}` };
    let len = b1 & 0x7f;
    let pos = off + 2;
    if (len === 126) {
      need = 4;
      if (buf.length - off < need) break;
      len = buf.readUInt16BE(pos);
      pos += 2;
    } else if (len === 127) {
      need = 10;
      if (buf.length - off < need) break;
      const high = buf.readUInt32BE(pos);
      if (high !== 0) return { closeCode: 1009, reason: 'frame too big' };
      len = buf.readUInt32BE(pos + 4);
      pos += 8;
    }
    if (control && (len > 125 || !fin)) return { closeCode: 1002, reason: 'bad control frame' };
    if (len > maxPayload) return { closeCode: 1009, reason: `frame over ${maxPayload} bytes` };
    need = pos - off + 4 + len;
    if (buf.length - off < need) break;
    const mask = buf.subarray(pos, pos + 4);
    pos += 4;
    frames.push({ fin, opcode, masked: buf.subarray(pos, pos + len), mask });
    off = pos + len;
    need = 2;
  }
  return { frames, rest: off < buf.length ? buf.subarray(off) : undefined, need };
}

/**
 * True for a close code a peer may send (RFC 6455 §7.4; as the `ws` library checks): 1000–1003,
 * 1007–1014, and 3000–4999 for libraries and applications.
 */
export function validCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}
