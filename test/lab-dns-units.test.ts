// The kubelet's DNS and Service-variable rules as the lab plays them, without namespaces:
// pod resolv.conf composition (pkg/kubelet/network/dns/dns.go), Service variables
// (pkg/kubelet/envvars), the Pod fields' validation with the API server's messages, the
// topology's pod DNS fields, and the lab NSD's zone and config judged by NSD's own checkers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseManifest } from '../src/k8s/manifest.ts';
import type { PodObject, ServiceObject } from '../src/k8s/objects.ts';
import { validateDocument } from '../src/k8s/validate.ts';
import { clusterDnsAddress, DEFAULT_CLUSTER_DOMAIN } from '../src/model/cluster-defaults.ts';
import { parseCidr } from '../src/wire/address.ts';
import { formatResolvConf, parseResolvConf, podHostsFile, podResolvConf, type KubeletDnsSettings, type PodDnsSpec } from '../src/lab/cluster/pod-dns.ts';
import { serviceEnvironment } from '../src/lab/cluster/service-env.ts';
import { containerEnvironment, expand } from '../src/lab/cluster/container-env.ts';
import { labClusterDns } from '../src/lab/cluster/pod-start.ts';
import { topologyPodObject } from '../src/lab/cluster/lab-objects.ts';
import { planLab } from '../src/lab/plan.ts';
import { DEFAULT_ADDRESSING, LAB_CLUSTER_DNS_IP, parseTopology } from '../src/lab/topology.ts';
import { resourceAt } from '../src/lab/apiserver/resources.ts';
import { applyConfig } from '../src/lab/apiserver/apply.ts';
import { strategicMergePatch } from '../src/lab/apiserver/patch.ts';
import type { Obj } from '../src/lab/apiserver/store.ts';
import { LAB_UPSTREAM_DNS_IP, LAB_UPSTREAM_RECORDS, nsdConfig, upstreamDnsAddress, upstreamZone } from '../src/lab/network/upstream-dns.ts';

function objects(yaml: string): { objects: ReturnType<typeof parseManifest>['objects']; problems: string[] } {
  return parseManifest(yaml, 'test.yaml');
}

const SERVICES = `
apiVersion: v1
kind: Service
metadata: {name: kubernetes, namespace: default}
spec: {clusterIP: 10.96.0.1, ports: [{name: https, port: 443, targetPort: 6443}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-front, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: dns-udp, port: 53, protocol: UDP, targetPort: 5353}
---
apiVersion: v1
kind: Service
metadata: {name: cache, namespace: shop}
spec: {clusterIP: 10.96.0.21, selector: {app: cache}, ports: [{port: 6379}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: upstream, namespace: shop}
spec: {type: ExternalName, externalName: www.example.test}
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: elsewhere}
spec: {clusterIP: 10.96.0.30, ports: [{port: 8080}]}
`;

function services(): ServiceObject[] {
  const parsed = objects(SERVICES);
  assert.deepEqual(parsed.problems, []);
  return parsed.objects.filter((o): o is ServiceObject => o.kind === 'Service');
}

const KUBERNETES_VARS = {
  KUBERNETES_SERVICE_HOST: '10.96.0.1',
  KUBERNETES_SERVICE_PORT: '443',
  KUBERNETES_SERVICE_PORT_HTTPS: '443',
  KUBERNETES_PORT: 'tcp://10.96.0.1:443',
  KUBERNETES_PORT_443_TCP: 'tcp://10.96.0.1:443',
  KUBERNETES_PORT_443_TCP_PROTO: 'tcp',
  KUBERNETES_PORT_443_TCP_PORT: '443',
  KUBERNETES_PORT_443_TCP_ADDR: '10.96.0.1',
};

