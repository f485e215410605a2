// The kernel proxy modes' IPv6 half (kube-proxy's IPv6 proxier): Services and Pods of a
// dual-stack cluster through the real control side (manifest mode, the same
// ServiceController the lab's node daemons run), the IPv6 snapshot compiled from its
// view for node-1, and the ip6tables / `table ip6` rules generated from it. Golden files
// pin the output (UPDATE_GOLDEN=1 rewrites them); the plan is checked for each traffic
// policy; both rule sets must load into a real kernel beside the IPv4 ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServiceController } from '../src/control/service-controller.ts';
import { ManifestDir } from '../src/k8s/manifest-dir.ts';
import { iptablesRules } from '../src/kernel-proxy/iptables/rules.ts';
import { nftablesRules } from '../src/kernel-proxy/nftables/rules.ts';
import { hashName, planPorts, proxySnapshot6, type ProxySnapshot } from '../src/kernel-proxy/proxy-plan.ts';

import { parseServiceCidrs, type ServiceCidrs } from '../src/model/cluster-defaults.ts';
import type { ClusterView } from '../src/model/cluster-view.ts';
import { parseCidr } from '../src/wire/address.ts';
import { Netns } from './helpers/netns.ts';

const GOLDEN = join(new URL('.', import.meta.url).pathname, 'fixtures/lab-rules');
const NODE4 = { clusterCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/16' };
const NODE6 = { clusterCIDR: 'fd00:10:244::/56', serviceCIDR: 'fd00:10:96::/112' };

/** The default lab's demo services again, IPv6 or dual-stack, plus the corner cases. */
const SERVICES = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ipFamilyPolicy: RequireDualStack
  clusterIPs: [10.96.0.100, "fd00:10:96::100"]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-nodeport}
spec:
  type: NodePort
  ipFamilies: [IPv6]
  clusterIP: "fd00:10:96::11"
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  ipFamilies: [IPv6]
  clusterIP: "fd00:10:96::12"
  selector: {app: web}
  loadBalancerSourceRanges: ["fd00:172:30::/64", 172.30.0.0/24]
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30081}]
status:
  loadBalancer: {ingress: [{ip: "fd00:172:30::200"}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  type: LoadBalancer
  ipFamilies: [IPv6]
  clusterIP: "fd00:10:96::13"
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30082}]
status:
  loadBalancer: {ingress: [{ip: "fd00:172:30::201"}]}
---
apiVersion: v1
kind: Service
metadata: {name: remote-local}
spec:
  type: LoadBalancer
  ipFamilies: [IPv6]
  clusterIP: "fd00:10:96::14"
  externalTrafficPolicy: Local
  healthCheckNodePort: 32001
  selector: {tier: remote}
  ports: [{port: 80, targetPort: 8080, nodePort: 30083}]
---
apiVersion: v1
kind: Service
metadata: {name: web-ext}
spec:
  ipFamilies: [IPv6]
  clusterIP: "fd00:10:96::15"
  externalIPs: ["2001:db8::150", 203.0.113.150]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-affinity}
spec:
  ipFamilies: [IPv6]
  clusterIP: "fd00:10:96::16"
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-udp}
spec:
  ipFamilies: [IPv6]
  clusterIP: "fd00:10:96::17"
  selector: {app: web}
  ports: [{name: udp, port: 9000, protocol: UDP, targetPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  type: NodePort
  ipFamilies: [IPv6]
  clusterIP: "fd00:10:96::18"
  externalIPs: ["2001:db8::151"]
  selector: {app: nothing}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30084}]
---
apiVersion: v1
kind: Service
metadata: {name: internal-local}
spec:
  ipFamilies: [IPv6]
  clusterIP: "fd00:10:96::19"
  internalTrafficPolicy: Local
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: plain4}
spec:
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  ipFamilies: [IPv6]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
`;

const PODS = [['web-1a', 'node-1', '10.244.1.2', 'fd00:10:244:1::2'], ['web-1b', 'node-1', '10.244.1.3', 'fd00:10:244:1::3'], ['web-2a', 'node-2', '10.244.2.2', 'fd00:10:244:2::2']]
  .map(([name, node, ip, ip6]) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, labels: {app: web${node === 'node-2' ? ', tier: remote' : ''}}}
spec:
  nodeName: ${node}
  containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 9000, protocol: UDP}]}]
status:
  podIP: ${ip}
  podIPs: [{ip: ${ip}}, {ip: "${ip6}"}]
  conditions: [{type: Ready, status: "True"}]
`).join('---\n');

