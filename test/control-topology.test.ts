// kube-proxy's endpoint selection rules (CategorizeEndpoints) and the traffic policies
// as compiled per node, case by case; the golden test covers them together.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileService } from '../src/control/compile.ts';
import { categorizeEndpoints, type HintedEndpoint } from '../src/control/topology.ts';
import { parseManifest } from '../src/k8s/manifest.ts';
import type { EndpointSliceObject, ServiceObject } from '../src/k8s/objects.ts';
import type { EndpointSpec } from '../src/model/service-snapshot.ts';
import { ipv4ToString } from '../src/wire/address.ts';

interface EpArgs { node: string; zone?: string; ready?: boolean; serving?: boolean; terminating?: boolean; forZones?: string[]; forNodes?: string[] }

let nextIp = 1;
function ep(a: EpArgs, localNode = 'node-1'): HintedEndpoint {
  const ready = a.ready ?? true;
  const spec: EndpointSpec = {
    ip: (10 << 24) + nextIp++, port: 80, nodeName: a.node, local: a.node === localNode, zone: a.zone ?? '',
    ready, serving: a.serving ?? ready, terminating: a.terminating ?? false,
  };
  return { spec, forZones: a.forZones ?? [], forNodes: a.forNodes ?? [] };
}

const nodes = (list: EndpointSpec[]) => list.map((e) => e.nodeName);

test('zone hints narrow cluster endpoints only when every ready endpoint has one and some are for this zone', () => {
  const all = [
    ep({ node: 'node-1', forZones: ['zone-a'] }),
    ep({ node: 'node-2', forZones: ['zone-b'] }),
    ep({ node: 'node-3', forZones: ['zone-b'] }),
    ep({ node: 'node-4', ready: false }), // not ready: its missing hint does not matter
  ];
  const r = categorizeEndpoints(all, true, false, 'node-1', 'zone-a');
  assert.equal(r.topologyMode, 'PreferSameZone');
  assert.deepEqual(nodes(r.cluster), ['node-1']);
  assert.deepEqual(nodes(categorizeEndpoints(all, true, false, 'node-2', 'zone-b').cluster), ['node-2', 'node-3']);
  // No endpoint hinted for zone-c: hints ignored, every ready endpoint used.
  assert.deepEqual(nodes(categorizeEndpoints(all, true, false, 'node-9', 'zone-c').cluster), ['node-1', 'node-2', 'node-3']);
  // A node without a zone label ignores zone hints.
  assert.deepEqual(nodes(categorizeEndpoints(all, true, false, 'node-9', '').cluster), ['node-1', 'node-2', 'node-3']);
  // One ready endpoint without a hint: hints ignored everywhere.
  const partial = [...all, ep({ node: 'node-5' })];
  const p = categorizeEndpoints(partial, true, false, 'node-1', 'zone-a');
  assert.equal(p.topologyMode, '');
  assert.deepEqual(nodes(p.cluster), ['node-1', 'node-2', 'node-3', 'node-5']);
});

test('node hints (PreferSameNode) win over zone hints, and fall back to them', () => {
  const all = [
    ep({ node: 'node-1', forZones: ['zone-a'], forNodes: ['node-1'] }),
    ep({ node: 'node-2', forZones: ['zone-a'], forNodes: ['node-2'] }),
    ep({ node: 'node-3', forZones: ['zone-b'], forNodes: ['node-3'] }),
  ];
  assert.deepEqual(nodes(categorizeEndpoints(all, true, false, 'node-2', 'zone-a').cluster), ['node-2']);
  const r = categorizeEndpoints(all, true, false, 'node-4', 'zone-a');
  assert.equal(r.topologyMode, 'PreferSameZone', 'no endpoint on node-4: same zone instead');
  assert.deepEqual(nodes(r.cluster), ['node-1', 'node-2']);
});

test('no ready endpoint: serving+terminating ones, topology ignored', () => {
  const all = [
    ep({ node: 'node-1', ready: false, serving: true, terminating: true, forZones: ['zone-a'] }),
    ep({ node: 'node-2', ready: false, serving: true, terminating: true, forZones: ['zone-b'] }),
    ep({ node: 'node-3', ready: false, serving: false, terminating: true }),
    ep({ node: 'node-4', ready: false, serving: true, terminating: false }),
  ];
  assert.deepEqual(nodes(categorizeEndpoints(all, true, false, 'node-1', 'zone-a').cluster), ['node-1', 'node-2']);
});

