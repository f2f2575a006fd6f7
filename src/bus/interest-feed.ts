/**
 * The gateway side of the interest directory (directory.ts): tells routers which ids this
 * gateway gains and loses, as numbered deltas, and sends a whole snapshot to a router that asks.
 *
 * Changes of one event-loop turn go out together, at the end of the turn (a read of many
 * sockets logs many ids in), and an id that comes and goes within one turn is never announced.
 * Routers route sends by what these deltas tell them and ack each one (interest-acks.ts), so a
 * resume reads its history only once every router knows the gateway holds its ids.
 */
import * as codec from './nats-codec.js';

/** Ids per snapshot part: about 10 bytes each, well inside NATS's 1 MB max_payload. */
const SNAPSHOT_PART_IDS = 40_000;

export class InterestFeed {
  readonly #gatewayId: string;
  readonly #publish: (subject: string, payload: Uint8Array) => void;
  readonly #deltaSubject: string;
  /** id → true (gained) or false (lost), since the last delta. */
  readonly #pending = new Map<string, boolean>();
  #seq = 0;
  #scheduled = false;

  constructor(
    gatewayId: string,
    deltaSubject: string,
    publish: (subject: string, payload: Uint8Array) => void,
  ) {
    this.#gatewayId = gatewayId;
    this.#deltaSubject = deltaSubject;
    this.#publish = publish;
  }

  /** Seq of the last delta sent. */
  get seq(): number {
    return this.#seq;
  }

  gained(id: string): void {
    // Lost and regained within one turn: routers still hold it, nothing to say.
    if (this.#pending.get(id) === false) this.#pending.delete(id);
    else this.#pending.set(id, true);
    this.#schedule();
  }

  lost(id: string): void {
    if (this.#pending.get(id) === true) this.#pending.delete(id);
    else this.#pending.set(id, false);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Sends the pending changes now, if any. */
  flush(): void {
    this.#scheduled = false;
    if (this.#pending.size === 0) return;
    const adds: string[] = [];
    const removes: string[] = [];
    for (const [id, gained] of this.#pending) (gained ? adds : removes).push(id);
    this.#pending.clear();
    this.#seq++;
    this.#publish(this.#deltaSubject, codec.encodeDelta(this.#gatewayId, this.#seq, adds, removes));
  }

  /** Sends every id held (`ids`) to `subject`, in parts, as of the current seq. */
  snapshot(subject: string, ids: Iterable<string>): void {
    this.flush();
    let part = 0;
    let batch: string[] = [];
    for (const id of ids) {
      batch.push(id);
      if (batch.length === SNAPSHOT_PART_IDS) {
        this.#publish(subject, codec.encodeSnapshot(this.#gatewayId, this.#seq, part++, false, batch));
        batch = [];
      }
    }
    this.#publish(subject, codec.encodeSnapshot(this.#gatewayId, this.#seq, part, true, batch));
  }
}