test('Service variables: kubelet\'s exact list for the pod\'s namespace plus default/kubernetes; headless, ExternalName and other namespaces left out', () => {
  assert.deepEqual(serviceEnvironment(services(), 'shop', true), {
    ...KUBERNETES_VARS,
    CACHE_SERVICE_HOST: '10.96.0.21',
    CACHE_SERVICE_PORT: '6379',
    CACHE_PORT: 'tcp://10.96.0.21:6379',
    CACHE_PORT_6379_TCP: 'tcp://10.96.0.21:6379',
    CACHE_PORT_6379_TCP_PROTO: 'tcp',
    CACHE_PORT_6379_TCP_PORT: '6379',
    CACHE_PORT_6379_TCP_ADDR: '10.96.0.21',
    WEB_FRONT_SERVICE_HOST: '10.96.0.20',
    WEB_FRONT_SERVICE_PORT: '80',
    WEB_FRONT_SERVICE_PORT_HTTP: '80',
    WEB_FRONT_SERVICE_PORT_DNS_UDP: '53',
    WEB_FRONT_PORT: 'tcp://10.96.0.20:80',
    WEB_FRONT_PORT_80_TCP: 'tcp://10.96.0.20:80',
    WEB_FRONT_PORT_80_TCP_PROTO: 'tcp',
    WEB_FRONT_PORT_80_TCP_PORT: '80',
    WEB_FRONT_PORT_80_TCP_ADDR: '10.96.0.20',
    WEB_FRONT_PORT_53_UDP: 'udp://10.96.0.20:53',
    WEB_FRONT_PORT_53_UDP_PROTO: 'udp',
    WEB_FRONT_PORT_53_UDP_PORT: '53',
    WEB_FRONT_PORT_53_UDP_ADDR: '10.96.0.20',
  });
});

test('Service variables: enableServiceLinks false keeps only the kubernetes Service; a pod in default sees its own namespace', () => {
  assert.deepEqual(serviceEnvironment(services(), 'shop', false), KUBERNETES_VARS);
  assert.deepEqual(serviceEnvironment(services(), 'default', false), KUBERNETES_VARS);
  const elsewhere = serviceEnvironment(services(), 'elsewhere', true);
  assert.equal(elsewhere.OTHER_SERVICE_HOST, '10.96.0.30');
  assert.equal(elsewhere.CACHE_SERVICE_HOST, undefined);
  // Without a kubernetes Service (a cluster without one), nothing is invented.
  assert.deepEqual(serviceEnvironment(services().filter((s) => s.metadata.name !== 'kubernetes'), 'default', true), {});
});

test('Service variables of an IPv6 cluster IP: the URLs bracket the address (net.JoinHostPort, as the kubelet\'s)', () => {
  const parsed = objects('apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {clusterIP: "fd00:10:96::64", ipFamilies: [IPv6], ports: [{port: 80}]}\n');
  assert.deepEqual(parsed.problems, []);
  const env = serviceEnvironment(parsed.objects.filter((o): o is ServiceObject => o.kind === 'Service'), 'shop', true);
  assert.equal(env.WEB_SERVICE_HOST, 'fd00:10:96::64');
  assert.equal(env.WEB_PORT, 'tcp://[fd00:10:96::64]:80');
  assert.equal(env.WEB_PORT_80_TCP, 'tcp://[fd00:10:96::64]:80');
  assert.equal(env.WEB_PORT_80_TCP_ADDR, 'fd00:10:96::64');
});

const NODE_RESOLV = '# the node\nnameserver 172.30.0.53\nnameserver 172.30.0.54\nsearch example.test. corp.example.test\noptions timeout:2 attempts:3\n';
const KUBELET: KubeletDnsSettings = { clusterDNS: ['10.96.0.10'], clusterDomain: 'cluster.local', hostResolvConf: parseResolvConf(NODE_RESOLV) };

function pod(fields: Partial<PodDnsSpec>): PodDnsSpec {
  return { namespace: 'shop', dnsPolicy: 'ClusterFirst', dnsConfig: null, hostNetwork: false, ...fields };
}

test('resolv.conf: the kubelet\'s parse (last search and options win, trailing dots go) and containerd\'s layout', () => {
  assert.deepEqual(parseResolvConf(NODE_RESOLV), { nameservers: ['172.30.0.53', '172.30.0.54'], search: ['example.test', 'corp.example.test'], options: ['timeout:2', 'attempts:3'] });
  assert.deepEqual(parseResolvConf('search a\nsearch b c\noptions x\noptions y\nnameserver\n'), { nameservers: [], search: ['b', 'c'], options: ['y'] });
  assert.equal(formatResolvConf({ nameservers: ['10.96.0.10'], search: ['a', 'b'], options: ['ndots:5'] }), 'search a b\nnameserver 10.96.0.10\noptions ndots:5\n');
  assert.equal(formatResolvConf({ nameservers: ['1.1.1.1'], search: [], options: [] }), 'nameserver 1.1.1.1\n');
});

