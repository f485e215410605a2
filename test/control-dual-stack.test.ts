// Dual-stack Services through the control side in manifest mode (the agent allocates):
// cluster IPs from a service CIDR per family, ipFamilies and ipFamilyPolicy settled as
// kube-apiserver settles them, one set of EndpointSlices per family from the pods'
// podIPs, the ClusterView carrying the IPv6 half as text, and the IPv4 tables taking
// exactly the IPv4 half: the snapshot of a dual-stack cluster equals, port for port,
// that of the same Services in an IPv4-only cluster.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ServiceController } from '../src/control/service-controller.ts';
import { ManifestDir } from '../src/k8s/manifest-dir.ts';
import { parseServiceCidrs, type ServiceCidrs } from '../src/model/cluster-defaults.ts';
import { snapshotToJson } from '../src/model/snapshot-json.ts';
import { EntryPoint } from '../src/services/nat-codes.ts';
import { traceServicePacket } from '../src/services/trace.ts';
import { ipv4, ipv4ToString, parseCidr, parseIpv6 } from '../src/wire/address.ts';

const DUAL = parseServiceCidrs('10.96.0.0/16,fd00:10:96::/112') as ServiceCidrs;
const IPV4_ONLY = parseServiceCidrs('10.96.0.0/16') as ServiceCidrs;

function services(dual: boolean): string {
  const families = dual ? '\n  ipFamilyPolicy: PreferDualStack' : '';
  return `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort${families}
  selector: {app: web}
  externalIPs: [203.0.113.7${dual ? ', "2001:db8::7"' : ''}]
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: plain}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080}]
${dual ? `---
apiVersion: v1
kind: Service
metadata: {name: only6}
spec:
  type: NodePort
  ipFamilies: [IPv6]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: fixed}
spec:
  clusterIPs: [10.96.0.50, "fd00:10:96::50"]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
` : ''}`;
}

function pods(dual: boolean): string {
  return ['10.244.1.2', '10.244.2.3'].map((ip, i) => `apiVersion: v1
kind: Pod
metadata: {name: web-${i}, labels: {app: web}}
spec:
  nodeName: node-${i + 1}
  containers: [{name: c, ports: [{containerPort: 8080}]}]
status:
  podIP: ${ip}
  podIPs: [{ip: ${ip}}${dual ? `, {ip: "fd00:10:244:${i + 1}::${i + 2}"}` : ''}]
  conditions: [{type: Ready, status: "True"}]
`).join('---\n');
}

async function run(t: { after(fn: () => void): void }, dual: boolean, cidrs: ServiceCidrs, text = services(dual)) {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-dual-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'svc.yaml'), text);
  writeFileSync(join(dir, 'pods.yaml'), pods(dual));
  const c = new ServiceController({
    source: new ManifestDir({ dir, rescanIntervalMs: 60_000, debounceMs: 10 }),
    node: { name: 'node-1', nodePortAddresses: ['10.0.0.1', 'fd00:172:30::1'] },
    serviceCIDR: parseCidr('10.96.0.0/16')!,
    serviceCIDRs: cidrs,
    minSyncIntervalMs: 10,
    onError: () => {},
  });
  t.after(() => c.stop());
  await c.start();
  return c.view!;
}

