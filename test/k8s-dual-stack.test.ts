// Dual-stack Services as kube-apiserver reads them: the structural checks of
// ValidateServiceClusterIPsRelatedFields (validate-service.ts), the settling of
// ipFamilies and ipFamilyPolicy against the cluster's service CIDRs (ip-families.ts),
// EndpointSlices of addressType IPv6, pods' podIPs and the Endpoints mirror per family.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseManifest } from '../src/k8s/manifest.ts';
import { mirrorEndpoints } from '../src/k8s/endpoints-mirror.ts';
import { resolveIpFamilies, type FamilyRequest } from '../src/k8s/ip-families.ts';
import type { EndpointSliceObject, EndpointsObject, NodeObject, PodObject, ServiceObject } from '../src/k8s/objects.ts';

function parse(text: string, file = 'svc.yaml'): { objects: unknown[]; problems: string[] } {
  return parseManifest(text, file);
}

function service(spec: string): ServiceObject {
  const parsed = parse(`apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n${spec}`);
  assert.deepEqual(parsed.problems, []);
  return parsed.objects[0] as ServiceObject;
}

function problems(spec: string): string[] {
  return parse(`apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n${spec}`).problems.map((p) => p.replace('svc.yaml: document 1 (Service default/web): ', ''));
}

test('clusterIPs, ipFamilies and ipFamilyPolicy are read; IPv6 text becomes RFC 5952', () => {
  const svc = service('  clusterIPs: [10.96.0.20, "FD00:10:96:0::20"]\n  ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: RequireDualStack\n  selector: {app: web}\n  ports: [{port: 80}]\n');
  assert.equal(svc.spec.clusterIP, '10.96.0.20');
  assert.deepEqual(svc.spec.clusterIPs, ['10.96.0.20', 'fd00:10:96::20']);
  assert.deepEqual(svc.spec.ipFamilies, ['IPv4', 'IPv6']);
  assert.equal(svc.spec.ipFamilyPolicy, 'RequireDualStack');
  // clusterIP alone fills clusterIPs (the strategy's sync); nothing given: all to allocate.
  assert.deepEqual(service('  clusterIP: "fd00::5"\n  ports: [{port: 80}]\n').spec.clusterIPs, ['fd00::5']);
  const bare = service('  ports: [{port: 80}]\n');
  assert.deepEqual([bare.spec.clusterIP, bare.spec.clusterIPs, bare.spec.ipFamilies, bare.spec.ipFamilyPolicy], ['', [], [], '']);
  // Headless: None is the first and only value.
  const headless = service('  clusterIP: None\n  ipFamilies: [IPv6]\n  ports: [{port: 80}]\n');
  assert.deepEqual([headless.spec.clusterIP, headless.spec.clusterIPs, headless.spec.ipFamilies], ['None', ['None'], ['IPv6']]);
  // externalIPs, source ranges and load-balancer ingress of either family.
  const lb = parse('apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n  externalIPs: [203.0.113.7, "2001:DB8::7"]\n  loadBalancerSourceRanges: [10.0.0.0/8, "2001:db8::/64"]\n  ports: [{port: 80}]\nstatus: {loadBalancer: {ingress: [{ip: 172.30.0.200}, {ip: "2001:db8::200"}]}}\n');
  assert.deepEqual(lb.problems, []);
  const lbSvc = lb.objects[0] as ServiceObject;
  assert.deepEqual(lbSvc.spec.externalIPs, ['203.0.113.7', '2001:db8::7']);
  assert.deepEqual(lbSvc.spec.loadBalancerSourceRanges, ['10.0.0.0/8', '2001:db8::/64']);
  assert.deepEqual(lbSvc.status.loadBalancerIngress.map((i) => i.ip), ['172.30.0.200', '2001:db8::200']);
});

