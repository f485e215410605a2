// SortedMap (src/control/sorted-map.ts): its values in key order equal a sort of the
// map's entries after any sequence of sets and deletes, whether the order was kept by
// insertion (a few new keys between reads) or rebuilt (many).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SortedMap } from '../src/control/sorted-map.ts';

test('SortedMap: values in key order after random sets, replacements and deletes, few or many between reads', () => {
  let x = 12345;
  const r = (n: number): number => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) % n; };
  const m = new SortedMap<number>();
  const ref = new Map<string, number>();
  let reads = 0;
  for (let round = 0; round < 400; round++) {
    // Mostly a handful of operations between reads; now and then a few hundred (past the re-sort threshold).
    const ops = round % 25 === 0 ? 300 : 1 + r(12);
    for (let j = 0; j < ops; j++) {
      const key = `default/s${r(500)}`;
      if (r(4) === 0) assert.equal(m.delete(key), ref.delete(key));
      else {
        const v = r(1e6);
        m.set(key, v);
        ref.set(key, v);
      }
    }
    const expected = [...ref.keys()].sort().map((k) => ref.get(k)!);
    assert.deepEqual(m.sortedValues(), expected, `round ${round}`);
    assert.equal(m.size, ref.size);
    reads++;
  }
  assert.equal(reads, 400);
  assert.ok(ref.size > 100, `${ref.size} keys at the end`);
});