test('a dual-stack cluster allocates per family and the view carries the IPv6 half', async (t) => {
  const view = await run(t, true, DUAL);
  const svc = (name: string) => view.services.find((s) => s.name === name)!;
  const serviceCIDR4 = parseCidr('10.96.0.0/16')!;
  const web = svc('web');
  assert.deepEqual([web.ipFamilyPolicy, web.ipFamilies], ['PreferDualStack', ['IPv4', 'IPv6']]);
  assert.ok(serviceCIDR4.contains(web.clusterIP));
  assert.match(web.clusterIP6, /^fd00:10:96::[0-9a-f]{1,4}$/);
  assert.deepEqual(web.clusterIPs, [ipv4ToString(web.clusterIP), web.clusterIP6]);
  assert.deepEqual(web.endpoints.map((e) => ipv4ToString(e.ip)), ['10.244.1.2', '10.244.2.3']);
  assert.deepEqual(web.endpoints6.map((e) => [e.ip, e.nodeName, e.ready, e.ports.map((p) => p.port)]), [
    ['fd00:10:244:1::2', 'node-1', true, [8080]],
    ['fd00:10:244:2::3', 'node-2', true, [8080]],
  ]);
  assert.deepEqual([web.externalIPs.map(ipv4ToString), web.externalIPs6], [['203.0.113.7'], ['2001:db8::7']]);
  // Nothing asked: SingleStack in the primary family, IPv4 slices only.
  const plain = svc('plain');
  assert.deepEqual([plain.ipFamilyPolicy, plain.ipFamilies, plain.clusterIP6, plain.endpoints6.length], ['SingleStack', ['IPv4'], '', 0]);
  // IPv6 only: no IPv4 cluster IP, its endpoints from the IPv6 slices.
  const only6 = svc('only6');
  assert.deepEqual([only6.clusterIP, only6.clusterIPs, only6.ipFamilies, only6.endpoints.length], [0, [only6.clusterIP6], ['IPv6'], 0]);
  assert.equal(only6.endpoints6.length, 2);
  assert.ok(only6.ports[0]!.nodePort >= 30000, 'node ports belong to no family');
  // Requested addresses of both families are kept, RequireDualStack inferred from two.
  const fixed = svc('fixed');
  assert.deepEqual([fixed.clusterIPs, fixed.ipFamilyPolicy], [['10.96.0.50', 'fd00:10:96::50'], 'RequireDualStack']);
  for (const s of view.services) for (const ip of [s.clusterIP6, ...s.endpoints6.map((e) => e.ip)]) if (ip !== '') assert.ok(parseIpv6(ip) !== null, ip);
});

test('the IPv4 tables take exactly the IPv4 half of dual-stack Services', async (t) => {
  const dual = await run(t, true, DUAL);
  const single = await run(t, false, IPV4_ONLY);
  // The IPv4 half of the written snapshot (the IPv6 half, ports6 and nodePortAddresses6, is the next test's).
  const json = (v: typeof dual) => {
    const { ports6: _ports6, nodePortAddresses6: _addresses6, ...v4 } = snapshotToJson(v.snapshot);
    return v4 as { ports: { key: string }[] };
  };
  const dualPorts = json(dual);
  // The IPv6-only Service is not in the IPv4 tables at all (node port included), as
  // kube-proxy's IPv4 proxier skips a Service without an IPv4 cluster IP.
  assert.deepEqual(dualPorts.ports.map((p) => p.key), ['default/fixed:http', 'default/plain:http', 'default/web:http']);
  const withoutFixed = { ...dualPorts, ports: dualPorts.ports.filter((p) => p.key !== 'default/fixed:http') };
  assert.deepEqual(withoutFixed, json(single), 'the dual-stack snapshot is the IPv4-only one, port for port');
  assert.doesNotMatch(JSON.stringify(dualPorts), /fd00|2001:db8/);

  // A packet through the real service NAT: the dual-stack Service's IPv4 cluster IP and
  // node port reach its IPv4 endpoints; the IPv6-only Service's node port is no frontend here.
  const web = dual.services.find((s) => s.name === 'web')!;
  const only6 = dual.services.find((s) => s.name === 'only6')!;
  const options = { masqueradeIP: ipv4('10.0.0.1'), seed: 1, conntrack: { capacity: 64, seed: 1 } };
  const toCluster = traceServicePacket(dual.snapshot, { protocol: 6, src: ipv4('10.244.1.2'), srcPort: 40000, dst: web.clusterIP, dstPort: 80, entryPoint: EntryPoint.POD }, options);
  assert.equal(toCluster.verdict, 'nated');
  assert.equal(toCluster.servicePort, 'default/web:http');
  assert.match(toCluster.endpoint ?? '', /^10\.244\.[12]\.[23]:8080$/);
  const toNodePort = traceServicePacket(dual.snapshot, { protocol: 6, src: ipv4('203.0.113.50'), srcPort: 5000, dst: ipv4('10.0.0.1'), dstPort: web.ports[0]!.nodePort, entryPoint: EntryPoint.EXTERNAL }, options);
  assert.equal(toNodePort.verdict, 'nated');
  assert.match(toNodePort.endpoint ?? '', /^10\.244\.[12]\.[23]:8080$/);
  const toOnly6 = traceServicePacket(dual.snapshot, { protocol: 6, src: ipv4('203.0.113.50'), srcPort: 5000, dst: ipv4('10.0.0.1'), dstPort: only6.ports[0]!.nodePort, entryPoint: EntryPoint.EXTERNAL }, options);
  assert.deepEqual([toOnly6.verdict, toOnly6.servicePort], ['pass', null], JSON.stringify(toOnly6));
});

