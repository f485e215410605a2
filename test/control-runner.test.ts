// The coalescing sync runner and change tracker: bursts collapse into one or two syncs,
// syncs never overlap, failures are retried, the max interval brings periodic syncs.
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { test } from 'node:test';
import { ChangeTracker } from '../src/control/change-tracker.ts';
import { SyncRunner } from '../src/control/runner.ts';
import { parseManifest } from '../src/k8s/manifest.ts';
import type { PodObject } from '../src/k8s/objects.ts';
import { waitFor } from './helpers/netns.ts';

function runner(opts: Partial<ConstructorParameters<typeof SyncRunner>[0]> & { sync: (periodic: boolean) => void | Promise<void> }): SyncRunner {
  return new SyncRunner({ minIntervalMs: 100, maxIntervalMs: 60_000, retryIntervalMs: 10, onError: () => undefined, ...opts });
}

function pods(n: number): PodObject[] {
  const text = Array.from({ length: n }, (_, i) => `apiVersion: v1\nkind: Pod\nmetadata: {name: p${i}, labels: {app: web}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.244.0.${i + 1}}\n`).join('---\n');
  return parseManifest(text, 'pods.yaml').objects as PodObject[];
}

test('a burst of 100 changes in one turn is one sync that sees all of them', async (t) => {
  const tracker = new ChangeTracker();
  const seen: number[] = [];
  const r = runner({ sync: () => { seen.push(tracker.drain().length); } });
  t.after(() => r.stop());
  r.start();
  for (const pod of pods(100)) {
    tracker.record({ previous: undefined, current: pod });
    r.run();
  }
  await waitFor(() => seen.length > 0, 5000, 5);
  await nextTurn();
  assert.deepEqual(seen, [100]);
});

test('a burst spread over many turns: one sync at once, the rest wait for minInterval as one', async (t) => {
  const tracker = new ChangeTracker();
  const seen: number[] = [];
  // A long minInterval so the test never depends on how fast this machine is.
  const r = runner({ minIntervalMs: 60_000, sync: () => { seen.push(tracker.drain().length); } });
  t.after(() => r.stop());
  r.start();
  for (const [i, pod] of pods(100).entries()) {
    tracker.record({ previous: undefined, current: pod });
    r.run();
    if (i === 0) await waitFor(() => seen.length === 1, 5000, 1); // the first request syncs at once
    await nextTurn();
  }
  assert.equal(seen.length, 1, 'the other 99 wait for minInterval');
  assert.ok(tracker.size > 0, 'later requests wait');
  await r.runNow();
  assert.equal(seen.length, 2);
  assert.equal(seen[0]! + seen[1]!, 100);
  assert.equal(r.syncs, 2);
});

test('changes to one object collapse: first previous, last current; add then delete vanishes', () => {
  const [a, b] = pods(2) as [PodObject, PodObject];
  const tracker = new ChangeTracker();
  const a2 = { ...a, status: { ...a.status, ready: true } };
  tracker.record({ previous: undefined, current: a });
  tracker.record({ previous: a, current: a2 });
  tracker.record({ previous: undefined, current: b });
  tracker.record({ previous: b, current: undefined });
  assert.deepEqual(tracker.drain(), [{ previous: undefined, current: a2 }]);
  assert.equal(tracker.size, 0);
});

test('syncs never overlap; requests during a sync bring exactly one more', async (t) => {
  let running = 0;
  let maxRunning = 0;
  let calls = 0;
  let release: () => void = () => undefined;
  const r = runner({
    minIntervalMs: 0,
    sync: async () => {
      calls++;
      running++;
      maxRunning = Math.max(maxRunning, running);
      if (calls === 1) await new Promise<void>((resolve) => { release = resolve; });
      running--;
    },
  });
  t.after(() => r.stop());
  r.start();
  r.run();
  await waitFor(() => calls === 1, 5000, 5);
  for (let i = 0; i < 10; i++) r.run();
  await nextTurn();
  assert.equal(calls, 1, 'held back while the first sync runs');
  release();
  await waitFor(() => calls === 2, 5000, 5);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(calls, 2);
  assert.equal(maxRunning, 1);
});

test('a failed sync is reported and retried without a new request', async (t) => {
  const errors: string[] = [];
  let calls = 0;
  const r = runner({
    onError: (e) => errors.push(e.message),
    sync: () => {
      calls++;
      if (calls === 1) throw new Error('tables refused');
    },
  });
  t.after(() => r.stop());
  r.start();
  r.run();
  await waitFor(() => calls === 2, 5000, 5);
  assert.deepEqual(errors, ['tables refused']);
});

test('with no requests, the max interval brings periodic syncs', async (t) => {
  const kinds: boolean[] = [];
  const r = runner({ minIntervalMs: 1, maxIntervalMs: 20, sync: (periodic) => { kinds.push(periodic); } });
  t.after(() => r.stop());
  r.start();
  await waitFor(() => kinds.length >= 2, 5000, 5);
  assert.ok(kinds.every((periodic) => periodic));
  r.run();
  await waitFor(() => kinds.includes(false), 5000, 5);
});
