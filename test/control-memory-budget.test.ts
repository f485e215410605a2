// What the services side keeps per Service and per endpoint in cluster mode, against a
// budget: 2,000 Services with ten endpoints each, as the API serves them (JSON parsed,
// validated as the reflector validates), through ServiceProxyState's sync, in a child
// process so that nothing else is on its heap. The budget is what issue 12's agent at
// 25,000 Services (250,000 endpoints) needs to stay within 256 MiB; the layout it holds
// to is src/config/compact.ts's (endpoint lists of views made when read, flat keys,
// shared empty and repeated lists). V8's object sizes are fixed for a Node version, so
// the figure is deterministic, not a timing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SERVICES = 2000;
const ENDPOINTS = 10;
/** Bytes of heap per Service with its ten endpoints (8,923 before the compact layout, 4,425 with it). */
const BUDGET = 5000;

if (process.argv[2] === 'child') {
  const { ServiceProxyState } = await import('../src/control/service-proxy-state.ts');
  const { validateDocument } = await import('../src/k8s/validate.ts');
  const gc = (globalThis as { gc?: () => void }).gc!;
  const origin = { source: 'api', server: 'https://10.96.0.1:443' } as const;
  const parse = (json: string) => {
    const problems: string[] = [];
    const obj = validateDocument(JSON.parse(json), origin, problems);
    if (obj === undefined) throw new Error(problems.join('\n'));
    return obj;
  };
  const meta = (name: string, rv: number, labels?: Record<string, string>) => ({ name, namespace: 'default', uid: `0000-${rv}`, resourceVersion: String(rv), creationTimestamp: '2026-12-07T12:00:00Z', ...(labels ? { labels } : {}) });
  const ip = (n: number): string => `10.${224 + ((n >> 16) & 15)}.${(n >> 8) & 255}.${n & 255}`;
  const state = new ServiceProxyState({ name: 'node-1', nodePortAddresses: ['172.30.0.11'] }, 'api');
  // Three rounds: the first warms up (code, shapes, interned names); the heap is read
  // before and after the last two, each of which adds SERVICES new Services.
  const round = (r: number): void => {
    const changes = [];
    for (let i = r * SERVICES; i < (r + 1) * SERVICES; i++) {
      const clusterIP = `10.96.${(i >> 8) & 255}.${i & 255}`;
      changes.push({ previous: undefined, current: parse(JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: meta(`web-${i}`, 2 * i), spec: { type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', sessionAffinity: 'None', internalTrafficPolicy: 'Cluster', ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] }, status: { loadBalancer: {} } })) });
      changes.push({ previous: undefined, current: parse(JSON.stringify({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: meta(`web-${i}-a`, 2 * i + 1, { 'kubernetes.io/service-name': `web-${i}` }), addressType: 'IPv4',
        endpoints: Array.from({ length: ENDPOINTS }, (_, j) => ({ addresses: [ip(i * ENDPOINTS + j + 2)], conditions: { ready: true, serving: true, terminating: false }, nodeName: `node-${2 + ((i + j) % 20)}` })), ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] })) });
    }
    state.apply(changes);
    state.sync();
  };
  const used = (): number => { for (let i = 0; i < 3; i++) gc(); return process.memoryUsage().heapUsed; };
  round(0);
  const before = used();
  round(1);
  round(2);
  const after = used();
  const { view, snapshot } = state.sync();
  // The lists are all there when read.
  const svc = view.services.find((s) => s.name === 'web-4321')!;
  process.stdout.write(JSON.stringify({
    perService: (after - before) / (2 * SERVICES),
    services: view.services.length, ports: snapshot.ports.length,
    endpoints: svc.endpoints.map((e) => e.nodeName), ready: snapshot.ports.every((p) => p.clusterEndpoints.length === ENDPOINTS),
  }));
} else {
  test(`the services side keeps at most ${BUDGET} bytes of heap per Service with ${ENDPOINTS} endpoints (cluster mode)`, () => {
    const out = JSON.parse(execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), 'child'], { encoding: 'utf8', timeout: 120_000 })) as
      { perService: number; services: number; ports: number; endpoints: string[]; ready: boolean };
    assert.equal(out.services, 3 * SERVICES);
    assert.equal(out.ports, 3 * SERVICES);
    assert.ok(out.ready, 'every port has its ten endpoints');
    assert.deepEqual(out.endpoints, Array.from({ length: ENDPOINTS }, (_, j) => `node-${2 + ((4321 + j) % 20)}`));
    assert.ok(out.perService <= BUDGET, `${out.perService.toFixed(0)} bytes per Service`);
    console.log(`# ${out.perService.toFixed(0)} bytes of heap per Service with ${ENDPOINTS} endpoints`);
  });
}
