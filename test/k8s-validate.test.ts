// Manifest validation: every bad case from the issue (wrong kind, missing fields, port
// out of range, invalid IP, garbage YAML) reported with file, document and field path,
// and the defaults of good documents.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseManifest } from '../src/k8s/manifest.ts';
import type { EndpointSliceObject, PodObject, ServiceObject } from '../src/k8s/objects.ts';

function problems(text: string, file = 'svc.yaml'): string[] {
  const parsed = parseManifest(text, file);
  if (parsed.problems.length > 0) assert.equal(parsed.objects.length, 0, 'a file with problems yields no objects');
  return parsed.problems;
}

const GOOD_SERVICE = 'apiVersion: v1\nkind: Service\nmetadata: {name: ok}\nspec: {ports: [{port: 80}]}\n';

test('port out of range names file, document, object and field', () => {
  assert.deepEqual(problems(`${GOOD_SERVICE}---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 70000}]\n`), [
    'svc.yaml: document 2 (Service default/web): spec.ports[0].port: 70000 is out of range 1-65535',
  ]);
});

test('wrong kind and wrong apiVersion', () => {
  assert.deepEqual(problems('apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n', 'deploy.yaml'), [
    'deploy.yaml: document 1 (Deployment default/web): kind: "Deployment" is not supported (supported kinds: Service, EndpointSlice, Endpoints, Pod, Node, Namespace, Ingress, IngressClass, Secret)',
  ]);
  assert.deepEqual(problems('apiVersion: discovery.k8s.io/v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n'), [
    'svc.yaml: document 1 (Service default/web): apiVersion: "discovery.k8s.io/v1" is not valid for Service (use v1)',
  ]);
});

test('missing fields are all reported in one pass', () => {
  assert.deepEqual(problems('kind: Service\nmetadata: {}\nspec: {ports: [{protocol: TCP}]}\n'), [
    'svc.yaml: document 1 (Service): apiVersion: required field is missing',
    'svc.yaml: document 1 (Service): metadata.name: required field is missing',
    'svc.yaml: document 1 (Service): spec.ports[0].port: required field is missing',
  ]);
  assert.deepEqual(problems('apiVersion: v1\nkind: Service\nmetadata: {name: web}\n'), [
    'svc.yaml: document 1 (Service default/web): spec: required field is missing',
    'svc.yaml: document 1 (Service default/web): spec.ports: required field is missing',
  ]);
});

test('invalid IP addresses; IPv6 accepted, IPv4-mapped IPv6 refused clearly', () => {
  assert.deepEqual(problems('apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: prod}\nspec:\n  clusterIP: 10.96.0.300\n  externalIPs: [1.2.3, "fd00::1", "::ffff:10.0.0.1", "fd00::1::2"]\n  ports: [{port: 80}]\n'), [
    'svc.yaml: document 1 (Service prod/web): spec.clusterIP: "10.96.0.300" must be a valid IP address (such as 10.0.0.10 or fd00::10)',
    'svc.yaml: document 1 (Service prod/web): spec.externalIPs[0]: "1.2.3" must be a valid IP address (such as 10.0.0.10 or fd00::10)',
    'svc.yaml: document 1 (Service prod/web): spec.externalIPs[2]: "::ffff:10.0.0.1" is an IPv4-mapped IPv6 address; write the IPv4 address (10.0.0.1)',
    'svc.yaml: document 1 (Service prod/web): spec.externalIPs[3]: "fd00::1::2" must be a valid IP address (such as 10.0.0.10 or fd00::10)',
  ]);
  assert.deepEqual(problems('apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.1.2}\n', 'pod.yaml'), [
    'pod.yaml: document 1 (Pod default/p): status.podIP: "10.1.2" must be a valid IP address (such as 10.0.0.10 or fd00::10)',
  ]);
});

