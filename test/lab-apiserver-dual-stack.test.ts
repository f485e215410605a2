// Dual-stack Services in the lab API server against the real kubectl 1.34: a cluster
// with two service CIDRs (--service-cidr 10.96.0.0/16,fd00:10:96::/112, as
// kube-apiserver's --service-cluster-ip-range) writes clusterIPs, ipFamilies and
// ipFamilyPolicy as kube-apiserver would (`kubectl create service`, apply of
// RequireDualStack, PreferDualStack, IPv6-primary, headless, ExternalName, upgrade and
// downgrade), its EndpointSlice controller writes one slice per family from the pods'
// podIPs; an IPv4-only cluster keeps its old defaults and refuses RequireDualStack with
// the field named.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { parseCidr, parseCidr6, parseIpv6 } from '../src/wire/address.ts';
import { ApiServerProcess } from './helpers/apiserver.ts';

const dual = new ApiServerProcess(['--service-cidr', '10.96.0.0/16,fd00:10:96::/112', '--controllers']);
const single = new ApiServerProcess(['--service-cidr', '10.96.0.0/16']);
before(async () => { await Promise.all([dual.start(), single.start()]); });
after(async () => { await Promise.all([dual.cleanup(), single.cleanup()]); });

const V4 = parseCidr('10.96.0.0/16')!;
const V6 = parseCidr6('fd00:10:96::/112')!;
const inV4 = (ip: string): boolean => !ip.includes(':') && V4.contains(parseCidr(`${ip}/32`)!.network);
const inV6 = (ip: string): boolean => ip.includes(':') && V6.contains(parseIpv6(ip)!);

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function spec(api: ApiServerProcess, name: string): Promise<any> {
  return (JSON.parse(await api.ok(['get', 'svc', name, '-o', 'json'])) as { spec: unknown }).spec;
}

function service(name: string, fields: string, selector = 'selector: {app: web}'): string {
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}}
spec:
  ${selector}
