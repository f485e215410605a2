// Topology parsing and address planning (no namespaces), and the CLI's answer to a bad
// topology file: exit status 1 and every error naming the file and the field path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_TOPOLOGY_YAML } from '../src/lab/default-topology.ts';
import { labNetnsPattern } from '../src/lab/network/names.ts';
import { parseManifest } from '../src/k8s/manifest.ts';
import { planLab } from '../src/lab/plan.ts';
import { defaultTopology, loadTopologyFile, parseTopology } from '../src/lab/topology.ts';
import { agentConfig, clusterAgentConfig } from '../src/lab/network/tapir-dataplane.ts';
import { parseAgentConfig } from '../src/agent/config-file.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const TAPIR = join(ROOT, 'bin/tapir');

function errorOf(yaml: string, source = '/x/topology.yaml'): string {
  try {
    planLab(parseTopology(yaml, source), 'unit', 'kernel');
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail('expected the topology to be rejected');
}

test('the built-in default equals lab/topologies/default.yaml and plans the documented addresses', () => {
  assert.equal(readFileSync(join(ROOT, 'lab/topologies/default.yaml'), 'utf8'), DEFAULT_TOPOLOGY_YAML);
  const state = planLab(defaultTopology(), 'tapir', 'kernel');
  assert.deepEqual(state.nodes.map((n) => [n.name, n.underlayIP, n.podCIDR, n.gateway, n.netns]), [
    ['node-1', '172.30.0.11', '10.244.1.0/24', '10.244.1.1', 'tl-tapir-node.node-1'],
    ['node-2', '172.30.0.12', '10.244.2.0/24', '10.244.2.1', 'tl-tapir-node.node-2'],
  ]);
  assert.deepEqual(state.pods.map((p) => [p.node, p.name, p.namespace, p.ip]), [
    ['node-1', 'web-1a', 'default', '10.244.1.2'], ['node-1', 'web-1b', 'default', '10.244.1.3'],
    ['node-2', 'web-2a', 'default', '10.244.2.2'], ['node-2', 'web-2b', 'default', '10.244.2.3'],
  ]);
  assert.deepEqual(state.client, { name: 'client', netns: 'tl-tapir-client.client', ip: '172.30.0.100', underlayPort: 'client0' });
  assert.deepEqual(state.addressing, { underlayCIDR: '172.30.0.0/24', clusterCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/16', loadBalancerPool: '172.30.0.200-172.30.0.250', vni: 4242, mtu: 1500, podMTU: 1450 });
  assert.deepEqual(state.nodes.map((n) => n.zone), ['zone-a', 'zone-b']);
  assert.equal(state.proxyMode, 'iptables', 'the kernel dataplane defaults to kube-proxy\'s iptables mode');
  assert.equal(state.manifests, '/run/tapir/lab/tapir/manifests');
  assert.deepEqual(state.pods[0]!.ports.map((p) => `${p.name}:${p.port}/${p.protocol}`), ['http:8080/TCP', 'tcp-echo:9000/TCP', 'udp-echo:9000/UDP']);
});

test('the default topology\'s demo services are valid manifests of every kind of Service', () => {
  const services = defaultTopology().services!;
  const parsed = parseManifest(services.text, services.file);
  assert.deepEqual(parsed.problems, []);
  const kinds = parsed.objects.map((o) => (o.kind === 'Service' ? `${o.metadata.name}:${o.spec.type}:${o.spec.externalTrafficPolicy}` : o.kind));
  assert.deepEqual(kinds, ['web:ClusterIP:', 'web-nodeport:NodePort:Cluster', 'web-lb:LoadBalancer:Cluster', 'web-local:LoadBalancer:Local', 'web-ext:ClusterIP:Cluster', 'web-affinity:ClusterIP:', 'echo-udp:ClusterIP:']);
});

test('services, zones, proxy mode, load balancer pool and grace period from the topology', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lab-topology-'));
  try {
    writeFileSync(join(dir, 'svc.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: { name: a }\nspec: { ports: [{ port: 80 }] }\n');
    writeFileSync(join(dir, 'topology.yaml'), 'proxyMode: nftables\nterminationGracePeriodSeconds: 0\naddressing: { loadBalancerPool: 172.30.0.64/28 }\nnodes: [{ name: a, zone: west }, { name: b }]\nservices: svc.yaml\n');
    const topology = loadTopologyFile(join(dir, 'topology.yaml'));
    assert.deepEqual(topology.services, { file: 'svc.yaml', text: readFileSync(join(dir, 'svc.yaml'), 'utf8') });
    const state = planLab(topology, 'z', 'kernel');
    assert.equal(state.proxyMode, 'nftables');
    assert.equal(state.terminationGracePeriodSeconds, 0);
    assert.equal(state.addressing.loadBalancerPool, '172.30.0.65-172.30.0.78');
    assert.deepEqual(state.nodes.map((n) => n.zone), ['west', 'zone-b']);
    assert.throws(() => planLab(topology, 'z', 'tapir'), /proxyMode: proxy mode nftables needs the kernel dataplane/);
    assert.throws(() => planLab(parseTopology('nodes: [{ name: a }]\n', 'inline'), 'z', 'kernel', 'tapir'), /--proxy-mode: proxy mode tapir needs the tapir dataplane/);
    assert.match(errorOf('addressing: { loadBalancerPool: 10.1.0.1-10.1.0.9 }\nnodes: [{ name: a }]\n'), /addressing\.loadBalancerPool: 10\.1\.0\.1-10\.1\.0\.9 is not inside addressing\.underlayCIDR/);
    assert.match(errorOf('addressing: { loadBalancerPool: 172.30.0.10-172.30.0.20 }\nnodes: [{ name: a }]\n'), /addressing\.loadBalancerPool: 172\.30\.0\.10-172\.30\.0\.20 includes 172\.30\.0\.11 of nodes\[0\]\.underlayIP/);
    assert.match(errorOf('nodes: [{ name: a, zone: "bad zone" }]\n'), /nodes\[0\]\.zone: must be a label value/);
    assert.match(errorOf('services: 42\nnodes: [{ name: a }]\n'), /services: must be a list of Kubernetes objects or the path/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every example topology in lab/topologies validates', () => {
  const dir = join(ROOT, 'lab/topologies');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 2);
  for (const file of files) planLab(loadTopologyFile(join(dir, file)), 'examples', 'kernel');
});

test('overrides: addressing, node underlay IP and pod CIDR, MTU, workloads', () => {
  const state = planLab(parseTopology(`
mtu: 9000
vni: 7
addressing: { underlayCIDR: 192.168.50.0/24, clusterCIDR: 10.10.0.0/16, serviceCIDR: 10.20.0.0/16 }
nodes:
  - name: a
    underlayIP: 192.168.50.5
    podCIDR: 10.10.77.0/24
    pods:
      - { name: p, namespace: kube-system, workload: { type: udp-echo, port: 53 }, labels: { k8s-app: kube-dns } }
      - { name: q, workload: { command: "sleep 100" } }
  - name: b
client: null
`, 'inline'), 'o', 'tapir');
  assert.deepEqual(state.nodes.map((n) => [n.underlayIP, n.podCIDR]), [['192.168.50.5', '10.10.77.0/24'], ['192.168.50.12', '10.10.2.0/24']]);
  assert.equal(state.addressing.podMTU, 8950);
  assert.equal(state.client, null);
  assert.equal(state.pods[0]!.ip, null, 'tapir dataplane: addresses come from the CNI result');
  assert.deepEqual(state.pods[0]!.ports, [{ name: 'udp-echo', port: 53, protocol: 'UDP' }]);
  assert.deepEqual(state.pods[1]!.workload, { type: 'command', command: ['sh', '-c', 'sleep 100'], env: {} });
  assert.equal(state.nodes[0]!.agent!.controlSocket, '/run/tapir/lab/o/nodes/a/agent.sock');
});

test('agent: settings reach every agent config (a small conntrack for flood and GC tests), checked like the rest', () => {
  const state = planLab(parseTopology('agent: { conntrackSize: 1024, busyPollMicros: 300 }\nnodes: [{ name: a }, { name: b }]\n', 'inline'), 'ag', 'tapir');
  for (const node of state.nodes) {
    const c = parseAgentConfig(agentConfig(state, node), 'agent.yaml');
    assert.deepEqual([c.conntrackSize, c.busyPollMicros], [1024, 300]);
  }
  const plain = planLab(parseTopology('nodes: [{ name: a }]\n', 'inline'), 'ag', 'tapir');
  assert.equal('conntrackSize' in agentConfig(plain, plain.nodes[0]!), false, 'absent: the agent\'s default');
  const bad = errorOf('agent: { conntrackSize: 10, gcSlice: 5 }\nnodes: [{ name: a }]\n');
  assert.ok(bad.includes('topology.yaml: agent.conntrackSize: 10 is out of range 1024-16777216'), bad);
  assert.ok(bad.includes('topology.yaml: agent.gcSlice: unknown field'), bad);
  assert.ok(errorOf('agent: { busyPollMicros: 5000 }\nnodes: [{ name: a }]\n').includes('topology.yaml: agent.busyPollMicros: 5000 is out of range 0-1000'));
});

test('--underlay ipv6: a dual-stack lab whose agents run VXLAN over the nodes\' IPv6 addresses, the pod MTU 70 under the underlay\'s', () => {
  const topology = parseTopology('nodes: [{ name: a }, { name: b }]\n', 'inline');
  const state = planLab(topology, 'u6', 'tapir', undefined, 'dual', 'ipv6');
  assert.equal(state.underlayFamily, 'ipv6');
  assert.equal(state.addressing.podMTU, 1430);
  const config = parseAgentConfig(agentConfig(state, state.nodes[0]!), 'agent.yaml');
  assert.equal(config.underlayFamily, 6);
  assert.equal(config.mtu, 1430);
  assert.deepEqual(config.nodes.map((n) => n.underlayIP6 != null), [true, true], 'every node with its IPv6 underlay address');
  assert.match(clusterAgentConfig(state, state.nodes[0]!), /underlay:\n\s+family: ipv6\n/, 'cluster mode: the family, the addresses from the Nodes');
  const plain = planLab(topology, 'u4', 'tapir', undefined, 'dual');
  assert.equal(plain.underlayFamily, undefined);
  assert.equal(plain.addressing.podMTU, 1450);
  assert.throws(() => planLab(topology, 'u6', 'tapir', undefined, 'ipv4', 'ipv6'), /--underlay: ipv6 needs IPv6 in the lab \(--ip-family dual or ipv6\)/);
});

test('errors name the file and the field path', () => {
  assert.equal(errorOf('nodes:\n  - name: node-1\n  - name: node-2\n    pods: [{ name: Bad_Pod }]\n'),
    'topology.yaml: nodes[1].pods[0].name: must be a DNS-1123 label (lowercase letters, digits, "-", at most 63)');
  const many = errorOf(`
nodes:
  - name: n
    pods:
      - name: a
        labels: { "app": "x y" }
        workload: { type: http-echo, port: 70000 }
        ports: [{ port: 80, protocol: ICMP }]
        image: nginx
      - name: a
vni: 0
`);
  for (const line of [
    'topology.yaml: nodes[0].pods[0].labels["app"]: "x y" is not a valid label value',
    'topology.yaml: nodes[0].pods[0].workload.port: 70000 is out of range 1-65535',
    'topology.yaml: nodes[0].pods[0].ports[0].protocol: "ICMP" is not one of TCP, UDP, SCTP',
    'topology.yaml: nodes[0].pods[0].image: unknown field',
    'topology.yaml: nodes[0].pods[1].name: pod default/a is already defined at nodes[0].pods[0]',
    'topology.yaml: vni: 0 is out of range 1-16777215',
  ]) assert.ok(many.includes(line), `missing "${line}" in:\n${many}`);
  assert.match(errorOf('nodes: []\n'), /topology\.yaml: nodes: at least one node is required/);
  assert.match(errorOf('{}\n'), /topology\.yaml: nodes: is required/);
  assert.match(errorOf('nodes: [\n'), /topology\.yaml: not valid YAML/);
});

test('address plan errors name the field', () => {
  assert.match(errorOf('addressing: { serviceCIDR: 10.96.0.1/16 }\nnodes: [{ name: a }]\n'), /addressing\.serviceCIDR: "10\.96\.0\.1\/16" must be an IPv4 network/);
  assert.match(errorOf('addressing: { serviceCIDR: 10.244.0.0/20 }\nnodes: [{ name: a }]\n'), /addressing\.serviceCIDR: overlaps addressing\.clusterCIDR/);
  assert.match(errorOf('nodes: [{ name: a, podCIDR: 10.245.0.0/24 }]\n'), /nodes\[0\]\.podCIDR: 10\.245\.0\.0\/24 is not inside addressing\.clusterCIDR/);
  assert.match(errorOf('nodes: [{ name: a }, { name: b, podCIDR: 10.244.1.0/24 }]\n'), /nodes\[1\]\.podCIDR: 10\.244\.1\.0\/24 overlaps nodes\[0\]\.podCIDR/);
  assert.match(errorOf('nodes: [{ name: a, underlayIP: 172.30.0.100 }]\n'), /client\.underlayIP: 172\.30\.0\.100 is already used by nodes\[0\]\.underlayIP/);
  assert.match(errorOf('nodes: [{ name: a, underlayIP: 172.30.1.1 }]\n'), /nodes\[0\]\.underlayIP: 172\.30\.1\.1 is not a host address/);
  const crowded = `nodes:\n  - name: a\n    podCIDR: 10.244.1.0/28\n    pods:\n${Array.from({ length: 14 }, (_, i) => `      - { name: p${i} }`).join('\n')}\n`;
  assert.match(errorOf(crowded), /nodes\[0\]\.pods: 14 pods do not fit in podCIDR 10\.244\.1\.0\/28 \(at most 13\)/);
});

test('namespace names of one lab never match another lab\'s pattern', () => {
  const a = labNetnsPattern('a');
  assert.ok(a.test('tl-a-underlay') && a.test('tl-a-node.node-1') && a.test('tl-a-pod.default.web') && a.test('tl-a-client.client'));
  for (const other of ['tl-a-b-underlay', 'tl-a-b-node.x', 'tl-a-node-underlay', 'tl-ab-underlay', 'tl-a-pod.default', 'tp-a-underlay']) {
    assert.ok(!a.test(other), other);
  }
});

test('tapir lab up with a bad topology file exits 1 naming file and field, and creates nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lab-topology-'));
  try {
    const file = join(dir, 'topology.yaml');
    writeFileSync(file, 'nodes:\n  - name: node-1\n  - name: node-2\n    pods:\n      - name: Bad_Pod\n');
    const name = `ltbad${process.pid}`;
    const result = spawnSync(TAPIR, ['lab', 'up', file, '--name', name, '--dataplane', 'kernel'], { encoding: 'utf8' });
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, /topology\.yaml: nodes\[1\]\.pods\[0\]\.name: must be a DNS-1123 label/);
    assert.equal(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(`tl-${name}-`), false);
    assert.equal(spawnSync(TAPIR, ['lab', 'status', '--name', name], { encoding: 'utf8' }).status, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('dual-stack plan: every node an IPv6 underlay address and a /64 of clusterCIDRv6, pods an IPv6 address from CNI, the agent and CNI configs both families', async () => {
  const { cniNetworkConfig } = await import('../src/lab/network/tapir-dataplane.ts');
  const { nodeObject } = await import('../src/lab/cluster/lab-objects.ts');
  const state = planLab(defaultTopology(), 'unit', 'tapir', undefined, 'dual');
  assert.equal(state.ipFamily, 'dual');
  assert.deepEqual(state.nodes.map((n) => [n.underlayIP6, n.podCIDRv6, n.gateway6]), [
    ['fd00:172:30::b', 'fd00:10:244:1::/64', 'fd00:10:244:1::1'],
    ['fd00:172:30::c', 'fd00:10:244:2::/64', 'fd00:10:244:2::1'],
  ]);
  assert.equal(state.client!.ip6, 'fd00:172:30::64');
  assert.ok(state.pods.every((p) => p.ip6 === null), 'pods get their IPv6 address from the CNI result');
  const node = state.nodes[0]!;
  assert.deepEqual((cniNetworkConfig(node).ipam as { ranges: unknown }).ranges, [[{ subnet: '10.244.1.0/24', gateway: '10.244.1.1' }], [{ subnet: 'fd00:10:244:1::/64', gateway: 'fd00:10:244:1::1' }]]);
  const config = parseAgentConfig(agentConfig(state, node), 'agent.yaml');
  assert.equal(config.podCIDRv6?.toString(), 'fd00:10:244:1::/64');
  assert.equal(config.clusterCIDRv6?.toString(), 'fd00:10:244::/56');
  assert.deepEqual(config.nodes.map((n) => n.podCIDRv6?.toString()), ['fd00:10:244:1::/64', 'fd00:10:244:2::/64']);
  const spec = nodeObject(node).spec as { podCIDRs: string[] };
  assert.deepEqual(spec.podCIDRs, ['10.244.1.0/24', 'fd00:10:244:1::/64']);
  // An IPv4 lab's state and configs carry no IPv6 at all.
  const v4 = planLab(defaultTopology(), 'unit', 'tapir');
  assert.equal(v4.ipFamily, 'ipv4');
  assert.equal(v4.nodes[0]!.podCIDRv6, undefined);
  assert.equal((cniNetworkConfig(v4.nodes[0]!).ipam as { subnet: string }).subnet, '10.244.1.0/24');
  assert.equal(v4.addressing.clusterCIDRv6, undefined);
});

test('dual-stack plan errors: IPv6 prefixes are checked like IPv4 ones (in ipv6-only labs too); ipv6-only plans on the kernel dataplane', () => {
  const err = (yaml: string, dataplane: 'tapir' | 'kernel' = 'tapir'): string => {
    try {
      planLab(parseTopology(yaml, '/x/t.yaml'), 'unit', dataplane);
    } catch (e) {
      return (e as Error).message;
    }
    return assert.fail('expected the topology to be rejected');
  };
  const nodes = 'nodes:\n  - name: a\n    pods: []\n  - name: b\n    pods: []\n';
  assert.equal(planLab(parseTopology(`ipFamily: ipv6\n${nodes}`, '/x/t.yaml'), 'unit', 'tapir').ipFamily, 'ipv6');
  // The kernel dataplane plans IPv6-only pods' addresses itself (::2 + j), and no IPv4 one.
  const kernel = planLab(parseTopology(`ipFamily: ipv6\nnodes:\n  - name: a\n    pods: [{ name: p }]\n`, '/x/t.yaml'), 'unit', 'kernel');
  assert.deepEqual(kernel.pods.map((p) => [p.ip, p.ip6]), [[null, 'fd00:10:244:1::2']]);
  assert.match(err(`ipFamily: ipv6\naddressing:\n  serviceCIDRv6: "fd00:10:96::/96"\n${nodes}`), /addressing.serviceCIDRv6: must be \/108 or smaller/);
  assert.match(err(`ipFamily: dual\naddressing:\n  clusterCIDRv6: "fd00:10:244::1/56"\n${nodes}`), /addressing.clusterCIDRv6: "fd00:10:244::1\/56" must be an IPv6 network/);
  assert.match(err(`ipFamily: dual\naddressing:\n  serviceCIDRv6: "fd00:10:244::/112"\n${nodes}`), /addressing.serviceCIDRv6: overlaps addressing.clusterCIDRv6/);
  assert.match(err(`ipFamily: dual\nnodes:\n  - name: a\n    podCIDRv6: "fd00:99::/64"\n    pods: []\n`), /nodes\[0\].podCIDRv6: fd00:99::\/64 is not inside addressing.clusterCIDRv6/);
  assert.match(err(`ipFamily: quad\n${nodes}`), /ipFamily/);
});

test('IPv6-only plan: nodes as dual-stack ones (IPv4 underlay kept for the overlay), pods IPv6 only, the CNI range and API server range IPv6 only, kube-dns at ::a', async () => {
  const { cniNetworkConfig, clusterAgentConfig } = await import('../src/lab/network/tapir-dataplane.ts');
  const { kubeDnsObjects } = await import('../src/lab/cluster/lab-objects.ts');
  const { labClusterDns } = await import('../src/lab/cluster/pod-start.ts');
  const { labServiceCidrs } = await import('../src/lab/state.ts');
  const state = planLab(defaultTopology(), 'unit', 'tapir', undefined, 'ipv6');
  assert.equal(state.ipFamily, 'ipv6');
  assert.deepEqual(state.nodes.map((n) => [n.underlayIP, n.underlayIP6, n.podCIDRv6]), [
    ['172.30.0.11', 'fd00:172:30::b', 'fd00:10:244:1::/64'],
    ['172.30.0.12', 'fd00:172:30::c', 'fd00:10:244:2::/64'],
  ]);
  assert.ok(state.pods.every((p) => p.ip === null && p.ip6 === null), 'no IPv4 address ever; the IPv6 one from the CNI result');
  const node = state.nodes[0]!;
  assert.deepEqual((cniNetworkConfig(node, true).ipam as { ranges: unknown }).ranges, [[{ subnet: 'fd00:10:244:1::/64', gateway: 'fd00:10:244:1::1' }]]);
  assert.equal(labServiceCidrs(state), 'fd00:10:96::/112');
  assert.equal(labServiceCidrs(planLab(defaultTopology(), 'unit', 'tapir', undefined, 'dual')), '10.96.0.0/16,fd00:10:96::/112');
  assert.equal(labClusterDns(state), 'fd00:10:96::a');
  // The agent's config: its IPv4 fields kept (unused by pods), the IPv6 ranges, the IPv6 cluster DNS address.
  const config = parseAgentConfig(agentConfig(state, node), 'agent.yaml');
  assert.equal(config.podCIDR.toString(), '10.244.1.0/24');
  assert.equal(config.podCIDRv6?.toString(), 'fd00:10:244:1::/64');
  assert.deepEqual([config.dns?.clusterDNS, config.dns?.clusterDNS6], [[], ['fd00:10:96::a']]);
  assert.match(clusterAgentConfig({ ...state, objectStore: 'kubernetes' }, node), /serviceCIDRv6: fd00:10:96::\/112/);
  const [svc, slice] = kubeDnsObjects(state, labClusterDns(state)) as [{ spec: { clusterIP: string } }, { addressType: string; endpoints: { addresses: string[] }[] }];
  assert.equal(svc.spec.clusterIP, 'fd00:10:96::a');
  assert.equal(slice.addressType, 'IPv6');
  assert.deepEqual(slice.endpoints.map((e) => e.addresses), [['fd00:172:30::b'], ['fd00:172:30::c']]);
});

test('IPv6-only labs: the topology\'s IPv4 cluster and external IPs in the lab\'s ranges become their IPv6 counterparts; others stay as written', async () => {
  const { ipv6OnlyServices, ipv6Counterpart } = await import('../src/lab/cluster/ipv6-only.ts');
  const { parseManifest } = await import('../src/k8s/manifest.ts');
  const state = planLab(defaultTopology(), 'unit', 'tapir', undefined, 'ipv6');
  assert.equal(ipv6Counterpart(state, '10.96.0.100'), 'fd00:10:96::64');
  assert.equal(ipv6Counterpart(state, '172.30.0.150'), 'fd00:172:30::96');
  assert.equal(ipv6Counterpart(state, '192.0.2.1'), '192.0.2.1');
  assert.equal(ipv6Counterpart(state, 'fd00::1'), 'fd00::1');
  const source = defaultTopology().services!;
  const moved = ipv6OnlyServices(source, state);
  assert.equal(moved.file, source.file);
  const services = parseManifest(moved.text, moved.file).objects.filter((o) => o.kind === 'Service') as { metadata: { name: string }; spec: { clusterIP: string; externalIPs: string[] } }[];
  assert.equal(services.length, parseManifest(source.text, source.file).objects.length, 'every document kept');
  assert.equal(services.find((s) => s.metadata.name === 'web')!.spec.clusterIP, 'fd00:10:96::64');
  assert.deepEqual(services.find((s) => s.metadata.name === 'web-ext')!.spec.externalIPs, ['fd00:172:30::96']);
  assert.equal(services.find((s) => s.metadata.name === 'web-nodeport')!.spec.clusterIP, '');
  // Nothing to move: the same source back.
  const plain = { file: 'f', text: 'apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n' };
  assert.equal(ipv6OnlyServices(plain, state), plain);
});
