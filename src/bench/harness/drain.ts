/**
 * The drain of a scenario: after the last message, wait until the load generator has received
 * what the API delivered, or its count has stopped moving, or the time is up.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Resolves once `read()` reaches `target`, has not changed for `stableMs`, or `maxMs` passed.
 * Polls every 100 ms; deliberately not tied to the run's abort signal, since a drain after Ctrl-C
 * is what keeps the counts comparable.
 */
export async function untilCountSettles(
  read: () => number,
  target: number,
  opts: { readonly stableMs: number; readonly maxMs: number },
): Promise<void> {
  const start = performance.now();
  let last = -1;
  let lastChange = start;
  for (;;) {
    const got = read();
    const now = performance.now();
    if (got !== last) {
      last = got;
      lastChange = now;
    }
    if (got >= target || now - lastChange >= opts.stableMs || now - start >= opts.maxMs) return;
    await sleep(100);
  }
}
