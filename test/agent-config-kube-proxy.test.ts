// The agent config's two-document form: a TapirAgentConfiguration and a cluster's
// KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1). Every v1alpha1 field is
// read, ignored with a report, or (not in the type) an error with its document and path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentConfigError, type AgentConfig } from '../src/agent/config.ts';
import { loadAgentConfig, parseAgentConfigDocuments } from '../src/agent/config-file.ts';
import { parseGoDuration, formatGoDuration } from '../src/config/duration.ts';
import { ipv4 } from '../src/wire/address.ts';

const TAPIR = {
  apiVersion: 'tapir.dev/v1alpha1',
  kind: 'TapirAgentConfiguration',
  underlay: { interface: 'eth0', address: '172.30.0.11' },
  podCIDR: '10.244.1.0/24',
};
const KP = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', clusterCIDR: '10.244.0.0/16' };
const ENV = { nodeName: 'node-env', hostname: 'host-1', cores: 2 };

function parse(kp: Record<string, unknown>, tapir: Record<string, unknown> = TAPIR): AgentConfig {
  return parseAgentConfigDocuments([{ ...KP, ...kp }, tapir], 'agent.yaml', ENV);
}

function problemsOf(docs: unknown[]): readonly string[] {
  try {
    parseAgentConfigDocuments(docs, 'agent.yaml', ENV);
  } catch (err) {
    assert.ok(err instanceof AgentConfigError, String(err));
    return err.problems;
  }
  assert.fail('expected an AgentConfigError');
}

const kpProblems = (kp: Record<string, unknown>): readonly string[] => problemsOf([{ ...KP, ...kp }, TAPIR]);

test('Go durations: every unit, fractions, sums; what is not one', () => {
  assert.equal(parseGoDuration('15m0s'), 900_000);
  assert.equal(parseGoDuration('1h'), 3_600_000);
  assert.equal(parseGoDuration('1.5h'), 5_400_000);
  assert.equal(parseGoDuration('2h45m0.5s'), 9_900_500);
  assert.equal(parseGoDuration('300ms'), 300);
  assert.equal(parseGoDuration('1500us'), 1.5);
  assert.equal(parseGoDuration('2000000ns'), 2);
  assert.equal(parseGoDuration('0'), 0);
  assert.equal(parseGoDuration('-1s'), -1000);
  for (const bad of ['', '5', '1d', 's', '1h1x', '.s', '1 s']) assert.equal(parseGoDuration(bad), undefined, bad);
  assert.deepEqual([0, 250, 1500, 900_000, 86_400_000].map(formatGoDuration), ['0s', '250ms', '1.5s', '15m0s', '24h0m0s']);
});

test('defaults: kube-proxy\'s addresses and conntrack sizing, Tapir\'s sync intervals, the node name from NODE_NAME', () => {
  const c = parse({});
  assert.equal(c.nodeName, 'node-env');
  assert.equal(c.clusterCIDR.toString(), '10.244.0.0/16');
  assert.deepEqual(c.kubeProxy.healthzBindAddress, { host: '0.0.0.0', port: 10256 });
  assert.deepEqual(c.kubeProxy.metricsBindAddress, { host: '127.0.0.1', port: 10249 });
  // max(min 131072, 32768 per core * 2 cores)
  assert.equal(c.conntrackSize, 131072);
  assert.deepEqual(c.conntrackTimeouts, {});
  assert.equal(c.minSyncIntervalMs, 100);
  assert.equal(c.maxSyncIntervalMs, 30_000);
  assert.equal(c.kubeProxy.configSyncPeriodMs, 900_000);
  assert.deepEqual(c.nodePortAddresses, [ipv4('172.30.0.11'), ipv4('127.0.0.1')]);
  assert.deepEqual(c.kubeProxy.ignored, []);
  // Without NODE_NAME, the hostname; hostnameOverride before both; the Tapir document's nodeName first of all.
  assert.equal(parseAgentConfigDocuments([KP, TAPIR], 'a', { hostname: 'Host-1' }).nodeName, 'host-1');
  assert.equal(parse({ hostnameOverride: 'Node-KP' }).nodeName, 'node-kp');
  assert.equal(parse({}, { ...TAPIR, nodeName: 'node-t' }).nodeName, 'node-t');
  // A Tapir document alone: kube-proxy's defaults, Tapir's conntrack size.
  const alone = parseAgentConfigDocuments([{ ...TAPIR, clusterCIDR: '10.244.0.0/16' }], 'a', ENV);
  assert.equal(alone.conntrackSize, 262144);
  assert.equal(alone.kubeProxy.healthzBindAddress?.port, 10256);
});

