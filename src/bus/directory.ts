/**
 * The interest directory: which gateways hold which ids, as a router learns it. With it a send
 * asks for its count only the gateways that hold a recipient (tally.ts), presence is answered
 * from the gateways that hold the id, and a disconnect goes only where the id's connections are.
 *
 * ```
 *   gateway                                   router (every process serving the API)
 *   first login of id   ─ delta +id, seq n ─▶  byId[id] ∪= {slot of gateway}
 *   last logout of id   ─ delta -id, seq n+1 ▶  byId[id] −= {slot}
 *   heartbeat           ─ hb … seq n+1 ──────▶  seq behind? ask that gateway for a snapshot
 *   `who` (router start, resync)  ◀─────────   snapshot: every id, at seq m, in parts
 * ```
 *
 * Deltas are numbered per gateway; NATS keeps a publisher's order, so a heartbeat naming a seq
 * the router has not seen means deltas were lost (a slow consumer): that gateway's ids are
 * relearned from a snapshot. A gateway that says bye or expires takes its ids with it.
 *
 * An id stores the slot numbers of its gateways: bare for one (the usual case), an array for
 * several. About 80 bytes per id (Map entry and key string), so a million ids cost a router
 * about 80 MB.
 *
 * Changes of an id between held-by-someone and held-by-no-one are reported to `onChange` as
 * presence changes, except while `quiet` (a router learning the cluster after it starts or
 * reconnects: those ids were online before it looked).
 */

/** One gateway's state in the directory. */
class GatewayEntry {
  readonly id: string;
  readonly slot: number;
  /** Last delta seq applied; -1 until the first delta or snapshot. */
  seq = -1;
  /** A snapshot is being received (its parts so far applied). */
  snapshotting = false;
  /** Ids that lost this gateway when the snapshot began and are not back in it yet. */
  dropped: Set<string> | undefined = undefined;
  /** The part of the snapshot expected next, and whether one was missed. */
  nextPart = 0;
  partMissed = false;
  /**
   * Every id it holds is known: a whole snapshot, or deltas from its first with none missed
   * since. False until then, and after a gap until the next whole snapshot.
   */
  whole = false;

  constructor(id: string, slot: number) {
    this.id = id;
    this.slot = slot;
  }
}

/** Told when an id becomes held by some gateway (`true`) or by none (`false`). */
export type DirectoryChange = (id: string, online: boolean) => void;

export class Directory {
  readonly #gateways = new Map<string, GatewayEntry>();
  readonly #bySlot: (GatewayEntry | undefined)[] = [];
  readonly #freeSlots: number[] = [];
  readonly #byId = new Map<string, number | number[]>();
  readonly #onChange: DirectoryChange | undefined;
  #pairs = 0;
  /** While true, changes are applied but not reported. */
  quiet = false;

  constructor(onChange?: DirectoryChange) {
    this.#onChange = onChange;
  }

  /** (id, gateway) pairs known. */
  get pairs(): number {
    return this.#pairs;
  }

  /** Ids held by at least one gateway. */
  get ids(): number {
    return this.#byId.size;
  }

  /** The delta seq applied for gateway `id` (-1: none yet, or unknown gateway). */
  seqOf(id: string): number {
    return this.#gateways.get(id)?.seq ?? -1;
  }

  /** True while gateway `id`'s snapshot is still arriving. */
  snapshotting(id: string): boolean {
    return this.#gateways.get(id)?.snapshotting ?? false;
  }

