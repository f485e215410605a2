// The allocation tests' measurement: the test file runs itself as a child
// (`node --expose-gc --trace-gc --max-semi-space-size=1 FILE child N`) that prints
// "MARK start" and "MARK end" around its measured loop and a JSON line after; the
// collections --trace-gc reports between the marks are the loop's. With a 1 MB young
// generation, an allocation per packet (or per batch) collects many times.
//
// Up to three runs, keeping the one with the fewest collections: on a loaded machine the
// optimised code can arrive late and the code it replaces box a number for a while
// (seen once in a while in full CI runs); a real allocation per packet or per batch
// collects in every run, so a retry hides no regression.
import { getHeapSpaceStatistics } from 'node:v8';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

export interface GcChildRun<T> {
  /** The JSON line the child printed after "MARK end". */
  result: T;
  /** --trace-gc lines between the marks. */
  gcs: string[];
  /** The child's whole output, for messages. */
  output: string;
}

export function runGcChild<T>(file: string, packets: number): GcChildRun<T> {
  let best: GcChildRun<T> | null = null;
  for (let attempt = 0; attempt < 3 && (best === null || best.gcs.length > 0); attempt++) {
    const output = execFileSync(process.execPath, ['--expose-gc', '--trace-gc', '--max-semi-space-size=1', file, 'child', String(packets)], { encoding: 'utf8', timeout: 60_000 });
    const lines = output.split('\n');
    const start = lines.indexOf('MARK start');
    const end = lines.indexOf('MARK end');
    assert.ok(start >= 0 && end > start, output);
    const gcs = lines.slice(start + 1, end).filter((l) => /Scavenge|Mark-Compact|Minor|Mark-Sweep/.test(l));
    const json = lines.slice(end + 1).find((l) => l.startsWith('{'));
    assert.ok(json !== undefined, output);
    if (best === null || gcs.length < best.gcs.length) best = { result: JSON.parse(json) as T, gcs, output };
  }
  return best!;
}

/** Bytes in the young generation: between two readings with no scavenge, what was allocated. */
export function youngUsed(): number {
  let n = 0;
  for (const sp of getHeapSpaceStatistics()) if (sp.space_name === 'new_space' || sp.space_name === 'new_large_object_space') n += sp.space_used_size;
  return n;
}

/** Every drop a set of counters holds (the datapath alloc tests expect none). */
export function sumDrops(c: { drops: Float64Array }): number {
  let n = 0;
  for (let i = 0; i < c.drops.length; i++) n += c.drops[i]!;
  return n;
}
