// The agent config (src/agent/config-file.ts, tapir-config.ts) is read like a manifest:
// every problem in one pass, each with the file and the field path, and unknown keys
// are problems too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentConfigError } from '../src/agent/config.ts';
import { loadAgentConfig, parseAgentConfig } from '../src/agent/config-file.ts';
import { TapirError } from '../src/errors/tapir-error.ts';
import { ipv4, ipv6ToString, parseCidr6 } from '../src/wire/address.ts';

const GOOD = {
  nodeName: 'node-1',
  underlay: { interface: 'eth0', address: '172.30.0.11' },
  podCIDR: '10.244.1.0/24',
  clusterCIDR: '10.244.0.0/16',
  nodes: [
    { name: 'node-1', underlayIP: '172.30.0.11', podCIDR: '10.244.1.0/24' },
    { name: 'node-2', underlayIP: '172.30.0.12', podCIDR: '10.244.2.0/24' },
  ],
};

function problemsOf(raw: unknown): readonly string[] {
  try {
    parseAgentConfig(raw, 'agent.yaml');
  } catch (err) {
    assert.ok(err instanceof AgentConfigError, String(err));
    assert.ok(err instanceof TapirError);
    assert.equal(err.code, 'TAPIR_AGENT_CONFIG');
    return err.problems;
  }
  assert.fail('expected an AgentConfigError');
}

test('a minimal config gets the defaults, the service CIDR and node-port range from cluster-defaults', () => {
  const c = parseAgentConfig(GOOD, 'agent.yaml');
  assert.equal(c.nodeName, 'node-1');
  assert.equal(c.underlayAddress, ipv4('172.30.0.11'));
  assert.equal(c.serviceCIDR.toString(), '10.96.0.0/12');
  assert.deepEqual(c.nodePortRange, { min: 30000, max: 32767 });
  // kube-proxy's iptables mode with nodePortAddresses unset: the node's address and, localhostNodePorts being true, 127.0.0.1.
  assert.deepEqual(c.nodePortAddresses, [ipv4('172.30.0.11'), ipv4('127.0.0.1')]);
  assert.equal(c.hostTun, 'tapir0');
  assert.equal(c.stateDir, '/run/tapir');
  assert.equal(c.controlSocket, '/run/tapir/agent.sock');
  assert.equal(c.vni, 4242);
  assert.equal(c.mtu, 1450);
  assert.equal(c.manifests, null);
  assert.equal(c.nodes.length, 2);
  assert.equal(c.busyPollMicros, 0, 'busy polling is off unless asked for');
});

test('explicit values are read', () => {
  const c = parseAgentConfig({
    ...GOOD, serviceCIDR: '10.96.0.0/16', nodePortRange: '31000-31999', hostTun: 'tpx0', stateDir: '/tmp/s',
    vni: 7, mtu: 9000, manifests: '/m', zone: 'z1', nodePortAddresses: ['172.30.0.11', '172.30.0.99'], conntrackSize: 4096,
    busyPollMicros: 200,
  }, 'agent.yaml');
  assert.equal(c.serviceCIDR.toString(), '10.96.0.0/16');
  assert.deepEqual(c.nodePortRange, { min: 31000, max: 31999 });
  assert.equal(c.hostTun, 'tpx0');
  assert.equal(c.controlSocket, '/tmp/s/agent.sock');
  assert.deepEqual([c.vni, c.mtu, c.manifests, c.zone, c.conntrackSize, c.busyPollMicros], [7, 9000, '/m', 'z1', 4096, 200]);
  assert.deepEqual(c.nodePortAddresses, [ipv4('172.30.0.11'), ipv4('172.30.0.99')]);
});

