// The lab topology: nodes, their pods and workloads, the external client and the
// address plan. Parsed from YAML with the shared field reader (src/config/fields.ts) and
// validated strictly: every problem names the file and the field path
// (`topology.yaml: nodes[1].pods[0].name: must be a DNS-1123 label`), all of them in one
// pass, and an unknown key is an error, so a typo never silently becomes a default.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_TOPOLOGY_YAML } from './default-topology.ts';
import { parseTopologyManifests, type ManifestSource } from './cluster/topology-manifests.ts';
import { Fields, isMapping, Problems, typeName } from '../config/fields.ts';
import { isDns1123Label, isLabelValue, isQualifiedName } from '../k8s/fields.ts';
import type { DnsPolicy, EnvVar, PodDnsConfig } from '../k8s/objects.ts';
import { readPodDns } from '../k8s/validate-workloads.ts';
import { LabError } from './validate.ts';
import { MAX_BUSY_POLL_MICROS } from '../device/busy-poll.ts';

export const DATAPLANES = ['tapir', 'kernel'] as const;
export type Dataplane = (typeof DATAPLANES)[number];

/**
 * Who implements Services: the Tapir agents, or kernel rules the lab itself programs in
 * each node namespace the way kube-proxy's iptables and nftables modes do (those need
 * the kernel dataplane: with Tapir the agent owns the packets).
 */
export const PROXY_MODES = ['tapir', 'iptables', 'nftables'] as const;
export type ProxyMode = (typeof PROXY_MODES)[number];

/** The proxy mode a dataplane gets when none is given: its own. */
export function defaultProxyMode(dataplane: Dataplane): ProxyMode {
  return dataplane === 'tapir' ? 'tapir' : 'iptables';
}

/** Empty when the pair works; else why not, for the user. */
export function proxyModeProblem(dataplane: Dataplane, mode: ProxyMode): string | undefined {
  if (dataplane === 'tapir' && mode !== 'tapir') return `proxy mode ${mode} needs the kernel dataplane (with tapir the agents proxy Services)`;
  if (dataplane === 'kernel' && mode === 'tapir') return 'proxy mode tapir needs the tapir dataplane (kernel: iptables or nftables)';
  return undefined;
}

export const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** Built-in servers (src/workloads/) or any command run inside the pod's namespace. */
export type Workload =
  | { type: 'echo'; httpPort: number; port: number } // HTTP echo + TCP echo + UDP echo
  | { type: 'http-echo'; port: number }
  | { type: 'tcp-echo'; port: number }
  | { type: 'udp-echo'; port: number }
  | { type: 'command'; command: string[]; env: Record<string, string> }
  // A Pod manifest's containers: HTTP echo on every TCP containerPort, UDP echo on every
  // UDP one, and each container's command (if given) run beside them.
  | { type: 'containers'; http: number[]; udp: number[]; commands: ContainerCommand[] }
  | { type: 'none' };

/**
 * `env`: what the command runs with, resolved when the pod starts from `envSpec` (the
 * container's env entries, src/lab/cluster/container-env.ts) and the Service variables.
 */
export interface ContainerCommand { name: string; argv: string[]; env: Record<string, string>; envSpec?: EnvVar[] }
const WORKLOAD_TYPES = ['echo', 'http-echo', 'tcp-echo', 'udp-echo', 'command', 'none'] as const;

export const DEFAULT_HTTP_PORT = 8080;
export const DEFAULT_ECHO_PORT = 9000;

/** A container port as a Pod spec declares it (informational: Services select on it). */
export interface ContainerPort { name: string; port: number; protocol: Protocol }

export interface PodSpec {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  workload: Workload;
  ports: ContainerPort[];
  /** The Pod spec's fields of the same names (checked as the API server checks them): DNS, Service variables, the pod's DNS name. */
  dnsPolicy: DnsPolicy;
  dnsConfig: PodDnsConfig | null;
  enableServiceLinks: boolean;
  hostname: string;
  subdomain: string;
}

export interface NodeSpec {
  name: string;
  /** topology.kubernetes.io/zone of the node's Node object; alternates zone-a/zone-b by default. */
  zone: string;
  /** Defaults to underlay network + 10 + node number (172.30.0.11, .12, …). */
  underlayIP: string | undefined;
  /** Defaults to the node number's /24 inside the cluster CIDR (10.244.1.0/24, …). */
  podCIDR: string | undefined;
  /** Dual-stack labs: the node's IPv6 pod range (default: the node's /64 of clusterCIDRv6). */
  podCIDRv6: string | undefined;
  pods: PodSpec[];
}