/** node-1's view and its IPv6 snapshot, through the real control side. */
async function compile(t: { after(fn: () => void): void }): Promise<{ view: ClusterView; snapshot6: ProxySnapshot }> {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-rules6-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'svc.yaml'), SERVICES);
  writeFileSync(join(dir, 'pods.yaml'), PODS);
  const source = new ManifestDir({ dir, rescanIntervalMs: 60_000, debounceMs: 10 });
  const c = new ServiceController({
    source,
    node: { name: 'node-1', nodePortAddresses: ['172.30.0.11', 'fd00:172:30::11'] },
    serviceCIDR: parseCidr('10.96.0.0/16')!,
    serviceCIDRs: parseServiceCidrs('10.96.0.0/16,fd00:10:96::/112') as ServiceCidrs,
    minSyncIntervalMs: 10,
    onError: (err) => assert.fail(err),
  });
  t.after(() => c.stop());
  await c.start();
  const view = c.view!;
  return { view, snapshot6: proxySnapshot6(view.snapshot) };
}

function golden(name: string, actual: string): void {
  const path = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(path)) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(path, actual);
    if (process.env.UPDATE_GOLDEN !== '1') assert.fail(`${path} did not exist; written now, check it and run again`);
  }
  assert.equal(actual, readFileSync(path, 'utf8'), `${name} differs (UPDATE_GOLDEN=1 rewrites it after review)`);
}

test('the IPv6 snapshot: the IPv6 half of every proxied Service, per-node policies applied', async (t) => {
  const { snapshot6 } = await compile(t);
  assert.equal(snapshot6.family, 6);
  assert.deepEqual(snapshot6.nodePortAddresses, ['fd00:172:30::11']);
  const ports = planPorts(snapshot6);
  // No IPv4-only Service, no headless one.
  assert.deepEqual(ports.map((p) => p.portName), [
    'default/echo-udp:udp', 'default/empty:http', 'default/internal-local:http', 'default/remote-local', 'default/web-affinity:http',
    'default/web-ext:http', 'default/web-lb:http', 'default/web-local:http', 'default/web-nodeport:http', 'default/web:http',
  ]);
  const port = (name: string) => ports.find((p) => p.portName === name)!;
  const addresses = (list: { address: string }[]) => list.map((e) => e.address);
  const all = ['[fd00:10:244:1::2]:8080', '[fd00:10:244:1::3]:8080', '[fd00:10:244:2::2]:8080'];
  assert.equal(port('default/web:http').clusterIP, 'fd00:10:96::100');
  assert.deepEqual(addresses(port('default/web:http').clusterEndpoints), all);
  // externalTrafficPolicy Local: outside traffic only to this node's endpoints, pods and the node to all.
  const local = port('default/web-local:http');
  assert.deepEqual([addresses(local.clusterEndpoints), addresses(local.localEndpoints)], [all, all.slice(0, 2)]);
  assert.deepEqual([local.loadBalancerIPs, local.spec.healthCheckNodePort, local.spec.localReadyEndpoints], [['fd00:172:30::201'], 32000, 2]);
  // Local policy and no endpoint here: outside traffic is dropped, not rejected.
  const remote = port('default/remote-local');
  assert.deepEqual([remote.hasExternalEndpoints, remote.externalDropsForLocalPolicy, addresses(remote.clusterEndpoints)], [false, true, ['[fd00:10:244:2::2]:8080']]);
  assert.deepEqual(addresses(port('default/internal-local:http').spec.clusterEndpoints.map((e) => ({ address: `[${e.ip}]:${e.port}` }))), all.slice(0, 2));
  assert.equal(port('default/web-affinity:http').spec.affinityTimeoutSeconds, 10800);
  // Each family's source ranges and external IPs to its own proxier.
  assert.deepEqual(port('default/web-lb:http').sourceRanges, ['fd00:172:30::/64']);
  assert.deepEqual(port('default/web-ext:http').externalIPs, ['2001:db8::150']);
  assert.deepEqual([port('default/empty:http').hasInternalEndpoints, port('default/empty:http').spec.nodePort], [false, 30084]);
  assert.deepEqual(addresses(port('default/echo-udp:udp').clusterEndpoints), all.map((a) => a.replace(':8080', ':9000')));
  // kube-proxy names an IPv6 endpoint by net.JoinHostPort: the SEP hash covers "[addr]:port".
  const first = port('default/web:http').clusterEndpoints[0]!;
  assert.equal(first.sepChain, `KUBE-SEP-${hashName('default/web:httptcp[fd00:10:244:1::2]:8080', 16)}`);
  assert.match(first.nftEndpointChain, /^endpoint-[A-Z2-7]{8}-default\/web\/tcp\/http__fd00\.10\.244\.1\.\.2\/8080$/);
});