test('garbage YAML and JSON, documents that are not mappings', () => {
  assert.deepEqual(problems('apiVersion: v1\nkind: Service\nmetadata: {name: web\n', 'bad.yaml'), [
    'bad.yaml: document 1: YAML syntax error: Flow map in block collection must be sufficiently indented and end with a } at line 4, column 1',
  ]);
  assert.deepEqual(problems('---\n- a\n---\njust text\n---\n', 'bad.yaml'), [
    'bad.yaml: document 1: must be a mapping with apiVersion, kind and metadata, not a list',
    'bad.yaml: document 2: must be a mapping with apiVersion, kind and metadata, not the string "just text"',
  ]);
  const json = problems('{"apiVersion": "v1", "kind": "Service",', 'bad.json');
  assert.equal(json.length, 1);
  assert.match(json[0]!, /^bad\.json: document 1: JSON syntax error: /);
});

test('service field rules: SCTP, names, types, affinity, policies', () => {
  const text = `apiVersion: v1
kind: Service
metadata: {name: web, annotations: {tapir.dev/lb-algorithm: roundrobin}}
spec:
  ports: [{name: a, port: 80, protocol: SCTP, nodePort: 30000}, {port: "80", targetPort: "8080"}, {name: a, port: 81, targetPort: BadName}]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}
  externalTrafficPolicy: Local
  healthCheckNodePort: 30001
`;
  const p = 'svc.yaml: document 1 (Service default/web): ';
  assert.deepEqual(problems(text), [
    `${p}spec.ports[0].protocol: SCTP is not supported by Tapir (use TCP or UDP)`,
    `${p}spec.ports[0].nodePort: may not be used when type is ClusterIP`,
    `${p}spec.ports[1].name: required when a service has more than one port`,
    `${p}spec.ports[1].port: must be an integer, not the string "80"`,
    `${p}spec.ports[1].targetPort: the string "8080" must be a port number (1-65535) or a port name (up to 15 lower-case letters, digits and "-", with at least one letter)`,
    `${p}spec.ports[2].name: "a" is already used by spec.ports[0]`,
    `${p}spec.ports[2].targetPort: the string "BadName" must be a port number (1-65535) or a port name (up to 15 lower-case letters, digits and "-", with at least one letter)`,
    `${p}spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is out of range 1-86400`,
    `${p}spec.externalTrafficPolicy: may only be set on services of type NodePort or LoadBalancer, or with externalIPs`,
    `${p}spec.healthCheckNodePort: may only be set when type is LoadBalancer and externalTrafficPolicy is Local`,
    `${p}metadata.annotations["tapir.dev/lb-algorithm"]: "roundrobin" is not one of random, maglev`,
  ]);
});

test('EndpointSlice rules: service-name label, addresses of the addressType, conditions', () => {
  const text = 'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv6\nendpoints: [{addresses: []}, {addresses: [10.0.0.1], conditions: {ready: "yes"}}]\nports: [{port: 0}]\n';
  const p = 'slice.yaml: document 1 (EndpointSlice default/s): ';
  assert.deepEqual(problems(text, 'slice.yaml'), [
    `${p}metadata.labels["kubernetes.io/service-name"]: required field is missing (it names the Service this slice belongs to)`,
    `${p}endpoints[0].addresses: must not be empty`,
    `${p}endpoints[1].addresses[0]: "10.0.0.1" must be an IPv6 address (the slice's addressType)`,
    `${p}endpoints[1].conditions.ready: must be true or false, not the string "yes"`,
    `${p}ports[0].port: 0 is out of range 1-65535`,
  ]);
});

test('hostnames: on slice endpoints, Endpoints addresses and Pods (hostname, subdomain), DNS labels', () => {
  const text = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1], hostname: db-0}, {addresses: [10.0.0.2], hostname: Db_1}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: db}
