import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, type Logger } from '../src/log.js';
import { StallWatch } from '../src/stall-watch.js';

/** A real logger at `warn` whose lines are kept. */
function recorder(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger('warn', { write: (line: string) => lines.push(line) }), lines };
}

function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy: the event loop cannot run
  }
}

test('a blocked event loop is reported with its length; short delays are not', async () => {
  const { log, lines } = recorder();
  const watch = new StallWatch(log, 200, 20);
  try {
    await sleep(100);
    block(30);
    await sleep(100);
    assert.equal(watch.stalls, 0, 'a 30 ms block is under the threshold');
    block(400);
    await sleep(100);
    assert.equal(watch.stalls, 1);
    assert.ok(watch.worstMs >= 350 && watch.worstMs < 2000, `worst ${watch.worstMs} ms`);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /warn .*event loop stalled.*"ms":\d{3,}/);
  } finally {
    watch.close();
  }
});