test('a config with several problems reports all of them, each with its path', () => {
  const problems = problemsOf({
    nodeName: 'node-1',
    underlay: { interface: 'eth0', address: '172.30.0.300' },
    podCIDR: '10.245.1.0/24',
    clusterCIDR: '10.244.0.0/16',
    serviceCIDR: 'ten/12',
    vni: 1 << 24,
    nodePortRange: '32767-30000',
    nodes: [
      { name: 'a', underlayIP: '172.30.0.11', podCIDR: '10.244.1.0/24' },
      { name: 'b', underlayIP: '172.30.0.12', podCIDR: '10.244.1.128/25' },
      { name: 'c', podCIDR: '10.244.3.0/24' },
    ],
    nodePortAddresses: [],
  });
  assert.deepEqual(problems, [
    'agent.yaml: underlay.address: "172.30.0.300" is not a valid IPv4 address',
    "agent.yaml: podCIDR: 10.245.1.0/24 is not inside clusterCIDR 10.244.0.0/16: give this node a part of the cluster's pod network",
    'agent.yaml: serviceCIDR: "ten/12" is not an IPv4 prefix such as "10.244.1.0/24"',
    'agent.yaml: nodes[1].podCIDR: 10.244.1.128/25 overlaps nodes[0].podCIDR 10.244.1.0/24 (a): pod CIDRs of nodes must be disjoint',
    'agent.yaml: nodes[2].underlayIP: required field is missing',
    'agent.yaml: nodePortAddresses: must not be empty: list the addresses node ports are served on, or leave the field out for the underlay address and 127.0.0.1',
    'agent.yaml: nodePortRange: "32767-30000" is not a port range such as "30000-32767"',
    'agent.yaml: vni: 16777216 is out of range 1-16777215',
  ]);
});

test('unknown keys are problems, at every level; a renamed key says what it is now', () => {
  const problems = problemsOf({
    ...GOOD,
    hostPort: 'tapir0',
    podCidr: '10.244.1.0/24',
    underlay: { ...GOOD.underlay, mtu: 1500 },
    nodes: [{ ...GOOD.nodes[0], zone: 'a' }],
  });
  assert.equal(problems.length, 4, problems.join('\n'));
  assert.equal(problems[0], 'agent.yaml: hostPort: renamed to hostTun (the name of the host TUN; a Kubernetes hostPort is something else)');
  assert.match(problems[1]!, /^agent\.yaml: podCidr: unknown field; the fields here are nodeName, underlay, podCIDR, /);
  assert.equal(problems[2], 'agent.yaml: underlay.mtu: unknown field; the fields here are interface, address, addressV6, family');
  assert.equal(problems[3], 'agent.yaml: nodes[0].zone: unknown field; the fields here are name, underlayIP, underlayIPv6, podCIDR, podCIDRv6');
});

test('missing required fields, wrong types and a bad interface name are all reported', () => {
  assert.deepEqual(problemsOf({ hostTun: 'bad/name', mtu: '1450', underlay: 'eth0' }), [
    'agent.yaml: nodeName: required field is missing',
    'agent.yaml: underlay: must be a mapping, not the string "eth0"',
    'agent.yaml: podCIDR: required field is missing',
    'agent.yaml: clusterCIDR: required field is missing',
    'agent.yaml: mtu: must be an integer, not the string "1450"',
    'agent.yaml: hostTun: "bad/name" is not a Linux interface name (1 to 15 bytes, no \'/\', \':\' or spaces)',
  ]);
  assert.deepEqual(problemsOf(null), ['agent.yaml: the file is empty: an agent config needs at least nodeName, underlay (interface, address), podCIDR and clusterCIDR']);
  assert.deepEqual(problemsOf([1]), ["agent.yaml: must be a mapping of the agent's fields, not a list"]);
  assert.deepEqual(problemsOf({ ...GOOD, underlay: undefined }), ['agent.yaml: underlay: required field is missing']);
  assert.deepEqual(problemsOf({ ...GOOD, nodePortAddresses: '172.30.0.11' }), ['agent.yaml: nodePortAddresses: must be a list, not the string "172.30.0.11"']);
  assert.deepEqual(problemsOf({ ...GOOD, nodes: ['node-2'] }), ['agent.yaml: nodes[0]: must be a mapping, not the string "node-2"']);
});

