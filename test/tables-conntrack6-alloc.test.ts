// The promise that the IPv6 conntrack's per-packet calls allocate nothing (STYLE.md
// rule 2): lookup6 of both tuples of established flows, insert6 + update + remove of
// new flows (evicting when full, refused over the source budget), flows expiring as the
// clock moves, and affinity lookup6/record6; addresses with words above 2^31, which V8
// would box if they crossed a call as uint32. This file runs itself as a child
// (`node --expose-gc --trace-gc --max-semi-space-size=1 <file> child N`); the parent
// counts garbage collections between the child's markers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { getHeapStatistics } from 'node:v8';
import { Conntrack, TCP, UDP } from '../src/tables/conntrack.ts';
import { AffinityTable } from '../src/tables/affinity.ts';
import { runGcChild } from './helpers/gc-child.ts';

const SYN = 0x02, ACK = 0x10;
const FLOWS = 4096;

function child(calls: number): void {
  const ct = new Conntrack({ capacity: FLOWS, family: 6, maxUnassuredPerSource: 1024 });
  const affinity = new AffinityTable(1024, undefined, 6);
  // Per flow, insert6's tuple: client fd00:c0a8::<i>:<port>, VIP fd00:10:96::a, endpoint, the client again.
  const t = new Int32Array(FLOWS * 18);
  for (let i = 0; i < FLOWS; i++) {
    const b = i * 18;
    t.set([0xfd00c0a8 | 0, 0x80000000 | 0, i >> 4, 0xffff0000 | i], b);
    t.set([0xfd000010 | 0, 0x00960000, 0, 0x0a], b + 4);
    t[b + 8] = ((40000 + i) << 16) | 80;
    t.set([0xfd000010 | 0, 0x02440002, 0, 5 + (i & 3)], b + 9);
    t.set(t.subarray(b, b + 4), b + 13);
    t[b + 17] = (8080 << 16) | (40000 + i);
  }
  // Half the flows established up front; the other half come and go in the loop.
  for (let i = 0; i < FLOWS / 2; i++) {
    const e = ct.insert6(TCP, t.subarray(i * 18, i * 18 + 18), 0);
    ct.update(e, 0, SYN, 0); ct.update(e, 1, SYN | ACK, 0); ct.update(e, 0, ACK, 0);
  }
  const fresh = Array.from({ length: FLOWS }, (_, i) => t.subarray(i * 18, i * 18 + 18));
  let found = 0;
  let established = 0;
  let inserted = 0;
  let now = 1;
  const run = (n: number, base: number): void => {
    for (let k = 0; k < n; k++) {
      const i = (base + k) % FLOWS;
      const b = i * 18;
      if (i < FLOWS / 2) {
        // An established flow: a packet each way.
        established++;
        if (ct.lookup6(TCP, t, b, 40000 + i, b + 4, 80, now) >= 0) found++;
        if (ct.lookup6(TCP, t, b + 9, 8080, b + 13, 40000 + i, now) >= 0) found++;
        ct.update(i, 0, ACK, now);
      } else if (ct.lookup6(UDP, t, b, 40000 + i, b + 4, 80, now) < 0) {
        // A new UDP flow (gone again within the loop, or expiring as the clock moves).
        const e = ct.insert6(UDP, fresh[i]!, now);
        if (e >= 0) {
          inserted++;
          ct.update(e, 0, 0, now);
          if ((k & 7) === 0) ct.remove(e);
        }
        if (affinity.lookup6(i & 63, t, b, now) < 0) affinity.record6(i & 63, t, b, 0x80000000 + (i & 3), 8080, now + 10, now);
      }
      if ((k & 4095) === 4095) {
        now++;
        ct.expire(now, 512);
      }
    }
  };
  console.log('MARK warm-up');
  run(300_000, 0);
  globalThis.gc!();
  found = 0;
  established = 0;
  inserted = 0;
  const before = getHeapStatistics().used_heap_size;
  console.log('MARK start');
  run(calls, 300_000);
  console.log('MARK end');
  globalThis.gc!();
  const after = getHeapStatistics().used_heap_size;
  console.log(JSON.stringify({ calls, heapGrowth: after - before, found, established, inserted, size: ct.size }));
}

if (process.argv[2] === 'child') {
  child(Number(process.argv[3] ?? 1_000_000));
} else {
  test('1,000,000 IPv6 conntrack and affinity calls allocate nothing: no GC inside the loop, < 400 KiB heap growth', () => {
    const { result: r, gcs } = runGcChild<{ calls: number; heapGrowth: number; found: number; established: number; inserted: number }>(fileURLToPath(import.meta.url), 1_000_000);
    // The work was done: established flows found both ways, new flows inserted.
    assert.ok(r.established > 400_000, JSON.stringify(r));
    assert.equal(r.found, 2 * r.established, JSON.stringify(r));
    assert.ok(r.inserted > 50_000, JSON.stringify(r));
    assert.deepEqual(gcs, [], 'garbage collections inside the conntrack loop');
    assert.ok(r.heapGrowth < 400 * 1024, `heap grew by ${r.heapGrowth} bytes`);
  });
}
