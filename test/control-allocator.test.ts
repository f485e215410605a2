// Cluster IP and node port allocation: requested values honoured, collisions and
// out-of-range values rejected per service, and results that depend only on the set of
// services (every node computes the same) and stay put when unrelated services change.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allocateServices, type AllocatorConfig } from '../src/control/allocator.ts';
import { parseManifest } from '../src/k8s/manifest.ts';
import type { ServiceObject } from '../src/k8s/objects.ts';
import { formatPortRange, parsePortRange } from '../src/model/cluster-defaults.ts';
import { parseCidr } from '../src/wire/address.ts';
import { ipv4ToString } from '../src/wire/address.ts';

const CONFIG: AllocatorConfig = { serviceCIDR: parseCidr('10.96.0.0/16')!, nodePortRange: { min: 30000, max: 32767 } };

function services(text: string): ServiceObject[] {
  const parsed = parseManifest(text, 'svc.yaml');
  assert.deepEqual(parsed.problems, []);
  return parsed.objects as ServiceObject[];
}

function svc(name: string, spec = 'ports: [{port: 80}]', namespace = 'default'): string {
  return `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}, namespace: ${namespace}}\nspec: {${spec}}\n---\n`;
}

function summary(list: ServiceObject[], config = CONFIG): Record<string, string> {
  const result = allocateServices(list, config);
  const out: Record<string, string> = {};
  for (const [key, a] of result.allocations) out[key] = `${ipv4ToString(a.clusterIP)} ${a.nodePorts.join(',')} hc=${a.healthCheckNodePort}`;
  for (const [key, problems] of result.rejected) out[key] = `REJECTED ${problems.join(' | ')}`;
  return out;
}

test('requested values are honoured; the rest is allocated inside the ranges', () => {
  const list = services(svc('dns', 'clusterIP: 10.96.0.10, ports: [{port: 53, protocol: UDP}]')
    + svc('web', 'type: NodePort, ports: [{name: a, port: 80, nodePort: 30080}, {name: b, port: 81}]')
    + svc('lb', 'type: LoadBalancer, externalTrafficPolicy: Local, ports: [{port: 443}]')
    + svc('np-local', 'type: NodePort, externalTrafficPolicy: Local, ports: [{port: 443}]')
    + svc('no-np', 'type: LoadBalancer, allocateLoadBalancerNodePorts: false, ports: [{port: 443}]')
    + svc('headless', 'clusterIP: None, ports: [{port: 80}]')
    + svc('kubernetes', 'clusterIP: 10.96.0.1, ports: [{port: 443}]'));
  const result = allocateServices(list, CONFIG);
  assert.equal(result.rejected.size, 0);
  const a = (key: string) => result.allocations.get(key)!;
  assert.equal(ipv4ToString(a('default/dns').clusterIP), '10.96.0.10');
  assert.equal(ipv4ToString(a('default/kubernetes').clusterIP), '10.96.0.1', 'the first address only on request');
  assert.equal(a('default/web').nodePorts[0], 30080);
  assert.equal(a('default/headless').clusterIP, 0);
  assert.deepEqual(a('default/no-np').nodePorts, [0]);
  assert.equal(a('default/np-local').healthCheckNodePort, 0, 'only LoadBalancer services get a health check node port');
  assert.notEqual(a('default/lb').healthCheckNodePort, 0);
  const ips = [...result.allocations.values()].map((x) => x.clusterIP).filter((ip) => ip !== 0);
  const ports = [...result.allocations.values()].flatMap((x) => [...x.nodePorts, x.healthCheckNodePort]).filter((p) => p !== 0);
  assert.equal(new Set(ips).size, ips.length, 'cluster IPs are unique');
  assert.equal(new Set(ports).size, ports.length, 'node ports are unique');
  for (const ip of ips) assert.ok(CONFIG.serviceCIDR.contains(ip));
  for (const p of ports) assert.ok(p >= 30000 && p <= 32767);
  // Allocated values stay out of the static band kept for requests (256 addresses, 86 ports here).
  for (const key of ['default/web', 'default/lb', 'default/np-local']) assert.ok(a(key).clusterIP >= CONFIG.serviceCIDR.network + 2 + 256);
  assert.ok(a('default/web').nodePorts[1]! >= 30086);
});