test('loadAgentConfig names the file; the message lists every problem', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-agent-config-'));
  try {
    const file = join(dir, 'agent.yaml');
    writeFileSync(file, 'nodeName: n\nunderlay: {interface: eth0, address: 172.30.0.11}\npodCIDR: 10.244.1.0/24\nclusterCIDR: 10.244.0.0/16\nvni: 0\nextra: 1\n');
    assert.throws(() => loadAgentConfig(file), (e: unknown) => e instanceof AgentConfigError && e.exitCode === 2
      && e.message === `${file}: 2 problems:\n  ${file}: extra: unknown field; the fields here are ${['nodeName', 'underlay', 'podCIDR', 'clusterCIDR', 'serviceCIDR', 'podCIDRv6', 'clusterCIDRv6', 'serviceCIDRv6', 'vni', 'mtu', 'stateDir', 'controlSocket', 'hostTun', 'nodes', 'manifests', 'zone', 'nodePortAddresses', 'nodePortRange', 'conntrackSize', 'dns', 'busyPollMicros', 'tunnelOffload'].join(', ')}\n  ${file}: vni: 0 is out of range 1-16777215`);
    writeFileSync(file, 'nodeName: [\n');
    assert.throws(() => loadAgentConfig(file), (e: unknown) => e instanceof AgentConfigError && e.message.startsWith(`${file}: not valid YAML or JSON: `));
    assert.throws(() => loadAgentConfig(join(dir, 'none.yaml')), (e: unknown) => e instanceof AgentConfigError && /none\.yaml: cannot read: ENOENT/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cluster mode: the node\'s address, interface and pod CIDR come from its Node when the file leaves them out; the file wins when it has them', async () => {
  const { parseAgentConfigDocuments } = await import('../src/agent/config-file.ts');
  const { ipv4, parseCidr, ipv4ToString } = await import('../src/wire/address.ts');
  const kubeProxy = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', clusterCIDR: '10.244.0.0/16', bindAddress: '0.0.0.0' };
  const tapir = { apiVersion: 'tapir.dev/v1alpha1', kind: 'TapirAgentConfiguration', vni: 4242 };
  const node = { address: ipv4('192.168.5.10'), interface: 'eth0', podCIDR: parseCidr('10.244.3.0/24')! };
  const c = parseAgentConfigDocuments([kubeProxy, tapir], 'config.yaml', { nodeName: 'n1', node });
  assert.equal(ipv4ToString(c.underlayAddress), '192.168.5.10');
  assert.equal(c.underlayInterface, 'eth0');
  assert.equal(String(c.podCIDR), '10.244.3.0/24');
  assert.equal(c.kubernetes, null, 'the CLI sets the API source, not the file');
  const own = parseAgentConfigDocuments([kubeProxy, { ...tapir, podCIDR: '10.244.9.0/24', underlay: { interface: 'ens3' } }], 'config.yaml', { nodeName: 'n1', node });
  assert.equal(String(own.podCIDR), '10.244.9.0/24');
  assert.equal(own.underlayInterface, 'ens3');
  assert.equal(ipv4ToString(own.underlayAddress), '192.168.5.10');
  // A Node whose address no interface holds, and a file that does not name one: said so.
  assert.throws(() => parseAgentConfigDocuments([kubeProxy, tapir], 'config.yaml', { nodeName: 'n1', node: { ...node, interface: undefined } }), /underlay\.interface: not given, and no interface of this node holds its InternalIP/);
});

test('dns: absent serves no DNS; {} serves the service CIDR\'s tenth address and the node\'s; every field is checked', () => {
  assert.equal(parseAgentConfig(GOOD, 'agent.yaml').dns, null);
  assert.deepEqual(parseAgentConfig({ ...GOOD, dns: {} }, 'agent.yaml').dns, { clusterDNS: [ipv4('10.96.0.10')], clusterDNS6: [], corefile: null, nodeAddress: true });
  assert.deepEqual(parseAgentConfig({ ...GOOD, serviceCIDR: '10.100.0.0/16', dns: { corefile: '/etc/tapir/Corefile', nodeAddress: false } }, 'agent.yaml').dns,
    { clusterDNS: [ipv4('10.100.0.10')], clusterDNS6: [], corefile: '/etc/tapir/Corefile', nodeAddress: false });
  assert.deepEqual(parseAgentConfig({ ...GOOD, dns: { clusterDNS: ['10.96.0.53', '10.96.0.54'] } }, 'agent.yaml').dns?.clusterDNS, [ipv4('10.96.0.53'), ipv4('10.96.0.54')]);
  assert.deepEqual(problemsOf({ ...GOOD, dns: { clusterDNS: [], corefile: '', bind: 1 } }), [
    'agent.yaml: dns.bind: unknown field; the fields here are clusterDNS, corefile, nodeAddress',
    'agent.yaml: dns.clusterDNS: must not be empty: list the addresses pods are given as their nameserver, or leave the field out for the service CIDR\'s tenth address',
    'agent.yaml: dns.corefile: must not be empty',
  ]);
  assert.deepEqual(problemsOf({ ...GOOD, dns: { clusterDNS: ['10.96.0.300'] } }).length, 1);
  // Either family, as the kubelet's clusterDNS (an IPv6-only cluster's kube-dns address), in canonical text.
  const both = parseAgentConfig({ ...GOOD, dns: { clusterDNS: ['fd00:10:96:0::A', '10.96.0.10'] } }, 'agent.yaml').dns;
  assert.deepEqual([both?.clusterDNS, both?.clusterDNS6], [[ipv4('10.96.0.10')], ['fd00:10:96::a']]);
  assert.deepEqual(problemsOf({ ...GOOD, dns: { clusterDNS: ['fd00::10::a'] } }).length, 1);
});

test('IPv6: podCIDRv6 and clusterCIDRv6 (both or neither, networks), serviceCIDRv6, underlay.addressV6, nodes[].podCIDRv6', () => {
  const none = parseAgentConfig(GOOD, 'agent.yaml');
  assert.deepEqual([none.podCIDRv6, none.clusterCIDRv6, none.serviceCIDRv6, none.underlayAddressV6], [null, null, null, null], 'IPv4 only unless asked');
  const dual = parseAgentConfig({
    ...GOOD,
    underlay: { interface: 'eth0', address: '172.30.0.11', addressV6: 'fd00:172:30::11' },
    podCIDRv6: 'fd00:10:244:1::/64', clusterCIDRv6: 'fd00:10:244::/56', serviceCIDRv6: 'fd00:10:96::/112',
    nodes: [
      { name: 'node-1', underlayIP: '172.30.0.11', podCIDR: '10.244.1.0/24', podCIDRv6: 'fd00:10:244:1::/64' },
      { name: 'node-2', underlayIP: '172.30.0.12', podCIDR: '10.244.2.0/24', podCIDRv6: 'fd00:10:244:2::/64' },
      { name: 'node-3', underlayIP: '172.30.0.13', podCIDR: '10.244.3.0/24' },
    ],
  }, 'agent.yaml');
  assert.equal(String(dual.podCIDRv6), 'fd00:10:244:1::/64');
  assert.equal(String(dual.clusterCIDRv6), 'fd00:10:244::/56');
  assert.equal(String(dual.serviceCIDRv6), 'fd00:10:96::/112');
  assert.equal(ipv6ToString(dual.underlayAddressV6!), 'fd00:172:30::11');
  assert.deepEqual(dual.nodes.map((n) => String(n.podCIDRv6 ?? '')), ['fd00:10:244:1::/64', 'fd00:10:244:2::/64', '']);

  assert.deepEqual(problemsOf({ ...GOOD, podCIDRv6: 'fd00:10:244:1::/64' }), [
    'agent.yaml: clusterCIDRv6: required with podCIDRv6: the cluster\'s IPv6 pod range, routed from the node into the host TUN',
  ]);
  assert.deepEqual(problemsOf({ ...GOOD, clusterCIDRv6: 'fd00:10:244::/56' }), [
    'agent.yaml: podCIDRv6: required with clusterCIDRv6: this node\'s part of the cluster\'s IPv6 pod range, such as "fd00:10:244:1::/64"',
  ]);
  assert.deepEqual(problemsOf({
    ...GOOD, underlay: { interface: 'eth0', address: '172.30.0.11', addressV6: 'fd00:10:244:1::9' },
    podCIDRv6: 'fd00:10:245:1::/64', clusterCIDRv6: 'fd00:10:244::1/56', serviceCIDRv6: '10.96.0.0/12',
  }), [
    'agent.yaml: clusterCIDRv6: "fd00:10:244::1/56" has host bits set: give the network, fd00:10:244::/56',
    'agent.yaml: serviceCIDRv6: "10.96.0.0/12" is an IPv4 prefix; this field takes IPv6',
  ]);
  assert.deepEqual(problemsOf({
    ...GOOD, underlay: { interface: 'eth0', address: '172.30.0.11', addressV6: 'fd00:10:244:1::9' },
    podCIDRv6: 'fd00:10:245:1::/64', clusterCIDRv6: 'fd00:10:244::/56', serviceCIDRv6: 'fd00:10:244:ff::/112',
  }), [
    'agent.yaml: podCIDRv6: fd00:10:245:1::/64 is not inside clusterCIDRv6 fd00:10:244::/56: give this node a part of the cluster\'s IPv6 pod network',
    'agent.yaml: serviceCIDRv6: fd00:10:244:ff::/112 overlaps clusterCIDRv6 fd00:10:244::/56: cluster IPs and pod addresses must be apart',
    'agent.yaml: underlay.addressV6: fd00:10:244:1::9 is inside clusterCIDRv6 fd00:10:244::/56: the node\'s underlay address is not a pod address (leave it out to use the IPv6 pod gateway)',
  ]);
  assert.deepEqual(problemsOf({ ...GOOD, podCIDRv6: 'fd00:10:244:1::/127', clusterCIDRv6: 'fd00:10:244::/56', nodes: [
    { name: 'a', underlayIP: '172.30.0.11', podCIDR: '10.244.1.0/24', podCIDRv6: 'fd00:10:244:1::/64' },
    { name: 'b', underlayIP: '172.30.0.12', podCIDR: '10.244.2.0/24', podCIDRv6: 'fd00:10:244::/60' },
    { name: 'c', underlayIP: '172.30.0.13', podCIDR: '10.244.3.0/24', podCIDRv6: 'fd00:99::/64' },
  ] }), [
    'agent.yaml: podCIDRv6: fd00:10:244:1::/127 leaves no room for a gateway and pods: use a /126 or a shorter prefix (a /64 is usual)',
    'agent.yaml: nodes[1].podCIDRv6: fd00:10:244::/60 overlaps nodes[0].podCIDRv6 fd00:10:244:1::/64 (a): pod CIDRs of nodes must be disjoint',
    'agent.yaml: nodes[2].podCIDRv6: fd00:99::/64 is not inside clusterCIDRv6 fd00:10:244::/56',
  ]);
});

test('IPv6 in cluster mode: the Node\'s IPv6 podCIDR fills in, once the cluster\'s IPv6 range is known', () => {
  const node = { podCIDRv6: parseCidr6('fd00:10:244:4::/64') };
  const base = { nodeName: 'node-4', underlay: { interface: 'eth0', address: '172.30.0.14' }, podCIDR: '10.244.4.0/24', clusterCIDR: '10.244.0.0/16' };
  const c = parseAgentConfig({ ...base, clusterCIDRv6: 'fd00:10:244::/56' }, 'agent.yaml', { node });
  assert.equal(String(c.podCIDRv6), 'fd00:10:244:4::/64');
  assert.equal(c.underlayAddressV6, null, 'the node\'s IPv6 source stays its pod gateway unless the file says otherwise');
  const v4 = parseAgentConfig(base, 'agent.yaml', { node });
  assert.deepEqual([v4.podCIDRv6, v4.clusterCIDRv6], [null, null], 'a dual-stack Node in a cluster given no IPv6 range stays IPv4 only');
});

test('an IPv6 underlay: underlay.family ipv6 needs the node\'s IPv6 address and every node\'s; the pod MTU default is 70 bytes under 1500', () => {
  const six = {
    ...GOOD,
    underlay: { interface: 'eth0', address: '172.30.0.11', addressV6: 'fd00:172:30::11', family: 'ipv6' },
    nodes: [
      { name: 'node-1', underlayIP: '172.30.0.11', underlayIPv6: 'fd00:172:30::11', podCIDR: '10.244.1.0/24' },
      { name: 'node-2', underlayIP: '172.30.0.12', underlayIPv6: 'fd00:172:30::12', podCIDR: '10.244.2.0/24' },
    ],
  };
  const c = parseAgentConfig(six, 'agent.yaml');
  assert.equal(c.underlayFamily, 6);
  assert.equal(ipv6ToString(c.vxlanAddress6!), 'fd00:172:30::11');
  assert.equal(c.mtu, 1430, 'VXLAN over IPv6 adds 70 bytes');
  assert.equal(ipv6ToString(c.nodes[1]!.underlayIP6!), 'fd00:172:30::12');
  assert.equal(c.nodes[1]!.underlayIP, ipv4('172.30.0.12'), 'the node\'s IPv4 address stays (its stack\'s, and the service NAT\'s)');
  const four = parseAgentConfig(GOOD, 'agent.yaml');
  assert.deepEqual([four.underlayFamily, four.vxlanAddress6, four.mtu], [4, null, 1450]);
  assert.equal(parseAgentConfig({ ...six, mtu: 8950 }, 'agent.yaml').mtu, 8950);

  assert.deepEqual(problemsOf({ ...six, underlay: { interface: 'eth0', address: '172.30.0.11', family: 'ipv6' }, mtu: 65500 }), [
    'agent.yaml: underlay.addressV6: required with family ipv6: the node\'s IPv6 address that VXLAN is sent from and to',
    'agent.yaml: mtu: 65500 is out of range 1280-65465',
  ]);
  assert.deepEqual(problemsOf({ ...six, underlay: { ...six.underlay, family: 'IPv6' } }), [
    'agent.yaml: underlay.family: "IPv6" is not "ipv4" or "ipv6": the family of the underlay VXLAN rides (one for the whole cluster)',
    'agent.yaml: nodes[0].underlayIPv6: is the node\'s VXLAN address over an IPv6 underlay, and this one is IPv4: set underlay.family to ipv6, or leave the field out',
    'agent.yaml: nodes[1].underlayIPv6: is the node\'s VXLAN address over an IPv6 underlay, and this one is IPv4: set underlay.family to ipv6, or leave the field out',
  ]);
  assert.deepEqual(problemsOf({ ...six, nodes: [{ name: 'node-2', underlayIP: '172.30.0.12', podCIDR: '10.244.2.0/24' }] }), [
    'agent.yaml: nodes[0].underlayIPv6: required with underlay.family ipv6: the node\'s IPv6 address its VXLAN datagrams come from',
  ]);
  // Cluster mode: the Node's IPv6 InternalIP is the tunnel's end when the file gives none.
  const fromNode = parseAgentConfig({ nodeName: 'node-4', underlay: { interface: 'eth0', address: '172.30.0.14', family: 'ipv6' }, podCIDR: '10.244.4.0/24', clusterCIDR: '10.244.0.0/16' },
    'agent.yaml', { node: { address6: new Uint8Array([0xfd, 0, 1, 0x72, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14]) } });
  assert.equal(ipv6ToString(fromNode.vxlanAddress6!), 'fd00:172:30::14');
  assert.equal(fromNode.underlayAddressV6, null, 'the host TUN\'s IPv6 source is still the pod gateway');
});