export interface Topology {
  /** Where it came from, for messages: a file path or "built-in default". */
  source: string;
  name: string | undefined;
  dataplane: Dataplane | undefined;
  proxyMode: ProxyMode | undefined;
  /**
   * loadBalancerPool: "first-last" or a CIDR inside the underlay, from which the lab
   * (playing the cloud) gives LoadBalancer Services their address.
   */
  addressing: { underlayCIDR: string; clusterCIDR: string; serviceCIDR: string; loadBalancerPool: string; underlayCIDRv6: string; clusterCIDRv6: string; serviceCIDRv6: string };
  /**
   * The lab's address families: `ipv4` (the default), or `dual`: every node also gets an
   * IPv6 underlay address and a /64 of clusterCIDRv6, every pod an IPv6 address.
   */
  ipFamily: IpFamily | undefined;
  /** How long a deleted pod stays terminating (serving, not ready) before it is stopped. */
  terminationGracePeriodSeconds: number;
  /** Kubernetes objects applied at `lab up` (`services:` in the topology), or null. */
  services: ManifestSource | null;
  /** Underlay MTU; pods get mtu - 50 (VXLAN over IPv4: 14 + 20 + 8 + 8 bytes). */
  mtu: number;
  vni: number;
  nodes: NodeSpec[];
  client: { name: string; underlayIP: string | undefined } | null;
  /** Agent settings for every node (`agent:`): only what tests and benchmarks size down. */
  agent: LabAgentSettings;
}

/** Agent config fields a topology may set (src/agent/config.ts has their meaning, tapir-config.ts their limits). */
export interface LabAgentSettings {
  /** Conntrack entries per agent; undefined = the agent's default. A small table makes floods and GC sweeps quick to reach in tests. */
  conntrackSize?: number;
  /** The agents' busy polling after traffic, microseconds (busyPollMicros; bench/lab.ts --busy-poll). */
  busyPollMicros?: number;
  /** false: the agents segment TSO frames for other nodes themselves (tunnelOffload; bench/lab.ts --no-tunnel-offload). */
  tunnelOffload?: boolean;
}

/**
 * loadBalancerPool '': underlay .200-.250 (src/lab/plan.ts), so 172.30.0.200-172.30.0.250 by default.
 * serviceCIDR is the lab's own /16, not the cluster default /12 (DEFAULT_SERVICE_CIDR in
 * src/model/cluster-defaults.ts): lab states, tests and the service-scale benchmark
 * (addresses from 10.96.64.0 up) are laid out in it, and it is routed as one prefix.
 */
export const DEFAULT_ADDRESSING = {
  underlayCIDR: '172.30.0.0/24', clusterCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/16', loadBalancerPool: '',
  // Dual-stack labs only (ULA, RFC 4193): the nodes' IPv6 underlay, one /64 of the cluster range per node, Services.
  underlayCIDRv6: 'fd00:172:30::/64', clusterCIDRv6: 'fd00:10:244::/56', serviceCIDRv6: 'fd00:10:96::/112',
} as const;

export const IP_FAMILIES = ['ipv4', 'dual', 'ipv6'] as const;
export type IpFamily = (typeof IP_FAMILIES)[number];
/**
 * The cluster DNS Service's address in the default lab (the tenth of DEFAULT_ADDRESSING's
 * service CIDR, src/model/cluster-defaults.ts): what every ClusterFirst pod's resolv.conf
 * names. A topology with another serviceCIDR gets its own tenth (labClusterDns).
 */
export const LAB_CLUSTER_DNS_IP = '10.96.0.10';
/** Short, so `lab delete` of a pod shows terminating and still returns quickly (Kubernetes: 30 s). */
export const DEFAULT_TERMINATION_GRACE_SECONDS = 2;
const ZONES = ['zone-a', 'zone-b'] as const;
export const DEFAULT_MTU = 1500;
export const DEFAULT_VNI = 4242;
export const VXLAN_OVERHEAD = 50;
/** VXLAN over an IPv6 underlay: the outer IPv6 header is 20 bytes longer than IPv4's. */
export const VXLAN6_OVERHEAD = 70;
/** The family VXLAN rides in a lab (`--underlay`; ipv6 needs a dual-stack lab). */
export const UNDERLAY_FAMILIES = ['ipv4', 'ipv6'] as const;
export type UnderlayFamily = (typeof UNDERLAY_FAMILIES)[number];

