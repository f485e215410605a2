// Cluster mode's compile: the API server allocated and kube-controller-manager wrote the
// EndpointSlices, so the controller takes each Service's addresses and node ports as
// written (even outside the ranges it would allocate from), derives no slice from Pods
// or Endpoints, and leaves out a Service the API has not yet given an address. The
// objects come from a manifest directory standing for the API's lists (the API source
// itself is tested in k8s-api-source.test.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ServiceController } from '../src/control/service-controller.ts';
import { ManifestDir } from '../src/k8s/manifest-dir.ts';
import type { ServiceSnapshot } from '../src/model/service-snapshot.ts';
import { ipv4ToString } from '../src/wire/address.ts';
import { waitFor } from './helpers/netns.ts';

const OBJECTS = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 172.20.5.5
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 31999}]
---
apiVersion: v1
kind: Service
metadata: {name: pending, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 81}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abcde, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - {addresses: [10.244.2.7], conditions: {ready: true}, nodeName: node-2}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: default, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: c, ports: [{containerPort: 8080}]}]
status:
  podIP: 10.244.1.9
  conditions: [{type: Ready, status: "True"}]
`;

function harness(t: { after(fn: () => void): void }, cluster: boolean): { controller: ServiceController; snapshots: ServiceSnapshot[] } {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-cluster-mode-'));
  writeFileSync(join(dir, 'objects.yaml'), OBJECTS);
  const snapshots: ServiceSnapshot[] = [];
  const controller = new ServiceController({
    source: new ManifestDir({ dir, rescanIntervalMs: 60_000, debounceMs: 20 }),
    node: { name: 'node-1', nodePortAddresses: ['10.0.0.1'] },
    cluster,
    minSyncIntervalMs: 20,
    onSnapshot: (s) => snapshots.push(s),
    onError: () => {},
  });
  t.after(() => {
    controller.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { controller, snapshots };
}

test('cluster mode: addresses and node ports as the API wrote them, endpoints only from the API\'s slices', async (t) => {
  const { controller, snapshots } = harness(t, true);
  await controller.start();
  await waitFor(() => snapshots.length > 0);
  const ports = snapshots.at(-1)!.ports;
  assert.deepEqual(ports.map((p) => p.name), ['web'], 'the Service without an address yet is not programmed');
  const web = ports[0]!;
  assert.equal(ipv4ToString(web.clusterIP), '172.20.5.5', 'outside the default service CIDR, taken as written');
  assert.equal(web.nodePort, 31999);
  assert.deepEqual(web.clusterEndpoints.map((e) => `${ipv4ToString(e.ip)}:${e.port}`), ['10.244.2.7:8080'],
    'the slice the API lists, not one derived from the Pod web-1');
});

test('manifest mode, the same objects: it allocates and derives slices from Pods itself', async (t) => {
  const { controller, snapshots } = harness(t, false);
  await controller.start();
  await waitFor(() => snapshots.length > 0);
  const names = snapshots.at(-1)!.ports.map((p) => p.name).sort();
  assert.deepEqual(names, ['pending'], 'web is rejected (172.20.5.5 is outside the service CIDR); pending gets an address');
  const pending = snapshots.at(-1)!.ports[0]!;
  assert.ok(pending.clusterEndpoints.some((e) => ipv4ToString(e.ip) === '10.244.1.9'), 'an endpoint derived from the Pod');
});
