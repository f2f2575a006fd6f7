/**
 * Bytes of a request head or WebSocket frame that arrive in pieces. Concatenating on every read
 * is quadratic: a 64 KB frame sent one byte per packet would copy about 2 GB. The pieces are kept
 * as a list, with their total and the total the reader needs before it can make progress, and
 * joined once that much has arrived.
 */
export class PendingBytes {
  readonly #parts: Buffer[] = [];
  /** Bytes held. */
  length = 0;
  /** Bytes the reader needs before it looks again (0: look at every read). */
  need = 0;

  /** Adds a piece, copied so a small remainder does not pin a large pooled read buffer. */
  push(piece: Buffer): void {
    this.#parts.push(Buffer.from(piece));
    this.length += piece.length;
  }

  /** The last `n` bytes held (fewer if fewer are held), for a search across a piece boundary. */
  tail(n: number): Buffer {
    const parts = this.#parts;
    let i = parts.length;
    let got = 0;
    while (i > 0 && got < n) got += parts[--i]!.length;
    const joined = i === parts.length - 1 ? parts[i]! : Buffer.concat(parts.slice(i));
    return joined.subarray(Math.max(0, joined.length - n));
  }

  /** Everything held as one buffer (joined once; later calls reuse it). */
  join(): Buffer {
    const parts = this.#parts;
    if (parts.length === 1) return parts[0]!;
    const all = Buffer.concat(parts, this.length);
    parts.length = 0;
    parts.push(all);
    return all;
  }
}