test('resolv.conf per dnsPolicy: ClusterFirst, Default, ClusterFirst on the host network, ClusterFirstWithHostNet, None', () => {
  const clusterFirst = { nameservers: ['10.96.0.10'], search: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'example.test', 'corp.example.test'], options: ['ndots:5'] };
  const host = { nameservers: ['172.30.0.53', '172.30.0.54'], search: ['example.test', 'corp.example.test'], options: ['timeout:2', 'attempts:3'] };
  assert.deepEqual(podResolvConf(pod({}), KUBELET), { conf: clusterFirst, warnings: [] });
  assert.deepEqual(podResolvConf(pod({ dnsPolicy: 'Default' }), KUBELET), { conf: host, warnings: [] });
  assert.deepEqual(podResolvConf(pod({ hostNetwork: true }), KUBELET), { conf: host, warnings: [] });
  assert.deepEqual(podResolvConf(pod({ dnsPolicy: 'ClusterFirstWithHostNet', hostNetwork: true }), KUBELET), { conf: clusterFirst, warnings: [] });
  const none = podResolvConf(pod({ dnsPolicy: 'None', dnsConfig: { nameservers: ['172.30.0.53'], searches: ['example.test'], options: [{ name: 'ndots', value: '2' }, { name: 'edns0', value: null }] } }), KUBELET);
  assert.equal(formatResolvConf(none.conf), 'search example.test\nnameserver 172.30.0.53\noptions ndots:2 edns0\n');
  // A kubelet without a cluster DNS falls back to Default, with its warning.
  const fallback = podResolvConf(pod({}), { ...KUBELET, clusterDNS: [] });
  assert.deepEqual(fallback.conf, host);
  assert.match(fallback.warnings[0]!, /cannot create Pod using "ClusterFirst" policy. Falling back to "Default" policy/);
});

test('resolv.conf: dnsConfig merges into ClusterFirst (duplicates once, a pod option replaces the default ndots)', () => {
  const { conf, warnings } = podResolvConf(pod({ dnsConfig: { nameservers: ['10.96.0.10', '172.30.0.53'], searches: ['cluster.local', 'extra.test'], options: [{ name: 'ndots', value: '1' }, { name: 'single-request-reopen', value: null }] } }), KUBELET);
  assert.deepEqual(warnings, []);
  assert.equal(formatResolvConf(conf), 'search shop.svc.cluster.local svc.cluster.local cluster.local example.test corp.example.test extra.test\nnameserver 10.96.0.10\nnameserver 172.30.0.53\noptions ndots:1 single-request-reopen\n');
});

test('resolv.conf: the kubelet\'s limits (3 nameservers, 32 search domains, 2048 characters) cut with its warnings', () => {
  const many = podResolvConf(pod({ dnsConfig: { nameservers: ['10.0.0.1', '10.0.0.2', '10.0.0.3'], searches: [], options: [] } }), KUBELET);
  assert.deepEqual(many.conf.nameservers, ['10.96.0.10', '10.0.0.1', '10.0.0.2']);
  assert.deepEqual(many.warnings, ['Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.96.0.10 10.0.0.1 10.0.0.2']);
  const searches = Array.from({ length: 30 }, (_, i) => `s${i}.example.test`);
  const long = podResolvConf(pod({ dnsConfig: { nameservers: [], searches, options: [] } }), KUBELET);
  assert.equal(long.conf.search.length, 32);
  assert.equal(long.conf.search[31], 's26.example.test');
  assert.deepEqual(long.warnings, [`Search Line limits were exceeded, some search paths have been omitted, the applied search line is: ${long.conf.search.join(' ')}`]);
  // 2048 characters: whole domains come off the end.
  const wide = Array.from({ length: 20 }, (_, i) => `${String(i).padStart(2, '0')}${'x'.repeat(60)}.${'y'.repeat(60)}.test`);
  const cut = podResolvConf(pod({ dnsPolicy: 'None', dnsConfig: { nameservers: ['10.0.0.1'], searches: wide, options: [] } }), KUBELET);
  assert.ok(cut.conf.search.join(' ').length <= 2048);
  assert.deepEqual(cut.conf.search, wide.slice(0, cut.conf.search.length));
  assert.equal(cut.conf.search.length, Math.floor(2049 / (wide[0]!.length + 1)));
  assert.equal(cut.warnings.length, 1);
});