${fields}  ports: [{name: http, port: 80, targetPort: 8080}]
`;
}

test('kubectl create service on a dual-stack cluster: SingleStack in the primary family', async () => {
  await dual.ok(['create', 'service', 'clusterip', 'made', '--tcp=80:8080']);
  const s = await spec(dual, 'made');
  assert.deepEqual([s.ipFamilyPolicy, s.ipFamilies, s.clusterIPs.length], ['SingleStack', ['IPv4'], 1]);
  assert.equal(s.clusterIP, s.clusterIPs[0]);
  assert.ok(inV4(s.clusterIP), s.clusterIP);
  // kubectl's table shows the primary address, as with kube-apiserver.
  assert.match(await dual.ok(['get', 'svc', 'made']), new RegExp(`made\\s+ClusterIP\\s+${s.clusterIP.replaceAll('.', '\\.')}\\s`));
});

test('apply RequireDualStack, PreferDualStack and IPv6-primary: one address per family, in ipFamilies order', async () => {
  await dual.ok(['apply', '-f', '-'], [
    service('both', '  ipFamilyPolicy: RequireDualStack\n'),
    service('prefer', '  ipFamilyPolicy: PreferDualStack\n'),
    service('six-first', '  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6, IPv4]\n'),
    service('only6', '  ipFamilies: [IPv6]\n'),
    service('fixed', '  clusterIPs: [10.96.7.7, "fd00:10:96::707"]\n'),
  ].join('---\n'));
  const both = await spec(dual, 'both');
  assert.deepEqual([both.ipFamilyPolicy, both.ipFamilies], ['RequireDualStack', ['IPv4', 'IPv6']]);
  assert.ok(inV4(both.clusterIPs[0]) && inV6(both.clusterIPs[1]), JSON.stringify(both.clusterIPs));
  assert.equal(both.clusterIP, both.clusterIPs[0]);
  const prefer = await spec(dual, 'prefer');
  assert.deepEqual([prefer.ipFamilyPolicy, prefer.ipFamilies, prefer.clusterIPs.length], ['PreferDualStack', ['IPv4', 'IPv6'], 2]);
  const sixFirst = await spec(dual, 'six-first');
  assert.deepEqual(sixFirst.ipFamilies, ['IPv6', 'IPv4']);
  assert.ok(inV6(sixFirst.clusterIP) && sixFirst.clusterIP === sixFirst.clusterIPs[0] && inV4(sixFirst.clusterIPs[1]));
  const only6 = await spec(dual, 'only6');
  assert.deepEqual([only6.ipFamilyPolicy, only6.ipFamilies, only6.clusterIPs.length], ['SingleStack', ['IPv6'], 1]);
  assert.ok(inV6(only6.clusterIP));
  const fixed = await spec(dual, 'fixed');
  assert.deepEqual([fixed.clusterIPs, fixed.ipFamilies, fixed.ipFamilyPolicy], [['10.96.7.7', 'fd00:10:96::707'], ['IPv4', 'IPv6'], 'RequireDualStack']);
  // -o yaml names the fields as kube-apiserver writes them.
  const yaml = await dual.ok(['get', 'svc', 'both', '-o', 'yaml']);
  assert.match(yaml, /clusterIPs:\n\s+- 10\.96\.\d+\.\d+\n\s+- fd00:10:96::[0-9a-f]+\n/);
  assert.match(yaml, /ipFamilies:\n\s+- IPv4\n\s+- IPv6\n/);
  assert.match(yaml, /ipFamilyPolicy: RequireDualStack/);
  // A taken address of either family is refused with its field.
  const taken = await dual.kubectl(['apply', '-f', '-'], 'admin', service('again', '  clusterIPs: [10.96.7.8, "fd00:10:96::707"]\n'));
  assert.notEqual(taken.code, 0);
  assert.match(taken.stderr, /spec\.clusterIPs\[1\]: Invalid value: "fd00:10:96::707": provided IP is already allocated/);
  const outside = await dual.kubectl(['apply', '-f', '-'], 'admin', service('outside', '  clusterIPs: ["fd00:99::1"]\n'));
  assert.match(outside.stderr, /spec\.clusterIP: Invalid value: "fd00:99::1": provided IP is not in the valid range\. The range of valid IPs is fd00:10:96::\/112/);
});

test('upgrade and downgrade: PreferDualStack adds the second family, SingleStack drops it; the primary is immutable', async () => {
  await dual.ok(['apply', '-f', '-'], service('grow', ''));
  const before = await spec(dual, 'grow');
  assert.deepEqual([before.ipFamilyPolicy, before.clusterIPs.length], ['SingleStack', 1]);
  await dual.ok(['patch', 'svc', 'grow', '--type=merge', '-p', '{"spec":{"ipFamilyPolicy":"PreferDualStack"}}']);
  const grown = await spec(dual, 'grow');
  assert.deepEqual([grown.ipFamilyPolicy, grown.ipFamilies, grown.clusterIPs[0]], ['PreferDualStack', ['IPv4', 'IPv6'], before.clusterIP]);
  assert.ok(inV6(grown.clusterIPs[1]));
  await dual.ok(['patch', 'svc', 'grow', '--type=merge', '-p', '{"spec":{"ipFamilyPolicy":"SingleStack"}}']);
  const shrunk = await spec(dual, 'grow');
  assert.deepEqual([shrunk.ipFamilyPolicy, shrunk.ipFamilies, shrunk.clusterIPs], ['SingleStack', ['IPv4'], [before.clusterIP]]);
  // The released IPv6 address can be asked for again.
  await dual.ok(['apply', '-f', '-'], service('reuse', `  clusterIPs: ["${grown.clusterIPs[1]}"]\n`));
  const change = await dual.kubectl(['patch', 'svc', 'grow', '--type=merge', '-p', '{"spec":{"ipFamilies":["IPv6"],"clusterIPs":null,"clusterIP":null}}']);
  assert.notEqual(change.code, 0);
  assert.match(change.stderr, /spec\.ipFamilies\[0\]: Invalid value: "IPv6": may not change once set/);
});

test('headless without a selector gets both families; ExternalName none', async () => {
  await dual.ok(['apply', '-f', '-'], [
    service('manual', '  clusterIP: None\n', ''),
    `apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec:\n  type: ExternalName\n  externalName: db.example.com\n  ipFamilyPolicy: SingleStack\n`,
  ].join('---\n'));
  const manual = await spec(dual, 'manual');
  assert.deepEqual([manual.clusterIP, manual.clusterIPs, manual.ipFamilyPolicy, manual.ipFamilies], ['None', ['None'], 'RequireDualStack', ['IPv4', 'IPv6']]);
  const ext = await spec(dual, 'ext');
  assert.deepEqual([ext.clusterIPs, ext.ipFamilies, ext.ipFamilyPolicy], [undefined, undefined, undefined]);
  // On an IPv4-only cluster too (kube-apiserver allows it: the endpoints are written by hand).
  await single.ok(['apply', '-f', '-'], service('manual', '  clusterIP: None\n', ''));
  assert.deepEqual((await spec(single, 'manual')).ipFamilies, ['IPv4', 'IPv6']);
});

test('the EndpointSlice controller writes one slice per family from the pods\' podIPs', async () => {
  await dual.ok(['apply', '-f', '-'], `${service('web', '  ipFamilyPolicy: PreferDualStack\n')}---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: web, image: tapir/echo, ports: [{containerPort: 8080}]}]
