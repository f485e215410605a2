// The Ingress controller's sync: compile (src/ingress/compile.ts) of N Ingresses with 5
// paths each over N Services with 4 ready endpoints each, and the controller's
// fingerprint that decides whether the proxy gets a new configuration, at 100, 1,000
// and 5,000 Ingresses (median of 7 runs; the same inputs every run). Both run on every
// sync, whatever changed: the figure is the controller's share of the time from a
// change to the first request routed by it (the lab test prints the whole of it).
// Run: node bench/ingress-compile.ts   (numbers vary with the machine; take the median)
import { ServiceProxyState } from '../src/control/service-proxy-state.ts';
import { compileIngresses } from '../src/ingress/compile.ts';
import type { IngressConfig } from '../src/ingress/model.ts';
import { parseManifest } from '../src/k8s/manifest.ts';
import type { IngressClassObject, IngressObject, K8sObject } from '../src/k8s/objects.ts';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

function ms(f: () => void, runs = 7): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    f();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

function objects(n: number): K8sObject[] {
  const docs: unknown[] = [{ apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', metadata: { name: 'tapir', annotations: { 'ingressclass.kubernetes.io/is-default-class': 'true' } }, spec: { controller: 'tapir.dev/ingress-controller' } }];
  for (let i = 0; i < n; i++) {
    const ip = (k: number): string => `10.${100 + (i >> 14)}.${(i >> 6) & 255}.${((i & 63) << 2) + k}`;
    docs.push(
      { apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}`, namespace: 'default' }, spec: { clusterIP: `10.96.${i >> 8}.${i & 255}`, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `svc-${i}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': `svc-${i}` } }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080 }], endpoints: [0, 1, 2, 3].map((k) => ({ addresses: [ip(k)] })) },
      {
        apiVersion: 'networking.k8s.io/v1', kind: 'Ingress',
        metadata: { name: `ing-${i}`, namespace: 'default', creationTimestamp: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(), annotations: { 'tapir.dev/proxy-body-size': '8m' } },
        spec: { rules: [{ host: `h${i % (n >> 2 || 1)}.example.test`, http: { paths: ['/home', '/api', '/static', '/v1/users', '/login'].map((p, k) => ({ path: `${p}-${i}`, pathType: k === 3 ? 'Exact' : 'Prefix', backend: { service: { name: `svc-${i}`, port: { number: 80 } } } })) } }] },
      },
    );
  }
  const parsed = parseManifest(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }), 'bench.json');
  if (parsed.problems.length > 0) throw new Error(parsed.problems.slice(0, 3).join('\n'));
  return parsed.objects;
}

console.log('Ingress compile: N Ingresses x 5 paths over N Services x 4 endpoints, median of 7');
for (const n of [100, 1000, 5000]) {
  const all = objects(n);
  const state = new ServiceProxyState({ name: 'node-1' }, 'api');
  state.apply(all.map((current) => ({ previous: undefined, current })));
  const view = state.sync().view;
  const inputs = {
    ingresses: all.filter((o): o is IngressObject => o.kind === 'Ingress'),
    classes: all.filter((o): o is IngressClassObject => o.kind === 'IngressClass'),
    secrets: new Map(),
    view,
  };
  let config: IngressConfig | undefined;
  let problems = 0;
  const compile = ms(() => { const r = compileIngresses(inputs, { className: 'tapir', generation: 1 }); config = r.config; problems = r.problems.length; });
  const fingerprint = ms(() => JSON.stringify({ hosts: config!.hosts, defaultBackend: config!.defaultBackend, certificates: [...config!.certificates.values()] }));
  const paths = config!.hosts.reduce((k, h) => k + h.paths.length, 0);
  console.log(`  ${String(n).padStart(5)} Ingresses: ${config!.hosts.length} hosts, ${paths} paths, ${problems} problems; compile ${compile.toFixed(1)} ms, fingerprint ${fingerprint.toFixed(1)} ms, ${((compile + fingerprint) * 1000 / n).toFixed(1)} us per Ingress`);
}
