// The ServiceController end to end over a real manifest directory: first snapshot after
// the first read, new snapshots on edits (untouched services keep their compiled
// objects), a bad file reported while the last good state keeps serving, a rejected
// service reported while the others keep working, and a burst of file writes
// compiled in one or two syncs.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ServiceController, ServiceRejectedError } from '../src/control/service-controller.ts';
import { ManifestDir } from '../src/k8s/manifest-dir.ts';
import { ManifestError } from '../src/k8s/manifest.ts';
import type { ServiceSnapshot } from '../src/model/service-snapshot.ts';
import { ipv4ToString, parseCidr } from '../src/wire/address.ts';
import { waitFor } from './helpers/netns.ts';

const WEB = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports: [{port: 5432}]
`;

function pod(name: string, app: string, ip: string, node = 'node-1'): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}, labels: {app: ${app}}}
spec:
  nodeName: ${node}
  containers: [{name: c, ports: [{name: http, containerPort: 8080}, {containerPort: 5432}]}]
status:
  podIP: ${ip}
  conditions: [{type: Ready, status: "True"}]
---
`;
}

interface Harness { dir: string; controller: ServiceController; snapshots: ServiceSnapshot[]; errors: Error[] }

async function harness(t: { after(fn: () => void): void }, files: Record<string, string>, minSyncIntervalMs = 20): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-control-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const h: Harness = { dir, controller: undefined as unknown as ServiceController, snapshots: [], errors: [] };
  h.controller = new ServiceController({
    source: new ManifestDir({ dir, rescanIntervalMs: 60_000, debounceMs: 20 }),
    node: { name: 'node-1', nodePortAddresses: ['10.0.0.1'] },
    serviceCIDR: parseCidr('10.96.0.0/16')!,
    minSyncIntervalMs,
    onSnapshot: (s) => h.snapshots.push(s),
    onError: (e) => h.errors.push(e),
  });
  t.after(() => {
    h.controller.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await h.controller.start();
  return h;
}

const endpointsOf = (s: ServiceSnapshot, key: string): string[] =>
  s.ports.find((p) => p.key === key)?.clusterEndpoints.map((e) => `${ipv4ToString(e.ip)}:${e.port}`) ?? [];

test('first snapshot after the first read; edits bring new generations; untouched services are reused', async (t) => {
  const h = await harness(t, { 'svc.yaml': WEB, 'pods.yaml': pod('web-1', 'web', '10.244.1.2') + pod('db-1', 'db', '10.244.1.9') });
  assert.equal(h.snapshots.length, 1);
  const first = h.snapshots[0]!;
  assert.equal(first.generation, 1);
  assert.deepEqual(first.nodePortAddresses.map(ipv4ToString), ['10.0.0.1']);
  assert.deepEqual(first.ports.map((p) => p.key), ['default/db:', 'default/web:http']);
  assert.deepEqual(endpointsOf(first, 'default/web:http'), ['10.244.1.2:8080']);

  writeFileSync(join(h.dir, 'pods.yaml'), pod('web-1', 'web', '10.244.1.2') + pod('web-2', 'web', '10.244.2.2', 'node-2') + pod('db-1', 'db', '10.244.1.9'));
  await waitFor(() => h.snapshots.length === 2, 5000, 10);
  const second = h.snapshots[1]!;
  assert.equal(second.generation, 2);
  assert.deepEqual(endpointsOf(second, 'default/web:http'), ['10.244.1.2:8080', '10.244.2.2:8080']);
  assert.equal(second.ports.find((p) => p.key === 'default/db:'), first.ports.find((p) => p.key === 'default/db:'), 'db untouched: the same frozen object');
  assert.deepEqual(h.errors, []);

  // describe() is what `tapir lab status --json` prints.
  const web = h.controller.describe().find((s) => s.name === 'web')!;
  assert.deepEqual(web.endpoints.map((e) => `${e.ip}@${e.node}`), ['10.244.1.2@node-1', '10.244.2.2@node-2']);
  assert.deepEqual(web.ports, [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'http', nodePort: 0 }]);
  assert.equal(web.clusterIP, ipv4ToString(second.ports.find((p) => p.key === 'default/web:http')!.clusterIP));
});

