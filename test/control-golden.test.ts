// Golden tests of the compiled service tables: the manifests in
// test/fixtures/control/manifests (one service of every kind the issue lists) compiled
// for node-1 (zone-a) and node-2 (zone-b), and the `lab status` description. The golden
// files are the spec: review them by eye when they change. Rewrite them with
//   UPDATE_GOLDEN=1 node --test test/control-golden.test.ts
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ServiceController } from '../src/control/service-controller.ts';
import { ManifestDir } from '../src/k8s/manifest-dir.ts';
import { snapshotToJson } from '../src/model/snapshot-json.ts';
import type { ServiceSnapshot } from '../src/model/service-snapshot.ts';
import { parseCidr } from '../src/wire/address.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'control');
const UPDATE = process.env.UPDATE_GOLDEN === '1';

function golden(name: string, actual: unknown): void {
  const path = join(FIXTURES, name);
  const text = `${JSON.stringify(actual, null, 2)}\n`;
  if (UPDATE) writeFileSync(path, text);
  assert.deepEqual(JSON.parse(text), JSON.parse(readFileSync(path, 'utf8')), `${name} differs (UPDATE_GOLDEN=1 rewrites it; review the diff)`);
}

async function compileFor(nodeName: string): Promise<{ snapshot: ServiceSnapshot; controller: ServiceController; errors: Error[] }> {
  const errors: Error[] = [];
  const snapshots: ServiceSnapshot[] = [];
  const controller = new ServiceController({
    source: new ManifestDir({ dir: join(FIXTURES, 'manifests') }),
    node: { name: nodeName },
    serviceCIDR: parseCidr('10.96.0.0/16')!,
    onSnapshot: (s) => snapshots.push(s),
    onError: (e) => errors.push(e),
  });
  await controller.start();
  controller.stop();
  assert.equal(snapshots.length, 1);
  return { snapshot: snapshots[0]!, controller, errors };
}

for (const node of ['node-1', 'node-2']) {
  test(`compiled snapshot for ${node} matches golden-${node}.json`, async () => {
    const { snapshot, errors } = await compileFor(node);
    assert.deepEqual(errors.map((e) => e.message), []);
    golden(`golden-${node}.json`, snapshotToJson(snapshot));
  });
}

test('lab status description matches golden-describe.json and is the same on every node', async () => {
  const one = await compileFor('node-1');
  const two = await compileFor('node-2');
  assert.deepEqual(one.controller.describe(), two.controller.describe());
  golden('golden-describe.json', one.controller.describe());
});

test('snapshots are immutable', async () => {
  const { snapshot } = await compileFor('node-1');
  assert.ok(Object.isFrozen(snapshot) && Object.isFrozen(snapshot.ports) && Object.isFrozen(snapshot.nodePortAddresses));
  for (const port of snapshot.ports) {
    assert.ok(Object.isFrozen(port), port.key);
    for (const list of [port.allEndpoints, port.clusterEndpoints, port.externalEndpoints, port.externalIPs, port.loadBalancerIPs, port.loadBalancerSourceRanges]) assert.ok(Object.isFrozen(list));
    for (const ep of port.allEndpoints) assert.ok(Object.isFrozen(ep));
  }
  assert.throws(() => { (snapshot.ports as unknown as unknown[]).push(1); }, TypeError);
});
