// FakeDevice keeps TunDevice's batch shape and drop rules in memory, so pipelines can
// be tested without kernel devices; FrameRelay moves frames between any two devices.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeDevice } from '../src/device/fake.ts';
import { FrameRelay } from '../src/device/relay.ts';
import { DeviceError } from '../src/device/errors.ts';

function frame(length: number, tag: number): Uint8Array {
  const f = new Uint8Array(length);
  for (let i = 0; i < length; i++) f[i] = (tag + i) & 0xff;
  return f;
}

test('readBatch places frames at i*slotSize + headroom and stops at maxFrames', () => {
  const dev = new FakeDevice();
  for (let k = 0; k < 5; k++) assert.ok(dev.inject(frame(60 + k, k)));
  const slab = new Uint8Array(4 * 256), lengths = new Int32Array(4);
  assert.equal(dev.readBatch(slab, 256, 32, lengths, 3), 3);
  assert.deepEqual([...lengths.subarray(0, 3)], [60, 61, 62]);
  assert.deepEqual(slab.subarray(256 + 32, 256 + 32 + 61), frame(61, 1));
  assert.equal(slab[0], 0, 'headroom untouched');
  assert.equal(dev.readBatch(slab, 256, 32, lengths, 4), 2);
  assert.equal(dev.readBatch(slab, 256, 32, lengths, 4), 0, 'empty is 0, not an error');
});

test('a frame larger than its slot is dropped and counted', () => {
  const dev = new FakeDevice();
  dev.inject(frame(300, 0));
  dev.inject(frame(100, 1));
  const slab = new Uint8Array(2 * 256), lengths = new Int32Array(2);
  assert.equal(dev.readBatch(slab, 256, 0, lengths, 2), 1);
  assert.equal(lengths[0], 100);
  assert.equal(dev.stats.rxTruncated, 1);
});

test('writeBatch: frames from absolute offsets; a full queue drops the rest and counts it', () => {
  const dev = new FakeDevice('f', { queueFrames: 2, maxFrameSize: 128 });
  const slab = new Uint8Array(1024);
  slab.set(frame(10, 1), 100);
  slab.set(frame(20, 2), 500);
  slab.set(frame(30, 3), 700);
  const offsets = Int32Array.of(100, 500, 700), lengths = Int32Array.of(10, 20, 30);
  assert.equal(dev.writeBatch(slab, offsets, lengths, 3), 2);
  assert.equal(dev.stats.txDroppedFull, 1);
  assert.deepEqual(dev.takeWritten(), [frame(10, 1), frame(20, 2)]);
  assert.equal(dev.writeBatch(slab, Int32Array.of(0), Int32Array.of(200), 1), 0, 'oversized frame refused');
  assert.equal(dev.stats.txErrors, 1);
  assert.throws(() => dev.writeBatch(slab, Int32Array.of(1000), Int32Array.of(30), 1), RangeError);
});

// Readiness callbacks run from setImmediate: a few event-loop turns let them all run,
// independent of timers (whose clock can be stale after a slow turn).
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

test('onReadable is level-triggered and honours pause/resume; closed devices throw EBADF', async () => {
  const dev = new FakeDevice();
  let calls = 0;
  const slab = new Uint8Array(2048), lengths = new Int32Array(1);
  dev.onReadable(() => { calls++; dev.readBatch(slab, 2048, 0, lengths, 1); });
  dev.inject(frame(10, 0));
  dev.inject(frame(10, 1));
  await turns(10);
  assert.equal(calls, 2, 'called again while a frame remained, and not once the queue was empty');
  dev.pause();
  dev.inject(frame(10, 2));
  await turns(10);
  assert.equal(calls, 2);
  dev.resume();
  await turns(10);
  assert.equal(calls, 3);
  dev.close();
  assert.throws(() => dev.readBatch(slab, 2048, 0, lengths, 1), (e: unknown) => e instanceof DeviceError && e.code === 'EBADF');
});

test('FrameRelay over a FakeDevice pair moves frames unchanged both ways', async () => {
  const [a, peerA] = FakeDevice.pair();
  const [b, peerB] = FakeDevice.pair();
  const relay = new FrameRelay(peerA, peerB, { batchFrames: 4 });
  for (let k = 0; k < 10; k++) {
    const slab = frame(64 + k, k);
    assert.equal(a.writeBatch(slab, Int32Array.of(0), Int32Array.of(slab.length), 1), 1);
  }
  const back = frame(99, 7);
  b.writeBatch(back, Int32Array.of(0), Int32Array.of(99), 1);
  await turns(10);
  const slab = new Uint8Array(16 * 2048), lengths = new Int32Array(16);
  assert.equal(b.readBatch(slab, 2048, 0, lengths, 16), 10);
  for (let k = 0; k < 10; k++) assert.deepEqual(slab.subarray(k * 2048, k * 2048 + lengths[k]!), frame(64 + k, k));
  assert.equal(a.readBatch(slab, 2048, 0, lengths, 16), 1);
  assert.deepEqual(slab.subarray(0, 99), back);
  assert.deepEqual(relay.counts, { aToB: 10, bToA: 1, batches: 4, dropped: 0 });
  relay.stop();
});