test('every honoured field reaches the agent config', () => {
  const c = parse({
    hostnameOverride: 'node-1',
    bindAddress: '172.30.0.11',
    healthzBindAddress: '172.30.0.11:10256',
    metricsBindAddress: '0.0.0.0:9100',
    bindAddressHardFail: true,
    clusterCIDR: '10.244.0.0/16,fd00:10:244::/56',
    nodePortAddresses: ['172.30.0.0/24', 'localhost'],
    detectLocalMode: 'NodeCIDR',
    mode: 'tapir',
    configSyncPeriod: '1h',
    iptables: { syncPeriod: '10s', minSyncPeriod: '250ms', localhostNodePorts: false },
    conntrack: { maxPerCore: 100000, min: 50000, tcpEstablishedTimeout: '2h', tcpCloseWaitTimeout: '30m', udpTimeout: '45s', udpStreamTimeout: '5m', tcpBeLiberal: true },
    clientConnection: { kubeconfig: '/etc/kubernetes/tapir.conf', qps: 50, burst: 100, contentType: 'application/json', acceptContentTypes: 'application/json' },
    logging: { format: 'json', verbosity: 4 },
  }, { ...TAPIR, underlay: { interface: 'eth0' } });
  assert.equal(c.nodeName, 'node-1');
  assert.equal(c.underlayAddress, ipv4('172.30.0.11'), 'bindAddress gives the underlay address');
  assert.deepEqual(c.kubeProxy.healthzBindAddress, { host: '172.30.0.11', port: 10256 });
  assert.deepEqual(c.kubeProxy.metricsBindAddress, { host: '0.0.0.0', port: 9100 });
  assert.equal(c.kubeProxy.bindAddressHardFail, true);
  assert.equal(c.clusterCIDR.toString(), '10.244.0.0/16');
  assert.deepEqual(c.kubeProxy.nodePortAddresses?.map((a) => (a.kind === 'cidr' ? a.cidr.toString() : a.kind)), ['172.30.0.0/24', 'localhost']);
  assert.deepEqual(c.nodePortAddresses, [ipv4('172.30.0.11')]);
  assert.equal(c.kubeProxy.localhostNodePorts, false);
  assert.equal(c.kubeProxy.detectLocalMode, 'NodeCIDR');
  assert.equal(c.kubeProxy.configSyncPeriodMs, 3_600_000);
  assert.equal(c.maxSyncIntervalMs, 10_000);
  assert.equal(c.minSyncIntervalMs, 250);
  assert.equal(c.conntrackSize, 200000);
  assert.deepEqual(c.conntrackTimeouts, { tcpEstablished: 7200, tcpCloseWait: 1800, udp: 45, udpStream: 300 });
  assert.equal(c.kubeProxy.conntrack.tcpBeLiberal, true);
  assert.deepEqual(c.kubeProxy.clientConnection, { kubeconfig: '/etc/kubernetes/tapir.conf', qps: 50, burst: 100, contentType: 'application/json', acceptContentTypes: 'application/json' });
  assert.equal(c.kubeProxy.logFormat, 'json');
  assert.equal(c.kubeProxy.verbosity, 4);
  assert.deepEqual(c.kubeProxy.ignored, ['clusterCIDR (the IPv6 range fd00:10:244::/56: no podCIDRv6 for this node, its pods are IPv4 only)']);
});

test('sync periods: v1alpha2\'s top-level fields win, else the block of the mode; zero is the default', () => {
  const nft = parse({ mode: 'nftables', nftables: { syncPeriod: '20s', minSyncPeriod: '2s' }, iptables: { syncPeriod: '40s', minSyncPeriod: '0s' } });
  assert.deepEqual([nft.maxSyncIntervalMs, nft.minSyncIntervalMs], [20_000, 2000]);
  assert.deepEqual(nft.kubeProxy.ignored, ['mode (nftables: Tapir is the proxy)', 'iptables.syncPeriod']);
  const top = parse({ syncPeriod: '1m', minSyncPeriod: '1s', iptables: { syncPeriod: '40s' } });
  assert.deepEqual([top.maxSyncIntervalMs, top.minSyncIntervalMs], [60_000, 1000]);
  const zero = parse({ iptables: { syncPeriod: '0s', minSyncPeriod: '0s' } });
  assert.deepEqual([zero.maxSyncIntervalMs, zero.minSyncIntervalMs], [30_000, 100]);
  assert.deepEqual(kpProblems({ iptables: { syncPeriod: '1s', minSyncPeriod: '5s' } }), [
    'agent.yaml: document 1 (KubeProxyConfiguration): iptables.minSyncPeriod: 5s is longer than the sync period 1s',
  ]);
});

