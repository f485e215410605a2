// The endpoints controller (pods -> EndpointSlices) and Endpoints mirroring.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { endpointSlicesForService, findPort } from '../src/control/endpoints-controller.ts';
import { mirrorEndpoints } from '../src/k8s/endpoints-mirror.ts';
import { parseManifest } from '../src/k8s/manifest.ts';
import type { EndpointsObject, K8sObject, NodeObject, PodObject, ServiceObject } from '../src/k8s/objects.ts';

function load(text: string): K8sObject[] {
  const parsed = parseManifest(text, 'test.yaml');
  assert.deepEqual(parsed.problems, []);
  return parsed.objects;
}

interface PodArgs { name: string; ip?: string; node?: string; ready?: boolean; labels?: string; ports?: string; deleting?: boolean; phase?: string; namespace?: string }

function pod(a: PodArgs): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${a.name}, namespace: ${a.namespace ?? 'default'}, labels: {${a.labels ?? 'app: web'}}${a.deleting === true ? ', deletionTimestamp: "2025-01-01T00:00:00Z"' : ''}}
spec:
  nodeName: ${a.node ?? 'node-1'}
  containers: [{name: c, ports: [${a.ports ?? '{name: http, containerPort: 8080}'}]}]
status:
  phase: ${a.phase ?? 'Running'}
  ${a.ip === undefined ? '' : `podIP: ${a.ip}`}
  conditions: [{type: Ready, status: "${a.ready === false ? 'False' : 'True'}"}]