function podYaml(spec: string): string {
  return `apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  containers: [{name: c}]\n${spec}`;
}

test('Pod DNS fields: defaults, and every problem with its field path in the API server\'s words', () => {
  const plain = objects(podYaml(''));
  assert.deepEqual(plain.problems, []);
  const spec = (plain.objects[0] as PodObject).spec;
  assert.deepEqual([spec.dnsPolicy, spec.dnsConfig, spec.enableServiceLinks, spec.hostNetwork], ['ClusterFirst', null, true, false]);

  const full = objects(podYaml('  dnsPolicy: None\n  enableServiceLinks: false\n  dnsConfig:\n    nameservers: [172.30.0.53, "2001:db8::1"]\n    searches: [example.test.]\n    options: [{name: ndots, value: "2"}, {name: rotate}]\n'));
  assert.deepEqual(full.problems, []);
  assert.deepEqual((full.objects[0] as PodObject).spec.dnsConfig, { nameservers: ['172.30.0.53', '2001:db8::1'], searches: ['example.test.'], options: [{ name: 'ndots', value: '2' }, { name: 'rotate', value: null }] });
  assert.equal((full.objects[0] as PodObject).spec.enableServiceLinks, false);

  const where = 'test.yaml: document 1 (Pod shop/p)';
  assert.deepEqual(objects(podYaml('  dnsPolicy: None\n')).problems, [`${where}: spec.dnsConfig: required when dnsPolicy is None: must provide \`dnsConfig\` when \`dnsPolicy\` is None`]);
  assert.deepEqual(objects(podYaml('  dnsPolicy: None\n  dnsConfig: {searches: [a.test]}\n')).problems, [`${where}: spec.dnsConfig.nameservers: must provide at least one DNS nameserver when \`dnsPolicy\` is None`]);
  assert.deepEqual(objects(podYaml('  dnsPolicy: Cluster\n')).problems, [`${where}: spec.dnsPolicy: "Cluster" is not one of ClusterFirst, ClusterFirstWithHostNet, Default, None`]);
  assert.deepEqual(objects(podYaml('  dnsConfig:\n    nameservers: [1.1.1.1, 1.1.1.2, 1.1.1.3, 1.1.1.4, not-an-ip]\n    searches: [Bad_Domain]\n    options: [{value: "1"}]\n  enableServiceLinks: "yes"\n')).problems, [
    `${where}: spec.dnsConfig.nameservers[4]: "not-an-ip" must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`,
    `${where}: spec.dnsConfig.nameservers: must not have more than 3 nameservers`,
    `${where}: spec.dnsConfig.searches[0]: "Bad_Domain" must be a lowercase RFC 1123 subdomain (lower-case letters, digits, "-" and ".")`,
    `${where}: spec.dnsConfig.options[0].name: must not be empty`,
    `${where}: spec.enableServiceLinks: must be true or false, not the string "yes"`,
  ]);
  const tooMany = Array.from({ length: 33 }, (_, i) => `d${i}.test`).join(', ');
  assert.deepEqual(objects(podYaml(`  dnsConfig: {searches: [${tooMany}]}\n`)).problems, [`${where}: spec.dnsConfig.searches: must not have more than 32 search paths`]);
});

