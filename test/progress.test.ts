import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { formatBytes, formatCount, formatSeconds, Progress } from '../src/cli/progress.js';

/** A stream that keeps every write, in order. */
class Capture extends Writable {
  readonly writes: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.writes.push(chunk.toString());
    cb();
  }
  get text(): string {
    return this.writes.join('');
  }
}

/** A clock the test moves by hand. */
function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1000;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

describe('progress formatting', () => {
  test('counts, bytes and durations', () => {
    assert.equal(formatCount(1234), '1234');
    assert.equal(formatCount(56_789), '56.8k');
    assert.equal(formatCount(15_000_000), '15.0M');
    assert.equal(formatBytes(512), '512B');
    assert.equal(formatBytes(1536), '1.5KB');
    assert.equal(formatBytes(200 * 1024 * 1024), '200.0MB');
    assert.equal(formatSeconds(4.2), '4s');
    assert.equal(formatSeconds(65), '1m05s');
    assert.equal(formatSeconds(3720), '1h02m');
    assert.equal(formatSeconds(Number.POSITIVE_INFINITY), '?');
  });
});

describe('Progress', () => {
  test('non-TTY: one plain line per interval, then the summary', () => {
    const out = new Capture();
    const c = clock();
    const p = new Progress({
      label: 'load',
      stream: out,
      isTTY: false,
      total: 1000,
      unit: 'edges',
      interval: 5000,
      now: c.now,
    });
    c.advance(1000);
    p.update(100); // before the interval: nothing
    assert.deepEqual(out.writes, []);
    c.advance(4000);
    p.update(500); // 5 s in: 100/s, 500 left → ETA 5s
    assert.deepEqual(out.writes, ['load 50.0% 500/1000 edges 100 edges/s ETA 5s\n']);
    c.advance(1000);
    p.update(600); // only 1 s since the last line
    assert.equal(out.writes.length, 1);
    p.done('loaded 1000 edges');
    assert.equal(out.writes.at(-1), 'loaded 1000 edges\n');
    p.update(1000); // after done: silent
    p.done('again');
    assert.equal(out.writes.length, 2);
    assert.ok(!out.text.includes('\r'), 'no cursor control off a terminal');
  });

  test('TTY: redraws one line with a bar at most every 100 ms and clears it at the end', () => {
    const out = new Capture();
    const c = clock();
    const p = new Progress({ label: 'gen', stream: out, isTTY: true, total: 200, unit: 'B', now: c.now });
    c.advance(100);
    p.update(50);
    c.advance(50);
    p.update(60); // throttled
    c.advance(50);
    p.update(100);
    assert.equal(out.writes.length, 2);
    assert.equal(
      out.writes[0],
      `\rgen [${'#'.repeat(6)}${'.'.repeat(18)}] 25.0% 50B/200B 500B/s ETA 0s\x1b[K`,
    );
    assert.ok(out.writes[1]?.startsWith(`\rgen [${'#'.repeat(12)}${'.'.repeat(12)}] 50.0%`));
    p.done('done');
    assert.deepEqual(out.writes.slice(2), ['\r\x1b[K', 'done\n']);
  });

  test('without a total: amount, rate and elapsed time, no bar', () => {
    const out = new Capture();
    const c = clock();
    const p = new Progress({
      label: 'read',
      stream: out,
      isTTY: false,
      unit: 'B',
      interval: 1000,
      now: c.now,
    });
    c.advance(2000);
    p.update(4096);
    assert.deepEqual(out.writes, ['read 4.0KB 2.0KB/s 2s\n']);
    assert.equal(p.elapsed, 2);
  });
});
