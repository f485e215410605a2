// `lab apply` through the API: the plan's runs (Pods and Namespaces alone, the objects
// between them together) and the bounded, ordered concurrency they are applied with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyRuns, inOrder } from '../src/lab/cluster/api-apply.ts';
import type { K8sObject } from '../src/k8s/objects.ts';

const item = (kind: string, name: string): { object: K8sObject } => ({ object: { kind, metadata: { name } } as unknown as K8sObject });

test('applyRuns: a Pod or Namespace is a run of its own, the objects between them one run, file order kept', () => {
  const plan = [item('Namespace', 'ns'), item('Service', 'a'), item('EndpointSlice', 'a-1'), item('Pod', 'p'), item('Pod', 'q'), item('Service', 'b'), item('Ingress', 'i')];
  assert.deepEqual(applyRuns(plan).map((run) => run.map((p) => p.object.metadata.name)), [['ns'], ['a', 'a-1'], ['p'], ['q'], ['b', 'i']]);
  assert.deepEqual(applyRuns([]), []);
});

test('inOrder: at most `limit` at once, results in the items\' order whatever order they end in', async () => {
  let running = 0, peak = 0;
  const items = Array.from({ length: 40 }, (_, i) => i);
  const out = await inOrder(items, 8, async (i) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((resolve) => setTimeout(resolve, (i * 7) % 5));
    running--;
    return i * 2;
  });
  assert.deepEqual(out, items.map((i) => i * 2));
  assert.equal(peak, 8);
  assert.deepEqual(await inOrder([1, 2], 8, async (i) => i), [1, 2]);
});

test('inOrder: the first failure is thrown after the started calls end, and nothing new starts after it', async () => {
  const started: number[] = [];
  let ended = 0;
  await assert.rejects(inOrder(Array.from({ length: 20 }, (_, i) => i), 4, async (i) => {
    started.push(i);
    await new Promise((resolve) => setTimeout(resolve, i === 2 ? 1 : 10));
    ended++;
    if (i === 2) throw new Error('refused: 2');
    return i;
  }), /refused: 2/);
  assert.equal(ended, started.length, 'every started call had ended when the error was thrown');
  assert.ok(started.length < 20, `stopped starting after the failure (started ${started.length})`);
});
