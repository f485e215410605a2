// Cluster mode's incremental sync: a Service's allocation is read from its own spec, so
// a sync re-reads only the Services that changed. Checked against a state given the
// same objects at once (a full sync, the reference) after every batch of a random
// sequence of Service and EndpointSlice changes: pending Services (no cluster IP yet)
// that get one, node ports and cluster IPs that change, deletions, dual-stack ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ServiceProxyState } from '../src/control/service-proxy-state.ts';
import type { K8sObject } from '../src/k8s/objects.ts';
import { validateDocument } from '../src/k8s/validate.ts';

function rng(seed: number): (n: number) => number {
  let x = seed | 1;
  return (n) => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    return (x >>> 0) % n;
  };
}

function object(doc: Record<string, unknown>): K8sObject {
  const problems: string[] = [];
  const obj = validateDocument(doc, { source: 'api', server: 'https://test' }, problems);
  assert.deepEqual(problems, []);
  return obj!;
}

function service(i: number, r: (n: number) => number): K8sObject {
  const kind = r(4);
  const pending = r(5) === 0;
  const dual = kind === 3;
  const clusterIPs = pending ? [] : dual ? [`10.96.${i >> 8}.${i & 255}`, `fd00:10:96::${i.toString(16)}`] : [`10.96.${i >> 8}.${(i + r(2) * 7) & 255}`];
  const nodePort = kind >= 1 && !pending;
  return object({
    apiVersion: 'v1', kind: 'Service', metadata: { name: `s${i}`, namespace: 'default', resourceVersion: String(r(1e6)) },
    spec: {
      type: nodePort ? 'NodePort' : 'ClusterIP',
      ...(pending ? {} : { clusterIP: clusterIPs[0], clusterIPs }),
      ...(dual ? { ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'RequireDualStack' } : {}),
      ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', ...(nodePort ? { nodePort: 30000 + ((i * 3 + r(3)) % 2000) } : {}) }],
      ...(nodePort ? { externalTrafficPolicy: r(2) === 0 ? 'Local' : 'Cluster' } : {}),
    },
  });
}

function slice(i: number, family: 'IPv4' | 'IPv6', r: (n: number) => number): K8sObject {
  const n = 1 + r(3);
  return object({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: `s${i}-${family === 'IPv4' ? '4' : '6'}`, namespace: 'default', labels: { 'kubernetes.io/service-name': `s${i}` }, resourceVersion: String(r(1e6)) },
    addressType: family,
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: Array.from({ length: n }, (_, k) => ({
      addresses: [family === 'IPv4' ? `10.244.${1 + r(2)}.${(i * 3 + k) & 255}` : `fd00:10:244::${(i * 3 + k).toString(16)}`],
      conditions: { ready: r(4) !== 0 }, nodeName: `node-${1 + r(2)}`,
    })),
  });
}

/** The view and snapshot without generations, for comparing. */
function shape(state: ServiceProxyState): string {
  const { view } = state.sync();
  return JSON.stringify({ services: view.services, snapshot: { ...view.snapshot, generation: 0 } });
}

test('cluster mode: incremental syncs over random Service and slice changes equal a full sync of the same objects', () => {
  const r = rng(20261207);
  const node = { name: 'node-1', nodePortAddresses: ['172.30.0.11'] };
  const incremental = new ServiceProxyState(node, 'api');
  const live = new Map<string, K8sObject>();
  const key = (o: K8sObject): string => `${o.kind}/${o.metadata.name}`;
  let checked = 0;
  for (let batch = 0; batch < 120; batch++) {
    const changes = [];
    for (let j = 0, n = 1 + r(12); j < n; j++) {
      const i = r(60);
      const pick = r(10);
      const next = pick < 5 ? service(i, r) : pick < 8 ? slice(i, r(3) === 0 ? 'IPv6' : 'IPv4', r) : undefined;
      const target = next ?? [...live.values()][r(Math.max(1, live.size))];
      if (target === undefined) continue;
      const previous = live.get(key(target));
      if (next === undefined) live.delete(key(target));
      else live.set(key(next), next);
      changes.push({ previous, current: next });
    }
    incremental.apply(changes);
    const full = new ServiceProxyState(node, 'api');
    full.apply([...live.values()].map((current) => ({ previous: undefined, current })));
    assert.equal(shape(incremental), shape(full), `batch ${batch}`);
    checked++;
  }
  assert.equal(checked, 120);
  // The sequence reached the cases it is about.
  const services = [...live.values()].filter((o) => o.kind === 'Service');
  assert.ok(services.length > 10, `${services.length} Services at the end`);
});
