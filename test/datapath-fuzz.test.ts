// The datapath fuzz, short: random and mutated frames through every port kind with
// services programmed; nothing throws and every frame is forwarded or counted as a drop.
// bench/datapath-fuzz.ts runs the same for millions of frames.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runDatapathFuzz } from './helpers/datapath-fuzz.ts';

test('50,000 fuzzed frames through the whole datapath: no exception, each forwarded or counted as a drop', () => {
  for (const seed of [1, 2]) {
    const r = runDatapathFuzz(seed, 25_000);
    assert.equal(r.frames, 25_000);
    assert.deepEqual(r.silentExamples, [], `seed ${seed}: ${r.silent} frames left no trace`);
    assert.ok(r.forwarded > 1000 && r.dropped > 1000, `the fuzz reaches both outcomes (seed ${seed}: ${r.forwarded} forwarded, ${r.dropped} dropped)`);
  }
});