export function loadTopologyFile(path: string): Topology {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new LabError('TOPOLOGY_READ', `${path}: cannot read: ${(err as Error).message}`);
  }
  return parseTopology(text, path);
}

export function defaultTopology(): Topology {
  return parseTopology(DEFAULT_TOPOLOGY_YAML, 'built-in default');
}

/** Parses and validates; throws one LabError listing every problem found. */
export function parseTopology(text: string, source: string): Topology {
  const label = source.includes('/') ? basename(source) : source;
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (err) {
    throw new LabError('TOPOLOGY_INVALID', `${label}: not valid YAML: ${(err as Error).message.split('\n')[0]!.replace(/:$/, '')}`);
  }
  const problems = new Problems(label, []);
  const top = new Fields(document ?? {}, '', problems);
  const topology: Topology = {
    source,
    name: optionalName(top, 'name', 'must be a DNS-1123 label (lowercase letters, digits, "-")'),
    dataplane: top.has('dataplane') ? top.choice('dataplane', DATAPLANES, 'tapir') : undefined,
    proxyMode: top.has('proxyMode') ? top.choice('proxyMode', PROXY_MODES, 'tapir') : undefined,
    addressing: { ...DEFAULT_ADDRESSING },
    ipFamily: top.has('ipFamily') ? top.choice('ipFamily', IP_FAMILIES, 'ipv4') : undefined,
    terminationGracePeriodSeconds: top.int('terminationGracePeriodSeconds', 0, 300, DEFAULT_TERMINATION_GRACE_SECONDS),
    services: null,
    mtu: top.int('mtu', 1330, 9216, DEFAULT_MTU),
    vni: top.int('vni', 1, 0xffffff, DEFAULT_VNI),
    nodes: [],
    client: { name: 'client', underlayIP: undefined },
    agent: {},
  };
  if (topology.name !== undefined && topology.name.length > 24) top.fail('name', 'at most 24 characters (it prefixes every namespace and socket path)');
  const addressing = top.map('addressing');
  if (addressing !== undefined) {
    for (const key of ADDRESSING_KEYS) topology.addressing[key] = optionalString(addressing, key) ?? DEFAULT_ADDRESSING[key];
    addressing.rejectUnknown(ADDRESSING_KEYS);
  }
  const agent = top.map('agent');
  if (agent !== undefined) {
    agent.rejectUnknown(['conntrackSize', 'busyPollMicros', 'tunnelOffload']);
    if (agent.has('conntrackSize')) topology.agent.conntrackSize = agent.int('conntrackSize', 1024, 1 << 24, 0);
    if (agent.has('busyPollMicros')) topology.agent.busyPollMicros = agent.int('busyPollMicros', 0, MAX_BUSY_POLL_MICROS, 0);
    if (agent.has('tunnelOffload')) topology.agent.tunnelOffload = agent.bool('tunnelOffload', true);
  }
  if (!top.has('nodes')) top.fail('nodes', 'is required');
  const nodes = top.list('nodes');
  nodes.forEach((item) => topology.nodes.push(parseNode(new Fields(item.value, item.path, problems))));
  if (top.has('services')) {
    const errors: string[] = [];
    topology.services = parseTopologyManifests(top.value.services, source, errors);
    for (const e of errors) problems.add('', e);
  }
  if (top.has('nodes') && Array.isArray(top.value.nodes) && nodes.length === 0) top.fail('nodes', 'at least one node is required');
  if (top.value.client === null || top.value.client === false) topology.client = null;
  else {
    const client = top.map('client');
    if (client !== undefined) {
      topology.client = { name: optionalName(client, 'name', 'must be a DNS-1123 label') ?? 'client', underlayIP: optionalString(client, 'underlayIP') };
      client.rejectUnknown(['name', 'underlayIP']);
    }
  }
  top.rejectUnknown(TOP_KEYS);
  checkUniqueNames(topology, problems);
  if (problems.list.length > 0) throw topologyProblems(problems.list);
  return topology;
}

const TOP_KEYS = ['name', 'dataplane', 'proxyMode', 'ipFamily', 'addressing', 'terminationGracePeriodSeconds', 'services', 'mtu', 'vni', 'nodes', 'client', 'agent'] as const;
const ADDRESSING_KEYS = ['underlayCIDR', 'clusterCIDR', 'serviceCIDR', 'loadBalancerPool', 'underlayCIDRv6', 'clusterCIDRv6', 'serviceCIDRv6'] as const;