test('ip6tables and nftables (table ip6) rules for the IPv6 snapshot match the golden files', async (t) => {
  const { snapshot6 } = await compile(t);
  const ipt = iptablesRules(snapshot6, NODE6);
  golden('ip6tables.golden', ipt);
  assert.doesNotMatch(ipt, /\b10\.|\/32\b|203\.0\.113|172\.30\.0/, 'nothing of IPv4 in the IPv6 rules');
  const nft = nftablesRules(snapshot6, NODE6);
  golden('nftables6.golden', nft);
  assert.ok(nft.startsWith('add table ip6 kube-proxy { comment "rules for kube-proxy" ; }\ndelete table ip6 kube-proxy\n'));
  assert.doesNotMatch(nft, /ipv4_addr|\bip (daddr|saddr)\b/);
});

test('the kernel takes the IPv6 rules beside the IPv4 ones (ip6tables-restore, nft), each family\'s replacing only its own', async (t) => {
  const { view, snapshot6 } = await compile(t);
  using ns = new Netns('rules6');
  ns.exec('iptables-restore', [], { input: iptablesRules(view.snapshot, NODE4) });
  ns.exec('ip6tables-restore', [], { input: iptablesRules(snapshot6, NODE6) });
  const saved6 = ns.exec('ip6tables-save', ['-t', 'nat']);
  assert.match(saved6, /-A KUBE-SERVICES -d fd00:10:96::100\/128 -p tcp -m comment --comment "default\/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-/);
  assert.match(saved6, /-j DNAT --to-destination \[fd00:10:244:1::2\]:8080/);
  assert.match(saved6, /-m recent --set --name KUBE-SEP-\w+ --mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource -m tcp -j DNAT/);
  assert.match(saved6, /-A KUBE-SERVICES -d fd00:172:30::11\/128 -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS/);
  assert.match(ns.exec('ip6tables-save', ['-t', 'filter']), /-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default\/remote-local has no local endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30083 -j DROP/);
  // The IPv4 proxier's tables stay as they were.
  assert.match(ns.exec('iptables-save', ['-t', 'nat']), /-A KUBE-SERVICES -d 10\.96\.0\.100\/32 -p tcp -m comment --comment "default\/web:http cluster IP"/);
  // Restoring an empty IPv6 set removes the IPv6 services only.
  ns.exec('ip6tables-restore', [], { input: iptablesRules({ ...snapshot6, ports: [] }, NODE6) });
  assert.doesNotMatch(ns.exec('ip6tables-save', ['-t', 'nat']), /KUBE-SVC-/);
  assert.match(ns.exec('iptables-save', ['-t', 'nat']), /KUBE-SVC-/);

  ns.exec('nft', ['-f', '-'], { input: nftablesRules(view.snapshot, NODE4) });
  ns.exec('nft', ['-f', '-'], { input: nftablesRules(snapshot6, NODE6) });
  const listed = ns.exec('nft', ['list', 'table', 'ip6', 'kube-proxy']);
  assert.match(listed, /numgen random mod 3 vmap \{ 0 : goto endpoint-\w+-default\/web\/tcp\/http__fd00\.10\.244\.1\.\.2\/8080/);
  assert.match(listed, /meta l4proto tcp dnat to \[fd00:10:244:1::2\]:8080/);
  assert.match(listed, /set affinity-\w+-default\/web-affinity\/tcp\/http__fd00\.10\.244\.1\.\.2\/8080 \{\s+type ipv6_addr/);
  assert.match(listed, /fd00:10:96::100 \. tcp \. 80 : goto service-\w+-default\/web\/tcp\/http/);
  assert.match(ns.exec('nft', ['list', 'table', 'ip', 'kube-proxy']), /10\.96\.0\.100 \. tcp \. 80 : goto service-/);
  ns.exec('nft', ['-f', '-'], { input: nftablesRules({ ...snapshot6, ports: [] }, NODE6) });
  assert.doesNotMatch(ns.exec('nft', ['list', 'table', 'ip6', 'kube-proxy']), /chain service-[A-Z2-7]{8}-/);
  assert.match(ns.exec('nft', ['list', 'table', 'ip', 'kube-proxy']), /chain service-[A-Z2-7]{8}-/);
});
