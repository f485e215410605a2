// HeapTrim (src/control/heap-trim.ts): when it asks V8 for a memory-reducing collection
// (after syncs settle, only with enough unused heap, not more often than its interval),
// and that the collection it asks for really gives the heap back (a child process: V8's
// heap after a burst of garbage, before and after); the malloc_trim after it, and that
// it gives freed C heap back (a child process: RSS before and after).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { HeapTrim } from '../src/control/heap-trim.ts';
import { trimMalloc } from '../src/device/memory.ts';

const MiB = 1024 * 1024;

function rig(heap: { total: number; used: number }) {
  let now = 1_000_000;
  // What the process holds beside V8's heap (C heap, code, buffers).
  const outside = { bytes: 80 * MiB };
  const logs: string[] = [];
  const collected: number[] = [];
  const steps: string[] = [];
  const trim = new HeapTrim({
    log: (m) => logs.push(m), heap: () => ({ ...heap }), rss: () => heap.total + outside.bytes, now: () => now,
    collect: () => { collected.push(now); steps.push('collect'); heap.total = heap.used + 4 * MiB; },
    trimNative: () => { steps.push('malloc_trim'); outside.bytes = 80 * MiB; },
    settleMs: 10, minIntervalMs: 60_000, slackBytes: 64 * MiB,
  });
  return { trim, logs, collected, steps, heap, outside, advance: (ms: number) => { now += ms; } };
}