test('out-of-range requests reject that service only', () => {
  const out = summary(services(svc('a', 'clusterIP: 10.97.0.1, ports: [{port: 80}]')
    + svc('b', 'type: NodePort, ports: [{port: 80, nodePort: 29999}]')
    + svc('c', 'type: LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort: 40000, ports: [{port: 80}]')
    + svc('d', 'clusterIP: 10.96.255.255, ports: [{port: 80}]')
    + svc('ok')));
  assert.equal(out['default/a'], 'REJECTED svc.yaml: document 1 (Service default/a): spec.clusterIP: 10.97.0.1 is not in the service CIDR 10.96.0.0/16');
  assert.equal(out['default/b'], 'REJECTED svc.yaml: document 2 (Service default/b): spec.ports[0].nodePort: 29999 is out of the node port range 30000-32767');
  assert.equal(out['default/c'], 'REJECTED svc.yaml: document 3 (Service default/c): spec.healthCheckNodePort: 40000 is out of the node port range 30000-32767');
  assert.equal(out['default/d'], 'REJECTED svc.yaml: document 4 (Service default/d): spec.clusterIP: 10.96.255.255 is the broadcast address of the service CIDR 10.96.0.0/16');
  assert.doesNotMatch(out['default/ok']!, /REJECTED/);
});

test('collisions between requests: the later service (by namespace/name) is rejected', () => {
  const list = services(svc('b', 'clusterIP: 10.96.0.10, ports: [{port: 80}]')
    + svc('a', 'clusterIP: 10.96.0.10, ports: [{port: 80}]')
    + svc('x', 'type: NodePort, ports: [{port: 80, nodePort: 30080}]', 'demo')
    + svc('y', 'type: NodePort, ports: [{port: 80}, {name: two, port: 81, nodePort: 30080}]'.replace('{port: 80}', '{name: one, port: 80}')));
  const out = summary(list);
  assert.match(out['default/a']!, /^10\.96\.0\.10 /);
  assert.equal(out['default/b'], 'REJECTED svc.yaml: document 1 (Service default/b): spec.clusterIP: 10.96.0.10 is already allocated to Service default/a (spec.clusterIP)');
  assert.match(out['default/y']!, / [0-9]+,30080 /, 'default/y sorts before demo/x and keeps its request');
  assert.equal(out['demo/x'], 'REJECTED svc.yaml: document 3 (Service demo/x): spec.ports[0].nodePort: 30080 is already allocated to Service default/y (spec.ports[1].nodePort)');
  // A rejected service holds nothing: its auto-allocated values are free for others.
  const rejectedHolds = allocateServices(list, CONFIG);
  const all = [...rejectedHolds.allocations.values()].flatMap((x) => x.nodePorts);
  assert.equal(all.filter((p) => p === 30080).length, 1);
});

test('the same set in any order gives the same allocation (every node agrees)', () => {
  const text = Array.from({ length: 40 }, (_, i) => svc(`s${i}`, i % 3 === 0 ? 'type: NodePort, ports: [{port: 80}]' : 'ports: [{port: 80}]', i % 2 === 0 ? 'default' : 'demo')).join('');
  const list = services(text);
  const shuffled = [...list].sort(() => Math.random() - 0.5);
  assert.deepEqual(summary(shuffled), summary(list));
  assert.deepEqual(summary([...list].reverse()), summary(list));
});

test('allocations stay put when other services come and go', () => {
  const base = services(Array.from({ length: 30 }, (_, i) => svc(`s${i}`, 'type: NodePort, ports: [{port: 80}]')).join(''));
  const before = summary(base);
  const more = summary([...base, ...services(svc('new-one', 'type: NodePort, ports: [{port: 80}]') + svc('new-two', 'clusterIP: 10.96.0.20, ports: [{port: 80}]'))]);
  const fewer = summary(base.slice(5));
  for (const [key, value] of Object.entries(before)) {
    assert.equal(more[key], value, `${key} unchanged by additions`);
    if (key in fewer) assert.equal(fewer[key], value, `${key} unchanged by removals`);
  }
});

test('a full range rejects the services that do not fit, clearly', () => {
  // /29: 8 addresses, less the network, the first (kubernetes) and the broadcast address.
  const small: AllocatorConfig = { serviceCIDR: parseCidr('10.96.0.0/29')!, nodePortRange: { min: 30000, max: 30001 } };
  const out = summary(services(Array.from({ length: 6 }, (_, i) => svc(`s${i}`)).join('')), small);
  assert.equal(Object.values(out).filter((v) => !v.startsWith('REJECTED')).length, 5);
  assert.equal(out['default/s5'], 'REJECTED svc.yaml: document 6 (Service default/s5): spec.clusterIP: no address in the service CIDR 10.96.0.0/29 is free');
  const ports = summary(services(svc('a', 'type: NodePort, ports: [{name: x, port: 80}, {name: y, port: 81}, {name: z, port: 82}]')), small);
  assert.match(ports['default/a']!, /^REJECTED .*spec\.ports\[2\]\.nodePort: no node port in 30000-30001 is free$/);
});

test('node port range parsing (the one parser, in src/model/cluster-defaults.ts)', () => {
  assert.deepEqual(parsePortRange('30000-32767'), { min: 30000, max: 32767 });
  assert.equal(parsePortRange('32767-30000'), undefined);
  assert.equal(parsePortRange('0-100'), undefined);
  assert.equal(parsePortRange('30000'), undefined);
  assert.equal(formatPortRange(parsePortRange('30000-32767')!), '30000-32767');
});