test('ValidateServiceClusterIPsRelatedFields: every rule with its field', () => {
  assert.deepEqual(problems('  clusterIP: 10.96.0.20\n  clusterIPs: [10.96.0.21]\n  ports: [{port: 80}]\n'), [
    'spec.clusterIPs: ["10.96.0.21"]: first value must match clusterIP (10.96.0.20)',
  ]);
  assert.deepEqual(problems('  clusterIPs: [10.96.0.20, 10.96.0.21]\n  ports: [{port: 80}]\n'), [
    'spec.clusterIPs: ["10.96.0.20","10.96.0.21"]: may specify no more than one IP for each IP family',
  ]);
  assert.deepEqual(problems('  clusterIPs: [10.96.0.20, "fd00::20", 10.96.0.21]\n  ports: [{port: 80}]\n'), [
    'spec.clusterIPs: ["10.96.0.20","fd00::20","10.96.0.21"]: may only hold up to 2 values',
  ]);
  assert.deepEqual(problems('  clusterIPs: [None, 10.96.0.20]\n  ports: [{port: 80}]\n'), [
    'spec.clusterIPs: ["None","10.96.0.20"]: \'None\' must be the first and only value',
  ]);
  assert.deepEqual(problems('  clusterIPs: ["fd00::20", 10.96.0.20]\n  ipFamilies: [IPv4, IPv6]\n  ports: [{port: 80}]\n'), [
    'spec.clusterIPs[0]: "fd00::20": expected an IPv4 value as indicated by `ipFamilies[0]`',
    'spec.clusterIPs[1]: "10.96.0.20": expected an IPv6 value as indicated by `ipFamilies[1]`',
  ]);
  assert.deepEqual(problems('  ipFamilies: [IPv4, IPv4, IPv5]\n  ipFamilyPolicy: DualStack\n  ports: [{port: 80}]\n'), [
    'spec.ipFamilies[1]: Duplicate value: "IPv4" (a Service has at most one address per family)',
    'spec.ipFamilies[2]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"',
    'spec.ipFamilyPolicy: Unsupported value: "DualStack": supported values: "SingleStack", "PreferDualStack", "RequireDualStack"',
  ]);
  assert.deepEqual(problems('  type: ExternalName\n  externalName: db.example.com\n  clusterIPs: [10.96.0.20]\n'), [
    'spec.clusterIPs: may not be set when type is ExternalName',
  ]);
  // ExternalName: ipFamilies and ipFamilyPolicy are wiped, as the registry does.
  const external = service('  type: ExternalName\n  externalName: db.example.com\n  ipFamilies: [IPv6]\n  ipFamilyPolicy: SingleStack\n');
  assert.deepEqual([external.spec.clusterIPs, external.spec.ipFamilies, external.spec.ipFamilyPolicy], [[], [], '']);
});

const V4 = ['IPv4'] as const;
const DUAL = ['IPv4', 'IPv6'] as const;
const DUAL6 = ['IPv6', 'IPv4'] as const;

function request(r: Partial<FamilyRequest>): FamilyRequest {
  return { type: 'ClusterIP', headless: false, hasSelector: true, clusterIPs: [], ipFamilies: [], ipFamilyPolicy: '', ...r };
}