test('conntrack: maxPerCore 0 leaves the size alone; conntrackSize of the Tapir document wins', () => {
  assert.equal(parse({ conntrack: { maxPerCore: 0, min: 5 } }).conntrackSize, 262144);
  assert.equal(parse({ conntrack: { maxPerCore: 1000, min: 2048 } }).conntrackSize, 2048);
  assert.equal(parse({ conntrack: { maxPerCore: 1000 } }, { ...TAPIR, conntrackSize: 4096 }).conntrackSize, 4096);
  assert.deepEqual(parse({ conntrack: { udpTimeout: '0s', tcpEstablishedTimeout: null } }).conntrackTimeouts, {});
});

test('fields meaningless for Tapir are accepted and listed once; kubeadm\'s empty values are not', () => {
  const c = parse({
    iptables: { masqueradeBit: 14, masqueradeAll: true, snatNodeInternalIP: false, minSyncPeriod: '1s', syncPeriod: '30s' },
    ipvs: { scheduler: 'rr', excludeCIDRs: null, strictARP: false, syncPeriod: '0s', minSyncPeriod: '0s', tcpTimeout: '0s', tcpFinTimeout: '0s', udpTimeout: '0s' },
    nftables: { masqueradeBit: 14, masqueradeAll: false, syncPeriod: '0s', minSyncPeriod: '0s' },
    winkernel: { enableDSR: false, networkName: '', rootHnsEndpointName: '', sourceVip: '', forwardHealthCheckVip: false },
    detectLocal: { bridgeInterface: 'cbr0', interfaceNamePrefix: '' },
    featureGates: { SomeGate: true },
    enableProfiling: true,
    showHiddenMetricsForVersion: '',
    oomScoreAdj: -999,
    portRange: '',
    windowsRunAsService: false,
    logging: { flushFrequency: 0, options: { json: { infoBufferSize: '0' } }, verbosity: 0 },
  });
  assert.deepEqual(c.kubeProxy.ignored, [
    'enableProfiling', 'oomScoreAdj', 'detectLocal.bridgeInterface', 'featureGates.SomeGate', 'logging.options',
    'iptables.masqueradeBit', 'iptables.masqueradeAll', 'ipvs.scheduler', 'nftables.masqueradeBit',
  ]);
  assert.deepEqual(c.kubeProxy.featureGates, { SomeGate: true });
  assert.deepEqual([c.maxSyncIntervalMs, c.minSyncIntervalMs], [30_000, 1000]);
});

test('unknown fields are errors with their document and path', () => {
  assert.deepEqual(kpProblems({ bogus: 1, conntrack: { maxPerCpu: 5 }, iptables: { masqueradeBits: 1 }, clientConnection: { kubeConfig: 'x' } }), [
    'agent.yaml: document 1 (KubeProxyConfiguration): bogus: unknown field; the fields here are apiVersion, kind, featureGates, clientConnection, logging, hostnameOverride, bindAddress, healthzBindAddress, metricsBindAddress, bindAddressHardFail, enableProfiling, showHiddenMetricsForVersion, mode, iptables, ipvs, nftables, winkernel, detectLocalMode, detectLocal, clusterCIDR, nodePortAddresses, oomScoreAdj, conntrack, configSyncPeriod, portRange, windowsRunAsService, syncPeriod, minSyncPeriod',
    'agent.yaml: document 1 (KubeProxyConfiguration): clientConnection.kubeConfig: unknown field; the fields here are kubeconfig, acceptContentTypes, contentType, qps, burst',
    'agent.yaml: document 1 (KubeProxyConfiguration): iptables.masqueradeBits: unknown field; the fields here are masqueradeBit, masqueradeAll, localhostNodePorts, snatNodeInternalIP, syncPeriod, minSyncPeriod',
    'agent.yaml: document 1 (KubeProxyConfiguration): conntrack.maxPerCpu: unknown field; the fields here are maxPerCore, min, tcpEstablishedTimeout, tcpCloseWaitTimeout, tcpBeLiberal, udpTimeout, udpStreamTimeout',
  ]);
  const tapir = problemsOf([KP, { ...TAPIR, vxlanPort: 4789 }]);
  assert.equal(tapir.length, 1);
  assert.match(tapir[0]!, /^agent\.yaml: document 2 \(TapirAgentConfiguration\): vxlanPort: unknown field; the fields here are apiVersion, kind, nodeName, /);
});