/** A string field that may be absent (undefined then). */
function optionalString(f: Fields, key: string): string | undefined {
  return f.has(key) ? f.string(key) : undefined;
}

/** An optional DNS-1123 label field. */
function optionalName(f: Fields, key: string, message: string): string | undefined {
  const name = optionalString(f, key);
  if (name !== undefined && !isDns1123Label(name)) f.fail(key, message);
  return name;
}

function parseNode(f: Fields): NodeSpec {
  const index = Number(/\[(\d+)\]$/.exec(f.path)![1]);
  const node: NodeSpec = {
    name: f.string('name', true),
    zone: optionalString(f, 'zone') ?? ZONES[index % ZONES.length]!,
    underlayIP: optionalString(f, 'underlayIP'),
    podCIDR: optionalString(f, 'podCIDR'),
    podCIDRv6: optionalString(f, 'podCIDRv6'),
    pods: [],
  };
  if (node.name !== '' && !isNodeName(node.name)) f.fail('name', 'must be a DNS-1123 label of at most 32 characters');
  if (!isLabelValue(node.zone)) f.fail('zone', 'must be a label value (at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends)');
  for (const pod of f.maps('pods')) node.pods.push(parsePod(pod));
  f.rejectUnknown(['name', 'zone', 'underlayIP', 'podCIDR', 'podCIDRv6', 'pods']);
  return node;
}

function isNodeName(text: string): boolean {
  // 32: keeps the agent's control socket path under sun_path's 108 bytes.
  return isDns1123Label(text) && text.length <= 32;
}

function parsePod(f: Fields): PodSpec {
  const pod: PodSpec = {
    name: f.string('name', true),
    namespace: optionalName(f, 'namespace', 'must be a DNS-1123 label') ?? 'default',
    labels: f.stringMap('labels', isQualifiedName, isLabelValue),
    workload: { type: 'echo', httpPort: DEFAULT_HTTP_PORT, port: DEFAULT_ECHO_PORT },
    ports: [],
    ...podDnsSpec(f),
    hostname: optionalName(f, 'hostname', 'must be a DNS-1123 label (lowercase letters, digits, "-", at most 63)') ?? '',
    subdomain: optionalName(f, 'subdomain', 'must be a DNS-1123 label (lowercase letters, digits, "-", at most 63)') ?? '',
  };
  if (pod.name !== '' && !isDns1123Label(pod.name)) f.fail('name', 'must be a DNS-1123 label (lowercase letters, digits, "-", at most 63)');
  if (f.has('workload')) pod.workload = parseWorkload(f);
  if (f.has('ports')) pod.ports = f.maps('ports').map(parsePort);
  else pod.ports = defaultPorts(pod.workload);
  // hostNetwork is left out on purpose (an unknown key): every lab pod has its own namespace.
  f.rejectUnknown(['name', 'namespace', 'labels', 'workload', 'ports', 'dnsPolicy', 'dnsConfig', 'enableServiceLinks', 'hostname', 'subdomain']);
  return pod;
}

/** dnsPolicy, dnsConfig and enableServiceLinks, read and checked as a Pod manifest's are. */
function podDnsSpec(f: Fields): Pick<PodSpec, 'dnsPolicy' | 'dnsConfig' | 'enableServiceLinks'> {
  const { dnsPolicy, dnsConfig, enableServiceLinks } = readPodDns(f);
  return { dnsPolicy, dnsConfig, enableServiceLinks };
}

function parseWorkload(pod: Fields): Workload {
  const raw = pod.value.workload;
  if (typeof raw === 'string') {
    if (!(WORKLOAD_TYPES as readonly string[]).includes(raw) || raw === 'command') {
      pod.fail('workload', 'must be one of echo, http-echo, tcp-echo, udp-echo, none, or an object {type: command, command: [...]}');
      return { type: 'none' };
    }
    return workloadDefaults(raw as Exclude<Workload['type'], 'command' | 'containers'>);
  }
  const f = pod.map('workload');
  if (f === undefined || !isMapping(raw)) return { type: 'none' };
  const type = f.choice('type', WORKLOAD_TYPES, f.has('command') ? 'command' : 'echo');
  let workload: Workload;
  let known: string[] = ['type'];
  switch (type) {
    case 'echo':
      workload = { type, httpPort: f.int('httpPort', 1, 65535, DEFAULT_HTTP_PORT), port: f.int('port', 1, 65535, DEFAULT_ECHO_PORT) };
      known = ['type', 'httpPort', 'port'];
      break;
    case 'http-echo':
      workload = { type, port: f.int('port', 1, 65535, DEFAULT_HTTP_PORT) };
      known = ['type', 'port'];
      break;
    case 'tcp-echo':
    case 'udp-echo':
      workload = { type, port: f.int('port', 1, 65535, DEFAULT_ECHO_PORT) };
      known = ['type', 'port'];
      break;
    case 'command':
      workload = { type, command: command(f, 'command'), env: f.stringMap('env') };
      known = ['type', 'command', 'env'];
      break;
    default:
      workload = { type: 'none' };
  }
  f.rejectUnknown(known);
  return workload;
}