test('resolveIpFamilies: kube-apiserver\'s defaults on single-stack and dual-stack clusters', () => {
  const settle = (r: Partial<FamilyRequest>, cluster: readonly ('IPv4' | 'IPv6')[]) => {
    const d = resolveIpFamilies(request(r), cluster);
    return d.problems.length > 0 ? d.problems.map((p) => `${p.field}: ${p.message}`) : [d.ipFamilyPolicy, ...d.ipFamilies];
  };
  // Nothing asked: SingleStack in the cluster's primary family.
  assert.deepEqual(settle({}, V4), ['SingleStack', 'IPv4']);
  assert.deepEqual(settle({}, DUAL6), ['SingleStack', 'IPv6']);
  // PreferDualStack: both where the cluster has both, primary first; one where it has one.
  assert.deepEqual(settle({ ipFamilyPolicy: 'PreferDualStack' }, V4), ['PreferDualStack', 'IPv4']);
  assert.deepEqual(settle({ ipFamilyPolicy: 'PreferDualStack' }, DUAL), ['PreferDualStack', 'IPv4', 'IPv6']);
  assert.deepEqual(settle({ ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv6'] }, DUAL), ['PreferDualStack', 'IPv6', 'IPv4']);
  // RequireDualStack: an error on a single-stack cluster.
  assert.deepEqual(settle({ ipFamilyPolicy: 'RequireDualStack' }, DUAL), ['RequireDualStack', 'IPv4', 'IPv6']);
  assert.deepEqual(settle({ ipFamilyPolicy: 'RequireDualStack' }, V4), ['spec.ipFamilyPolicy: "RequireDualStack": this cluster is not configured for dual-stack services (its service CIDR is IPv4 only)']);
  // Two families without a policy: RequireDualStack.
  assert.deepEqual(settle({ ipFamilies: ['IPv6', 'IPv4'] }, DUAL), ['RequireDualStack', 'IPv6', 'IPv4']);
  // ipFamilies from clusterIPs; a family the cluster lacks is named.
  assert.deepEqual(settle({ clusterIPs: ['fd00::20'] }, DUAL), ['SingleStack', 'IPv6']);
  assert.deepEqual(settle({ clusterIPs: ['10.96.0.20', 'fd00::20'] }, DUAL), ['RequireDualStack', 'IPv4', 'IPv6']);
  assert.deepEqual(settle({ clusterIPs: ['fd00::20'] }, V4), ['spec.clusterIPs[0]: "fd00::20": IPv6 is not configured on this cluster']);
  assert.deepEqual(settle({ ipFamilies: ['IPv6'] }, V4), ['spec.ipFamilies[0]: "IPv6": not configured on this cluster']);
  // Headless without a selector: both families even on a single-stack cluster.
  assert.deepEqual(settle({ headless: true, hasSelector: false }, V4), ['RequireDualStack', 'IPv4', 'IPv6']);
  assert.deepEqual(settle({ headless: true, hasSelector: false, ipFamilyPolicy: 'SingleStack' }, DUAL), ['SingleStack', 'IPv4']);
  // Headless with a selector follows the ordinary rules.
  assert.deepEqual(settle({ headless: true }, V4), ['SingleStack', 'IPv4']);
  assert.deepEqual(settle({ headless: true, ipFamilyPolicy: 'PreferDualStack' }, DUAL), ['PreferDualStack', 'IPv4', 'IPv6']);
  // SingleStack with two of anything.
  assert.deepEqual(settle({ ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv4', 'IPv6'] }, DUAL), ['spec.ipFamilyPolicy: "SingleStack": must be \'RequireDualStack\' or \'PreferDualStack\' when multiple IP families are specified']);
  assert.deepEqual(settle({ ipFamilyPolicy: 'SingleStack', clusterIPs: ['10.96.0.20', 'fd00::20'] }, DUAL), ['spec.ipFamilyPolicy: "SingleStack": must be \'RequireDualStack\' or \'PreferDualStack\' when multiple IP addresses are specified']);
  // ExternalName has none.
  assert.deepEqual(settle({ type: 'ExternalName', ipFamilyPolicy: 'RequireDualStack' }, V4), ['']);
});

test('EndpointSlices of addressType IPv6; Pods\' podIPs; Endpoints mirrored per family', () => {
  const parsed = parse(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v6, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
endpoints: [{addresses: ["FD00:10:244:1::5"]}]
ports: [{port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c}]}
status: {podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}, {ip: "fd00:10:244:1::5"}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: manual}
subsets: [{addresses: [{ip: 10.0.0.1}, {ip: "fd00::1"}], notReadyAddresses: [{ip: "fd00::2"}], ports: [{port: 80}]}]
`);
  assert.deepEqual(parsed.problems, []);
  const [slice, pod, endpoints] = parsed.objects as [EndpointSliceObject, PodObject, EndpointsObject];
  assert.equal(slice.addressType, 'IPv6');
  assert.equal(slice.endpoints[0]!.address, 'fd00:10:244:1::5');
  assert.deepEqual(pod.status.podIPs, ['10.244.1.5', 'fd00:10:244:1::5']);
  assert.deepEqual(mirrorEndpoints(endpoints).map((s) => [s.metadata.name, s.addressType, s.endpoints.map((e) => `${e.address}${e.ready ? '' : ' (not ready)'}`)]), [
    ['manual-mirror-0', 'IPv4', ['10.0.0.1']],
    ['manual-mirror-0-ipv6', 'IPv6', ['fd00::1', 'fd00::2 (not ready)']],
  ]);
  const bad = parse('apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}, {ip: 10.244.1.6}]}\n', 'pod.yaml');
  assert.deepEqual(bad.problems, ['pod.yaml: document 1 (Pod default/p): status.podIPs[1].ip: "10.244.1.6": may specify no more than one IP for each IP family']);
  const fqdn = parse('apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: web}}\naddressType: FQDN\nendpoints: []\n', 'slice.yaml');
  assert.deepEqual(fqdn.problems, ['slice.yaml: document 1 (EndpointSlice default/s): addressType: "FQDN" is not supported (kube-proxy ignores FQDN slices too; use IPv4 or IPv6)']);
});

test('a dual-stack Node: IPv4 addresses in addresses, its IPv6 InternalIP and ExternalIP apart in addresses6 (an IPv6 underlay\'s tunnel ends there)', () => {
  const parsed = parse('apiVersion: v1\nkind: Node\nmetadata: {name: node-2}\nspec: {podCIDRs: [10.244.2.0/24, "fd00:10:244:2::/64"]}\nstatus:\n  addresses:\n'
    + '  - {type: InternalIP, address: 172.30.0.12}\n  - {type: InternalIP, address: "fd00:172:30::c"}\n  - {type: Hostname, address: node-2}\n', 'node.yaml');
  assert.deepEqual(parsed.problems, []);
  const node = parsed.objects[0] as NodeObject;
  assert.deepEqual(node.addresses, [{ type: 'InternalIP', address: '172.30.0.12' }, { type: 'Hostname', address: 'node-2' }]);
  assert.deepEqual(node.addresses6, [{ type: 'InternalIP', address: 'fd00:172:30::c' }]);
  const bad = parse('apiVersion: v1\nkind: Node\nmetadata: {name: node-3}\nstatus:\n  addresses: [{type: InternalIP, address: "fd00::zz"}]\n', 'node.yaml');
  assert.equal(bad.problems.length, 1, bad.problems.join('\n'));
  assert.match(bad.problems[0]!, /status\.addresses\[0\]\.address/);
});