test('a bad file is reported and the last good state keeps serving; the fix is applied', async (t) => {
  const h = await harness(t, { 'svc.yaml': WEB, 'pods.yaml': pod('web-1', 'web', '10.244.1.2') });
  writeFileSync(join(h.dir, 'pods.yaml'), `${pod('web-1', 'web', '10.244.1.2')}${pod('web-2', 'web', '10.244.2.300')}`);
  await waitFor(() => h.errors.length > 0, 5000, 10);
  const err = h.errors[0] as ManifestError;
  assert.ok(err instanceof ManifestError);
  assert.equal(err.code, 'TAPIR_MANIFEST_INVALID');
  assert.deepEqual(err.problems, ['pods.yaml: document 2 (Pod default/web-2): status.podIP: "10.244.2.300" must be a valid IP address (such as 10.0.0.10 or fd00::10)']);
  assert.deepEqual(h.controller.problems(), err.problems);
  await h.controller.flush();
  assert.equal(h.snapshots.length, 1, 'nothing new was compiled');
  assert.deepEqual(endpointsOf(h.controller.snapshot!, 'default/web:http'), ['10.244.1.2:8080']);

  writeFileSync(join(h.dir, 'pods.yaml'), `${pod('web-1', 'web', '10.244.1.2')}${pod('web-2', 'web', '10.244.2.3')}`);
  await waitFor(() => h.snapshots.length === 2, 5000, 10);
  assert.deepEqual(endpointsOf(h.snapshots[1]!, 'default/web:http'), ['10.244.1.2:8080', '10.244.2.3:8080']);
  assert.deepEqual(h.controller.problems(), []);
});

test('a service with a colliding node port is rejected; the others keep working', async (t) => {
  const nodePorts = (name: string, port: number) => `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080, nodePort: ${port}}]\n---\n`;
  const h = await harness(t, { 'a.yaml': nodePorts('alpha', 30080), 'pods.yaml': pod('web-1', 'web', '10.244.1.2') });
  writeFileSync(join(h.dir, 'b.yaml'), nodePorts('beta', 30080) + nodePorts('gamma', 30081));
  await waitFor(() => h.snapshots.length === 2, 5000, 10);
  assert.deepEqual(h.snapshots[1]!.ports.map((p) => `${p.key} ${p.nodePort}`), ['default/alpha: 30080', 'default/gamma: 30081']);
  const rejected = h.errors.filter((e): e is ServiceRejectedError => e instanceof ServiceRejectedError);
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0]!.code, 'TAPIR_SERVICE_REJECTED');
  assert.deepEqual(rejected[0]!.problems, ['b.yaml: document 1 (Service default/beta): spec.ports[0].nodePort: 30080 is already allocated to Service default/alpha (spec.ports[0].nodePort)']);
  const beta = h.controller.describe().find((s) => s.name === 'beta')!;
  assert.equal(beta.clusterIP, '');
  assert.deepEqual(beta.problems, rejected[0]!.problems);
  // Reported once, not at every sync.
  await h.controller.flush();
  assert.equal(h.errors.filter((e) => e instanceof ServiceRejectedError).length, 1);
});

test('a burst of 100 file writes is compiled in one or two syncs', async (t) => {
  // minInterval 1 s: the writes, the watch events and the directory scans all land well
  // inside it, so the runner has one or two syncs to coalesce them into.
  const h = await harness(t, { 'svc.yaml': WEB }, 1000);
  const before = h.controller.syncs;
  for (let i = 0; i < 100; i++) writeFileSync(join(h.dir, `pod-${i}.yaml`), pod(`web-${i}`, 'web', `10.244.3.${i + 1}`));
  await waitFor(() => endpointsOf(h.controller.snapshot!, 'default/web:http').length === 100, 10_000, 20);
  const syncs = h.controller.syncs - before;
  assert.ok(syncs >= 1 && syncs <= 2, `${syncs} syncs`);
  assert.ok(h.snapshots.length <= 3);
});