subsets: [{addresses: [{ip: 10.0.0.3, hostname: db.2}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {hostname: db-0, subdomain: -db, containers: [{name: c}]}
`;
  assert.deepEqual(problems(text, 'h.yaml'), [
    'h.yaml: document 1 (EndpointSlice default/s): endpoints[1].hostname: "Db_1" is not a valid hostname (up to 63 lower-case letters, digits and "-")',
    'h.yaml: document 2 (Endpoints default/db): subsets[0].addresses[0].hostname: "db.2" is not a valid hostname (up to 63 lower-case letters, digits and "-")',
    'h.yaml: document 3 (Pod default/p): spec.subdomain: "-db" is not a valid subdomain (up to 63 lower-case letters, digits and "-")',
  ]);
  const good = parseManifest(text.replace('Db_1', 'db-1').replace('db.2', 'db-2').replace('-db', 'db'), 'h.yaml');
  assert.deepEqual(good.problems, []);
  assert.deepEqual((good.objects[0] as EndpointSliceObject).endpoints.map((e) => e.hostname), ['db-0', 'db-1']);
  assert.deepEqual((good.objects[2] as PodObject).spec.hostname, 'db-0');
  assert.deepEqual((good.objects[2] as PodObject).spec.subdomain, 'db');
});

test('the same object twice in one file is a problem', () => {
  assert.deepEqual(problems('apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n', 'ns.yaml'), [
    'ns.yaml: document 2 (Namespace a): the same object is already defined in document 1',
  ]);
});

test('defaults: protocol, targetPort, affinity timeout, traffic policies, conditions', () => {
  const text = `${GOOD_SERVICE}---
# comment-only documents are skipped
---
apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  sessionAffinity: ClientIP
  selector: {}
  ports: [{port: 443, targetPort: https}]
status:
  loadBalancer: {ingress: [{ip: 203.0.113.1}, {ip: 203.0.113.2, ipMode: Proxy}, {hostname: x.example.com}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s, labels: {kubernetes.io/service-name: ok}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1]}]
ports: [{port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: p, deletionTimestamp: "2025-01-01T00:00:00Z"}
spec: {containers: [{name: c, ports: [{containerPort: 53, protocol: UDP}]}]}
status: {podIP: 10.244.0.5, conditions: [{type: Ready, status: "True"}]}
`;
  const parsed = parseManifest(text, 'all.yaml');
  assert.deepEqual(parsed.problems, []);
  assert.equal(parsed.objects.length, 4);
  const ok = parsed.objects[0] as ServiceObject;
  assert.deepEqual(ok.spec.ports, [{ name: '', protocol: 'TCP', port: 80, targetPort: 80, nodePort: 0 }]);
  assert.equal(ok.spec.type, 'ClusterIP');
  assert.equal(ok.spec.externalTrafficPolicy, '', 'not externally reachable: no policy');
  assert.equal(ok.spec.internalTrafficPolicy, 'Cluster');
  assert.deepEqual(ok.origin, { source: 'file', file: 'all.yaml', document: 1 });
  const lb = parsed.objects[1] as ServiceObject;
  assert.deepEqual(lb.origin, { source: 'file', file: 'all.yaml', document: 3 });
  assert.equal(lb.spec.affinityTimeoutSeconds, 10800);
  assert.equal(lb.spec.externalTrafficPolicy, 'Cluster');
  assert.equal(lb.spec.selector, null, 'an empty selector selects nothing');
  assert.equal(lb.spec.allocateLoadBalancerNodePorts, true);
  assert.deepEqual(lb.status.loadBalancerIngress, [{ ip: '203.0.113.1', ipMode: 'VIP' }, { ip: '203.0.113.2', ipMode: 'Proxy' }]);
  const slice = parsed.objects[2] as EndpointSliceObject;
  assert.equal(slice.serviceName, 'ok');
  assert.deepEqual(slice.ports, [{ name: '', port: 8080, protocol: 'TCP' }]);
  assert.deepEqual(slice.endpoints[0], { address: '10.0.0.1', ready: true, serving: true, terminating: false, hostname: '', nodeName: '', zone: '', forZones: [], forNodes: [] });
  const pod = parsed.objects[3] as PodObject;
  assert.equal(pod.metadata.deletionTimestamp, '2025-01-01T00:00:00Z');
  assert.deepEqual(pod.status, { phase: '', podIP: '10.244.0.5', podIPs: ['10.244.0.5'], ready: true });
  assert.deepEqual(pod.spec.containers[0]!.ports, [{ name: '', containerPort: 53, protocol: 'UDP' }]);
});

test('a v1 List holds many objects; problems name the item', () => {
  const list = (items: unknown[]) => JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
  const svcJson = (name: string, port: number) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { ports: [{ port }] } });
  const good = parseManifest(list([svcJson('a', 80), svcJson('b', 81)]), 'all.json');
  assert.deepEqual(good.problems, []);
  assert.deepEqual(good.objects.map((o) => [o.metadata.name, o.origin]), [['a', { source: 'file', file: 'all.json', document: 1, item: 0 }], ['b', { source: 'file', file: 'all.json', document: 1, item: 1 }]]);
  assert.deepEqual(problems(list([svcJson('a', 80), svcJson('b', 0), svcJson('a', 82)]), 'all.json'), [
    'all.json: document 1, items[1] (Service default/b): spec.ports[0].port: 0 is out of range 1-65535',
    'all.json: document 1, items[2] (Service default/a): the same object is already defined in document 1, items[0]',
  ]);
  assert.deepEqual(problems('apiVersion: v1\nkind: List\nitems: {}\n', 'l.yaml'), ['l.yaml: document 1 (List): items: must be a list']);
});

test('mutated fixture documents produce problems or objects, never exceptions', async () => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { parseAllDocuments } = await import('yaml');
  const dir = join(import.meta.dirname, 'fixtures', 'control', 'manifests');
  const docs = readdirSync(dir).flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')) as unknown as { toJS(): unknown }[]).map((d) => d.toJS());
  const weird: unknown[] = [null, 0, -1, 1.5, 70000, '', 'x', 'None', '10.0.0.1', [], [null], {}, { a: null }, true];
  // Deterministic pseudo-random choices (xorshift) so a failure reproduces.
  let seed = 0x9e3779b9;
  const rand = (n: number): number => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const paths = (v: unknown, prefix: (string | number)[] = []): (string | number)[][] => {
    if (v === null || typeof v !== 'object') return [prefix];
    const keys: (string | number)[] = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
    return [prefix, ...keys.flatMap((k) => paths((v as Record<string | number, unknown>)[k], [...prefix, k]))];
  };
  let withProblems = 0;
  for (const doc of docs) {
    for (const path of paths(doc)) {
      if (path.length === 0) continue;
      for (let round = 0; round < 3; round++) {
        const copy = structuredClone(doc) as Record<string | number, unknown>;
        let target = copy;
        for (const k of path.slice(0, -1)) target = target[k] as Record<string | number, unknown>;
        target[path[path.length - 1]!] = weird[rand(weird.length)];
        const parsed = parseManifest(JSON.stringify(copy), 'm.json');
        if (parsed.problems.length > 0) withProblems++;
        for (const p of parsed.problems) {
          assert.match(p, /^m\.json: document 1/);
          assert.doesNotMatch(p, /could not be validated/, p);
        }
      }
    }
  }
  assert.ok(withProblems > 100, 'most mutations are caught');
});

test('annotations past the API server\'s 256 KiB total are refused; up to it they are accepted', () => {
  const service = (bytes: number): string => `apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations: {a: "${'x'.repeat(bytes - 1)}"}\nspec: {ports: [{port: 80}]}\n`;
  assert.deepEqual(problems(service(256 * 1024)), []);
  assert.deepEqual(problems(service(5 * 1024 * 1024)), [
    'svc.yaml: document 1 (Service default/web): metadata.annotations: 5242880 bytes in all, more than the API server\'s limit of 262144 (256 KiB) for an object\'s annotations',
  ]);
});