`);
  const status = { status: { phase: 'Running', podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }, { ip: 'fd00:10:244:1::5' }], conditions: [{ type: 'Ready', status: 'True' }] } };
  const r = await dual.api('PATCH', '/api/v1/namespaces/default/pods/web-1/status', status, undefined, 'application/merge-patch+json');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let slices: any[] = [];
  for (let i = 0; i < 100; i++) {
    slices = (JSON.parse(await dual.ok(['get', 'endpointslices', '-l', 'kubernetes.io/service-name=web', '-o', 'json'])) as { items: unknown[] }).items;
    if (slices.length === 2 && slices.every((s) => Array.isArray(s.endpoints) && s.endpoints.length === 1)) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.deepEqual(slices.map((s) => [s.metadata.name, s.addressType, s.endpoints.map((e: { addresses: string[] }) => e.addresses[0])]).sort(), [
    ['web-tapir-0', 'IPv4', ['10.244.1.5']],
    ['web-tapir-ipv6-0', 'IPv6', ['fd00:10:244:1::5']],
  ]);
  assert.match(await dual.ok(['get', 'endpointslices', '-l', 'kubernetes.io/service-name=web']), /web-tapir-ipv6-0\s+IPv6\s+8080\s+fd00:10:244:1::5/);
});

test('an IPv4-only cluster keeps its defaults and refuses RequireDualStack and IPv6, naming the field', async () => {
  await single.ok(['create', 'service', 'clusterip', 'made', '--tcp=80:8080']);
  const s = await spec(single, 'made');
  assert.deepEqual([s.ipFamilyPolicy, s.ipFamilies, s.clusterIPs], ['SingleStack', ['IPv4'], [s.clusterIP]]);
  const require = await single.kubectl(['apply', '-f', '-'], 'admin', service('both', '  ipFamilyPolicy: RequireDualStack\n'));
  assert.notEqual(require.code, 0);
  assert.match(require.stderr, /Service "both" is invalid: spec\.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services/);
  const six = await single.kubectl(['apply', '-f', '-'], 'admin', service('six', '  ipFamilies: [IPv6]\n'));
  assert.match(six.stderr, /spec\.ipFamilies\[0\]: Invalid value: "IPv6": not configured on this cluster/);
  // PreferDualStack falls back to the one family.
  await single.ok(['apply', '-f', '-'], service('prefer', '  ipFamilyPolicy: PreferDualStack\n'));
  const prefer = await spec(single, 'prefer');
  assert.deepEqual([prefer.ipFamilyPolicy, prefer.ipFamilies, prefer.clusterIPs.length], ['PreferDualStack', ['IPv4'], 1]);
});
