// The lab speaker's election (src/lab/node/speaker.ts): which node announces each
// load-balancer and external IP on the underlay. Services with nothing to announce are
// passed over before anything else is done with them (10k ClusterIP Services cost the
// daemon a sort and a description each on every view).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceDescription } from '../src/control/describe.ts';
import type { ServiceObject } from '../src/k8s/objects.ts';
import { validateDocument } from '../src/k8s/validate.ts';
import { announces, electAnnouncers } from '../src/lab/node/speaker.ts';
import { parseCidr } from '../src/wire/address.ts';

function service(name: string, spec: Record<string, unknown>, lb: string[] = []): ServiceObject {
  const problems: string[] = [];
  const obj = validateDocument({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { ports: [{ port: 80 }], ...spec }, status: { loadBalancer: { ingress: lb.map((ip) => ({ ip })) } } }, { source: 'api', server: 'https://test' }, problems);
  assert.deepEqual(problems, []);
  return obj as ServiceObject;
}

function described(name: string, readyOn: string[]): ServiceDescription {
  return { name, namespace: 'default', endpoints: readyOn.map((node, i) => ({ ip: `10.244.0.${i + 2}`, node, ready: true, serving: true, terminating: false })) } as unknown as ServiceDescription;
}

test('electAnnouncers: load-balancer and external IPs on the underlay, Local ones on a node with a ready endpoint; the rest passed over', () => {
  const config = { nodes: ['node-1', 'node-2'], underlay: parseCidr('172.30.0.0/24')! };
  const services = [
    service('plain', { clusterIP: '10.96.0.5' }),
    service('lb', { type: 'LoadBalancer', clusterIP: '10.96.0.6' }, ['172.30.0.201']),
    service('lb-local', { type: 'LoadBalancer', clusterIP: '10.96.0.7', externalTrafficPolicy: 'Local' }, ['172.30.0.202']),
    service('lb-elsewhere', { type: 'LoadBalancer', clusterIP: '10.96.0.8' }, ['192.0.2.9']),
    service('ext', { clusterIP: '10.96.0.9', externalIPs: ['172.30.0.50'] }),
    service('lb-pending', { type: 'LoadBalancer', clusterIP: '10.96.0.10' }),
  ];
  assert.deepEqual(services.filter(announces).map((s) => s.metadata.name), ['lb', 'lb-local', 'lb-elsewhere', 'ext']);
  const announcers = electAnnouncers(services, [described('lb-local', ['node-2'])], config);
  assert.deepEqual([...announcers].sort(), [['172.30.0.201', 'node-1'], ['172.30.0.202', 'node-2'], ['172.30.0.50', 'node-1']]);
  // node-1 unhealthy: node-2 takes what node-1 announced.
  assert.deepEqual([...electAnnouncers(services, [described('lb-local', ['node-2'])], config, new Set(['node-2']))].sort(), [['172.30.0.201', 'node-2'], ['172.30.0.202', 'node-2'], ['172.30.0.50', 'node-2']]);
  // A Local Service with no ready endpoint anywhere is announced by nobody.
  assert.equal(electAnnouncers(services, [], config).has('172.30.0.202'), false);
});