test('bad durations, CIDRs, addresses and keywords', () => {
  assert.deepEqual(kpProblems({
    bindAddress: '::1',
    healthzBindAddress: '0.0.0.0',
    metricsBindAddress: '[::]:10249',
    clusterCIDR: '10.244.0.0/33',
    nodePortAddresses: ['primary', '172.30.0.0/24', 'loopback', 'fd00::/64', 5],
    configSyncPeriod: '15 minutes',
    mode: 'userspace',
    detectLocalMode: 'Magic',
    conntrack: { tcpEstablishedTimeout: '1d', udpTimeout: 30, udpStreamTimeout: '500ms', min: -1 },
    iptables: { syncPeriod: '1x' },
    logging: { format: 'yaml', verbosity: 11 },
  }), [
    'bindAddress: "::1" is an IPv6 address; Tapir supports IPv4 only',
    'healthzBindAddress: "0.0.0.0" is not an IPv4 address and port such as "0.0.0.0:10256" (or "" to serve nothing)',
    'metricsBindAddress: "[::]:10249" is an IPv6 address; Tapir supports IPv4 only',
    'mode: "userspace" is not one of tapir, iptables, ipvs, nftables, kernelspace (or unset)',
    'detectLocalMode: "Magic" is not one of ClusterCIDR, NodeCIDR, BridgeInterface, InterfaceNamePrefix (or unset)',
    'clusterCIDR: "10.244.0.0/33" is not an IPv4 prefix such as "10.244.0.0/16"',
    'nodePortAddresses[2]: "loopback" is neither an IPv4 prefix such as "172.30.0.0/24" nor one of primary, localhost, all',
    'nodePortAddresses[3]: "fd00::/64" is an IPv6 prefix; Tapir supports IPv4 only',
    'nodePortAddresses[4]: must be a string (a prefix or primary, localhost, all), not 5',
    'logging.format: "yaml" is not one of text, json',
    'logging.verbosity: 11 is out of range 0-10',
    'iptables.syncPeriod: "1x" is not a duration: write numbers with units ns, us, ms, s, m, h, as in "30s", "1h" or "2h45m0s"',
    'conntrack.min: -1 is out of range 0-16777216',
    'conntrack.tcpEstablishedTimeout: "1d" is not a duration: write numbers with units ns, us, ms, s, m, h, as in "30s", "1h" or "2h45m0s"',
    'conntrack.udpTimeout: must be a duration string such as "30s" or "15m0s", not number 30',
    "conntrack.udpStreamTimeout: 500ms is shorter than a second, the resolution of Tapir's conntrack",
    'configSyncPeriod: "15 minutes" is not a duration: write numbers with units ns, us, ms, s, m, h, as in "30s", "1h" or "2h45m0s"',
    // The Tapir document has no clusterCIDR and the KubeProxyConfiguration's was bad.
  ].map((p) => `agent.yaml: document 1 (KubeProxyConfiguration): ${p}`).concat(['agent.yaml: document 2 (TapirAgentConfiguration): clusterCIDR: required field is missing']));
});

