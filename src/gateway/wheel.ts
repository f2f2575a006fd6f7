/**
 * Deadlines by the second, for many connections and no timer each (STYLE.md §7: one coarse
 * wheel for all). Items are filed under the second they fall due; the gateway's one-second tick
 * takes the due slots and checks each item still has that deadline (a connection that moved on
 * holds another one, or none, and is skipped; nothing is ever removed early).
 */
export class DeadlineSlots<T> {
  readonly #slots = new Map<number, T[]>();

  /** Files `item` to fall due at second `due`. */
  add(item: T, due: number): void {
    const slot = this.#slots.get(due);
    if (slot === undefined) this.#slots.set(due, [item]);
    else slot.push(item);
  }

  /** Takes every item due at or before second `now`, with the second it was filed under. */
  take(now: number): [item: T, due: number][] {
    const out: [T, number][] = [];
    for (const [due, items] of this.#slots) {
      if (due > now) continue;
      this.#slots.delete(due);
      for (const item of items) out.push([item, due]);
    }
    return out;
  }

  /** Items filed (including ones that have since moved on). */
  get size(): number {
    let n = 0;
    for (const items of this.#slots.values()) n += items.length;
    return n;
  }
}