---
`;
}

const NODES = `apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {topology.kubernetes.io/zone: zone-a}}
---
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {topology.kubernetes.io/zone: zone-b}}
---
`;

function setup(serviceSpec: string, pods: string) {
  const objects = load(`${NODES}${pods}apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n${serviceSpec}`);
  const nodes = new Map(objects.filter((o): o is NodeObject => o.kind === 'Node').map((n) => [n.metadata.name, n]));
  const podList = objects.filter((o): o is PodObject => o.kind === 'Pod');
  const svc = objects.find((o): o is ServiceObject => o.kind === 'Service')!;
  return endpointSlicesForService(svc, podList, nodes);
}

const summary = (slices: ReturnType<typeof setup>) => slices.map((s) => ({
  ports: s.ports.map((p) => `${p.name}=${p.port}/${p.protocol}`).join(','),
  endpoints: s.endpoints.map((e) => `${e.address}@${e.nodeName}/${e.zone}${e.ready ? ' ready' : ''}${e.serving ? ' serving' : ''}${e.terminating ? ' terminating' : ''}`),
}));

test('named target ports resolve per pod; a pod without the port is left out of it', () => {
  const slices = setup(
    '  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}, {name: metrics, port: 9090, targetPort: metrics}]\n',
    pod({ name: 'a', ip: '10.244.1.2', ports: '{name: http, containerPort: 8080}, {name: metrics, containerPort: 9100}' })
      + pod({ name: 'b', ip: '10.244.2.2', node: 'node-2', ports: '{name: http, containerPort: 8081}' })
      + pod({ name: 'c', ip: '10.244.1.3', ports: '{name: other, containerPort: 7000}' })
      + pod({ name: 'd', ip: '10.244.1.4', ports: '{name: http, containerPort: 8080}, {name: metrics, containerPort: 9100}' }),
  );
  // c serves neither port: no endpoint at all. One slice per distinct port mapping.
  assert.deepEqual(summary(slices), [
    { ports: 'http=8080/TCP,metrics=9100/TCP', endpoints: ['10.244.1.2@node-1/zone-a ready serving', '10.244.1.4@node-1/zone-a ready serving'] },
    { ports: 'http=8081/TCP', endpoints: ['10.244.2.2@node-2/zone-b ready serving'] },
  ]);
  for (const s of slices) assert.equal(s.serviceName, 'web');
});

test('a named port must match the service port protocol', () => {
  const [p] = load(pod({ name: 'a', ip: '10.244.1.2', ports: '{name: dns, containerPort: 5353, protocol: UDP}' })).filter((o): o is PodObject => o.kind === 'Pod');
  assert.equal(findPort(p!, 'dns', 'UDP'), 5353);
  assert.equal(findPort(p!, 'dns', 'TCP'), undefined);
  assert.equal(findPort(p!, 8080, 'TCP'), 8080, 'numeric target ports need no container port');
});

test('conditions: terminating pods, not-ready pods; pods without IP, finished or elsewhere are no endpoints', () => {
  const slices = setup(
    '  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n',
    pod({ name: 'ready', ip: '10.244.1.2' })
      + pod({ name: 'unready', ip: '10.244.1.3', ready: false })
      + pod({ name: 'draining', ip: '10.244.1.4', deleting: true })
      + pod({ name: 'dying', ip: '10.244.1.5', deleting: true, ready: false })
      + pod({ name: 'pending' })
      + pod({ name: 'done', ip: '10.244.1.6', phase: 'Succeeded' })
      + pod({ name: 'other-ns', ip: '10.244.1.7', namespace: 'demo' })
      + pod({ name: 'other-app', ip: '10.244.1.8', labels: 'app: api' }),
  );
  assert.deepEqual(summary(slices), [{
    ports: '=8080/TCP',
    endpoints: [
      '10.244.1.2@node-1/zone-a ready serving',
      '10.244.1.3@node-1/zone-a',
      '10.244.1.4@node-1/zone-a serving terminating',
      '10.244.1.5@node-1/zone-a terminating',
    ],
  }]);
});

test('publishNotReadyAddresses makes every endpoint ready', () => {
  const slices = setup(
    '  selector: {app: web}\n  publishNotReadyAddresses: true\n  ports: [{port: 80}]\n',
    pod({ name: 'unready', ip: '10.244.1.3', ready: false }),
  );
  assert.deepEqual(summary(slices)[0]!.endpoints, ['10.244.1.3@node-1/zone-a ready']);
});

test('trafficDistribution becomes hints on ready endpoints', () => {
  const pods = pod({ name: 'a', ip: '10.244.1.2' }) + pod({ name: 'b', ip: '10.244.2.2', node: 'node-2' }) + pod({ name: 'c', ip: '10.244.2.3', node: 'node-2', ready: false })
    + pod({ name: 'd', ip: '10.244.3.2', node: 'node-unknown' });
  const hints = (distribution: string) => setup(`  selector: {app: web}\n  trafficDistribution: ${distribution}\n  ports: [{port: 80}]\n`, pods)[0]!.endpoints
    .map((e) => `${e.address} zones=${e.forZones.join(',')} nodes=${e.forNodes.join(',')}`);
  assert.deepEqual(hints('PreferClose'), ['10.244.1.2 zones=zone-a nodes=', '10.244.2.2 zones=zone-b nodes=', '10.244.2.3 zones= nodes=', '10.244.3.2 zones= nodes=']);
  assert.deepEqual(hints('PreferSameNode'), ['10.244.1.2 zones=zone-a nodes=node-1', '10.244.2.2 zones=zone-b nodes=node-2', '10.244.2.3 zones= nodes=', '10.244.3.2 zones= nodes=node-unknown']);
  const none = setup('  selector: {app: web}\n  ports: [{port: 80}]\n', pods)[0]!.endpoints;
  assert.ok(none.every((e) => e.forZones.length === 0 && e.forNodes.length === 0));
});

test('a service without a selector gets no generated slices', () => {
  assert.deepEqual(setup('  ports: [{port: 80}]\n', pod({ name: 'a', ip: '10.244.1.2' })), []);
});

test('Endpoints are mirrored into one slice per subset', () => {
  const [ep] = load(`apiVersion: v1
kind: Endpoints
metadata: {name: legacy}
subsets:
  - addresses: [{ip: 10.1.0.1, nodeName: node-1}]
    notReadyAddresses: [{ip: 10.1.0.2}]
    ports: [{name: db, port: 5432}]
  - addresses: [{ip: 10.1.0.3}]
    ports: [{name: db, port: 5433}, {name: dns, port: 53, protocol: UDP}]
`) as EndpointsObject[];
  const slices = mirrorEndpoints(ep!);
  assert.deepEqual(slices.map((s) => [s.serviceName, s.ports, s.endpoints.map((e) => `${e.address}@${e.nodeName} ${e.ready}`)]), [
    ['legacy', [{ name: 'db', port: 5432, protocol: 'TCP' }], ['10.1.0.1@node-1 true', '10.1.0.2@ false']],
    ['legacy', [{ name: 'db', port: 5433, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }], ['10.1.0.3@ true']],
  ]);
  const skipped = { ...ep!, metadata: { ...ep!.metadata, labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' } } };
  assert.deepEqual(mirrorEndpoints(skipped), []);
});