test('the IPv6 tables take the IPv6 half: ports6 per dual-stack and IPv6-only Service, traced through NAT66', async (t) => {
  const dual = await run(t, true, DUAL);
  const ports6 = dual.snapshot.ports6 ?? [];
  // The IPv4-only Service is not in the IPv6 half; the others are, with their IPv6 addresses.
  assert.deepEqual(ports6.map((p) => p.key), ['default/fixed:http', 'default/only6:http', 'default/web:http']);
  assert.deepEqual(dual.snapshot.nodePortAddresses6, ['fd00:172:30::1']);
  const web6 = ports6.find((p) => p.name === 'web')!;
  const web = dual.services.find((s) => s.name === 'web')!;
  assert.equal(web6.clusterIP, web.clusterIP6);
  assert.deepEqual(web6.externalIPs, ['2001:db8::7']);
  assert.deepEqual(web6.allEndpoints.map((e) => `${e.ip} ${e.local}`), ['fd00:10:244:1::2 true', 'fd00:10:244:2::3 false']);
  assert.doesNotMatch(JSON.stringify(ports6), /10\.244\.|203\.0\.113/);
  // The IPv6 half as written (snapshot JSON): the golden file is the spec, reviewed by eye
  // (UPDATE_GOLDEN=1 rewrites it).
  const written = snapshotToJson(dual.snapshot);
  const half6 = `${JSON.stringify({ nodePortAddresses6: written.nodePortAddresses6, ports6: written.ports6 }, null, 2)}\n`;
  const goldenPath = join(import.meta.dirname, 'fixtures', 'control', 'golden-dual-ipv6.json');
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(goldenPath, half6);
  assert.deepEqual(JSON.parse(half6), JSON.parse(readFileSync(goldenPath, 'utf8')), 'golden-dual-ipv6.json differs (UPDATE_GOLDEN=1 rewrites it; review the diff)');
  const options = { masqueradeIP: ipv4('10.0.0.1'), masqueradeIP6: parseIpv6('fd00:10:244:1::1')!, seed: 1, conntrack: { capacity: 64, seed: 1 } };
  const toCluster = traceServicePacket(dual.snapshot, { protocol: 6, src: 'fd00:10:244:1::9', srcPort: 40000, dst: web.clusterIP6, dstPort: 80, entryPoint: EntryPoint.POD }, options);
  assert.equal(toCluster.verdict, 'nated', toCluster.steps.join('\n'));
  assert.match(toCluster.endpoint ?? '', /^\[fd00:10:244:[12]::[23]\]:8080$/);
  assert.match(toCluster.after, /^\[fd00:10:244:1::9\]:40000 -> \[fd00:10:244:[12]::[23]\]:8080$/);
  const only6 = dual.services.find((s) => s.name === 'only6')!;
  const toNodePort = traceServicePacket(dual.snapshot, { protocol: 6, src: '2001:db8::50', srcPort: 5000, dst: 'fd00:172:30::1', dstPort: only6.ports[0]!.nodePort, entryPoint: EntryPoint.EXTERNAL }, options);
  assert.equal(toNodePort.verdict, 'nated', toNodePort.steps.join('\n'));
  assert.equal(toNodePort.masquerade, 'externalTrafficPolicy: Cluster');
  assert.match(toNodePort.after, /^\[fd00:10:244:1::1\]:5000 -> /);
});

test('RequireDualStack on an IPv4-only cluster is rejected with file, document and field; the rest is served', async (t) => {
  const text = `${services(false)}---
apiVersion: v1
kind: Service
metadata: {name: both}
spec:
  ipFamilyPolicy: RequireDualStack
  selector: {app: web}
  ports: [{port: 80}]
`;
  const view = await run(t, false, IPV4_ONLY, text);
  const both = view.services.find((s) => s.name === 'both')!;
  assert.deepEqual(both.problems, ['svc.yaml: document 3 (Service default/both): spec.ipFamilyPolicy: "RequireDualStack": this cluster is not configured for dual-stack services (its service CIDR is IPv4 only)']);
  assert.equal(both.proxied, false);
  assert.ok(view.services.find((s) => s.name === 'web')!.proxied);
});