test('the two documents must agree where both speak', () => {
  assert.deepEqual(problemsOf([
    { ...KP, hostnameOverride: 'node-a', bindAddress: '172.30.0.12', nodePortAddresses: ['primary'] },
    { ...TAPIR, nodeName: 'node-b', clusterCIDR: '10.245.0.0/16', nodePortAddresses: ['172.30.0.11'] },
  ]), [
    "agent.yaml: document 2 (TapirAgentConfiguration): nodeName: node-b differs from the KubeProxyConfiguration's hostnameOverride node-a: give the Node's name once",
    "agent.yaml: document 2 (TapirAgentConfiguration): underlay.address: 172.30.0.11 differs from the KubeProxyConfiguration's bindAddress 172.30.0.12: give the node's address once",
    "agent.yaml: document 2 (TapirAgentConfiguration): clusterCIDR: 10.245.0.0/16 differs from the KubeProxyConfiguration's clusterCIDR 10.244.0.0/16: give it once",
    "agent.yaml: document 2 (TapirAgentConfiguration): podCIDR: 10.244.1.0/24 is not inside clusterCIDR 10.245.0.0/16: give this node a part of the cluster's pod network",
    "agent.yaml: document 2 (TapirAgentConfiguration): nodePortAddresses: the KubeProxyConfiguration's nodePortAddresses says where node ports are served too: keep one of them",
  ]);
  assert.deepEqual(problemsOf([{ ...KP, nodePortAddresses: ['10.0.0.0/8'] }, TAPIR]), [
    "agent.yaml: document 2 (TapirAgentConfiguration): underlay.address: 172.30.0.11, this node's only address, is not in the KubeProxyConfiguration's nodePortAddresses [10.0.0.0/8]: node ports would be served nowhere",
  ]);
  // Only localhost: no node address, and that is what was asked for.
  assert.deepEqual(parse({ nodePortAddresses: ['localhost'] }).nodePortAddresses, [ipv4('127.0.0.1')]);
  // ... unless localhost node ports are off: then nowhere.
  assert.deepEqual(problemsOf([{ ...KP, nodePortAddresses: ['localhost'], iptables: { localhostNodePorts: false } }, TAPIR]), [
    "agent.yaml: document 2 (TapirAgentConfiguration): underlay.address: 172.30.0.11, this node's only address, is not in the KubeProxyConfiguration's nodePortAddresses [localhost] (localhost is, but the KubeProxyConfiguration's iptables.localhostNodePorts is false): node ports would be served nowhere",
  ]);
  // kube-proxy's iptables mode: localhost node ports wherever the list covers 127.0.0.1 (all, a prefix holding it) and localhostNodePorts is true.
  const localhost = ipv4('127.0.0.1');
  const node = ipv4('172.30.0.11');
  assert.deepEqual(parse({ nodePortAddresses: ['all'] }).nodePortAddresses, [node, localhost]);
  assert.deepEqual(parse({ nodePortAddresses: ['primary', '127.0.0.0/8'] }).nodePortAddresses, [node, localhost]);
  assert.deepEqual(parse({ nodePortAddresses: ['primary'] }).nodePortAddresses, [node]);
  assert.deepEqual(parse({ nodePortAddresses: ['0.0.0.0/0'], iptables: { localhostNodePorts: false } }).nodePortAddresses, [node]);
  assert.deepEqual(parse({ iptables: { localhostNodePorts: false } }).nodePortAddresses, [node], 'unset, localhost node ports off');
});

test('documents: kinds, versions, duplicates, the Tapir document required', () => {
  assert.deepEqual(problemsOf([{ ...KP, apiVersion: 'kubeproxy.config.k8s.io/v1alpha2' }, TAPIR, { ...KP }, { kind: 'ConfigMap', apiVersion: 'v1' }, { a: 1 }, 'x']), [
    'agent.yaml: document 1 (KubeProxyConfiguration): apiVersion: "kubeproxy.config.k8s.io/v1alpha2" is not kubeproxy.config.k8s.io/v1alpha1, the version Tapir reads',
    'agent.yaml: document 3 (KubeProxyConfiguration): a second KubeProxyConfiguration: give one',
    'agent.yaml: document 4: kind "ConfigMap" is not one the agent reads: give a TapirAgentConfiguration (tapir.dev/v1alpha1) and optionally a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1)',
    'agent.yaml: document 5: kind: required field is missing: a file of several documents holds a TapirAgentConfiguration (tapir.dev/v1alpha1) and optionally a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1)',
    'agent.yaml: document 6: must be a mapping, not the string "x"',
  ]);
  assert.deepEqual(problemsOf([KP]), ['agent.yaml: no TapirAgentConfiguration (tapir.dev/v1alpha1) document: the agent needs its underlay, podCIDR and paths from one']);
});