const rssAnonBytes = (): number => Number(/^RssAnon:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;

if (process.argv[2] === 'malloc-child') {
  // 200 MiB of 16 KiB Buffers (calloc'd from glibc's arenas, below its mmap threshold),
  // every 16th kept so that the freed ones lie inside the arena, where glibc keeps them.
  let buffers: Buffer[] | null = Array.from({ length: 12_800 }, () => Buffer.alloc(16 * 1024, 1));
  const kept = buffers.filter((_, i) => i % 16 === 0);
  buffers = null;
  for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc!();
  const before = rssAnonBytes();
  const released = trimMalloc();
  process.stdout.write(JSON.stringify({ before, after: rssAnonBytes(), released, kept: kept.length }));
} else if (process.argv[2] === 'child') {
  // A heap grown by garbage, as a sync leaves it: the real collection must shrink it.
  const { getHeapStatistics } = await import('node:v8');
  let garbage: unknown[] | null = [];
  for (let i = 0; i < 1_500_000; i++) garbage.push({ i, s: `endpoint-${i}` });
  const kept = garbage.slice(0, 50_000);
  garbage = null;
  const logs: string[] = [];
  const trim = new HeapTrim({ log: (m) => logs.push(m), slackBytes: 16 * MiB });
  // A full collection, as V8 runs its own after a sync: the garbage is gone, the heap stays grown.
  (globalThis as { gc?: () => void }).gc!();
  const before = getHeapStatistics().total_heap_size;
  trim.check();
  const after = getHeapStatistics().total_heap_size;
  process.stdout.write(JSON.stringify({ before, after, trims: trim.trims, kept: kept.length, logs }));
} else {
  test('collects only when the unused heap passes the slack, then not again within the interval', () => {
    const r = rig({ total: 100 * MiB, used: 60 * MiB });
    r.trim.check();
    assert.equal(r.collected.length, 0, '40 MiB unused: below the slack');
    r.heap.total = 240 * MiB; r.heap.used = 106 * MiB;
    r.trim.check();
    assert.equal(r.collected.length, 1);
    assert.deepEqual(r.steps, ['collect', 'malloc_trim']);
    assert.match(r.logs[0]!, /^memory: heap 240 -> 110 MiB \(106 MiB in use\) after a memory-reducing collection of \d+ ms$/);
    r.heap.total = 300 * MiB;
    r.advance(30_000);
    r.trim.check();
    assert.equal(r.collected.length, 1, 'within the minimum interval: deferred');
    r.advance(30_000);
    r.trim.check();
    assert.equal(r.collected.length, 2, 'after it: collected');
    // A small live heap (a mass deletion's) does not wait for the interval.
    r.heap.total = 200 * MiB; r.heap.used = 30 * MiB;
    r.advance(1000);
    r.trim.check();
    assert.equal(r.collected.length, 3, 'less in use than the slack: collected at once');
    r.trim.stop();
  });

  test('a state shrunk to half of its peak since the last collection (a mass deletion) is collected at once, within the interval and without slack', () => {
    const r = rig({ total: 300 * MiB, used: 200 * MiB });
    r.trim.afterSync(275_000);
    r.trim.check();
    assert.equal(r.collected.length, 1);
    // 100k of the 275k objects deleted: still most of it; the interval holds.
    r.heap.total = 300 * MiB; r.heap.used = 200 * MiB;
    r.trim.afterSync(175_000);
    r.advance(1000);
    r.trim.check();
    assert.equal(r.collected.length, 1, 'within the interval');
    // All but 60 deleted: the heap in use is garbage, and its collection is short.
    r.trim.afterSync(60);
    r.trim.check();
    assert.equal(r.collected.length, 2, 'the state shrank below half: collected at once');
    r.trim.check();
    assert.equal(r.collected.length, 2, 'measured from that collection: not again');
    // Shrunk with no slack in the heap (all of it counted as used: garbage): collected too.
    r.heap.total = 210 * MiB; r.heap.used = 200 * MiB;
    r.trim.afterSync(275_000);
    r.advance(1000);
    r.trim.check();
    assert.equal(r.collected.length, 2, 'grown again, no slack: nothing');
    r.trim.afterSync(100);
    r.trim.check();
    assert.equal(r.collected.length, 3, 'shrunk from its peak although the heap shows no slack');
    r.trim.stop();
  });

  test('memory outside the heap grown by the slack is trimmed alone, within the interval too; the collection stays bounded', () => {
    const r = rig({ total: 100 * MiB, used: 90 * MiB });
    r.outside.bytes += 40 * MiB;
    r.trim.check();
    assert.deepEqual(r.steps, [], '40 MiB more outside the heap: below the slack');
    r.outside.bytes += 30 * MiB;
    r.trim.check();
    assert.deepEqual(r.steps, ['malloc_trim'], '70 MiB more: the C heap alone (the heap has no slack)');
    assert.equal(r.trim.nativeTrims, 1);
    assert.match(r.logs.at(-1)!, /^memory: RSS 250 -> 180 MiB after trimming the C heap \(\d+ ms\)$/);
    r.trim.check();
    assert.deepEqual(r.steps, ['malloc_trim'], 'measured from the last trim: nothing again');
    // The heap with slack and more outside it: collected and trimmed.
    r.heap.total = 240 * MiB; r.outside.bytes += 70 * MiB;
    r.trim.check();
    assert.deepEqual(r.steps, ['malloc_trim', 'collect', 'malloc_trim']);
    // Within the interval: the collection waits, the C heap is trimmed now.
    r.heap.total = 240 * MiB; r.outside.bytes += 70 * MiB;
    r.advance(1000);
    r.trim.check();
    assert.deepEqual(r.steps, ['malloc_trim', 'collect', 'malloc_trim', 'malloc_trim']);
    assert.equal(r.collected.length, 1);
    r.trim.stop();
  });

  test('afterSync waits until syncs stop: a burst of syncs makes one check', async () => {
    let checks = 0;
    const trim = new HeapTrim({ log: () => undefined, heap: () => { checks++; return { total: 0, used: 0 }; }, rss: () => 0, collect: () => undefined, settleMs: 30 });
    checks = 0; // the one read when it was made
    for (let i = 0; i < 5; i++) {
      trim.afterSync();
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(checks, 0, 'still syncing');
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(checks, 1);
    trim.stop();
  });

  test('without a collection to call (collect null) it never checks', () => {
    let checks = 0;
    const trim = new HeapTrim({ log: () => undefined, heap: () => { checks++; return { total: 1e12, used: 0 }; }, collect: null });
    trim.afterSync();
    trim.check();
    assert.equal(checks, 0);
    trim.stop();
  });

  test('the memory-reducing collection gives a grown heap back (a child process)', () => {
    const out = JSON.parse(execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), 'child'], { encoding: 'utf8', timeout: 60_000 })) as { before: number; after: number; trims: number; kept: number; logs: string[] };
    assert.equal(out.trims, 1, out.logs.join('\n'));
    assert.equal(out.kept, 50_000);
    assert.ok(out.after < out.before / 2, `heap ${out.before / MiB} -> ${out.after / MiB} MiB`);
  });

  test('malloc_trim gives the freed pages of the C heap back (a child process)', () => {
    const out = JSON.parse(execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), 'malloc-child'], { encoding: 'utf8', timeout: 60_000 })) as { before: number; after: number; released: boolean | null; kept: number };
    assert.equal(out.kept, 800);
    assert.equal(out.released, true);
    // 187.5 of the 200 MiB were freed; most of it must leave the process.
    assert.ok(out.before - out.after > 100 * MiB, `RssAnon ${(out.before / MiB).toFixed(0)} -> ${(out.after / MiB).toFixed(0)} MiB`);
  });
}
