/** The router's interest directory (src/bus/directory.ts) on its own. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Directory } from '../src/bus/directory.js';

test('deltas, groups by gateway, and clear() forgets everything in one pass, reporting each id once', () => {
  const changes: [string, boolean][] = [];
  const d = new Directory((id, online) => changes.push([id, online]));
  assert.equal(d.applyDelta('g1', 1, ['a', 'b'], []), true);
  assert.equal(d.applyDelta('g2', 1, ['b', 'c'], []), true);
  assert.equal(d.applyDelta('g2', 3, ['d'], []), false, 'seq 2 was lost');
  assert.deepEqual(
    [...d.groups(['a', 'b', 'c', 'x'])],
    [
      ['g1', ['a', 'b']],
      ['g2', ['b', 'c']],
    ],
  );
  assert.deepEqual(d.holders('b').sort(), ['g1', 'g2']);
  assert.equal(d.pairs, 5);
  changes.length = 0;
  d.clear();
  assert.deepEqual(changes.map(([id, online]) => `${id}:${online}`).sort(), [
    'a:false',
    'b:false',
    'c:false',
    'd:false',
  ]);
  assert.equal(d.ids, 0);
  assert.equal(d.pairs, 0);
  assert.equal(d.seqOf('g1'), -1);
  // Slots are reused from scratch: a gateway after clear() is as new.
  assert.equal(d.applyDelta('g3', 1, ['a'], []), true);
  assert.deepEqual(d.holders('a'), ['g3']);
  changes.length = 0;
  d.quiet = true;
  d.clear();
  assert.deepEqual(changes, [], 'quiet: nothing reported');
});

test('a snapshot that ends with a part missing, or whose start was lost, is reported as not whole', () => {
  const d = new Directory();
  assert.equal(d.applySnapshot('g1', 5, 0, false, ['a']), true);
  assert.equal(d.applySnapshot('g1', 5, 1, false, ['b']), true);
  assert.equal(d.snapshotting('g1'), true);
  assert.equal(d.applySnapshot('g1', 5, 2, true, ['c']), true, 'parts 0, 1, 2: whole');
  assert.equal(d.seqOf('g1'), 5);
  assert.equal(d.applySnapshot('g1', 6, 0, false, ['a']), true);
  assert.equal(d.applySnapshot('g1', 6, 2, true, ['c']), false, 'part 1 missing');
  assert.deepEqual(d.holders('b'), [], 'what part 1 held is not there');
  assert.equal(d.applySnapshot('g2', 3, 1, true, ['x']), false, 'its part 0 never came');
  assert.deepEqual(d.holders('x'), []);
});

test('whole: all of a gateway’s ids known — from its first delta, a whole snapshot or an empty start; not after a gap', () => {
  const d = new Directory();
  assert.equal(d.whole('g1'), false, 'never heard of');
  d.applyDelta('g1', 1, ['a'], []);
  d.applyDelta('g1', 2, ['b'], []);
  assert.equal(d.whole('g1'), true, 'deltas from its first, none missed');
  d.applyDelta('g1', 4, ['c'], []);
  assert.equal(d.whole('g1'), false, 'delta 3 missed');
  d.applyDelta('g1', 5, ['e'], []);
  assert.equal(d.whole('g1'), false, 'in order again, but 3 is still missing');
  d.applySnapshot('g1', 5, 0, false, ['a', 'b']);
  assert.equal(d.whole('g1'), false, 'a snapshot under way');
  d.applySnapshot('g1', 5, 1, true, ['c', 'd', 'e']);
  assert.equal(d.whole('g1'), true, 'the snapshot is in');
  d.behind('g1');
  assert.equal(d.whole('g1'), false, 'a heartbeat named a delta not applied');

  d.applyDelta('g2', 57, ['x'], []);
  assert.equal(d.whole('g2'), false, 'joined in the middle: only one delta of it known');
  assert.equal(d.seqOf('g2'), 57);

  d.knowEmpty('g3');
  assert.equal(d.whole('g3'), true, 'announced seq 0: it never held an id');
  assert.equal(d.seqOf('g3'), 0);
  assert.equal(d.applyDelta('g3', 1, ['y'], []), true, 'its first delta is the next');
  assert.equal(d.whole('g3'), true);
  d.knowEmpty('g2');
  assert.equal(d.seqOf('g2'), 57, 'not for a gateway already heard of');
});