test('loadAgentConfig reads a multi-document file; YAML errors name the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-agent-config-'));
  try {
    const file = join(dir, 'agent.yaml');
    writeFileSync(file, [
      'apiVersion: kubeproxy.config.k8s.io/v1alpha1', 'kind: KubeProxyConfiguration', 'clusterCIDR: 10.244.0.0/16',
      'metricsBindAddress: 127.0.0.1:10249', 'conntrack:', '  tcpEstablishedTimeout: 1h0m0s', '---',
      'apiVersion: tapir.dev/v1alpha1', 'kind: TapirAgentConfiguration', 'nodeName: node-1',
      'underlay: {interface: eth0, address: 172.30.0.11}', 'podCIDR: 10.244.1.0/24', '---', '',
    ].join('\n'));
    const c = loadAgentConfig(file);
    assert.equal(c.nodeName, 'node-1');
    assert.equal(c.conntrackTimeouts.tcpEstablished, 3600);
    writeFileSync(file, 'kind: KubeProxyConfiguration\nkind: x\n');
    assert.throws(() => loadAgentConfig(file), (e: unknown) => e instanceof AgentConfigError && e.message.startsWith(`${file}: not valid YAML or JSON: `));
    writeFileSync(file, '');
    assert.throws(() => loadAgentConfig(file), (e: unknown) => e instanceof AgentConfigError && /the file is empty/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the example in docs/ reads without a problem and means what its comments say', () => {
  const c = loadAgentConfig(new URL('../docs/agent-config.example.yaml', import.meta.url).pathname, { nodeName: 'node-1' });
  assert.equal(c.nodeName, 'node-1');
  assert.deepEqual(c.kubeProxy.ignored, []);
  assert.deepEqual([c.maxSyncIntervalMs, c.minSyncIntervalMs], [30_000, 100]);
  assert.deepEqual(c.nodePortAddresses, [ipv4('172.30.0.11')]);
  assert.equal(c.mtu, 1450);
  assert.deepEqual(c.conntrackTimeouts, { tcpEstablished: 86400, tcpCloseWait: 3600, udp: 30, udpStream: 120 });
});

test('tapir agent: a bad file, --v or --log-format exits 2 before anything starts, saying which', () => {
  const tapirBin = new URL('../bin/tapir', import.meta.url).pathname;
  const dir = mkdtempSync(join(tmpdir(), 'tapir-agent-cli-'));
  try {
    const file = join(dir, 'agent.yaml');
    writeFileSync(file, `apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nconntrack: {udpTimeout: 30}\n---\n${JSON.stringify(TAPIR)}\n`);
    const bad = spawnSync(tapirBin, ['agent', '--config', file], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /document 1 \(KubeProxyConfiguration\): conntrack\.udpTimeout: must be a duration string/);
    assert.match(bad.stderr, /document 2 \(TapirAgentConfiguration\): clusterCIDR: required field is missing/);
    const v = spawnSync(tapirBin, ['agent', '--config', file, '--v', 'x'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(v.status, 2);
    assert.match(v.stderr, /--v x: give a verbosity from 0 to 10/);
    const format = spawnSync(tapirBin, ['agent', '--config', file, '--log-format', 'xml'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(format.status, 2);
    assert.match(format.stderr, /--log-format xml: give json or text/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a dual-stack clusterCIDR "v4,v6" gives clusterCIDRv6 to a node with podCIDRv6; the Tapir document may repeat it, not contradict it', () => {
  const kp = { ...KP, clusterCIDR: '10.244.0.0/16,fd00:10:244::/56' };
  const c = parseAgentConfigDocuments([kp, { ...TAPIR, podCIDRv6: 'fd00:10:244:1::/64' }], 'agent.yaml', ENV);
  assert.equal(String(c.clusterCIDRv6), 'fd00:10:244::/56');
  assert.equal(String(c.podCIDRv6), 'fd00:10:244:1::/64');
  assert.deepEqual(c.kubeProxy.ignored, []);
  const same = parseAgentConfigDocuments([kp, { ...TAPIR, podCIDRv6: 'fd00:10:244:1::/64', clusterCIDRv6: 'fd00:10:244::/56' }], 'agent.yaml', ENV);
  assert.equal(String(same.clusterCIDRv6), 'fd00:10:244::/56');
  assert.throws(() => parseAgentConfigDocuments([kp, { ...TAPIR, podCIDRv6: 'fd00:10:244:1::/64', clusterCIDRv6: 'fd00:10:240::/56' }], 'agent.yaml', ENV),
    (e: unknown) => e instanceof AgentConfigError && e.problems.length === 1
      && e.problems[0] === 'agent.yaml: document 2 (TapirAgentConfiguration): clusterCIDRv6: fd00:10:240::/56 differs from the KubeProxyConfiguration\'s IPv6 clusterCIDR fd00:10:244::/56: give it once');
  assert.throws(() => parseAgentConfigDocuments([{ ...KP, clusterCIDR: '10.244.0.0/16,fd00:10:244::1/56' }, TAPIR], 'agent.yaml', ENV),
    (e: unknown) => e instanceof AgentConfigError && /clusterCIDR: "fd00:10:244::1\/56" is not an IPv6 network/.test(e.problems[0] ?? ''));
});
