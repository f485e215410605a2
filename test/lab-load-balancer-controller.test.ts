// The lab's load-balancer controller (src/lab/node/load-balancer-controller.ts) against
// a fake API client (unit test; the lab test drives the real one with kubectl): which
// Services get which address, what stays pending, what is written.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LabApiClient } from '../src/lab/apiserver/client.ts';
import { assignLoadBalancerIP6, assignLoadBalancerIPs, parsePool, parsePool6 } from '../src/lab/cluster/load-balancer.ts';
import { LoadBalancerController } from '../src/lab/node/load-balancer-controller.ts';
import type { ServiceObject } from '../src/k8s/objects.ts';
import { validateDocument } from '../src/k8s/validate.ts';

function svc(name: string, type: string, extra: { ingress?: string; loadBalancerIP?: string } = {}): { object: ServiceObject; raw: Record<string, unknown> } {
  const raw = {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name, namespace: 'default' },
    spec: { type, clusterIP: '10.96.0.10', ports: [{ port: 80, ...(type === 'ClusterIP' ? {} : { nodePort: 30080 }) }], ...(extra.loadBalancerIP === undefined ? {} : { loadBalancerIP: extra.loadBalancerIP }) },
    ...(extra.ingress === undefined ? {} : { status: { loadBalancer: { ingress: [{ ip: extra.ingress }] } } }),
  };
  const problems: string[] = [];
  const object = validateDocument(raw, { source: 'api', server: 'test' }, problems);
  assert.deepEqual(problems, []);
  return { object: object as ServiceObject, raw };
}

/** Answers GET with the raw Service, records every PATCH. */
function fakeApi(raws: Record<string, unknown>[]): { api: LabApiClient; patches: string[] } {
  const patches: string[] = [];
  const api = {
    request: async (method: string, path: string, body?: unknown) => {
      const name = path.split('/')[6]!;
      const raw = raws.find((r) => (r.metadata as { name: string }).name === name);
      if (raw === undefined) return { status: 404, body: { message: 'not found' } };
      if (method === 'GET') return { status: 200, body: raw };
      patches.push(`${name} ${JSON.stringify(body)}`);
      return { status: 200, body: raw };
    },
  } as unknown as LabApiClient;
  return { api, patches };
}

test('LoadBalancer Services without an address get the lowest free one, or the one they ask for; others are left alone', async () => {
  const services = [svc('has', 'LoadBalancer', { ingress: '172.30.0.200' }), svc('a', 'LoadBalancer'), svc('asks', 'LoadBalancer', { loadBalancerIP: '172.30.0.203' }), svc('b', 'LoadBalancer'), svc('plain', 'ClusterIP'), svc('np', 'NodePort')];
  const { api, patches } = fakeApi(services.map((s) => s.raw));
  const lb = new LoadBalancerController({ api, pool: parsePool('172.30.0.200-172.30.0.203')!, poolText: '172.30.0.200-172.30.0.203', log: () => undefined });
  assert.deepEqual(await lb.sync(services.map((s) => s.object)), []);
  const ingress = (ip: string): string => JSON.stringify({ status: { loadBalancer: { ingress: [{ ip, ipMode: 'VIP' }] } } });
  assert.deepEqual(patches, [`a ${ingress('172.30.0.201')}`, `asks ${ingress('172.30.0.203')}`, `b ${ingress('172.30.0.202')}`]);
});

test('an exhausted pool leaves the Service pending and says so; nothing is written', async () => {
  const services = [svc('has', 'LoadBalancer', { ingress: '172.30.0.200' }), svc('late', 'LoadBalancer')];
  const { api, patches } = fakeApi(services.map((s) => s.raw));
  const logged: string[] = [];
  const lb = new LoadBalancerController({ api, pool: parsePool('172.30.0.200/32')!, poolText: '172.30.0.200/32', log: (m) => logged.push(m) });
  assert.deepEqual(await lb.sync(services.map((s) => s.object)), ['Service default/late: no free address in the load balancer pool 172.30.0.200/32']);
  await lb.sync(services.map((s) => s.object));
  assert.deepEqual(patches, []);
  assert.equal(logged.length, 1, 'logged once');
});

test('IPv6 pool: FIRST-LAST within a /112; one address per family of the Service, in ipFamilies order', async () => {
  const pool6 = parsePool6('fd00:172:30::c8-fd00:172:30::ca')!;
  assert.equal(pool6.count, 3);
  assert.equal(parsePool6('fd00:172:30::c8-fd00:172:31::ca'), undefined, 'not within one /112');
  assert.equal(parsePool6('fd00:172:30::ca-fd00:172:30::c8'), undefined, 'backwards');
  assert.equal(assignLoadBalancerIP6(pool6, undefined, new Set(['fd00:172:30::c8'])), 'fd00:172:30::c9');
  assert.equal(assignLoadBalancerIP6(pool6, 'fd00:172:30:0::ca', new Set()), 'fd00:172:30::ca', 'the requested one, canonical');
  assert.equal(assignLoadBalancerIP6(pool6, 'fd00:172:30::ff', new Set()), 'fd00:172:30::c8', 'outside the pool: the lowest free one');
  assert.equal(assignLoadBalancerIP6(pool6, undefined, new Set(['fd00:172:30::c8', 'fd00:172:30::c9', 'fd00:172:30::ca'])), undefined);

  const dual = (name: string, families: string[]) => {
    const raw = {
      apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' },
      spec: { type: 'LoadBalancer', ipFamilyPolicy: families.length > 1 ? 'PreferDualStack' : 'SingleStack', ipFamilies: families, clusterIPs: families.map((f) => (f === 'IPv4' ? '10.96.0.20' : 'fd00:10:96::20')), ports: [{ port: 80, nodePort: 30080 }] },
    };
    const problems: string[] = [];
    const object = validateDocument(raw, { source: 'api', server: 'test' }, problems);
    assert.deepEqual(problems, []);
    return { object: object as ServiceObject, raw };
  };
  const services = [dual('both', ['IPv6', 'IPv4']), dual('six', ['IPv6']), dual('four', ['IPv4'])];
  const { api, patches } = fakeApi(services.map((s) => s.raw));
  const lb = new LoadBalancerController({ api, pool: parsePool('172.30.0.200-172.30.0.203')!, pool6, poolText: '172.30.0.200-172.30.0.203', log: () => undefined });
  assert.deepEqual(await lb.sync(services.map((s) => s.object)), []);
  const ingress = (...ips: string[]): string => JSON.stringify({ status: { loadBalancer: { ingress: ips.map((ip) => ({ ip, ipMode: 'VIP' })) } } });
  assert.deepEqual(patches, [
    `both ${ingress('fd00:172:30::c8', '172.30.0.200')}`,
    `six ${ingress('fd00:172:30::c9')}`,
    `four ${ingress('172.30.0.201')}`,
  ]);
  // Without an IPv6 pool (an IPv4 lab), an IPv6-only Service gets nothing.
  assert.deepEqual(assignLoadBalancerIPs(['IPv6'], parsePool('172.30.0.200/32')!, undefined, undefined, new Set()), undefined);
});
