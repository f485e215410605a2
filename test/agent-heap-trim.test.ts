// HeapTrim (src/control/heap-trim.ts): when it asks V8 for a memory-reducing collection
// (after syncs settle, only with enough unused heap, not more often than its interval),
// and that the collection it asks for really gives the heap back (a child process: V8's
// heap after a burst of garbage, before and after).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { HeapTrim } from '../src/control/heap-trim.ts';

const MiB = 1024 * 1024;

function rig(heap: { total: number; used: number }) {
  let now = 1_000_000;
  const logs: string[] = [];
  const collected: number[] = [];
  const trim = new HeapTrim({
    log: (m) => logs.push(m), heap: () => ({ ...heap }), now: () => now,
    collect: () => { collected.push(now); heap.total = heap.used + 4 * MiB; },
    settleMs: 10, minIntervalMs: 60_000, slackBytes: 64 * MiB,
  });
  return { trim, logs, collected, heap, advance: (ms: number) => { now += ms; } };
}

if (process.argv[2] === 'child') {
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
    assert.match(r.logs[0]!, /^memory: heap 240 -> 110 MiB \(106 MiB in use\) after a memory-reducing collection of \d+ ms$/);
    r.heap.total = 300 * MiB;
    r.advance(30_000);
    r.trim.check();
    assert.equal(r.collected.length, 1, 'within the minimum interval: deferred');
    r.advance(30_000);
    r.trim.check();
    assert.equal(r.collected.length, 2, 'after it: collected');
    r.trim.stop();
  });

  test('afterSync waits until syncs stop: a burst of syncs makes one check', async () => {
    let checks = 0;
    const trim = new HeapTrim({ log: () => undefined, heap: () => { checks++; return { total: 0, used: 0 }; }, collect: () => undefined, settleMs: 30 });
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
}