test('topology pods carry dnsPolicy, dnsConfig, enableServiceLinks, hostname and subdomain into the plan and their Pod object', () => {
  const topology = parseTopology(`
nodes:
- name: node-1
  pods:
  - name: custom
    namespace: shop
    dnsPolicy: None
    dnsConfig: {nameservers: [172.30.0.53], searches: [example.test], options: [{name: ndots, value: "1"}]}
    enableServiceLinks: false
    hostname: db-0
    subdomain: db
  - name: plain
`, '/x/topology.yaml');
  const state = planLab(topology, 'unit', 'kernel');
  const [custom, plain] = state.pods;
  assert.deepEqual(custom!.dns, { policy: 'None', config: { nameservers: ['172.30.0.53'], searches: ['example.test'], options: [{ name: 'ndots', value: '1' }] }, hostNetwork: false, resolvConf: [], warnings: [] });
  assert.equal(custom!.enableServiceLinks, false);
  assert.equal(plain!.dns!.policy, 'ClusterFirst');
  assert.equal(plain!.enableServiceLinks, true);
  const problems: string[] = [];
  const object = validateDocument(topologyPodObject(custom!), { source: 'api', server: 'unit' }, problems) as PodObject;
  assert.deepEqual(problems, []);
  assert.deepEqual([object.spec.dnsPolicy, object.spec.dnsConfig, object.spec.enableServiceLinks, object.spec.hostname, object.spec.subdomain],
    ['None', custom!.dns!.config, false, 'db-0', 'db']);
  assert.throws(() => parseTopology('nodes: [{name: n, pods: [{name: p, dnsPolicy: None}]}]', '/x/t.yaml'), /nodes\[0\]\.pods\[0\]\.dnsConfig: required when dnsPolicy is None/);
  assert.throws(() => parseTopology('nodes: [{name: n, pods: [{name: p, hostNetwork: true}]}]', '/x/t.yaml'), /nodes\[0\]\.pods\[0\]\.hostNetwork: unknown field/);
});

test('the cluster DNS address and domain: the tenth of the service CIDR, cluster.local; the lab\'s upstream at .53', () => {
  assert.equal(clusterDnsAddress(parseCidr('10.96.0.0/12')!), '10.96.0.10');
  assert.equal(DEFAULT_CLUSTER_DOMAIN, 'cluster.local');
  const state = planLab(parseTopology('nodes: [{name: n1}, {name: n2}]', '/x/t.yaml'), 'unit', 'kernel');
  assert.equal(labClusterDns(state), '10.96.0.10');
  assert.equal(clusterDnsAddress(parseCidr(DEFAULT_ADDRESSING.serviceCIDR)!), LAB_CLUSTER_DNS_IP);
  assert.equal(upstreamDnsAddress(state, '172.30.0.1'), LAB_UPSTREAM_DNS_IP);
  // A node on .53 pushes it to the highest free host address below the load-balancer pool's end.
  const crowded = planLab(parseTopology('nodes: [{name: n1, underlayIP: 172.30.0.53}]', '/x/t.yaml'), 'unit', 'kernel');
  assert.equal(upstreamDnsAddress(crowded), '172.30.0.254');
});

test('the lab NSD\'s zone and config pass nsd-checkzone and nsd-checkconf', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lab-nsd-'));
  try {
    writeFileSync(join(dir, 'example.test.zone'), upstreamZone('172.30.0.53'));
    writeFileSync(join(dir, 'nsd.conf'), nsdConfig('172.30.0.53', dir));
    const zone = spawnSync('nsd-checkzone', ['example.test', join(dir, 'example.test.zone')], { encoding: 'utf8' });
    assert.equal(zone.status, 0, zone.stderr + zone.stdout);
    const conf = spawnSync('nsd-checkconf', [join(dir, 'nsd.conf')], { encoding: 'utf8' });
    assert.equal(conf.status, 0, conf.stderr + conf.stdout);
    assert.equal(LAB_UPSTREAM_RECORDS.many.length, 40);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('server-side apply keys Service ports on port and protocol (53/UDP and 53/TCP stay two), strategic merge on port alone', () => {
  const services = resourceAt('', 'v1', 'services')!;
  const ports = [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }, { name: 'metrics', port: 9153 }];
  const config = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'kube-dns' }, spec: { ports } } as Obj;
  const created = applyConfig(undefined, config, 'kubectl', services.applyKeys, 'v1');
  assert.deepEqual((created.spec as { ports: unknown[] }).ports, ports);
  const fields = (created.metadata.managedFields as { fieldsV1: Record<string, Record<string, Record<string, unknown>>> }[])[0]!.fieldsV1['f:spec']!['f:ports']!;
  assert.deepEqual(Object.keys(fields), ['k:{"port":53,"protocol":"UDP"}', 'k:{"port":53,"protocol":"TCP"}', 'k:{"port":9153,"protocol":"TCP"}']);
  // The stored object has its protocols defaulted; applying without the TCP port removes that one only.
  for (const p of (created.spec as { ports: { protocol?: string }[] }).ports) p.protocol ??= 'TCP';
  const again = applyConfig(created, { ...config, spec: { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'metrics', port: 9153 }] } } as Obj, 'kubectl', services.applyKeys, 'v1');
  assert.deepEqual((again.spec as { ports: { name: string }[] }).ports.map((p) => p.name), ['dns', 'metrics']);
  // A strategic merge patch merges on port alone, as Kubernetes' patchMergeKey does.
  const merged = strategicMergePatch({ spec: { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] } }, { spec: { ports: [{ name: 'dns-tcp', port: 53, protocol: 'TCP' }] } }, services.mergeKeys);
  assert.deepEqual(merged, { spec: { ports: [{ name: 'dns-tcp', port: 53, protocol: 'TCP' }] } });
});