/** A command: a non-empty list of strings (argv), or one string run with `sh -c`. */
function command(f: Fields, key: string): string[] {
  const value = f.value[key];
  if (typeof value === 'string' && value.trim() !== '') return ['sh', '-c', value];
  if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string')) return value as string[];
  if (value === undefined || value === null) f.missing(key);
  else f.fail(key, `must be a non-empty list of strings or a shell command string, not ${typeName(value)}`);
  return [];
}

function workloadDefaults(type: Exclude<Workload['type'], 'command' | 'containers'>): Workload {
  switch (type) {
    case 'echo': return { type, httpPort: DEFAULT_HTTP_PORT, port: DEFAULT_ECHO_PORT };
    case 'http-echo': return { type, port: DEFAULT_HTTP_PORT };
    case 'tcp-echo': case 'udp-echo': return { type, port: DEFAULT_ECHO_PORT };
    case 'none': return { type };
  }
}

/** The ports a workload listens on, as a Pod spec would declare them. */
export function defaultPorts(workload: Workload): ContainerPort[] {
  switch (workload.type) {
    case 'echo':
      return [
        { name: 'http', port: workload.httpPort, protocol: 'TCP' },
        { name: 'tcp-echo', port: workload.port, protocol: 'TCP' },
        { name: 'udp-echo', port: workload.port, protocol: 'UDP' },
      ];
    case 'http-echo': return [{ name: 'http', port: workload.port, protocol: 'TCP' }];
    case 'tcp-echo': return [{ name: 'tcp-echo', port: workload.port, protocol: 'TCP' }];
    case 'udp-echo': return [{ name: 'udp-echo', port: workload.port, protocol: 'UDP' }];
    default: return [];
  }
}

function parsePort(f: Fields): ContainerPort {
  const port: ContainerPort = {
    name: f.string('name'),
    port: f.int('port', 1, 65535, 0, true),
    protocol: f.choice('protocol', PROTOCOLS, 'TCP'),
  };
  if (port.name !== '' && !(isDns1123Label(port.name) && port.name.length <= 15)) f.fail('name', 'must be a DNS-1123 label of at most 15 characters');
  f.rejectUnknown(['name', 'port', 'protocol']);
  return port;
}

function checkUniqueNames(topology: Topology, problems: Problems): void {
  const nodeNames = new Map<string, number>();
  const podNames = new Map<string, string>();
  topology.nodes.forEach((node, i) => {
    const first = nodeNames.get(node.name);
    if (first !== undefined) problems.add(`nodes[${i}].name`, `"${node.name}" is already used by nodes[${first}]`);
    else nodeNames.set(node.name, i);
    node.pods.forEach((pod, j) => {
      const key = `${pod.namespace}/${pod.name}`;
      const other = podNames.get(key);
      if (other !== undefined) problems.add(`nodes[${i}].pods[${j}].name`, `pod ${key} is already defined at ${other}`);
      else podNames.set(key, `nodes[${i}].pods[${j}]`);
      const seen = new Set<string>();
      pod.ports.forEach((port, k) => {
        const id = `${port.port}/${port.protocol}`;
        if (seen.has(id)) problems.add(`nodes[${i}].pods[${j}].ports[${k}]`, `${id} is listed twice`);
        seen.add(id);
      });
    });
  });
  if (topology.client !== null && nodeNames.has(topology.client.name)) {
    problems.add('client.name', `"${topology.client.name}" is also a node name`);
  }
}

/** One problem on one line; several as a list, each line still "file: field: problem". */
export function topologyError(label: string, errors: string[]): LabError {
  return topologyProblems(errors.map((e) => `${label}: ${e}`));
}

function topologyProblems(lines: string[]): LabError {
  return new LabError('TOPOLOGY_INVALID', lines.length === 1 ? lines[0]! : `invalid topology (${lines.length} problems):\n${lines.join('\n')}`);
}