test('local endpoints: ready local ones, else serving+terminating local ones', () => {
  const localReady = [ep({ node: 'node-1' }), ep({ node: 'node-1', ready: false, serving: true, terminating: true }), ep({ node: 'node-2' })];
  assert.equal(categorizeEndpoints(localReady, false, true, 'node-1', '').local.length, 1);
  assert.deepEqual(categorizeEndpoints(localReady, false, true, 'node-1', '').cluster, [], 'cluster list not computed when unused');
  const localDraining = [ep({ node: 'node-1', ready: false, serving: true, terminating: true }), ep({ node: 'node-2' })];
  const r = categorizeEndpoints(localDraining, true, true, 'node-1', '');
  assert.deepEqual(nodes(r.local), ['node-1']);
  assert.deepEqual(nodes(r.cluster), ['node-2'], 'cluster traffic prefers the ready remote endpoint');
});

function compile(serviceYaml: string, node: string) {
  const parsed = parseManifest(`apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n${serviceYaml}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s-1, labels: {kubernetes.io/service-name: s}}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
  - {addresses: [10.244.1.2], nodeName: node-1}
  - {addresses: [10.244.2.2], nodeName: node-2}
  - {addresses: [10.244.2.3], nodeName: node-2, conditions: {ready: false, serving: true, terminating: true}}
`, 's.yaml');
  assert.deepEqual(parsed.problems, []);
  const [svc, slice] = parsed.objects as [ServiceObject, EndpointSliceObject];
  const ports = compileService(svc, { clusterIP: 0x0a600001, clusterIPs: ['10.96.0.1'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', nodePorts: svc.spec.ports.map((_p, i) => (svc.spec.type === 'ClusterIP' ? 0 : 30000 + i)), healthCheckNodePort: 31000 }, [slice], { name: node, zone: '', nodePortAddresses: [] });
  return ports.map((p) => ({
    cluster: p.clusterEndpoints.map((e) => ipv4ToString(e.ip)),
    external: p.externalEndpoints.map((e) => ipv4ToString(e.ip)),
    externalLocal: p.externalLocal,
    healthCheckNodePort: p.healthCheckNodePort,
    localReady: p.localReadyEndpoints,
  }));
}

test('externalTrafficPolicy Local: external traffic to local endpoints only, internal traffic to all', () => {
  const yaml = '  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: 8080}]\n';
  assert.deepEqual(compile(yaml, 'node-1'), [{ cluster: ['10.244.1.2', '10.244.2.2'], external: ['10.244.1.2'], externalLocal: true, healthCheckNodePort: 31000, localReady: 1 }]);
  assert.deepEqual(compile(yaml, 'node-3'), [{ cluster: ['10.244.1.2', '10.244.2.2'], external: [], externalLocal: true, healthCheckNodePort: 31000, localReady: 0 }]);
  // Cluster policy: external traffic may go anywhere, no health check.
  assert.deepEqual(compile('  type: NodePort\n  ports: [{port: 80, targetPort: 8080}]\n', 'node-3'), [{ cluster: ['10.244.1.2', '10.244.2.2'], external: ['10.244.1.2', '10.244.2.2'], externalLocal: false, healthCheckNodePort: 0, localReady: 0 }]);
});

test('internalTrafficPolicy Local: cluster-IP traffic to local endpoints only, none elsewhere', () => {
  const yaml = '  internalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: 8080}]\n';
  assert.deepEqual(compile(yaml, 'node-2').map((p) => p.cluster), [['10.244.2.2']]);
  assert.deepEqual(compile(yaml, 'node-3').map((p) => p.cluster), [[]]);
  // With a node port too, external traffic still uses every endpoint (externalTrafficPolicy Cluster).
  const np = compile('  type: NodePort\n  internalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: 8080}]\n', 'node-3');
  assert.deepEqual(np.map((p) => [p.cluster, p.external]), [[[], ['10.244.1.2', '10.244.2.2']]]);
});

test('a ClusterIP service has no external endpoints; externalIPs make it reachable from outside', () => {
  assert.deepEqual(compile('  ports: [{port: 80, targetPort: 8080}]\n', 'node-1').map((p) => p.external), [[]]);
  assert.deepEqual(compile('  externalIPs: [192.0.2.1]\n  externalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: 8080}]\n', 'node-1').map((p) => [p.external, p.externalLocal]), [[['10.244.1.2'], true]]);
});