  #entry(id: string): GatewayEntry {
    let e = this.#gateways.get(id);
    if (e === undefined) {
      const slot = this.#freeSlots.pop() ?? this.#bySlot.length;
      e = new GatewayEntry(id, slot);
      this.#gateways.set(id, e);
      this.#bySlot[slot] = e;
    }
    return e;
  }

  /** The gateways holding `id`. */
  holders(id: string): string[] {
    const v = this.#byId.get(id);
    if (v === undefined) return [];
    if (typeof v === 'number') return [this.#bySlot[v]!.id];
    return v.map((slot) => this.#bySlot[slot]!.id);
  }

  /** True when some gateway holds `id`. */
  has(id: string): boolean {
    return this.#byId.has(id);
  }

  /**
   * The recipients each gateway holds, by gateway id, in recipient order; a gateway holding none
   * is absent.
   */
  groups(recipients: readonly string[]): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (let i = 0; i < recipients.length; i++) {
      const id = recipients[i]!;
      const v = this.#byId.get(id);
      if (v === undefined) continue;
      if (typeof v === 'number') this.#push(out, v, id);
      else for (const s of v) this.#push(out, s, id);
    }
    return out;
  }

  #push(out: Map<string, string[]>, slot: number, id: string): void {
    const gw = this.#bySlot[slot]!.id;
    const list = out.get(gw);
    if (list === undefined) out.set(gw, [id]);
    else list.push(id);
  }

  /**
   * Applies delta `seq` of `gateway`. Returns false when it is not the next one (deltas were
   * lost, or this router has not got a snapshot yet): the caller asks for a snapshot.
   */
  applyDelta(gateway: string, seq: number, adds: readonly string[], removes: readonly string[]): boolean {
    const e = this.#entry(gateway);
    if (seq <= e.seq) return true; // already covered (by a snapshot taken after it)
    for (const id of adds) this.#add(e, id);
    for (const id of removes) this.#remove(e, id);
    const inOrder = e.seq === -1 ? !e.snapshotting && seq === 1 : seq === e.seq + 1;
    e.whole = inOrder && (e.whole || e.seq === -1);
    e.seq = seq;
    return inOrder;
  }

  /**
   * A gateway that announced delta seq 0 (it never held an id) and that this directory has not
   * heard of: known, and empty. Its first delta will be seq 1.
   */
  knowEmpty(gateway: string): void {
    const e = this.#entry(gateway);
    if (e.seq !== -1 || e.snapshotting) return;
    e.seq = 0;
    e.whole = true;
  }

  /** `gateway` announced a delta this directory has not applied: some of its ids may be missing. */
  behind(gateway: string): void {
    const e = this.#gateways.get(gateway);
    if (e !== undefined) e.whole = false;
  }

  /** True when every id `gateway` holds is known here (see {@link GatewayEntry.whole}). */
  whole(gateway: string): boolean {
    const e = this.#gateways.get(gateway);
    return e?.whole === true && !e.snapshotting;
  }

  /**
   * One part of a snapshot of `gateway` at delta seq `seq`: part 0 first forgets what it held
   * before (without reporting those ids offline unless the snapshot leaves them out), the last
   * part ends it. Returns false when the snapshot ended with a part missing (or its start was
   * lost): the caller asks again.
   */
  applySnapshot(gateway: string, seq: number, part: number, last: boolean, ids: readonly string[]): boolean {
    const e = this.#entry(gateway);
    if (part === 0) {
      e.dropped = this.#forget(e, false);
      e.snapshotting = true;
      e.partMissed = false;
    } else if (part !== e.nextPart) {
      e.partMissed = true;
    }
    e.nextPart = part + 1;
    if (!e.snapshotting) {
      // A part of a snapshot whose start was lost.
      if (last) e.whole = false;
      return !last;
    }
    for (const id of ids) {
      this.#add(e, id);
      e.dropped?.delete(id);
    }
    if (last) {
      e.snapshotting = false;
      e.seq = Math.max(e.seq, seq);
      for (const id of e.dropped ?? []) if (!this.#byId.has(id)) this.#report(id, false);
      e.dropped = undefined;
      e.whole = !e.partMissed;
      return !e.partMissed;
    }
    return true;
  }

  /** A gateway left (bye) or expired: its ids go with it. */
  dropGateway(gateway: string): void {
    const e = this.#gateways.get(gateway);
    if (e === undefined) return;
    this.#forget(e, true);
    this.#gateways.delete(gateway);
    this.#bySlot[e.slot] = undefined;
    this.#freeSlots.push(e.slot);
  }

  /**
   * Forgets every gateway (after this router lost its NATS connection), reporting every id
   * offline unless quiet. One pass: dropping the gateways one by one scanned every id once per
   * gateway (56 scans of a million ids, seconds of a blocked router).
   */
  clear(): void {
    if (!this.quiet) for (const id of this.#byId.keys()) this.#report(id, false);
    this.#byId.clear();
    this.#pairs = 0;
    this.#gateways.clear();
    this.#bySlot.length = 0;
    this.#freeSlots.length = 0;
  }

  /** Removes `e` from every id (a scan: rare, on gateway loss or resync); returns ids left unheld. */
  #forget(e: GatewayEntry, report: boolean): Set<string> {
    const unheld = new Set<string>();
    for (const [id, v] of this.#byId) {
      if (v === e.slot) {
        this.#byId.delete(id);
        this.#pairs--;
        unheld.add(id);
        if (report) this.#report(id, false);
      } else if (typeof v !== 'number') {
        const i = v.indexOf(e.slot);
        if (i === -1) continue;
        this.#pairs--;
        if (v.length === 2) this.#byId.set(id, v[1 - i]!);
        else v.splice(i, 1);
      }
    }
    return unheld;
  }

  #add(e: GatewayEntry, id: string): void {
    const v = this.#byId.get(id);
    if (v === undefined) {
      this.#byId.set(id, e.slot);
      this.#pairs++;
      if (!e.dropped?.has(id)) this.#report(id, true);
    } else if (typeof v === 'number') {
      if (v === e.slot) return;
      this.#byId.set(id, [v, e.slot]);
      this.#pairs++;
    } else if (!v.includes(e.slot)) {
      v.push(e.slot);
      this.#pairs++;
    }
  }

  #remove(e: GatewayEntry, id: string): void {
    const v = this.#byId.get(id);
    if (v === undefined) return;
    if (v === e.slot) {
      this.#byId.delete(id);
      this.#pairs--;
      this.#report(id, false);
    } else if (typeof v !== 'number') {
      const i = v.indexOf(e.slot);
      if (i === -1) return;
      this.#pairs--;
      if (v.length === 2) this.#byId.set(id, v[1 - i]!);
      else v.splice(i, 1);
    }
  }

  #report(id: string, online: boolean): void {
    if (!this.quiet) this.#onChange?.(id, online);
  }
}
