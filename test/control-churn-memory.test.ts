// Nothing of a deleted object stays behind on the services side: after Services,
// EndpointSlices (hand-written), Endpoints, Pods and selector Services come and go under
// new names cycle after cycle, every per-object map of ServiceProxyState is empty again
// (issue 8: an agent's RSS after deleting 25,000 services; bench/service-churn-memory.ts
// measures it). An empty map per deleted service's name stayed in slicesByService.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ServiceProxyState } from '../src/control/service-proxy-state.ts';
import { parseManifest } from '../src/k8s/manifest.ts';
import type { K8sObject } from '../src/k8s/objects.ts';
import { parseCidr } from '../src/wire/address.ts';
import { DEFAULT_NODE_PORT_RANGE } from '../src/model/cluster-defaults.ts';

function objects(cycle: number, n: number): K8sObject[] {
  const docs: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = `c${cycle}-s${i}`;
    // A selectorless Service with a hand-written slice, one with a selector and a pod,
    // and one fed by a legacy Endpoints object.
    docs.push(`apiVersion: v1
kind: Service
metadata: { name: ${name} }
spec: { ports: [{ name: http, port: 80, targetPort: 8080 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${name}-1, labels: { kubernetes.io/service-name: ${name} } }
addressType: IPv4
endpoints: [{ addresses: [10.244.1.${2 + (i % 200)}], nodeName: node-1 }]
ports: [{ name: http, port: 8080, protocol: TCP }]
---
apiVersion: v1
kind: Service
metadata: { name: ${name}-sel }
spec: { selector: { app: ${name} }, ports: [{ name: http, port: 80, targetPort: 8080 }] }
---
apiVersion: v1
kind: Pod
metadata: { name: ${name}-pod, labels: { app: ${name} } }
spec: { nodeName: node-1, containers: [{ name: c, ports: [{ containerPort: 8080 }] }] }
status: { podIP: 10.244.1.${2 + (i % 200)}, conditions: [{ type: Ready, status: "True" }] }
---
apiVersion: v1
kind: Service
metadata: { name: ${name}-ep }
spec: { ports: [{ name: http, port: 80, targetPort: 8080 }] }
---
apiVersion: v1
kind: Endpoints
metadata: { name: ${name}-ep }
subsets: [{ addresses: [{ ip: 10.244.1.9, nodeName: node-1 }], ports: [{ name: http, port: 8080 }] }]
`);
  }
  const parsed = parseManifest(docs.join('---\n'), 'churn.yaml');
  assert.deepEqual(parsed.problems, []);
  return parsed.objects;
}

test('services, slices, endpoints and pods deleted under ever new names leave no entry in any map of the proxy state', () => {
  const state = new ServiceProxyState({ name: 'node-1', nodePortAddresses: ['172.30.0.11'] }, { serviceCIDR: parseCidr('10.96.0.0/16')!, nodePortRange: DEFAULT_NODE_PORT_RANGE });
  const empty = state.retained();
  for (const [k, v] of Object.entries(empty)) assert.equal(v, 0, k);
  for (let cycle = 1; cycle <= 3; cycle++) {
    const objs = objects(cycle, 20);
    state.apply(objs.map((current) => ({ previous: undefined, current })));
    const { snapshot } = state.sync();
    assert.equal(snapshot.ports.length, 60, `cycle ${cycle}: every service programmed`);
    assert.ok(state.retained().slicesByService! > 0);
    // Deleted slices first, in another sync, then the rest (the order the API may use).
    state.apply(objs.filter((o) => o.kind === 'EndpointSlice').map((previous) => ({ previous, current: undefined })));
    state.sync();
    state.apply(objs.filter((o) => o.kind !== 'EndpointSlice').map((previous) => ({ previous, current: undefined })));
    assert.equal(state.sync().snapshot.ports.length, 0);
    assert.deepEqual(state.retained(), empty, `cycle ${cycle}: nothing kept for deleted objects`);
  }
});