test('container env: $(VAR) expansion as the kubelet\'s, declared variables over Service ones, downward-API fields; checked fields', () => {
  const lookup = (name: string): string | undefined => ({ A: 'x', B: 'y' } as Record<string, string | undefined>)[name];
  assert.equal(expand('$(A)-$(B)', lookup), 'x-y');
  assert.equal(expand('$(C) $$(A) $$ $x $', lookup), '$(C) $(A) $ $x $');
  assert.equal(expand('$(A', lookup), '$(A');
  const env = containerEnvironment([
    { name: 'FIRST', value: 'svc $(WEB_SERVICE_HOST)', fieldPath: '' },
    { name: 'WEB_SERVICE_PORT', value: '8080', fieldPath: '' },
    { name: 'SECOND', value: '$(FIRST):$(WEB_SERVICE_PORT)', fieldPath: '' },
    { name: 'NODE', value: '', fieldPath: 'spec.nodeName' },
    { name: 'APP', value: '', fieldPath: "metadata.labels['app']" },
  ], { name: 'p', namespace: 'shop', nodeName: 'node-1', podIP: '10.244.1.5', hostIP: '172.30.0.11', labels: { app: 'web' } }, { WEB_SERVICE_HOST: '10.96.0.20', WEB_SERVICE_PORT: '80' });
  assert.deepEqual(env, { WEB_SERVICE_HOST: '10.96.0.20', WEB_SERVICE_PORT: '8080', FIRST: 'svc 10.96.0.20', SECOND: 'svc 10.96.0.20:8080', NODE: 'node-1', APP: 'web' });
  const parsed = objects(podYaml('').replace('containers: [{name: c}]', 'containers: [{name: c, env: [{name: A, value: "1"}, {name: B, valueFrom: {fieldRef: {fieldPath: metadata.name}}}, {name: C, valueFrom: {secretKeyRef: {name: s, key: k}}}]}]'));
  assert.deepEqual(parsed.problems, []);
  assert.deepEqual((parsed.objects[0] as PodObject).spec.containers[0]!.env, [{ name: 'A', value: '1', fieldPath: '' }, { name: 'B', value: '', fieldPath: 'metadata.name' }]);
  assert.deepEqual(objects(podYaml('').replace('containers: [{name: c}]', 'containers: [{name: c, env: [{name: 9x, value: "1"}, {name: D, value: v, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]}]')).problems, [
    'test.yaml: document 1 (Pod shop/p): spec.containers[0].env[0].name: "9x" is not a valid environment variable name (letters, digits, "_", "-" and ".", not starting with a digit)',
    'test.yaml: document 1 (Pod shop/p): spec.containers[0].env[1].valueFrom: may not be specified when `value` is not empty',
  ]);
});

test('the pod\'s hosts file as the kubelet manages it: hostname, and the FQDN under its subdomain', () => {
  const header = '# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n';
  assert.equal(podHostsFile({ name: 'web-0', namespace: 'shop', ip: '10.244.1.5', hostname: '', subdomain: '' }, 'cluster.local'), `${header}10.244.1.5\tweb-0\n`);
  assert.equal(podHostsFile({ name: 'x', namespace: 'shop', ip: '10.244.1.5', hostname: 'db-0', subdomain: 'db' }, 'cluster.local'), `${header}10.244.1.5\tdb-0.db.shop.svc.cluster.local\tdb-0\n`);
  assert.equal(podHostsFile({ name: `${'a'.repeat(62)}-b`, namespace: 's', ip: '10.0.0.1', hostname: '', subdomain: '' }, 'cluster.local'), `${header}10.0.0.1\t${'a'.repeat(62)}\n`);
});
