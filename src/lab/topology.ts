// The lab topology: nodes, their pods and workloads, the external client and the
// address plan. Parsed from YAML and validated strictly: every error names the file and
// the field path (`topology.yaml: nodes[1].pods[0].name: must be a DNS-1123 label`), so
// a typo never silently becomes a default.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_TOPOLOGY_YAML } from './default-topology.ts';
import { parseTopologyManifests, type ManifestSource } from './cluster/topology-manifests.ts';
import { Fields, isDns1123Label, isLabelValue, LabError, validateLabels } from './validate.ts';

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

export interface ContainerCommand { name: string; argv: string[]; env: Record<string, string> }
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
}

export interface NodeSpec {
  name: string;
  /** topology.kubernetes.io/zone of the node's Node object; alternates zone-a/zone-b by default. */
  zone: string;
  /** Defaults to underlay network + 10 + node number (172.30.0.11, .12, …). */
  underlayIP: string | undefined;
  /** Defaults to the node number's /24 inside the cluster CIDR (10.244.1.0/24, …). */
  podCIDR: string | undefined;
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
  addressing: { underlayCIDR: string; clusterCIDR: string; serviceCIDR: string; loadBalancerPool: string };
  /** How long a deleted pod stays terminating (serving, not ready) before it is stopped. */
  terminationGracePeriodSeconds: number;
  /** Kubernetes objects applied at `lab up` (`services:` in the topology), or null. */
  services: ManifestSource | null;
  /** Underlay MTU; pods get mtu - 50 (VXLAN over IPv4: 14 + 20 + 8 + 8 bytes). */
  mtu: number;
  vni: number;
  nodes: NodeSpec[];
  client: { name: string; underlayIP: string | undefined } | null;
}

/** loadBalancerPool '': underlay .200-.250 (src/lab/plan.ts), so 172.30.0.200-172.30.0.250 by default. */
export const DEFAULT_ADDRESSING = { underlayCIDR: '172.30.0.0/24', clusterCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/16', loadBalancerPool: '' } as const;
/** Short, so `lab delete` of a pod shows terminating and still returns quickly (Kubernetes: 30 s). */
export const DEFAULT_TERMINATION_GRACE_SECONDS = 2;
const ZONES = ['zone-a', 'zone-b'] as const;
export const DEFAULT_MTU = 1500;
export const DEFAULT_VNI = 4242;
export const VXLAN_OVERHEAD = 50;

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
  const errors: string[] = [];
  const top = new Fields(document ?? {}, '', errors);
  const topology: Topology = {
    source,
    name: top.optionalString('name', isDns1123Label, 'must be a DNS-1123 label (lowercase letters, digits, "-")'),
    dataplane: top.optionalEnum('dataplane', DATAPLANES),
    proxyMode: top.optionalEnum('proxyMode', PROXY_MODES),
    addressing: { ...DEFAULT_ADDRESSING },
    terminationGracePeriodSeconds: top.integer('terminationGracePeriodSeconds', DEFAULT_TERMINATION_GRACE_SECONDS, 0, 300),
    services: null,
    mtu: top.integer('mtu', DEFAULT_MTU, 1330, 9216),
    vni: top.integer('vni', DEFAULT_VNI, 1, 0xffffff),
    nodes: [],
    client: { name: 'client', underlayIP: undefined },
  };
  if (topology.name !== undefined && topology.name.length > 24) errors.push('name: at most 24 characters (it prefixes every namespace and socket path)');
  const addressing = top.object('addressing');
  if (addressing !== undefined) {
    for (const key of ['underlayCIDR', 'clusterCIDR', 'serviceCIDR', 'loadBalancerPool'] as const) {
      topology.addressing[key] = addressing.string(key, DEFAULT_ADDRESSING[key]);
    }
    addressing.rejectUnknown();
  }
  const nodes = top.list('nodes', true);
  nodes?.forEach((item, i) => topology.nodes.push(parseNode(item, `nodes[${i}]`, errors)));
  if (top.has('services')) topology.services = parseTopologyManifests(top.raw('services'), source, errors);
  if (nodes !== undefined && nodes.length === 0) errors.push('nodes: at least one node is required');
  if (top.has('client')) {
    const value = top.raw('client');
    if (value === null || value === false) topology.client = null;
    else {
      const client = top.object('client');
      if (client !== undefined) {
        topology.client = {
          name: client.string('name', 'client', isDns1123Label, 'must be a DNS-1123 label'),
          underlayIP: client.optionalString('underlayIP'),
        };
        client.rejectUnknown();
      }
    }
  }
  top.rejectUnknown();
  checkUniqueNames(topology, errors);
  if (errors.length > 0) throw topologyError(label, errors);
  return topology;
}

function parseNode(item: unknown, path: string, errors: string[]): NodeSpec {
  const f = new Fields(item, path, errors);
  const index = Number(/\[(\d+)\]$/.exec(path)![1]);
  const node: NodeSpec = {
    name: f.string('name', undefined, isNodeName, 'must be a DNS-1123 label of at most 32 characters'),
    zone: f.string('zone', ZONES[index % ZONES.length]!, isLabelValue, 'must be a label value (at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends)'),
    underlayIP: f.optionalString('underlayIP'),
    podCIDR: f.optionalString('podCIDR'),
    pods: [],
  };
  f.list('pods', false)?.forEach((pod, j) => node.pods.push(parsePod(pod, `${path}.pods[${j}]`, errors)));
  f.rejectUnknown();
  return node;
}

function isNodeName(text: string): boolean {
  // 32: keeps the agent's control socket path under sun_path's 108 bytes.
  return isDns1123Label(text) && text.length <= 32;
}

function parsePod(item: unknown, path: string, errors: string[]): PodSpec {
  const f = new Fields(item, path, errors);
  const pod: PodSpec = {
    name: f.string('name', undefined, isDns1123Label, 'must be a DNS-1123 label (lowercase letters, digits, "-", at most 63)'),
    namespace: f.string('namespace', 'default', isDns1123Label, 'must be a DNS-1123 label'),
    labels: {},
    workload: { type: 'echo', httpPort: DEFAULT_HTTP_PORT, port: DEFAULT_ECHO_PORT },
    ports: [],
  };
  const labels = f.object('labels');
  if (labels !== undefined) pod.labels = validateLabels(labels);
  if (f.has('workload')) pod.workload = parseWorkload(f, errors);
  const ports = f.list('ports', false);
  if (ports === undefined) pod.ports = defaultPorts(pod.workload);
  else ports.forEach((p, k) => pod.ports.push(parsePort(p, `${path}.ports[${k}]`, errors)));
  f.rejectUnknown();
  return pod;
}

function parseWorkload(pod: Fields, errors: string[]): Workload {
  const raw = pod.raw('workload');
  const path = pod.pathOf('workload');
  if (typeof raw === 'string') {
    if (!(WORKLOAD_TYPES as readonly string[]).includes(raw) || raw === 'command') {
      errors.push(`${path}: must be one of echo, http-echo, tcp-echo, udp-echo, none, or an object {type: command, command: [...]}`);
      return { type: 'none' };
    }
    return workloadDefaults(raw as Exclude<Workload['type'], 'command' | 'containers'>);
  }
  const f = pod.object('workload');
  if (f === undefined) return { type: 'none' };
  const type = f.enumValue('type', WORKLOAD_TYPES, f.has('command') ? 'command' : 'echo');
  let workload: Workload;
  switch (type) {
    case 'echo':
      workload = { type, httpPort: f.integer('httpPort', DEFAULT_HTTP_PORT, 1, 65535), port: f.integer('port', DEFAULT_ECHO_PORT, 1, 65535) };
      break;
    case 'http-echo':
      workload = { type, port: f.integer('port', DEFAULT_HTTP_PORT, 1, 65535) };
      break;
    case 'tcp-echo':
    case 'udp-echo':
      workload = { type, port: f.integer('port', DEFAULT_ECHO_PORT, 1, 65535) };
      break;
    case 'command': {
      const env = f.object('env');
      workload = { type, command: f.command('command'), env: env === undefined ? {} : env.stringMap() };
      break;
    }
    default:
      workload = { type: 'none' };
  }
  f.rejectUnknown();
  return workload;
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

function parsePort(item: unknown, path: string, errors: string[]): ContainerPort {
  const f = new Fields(item, path, errors);
  const port: ContainerPort = {
    name: f.string('name', '', (s) => s === '' || (isDns1123Label(s) && s.length <= 15), 'must be a DNS-1123 label of at most 15 characters'),
    port: f.integer('port', 0, 1, 65535, true),
    protocol: f.enumValue('protocol', PROTOCOLS, 'TCP'),
  };
  f.rejectUnknown();
  return port;
}

function checkUniqueNames(topology: Topology, errors: string[]): void {
  const nodeNames = new Map<string, number>();
  const podNames = new Map<string, string>();
  topology.nodes.forEach((node, i) => {
    const first = nodeNames.get(node.name);
    if (first !== undefined) errors.push(`nodes[${i}].name: "${node.name}" is already used by nodes[${first}]`);
    else nodeNames.set(node.name, i);
    node.pods.forEach((pod, j) => {
      const key = `${pod.namespace}/${pod.name}`;
      const other = podNames.get(key);
      if (other !== undefined) errors.push(`nodes[${i}].pods[${j}].name: pod ${key} is already defined at ${other}`);
      else podNames.set(key, `nodes[${i}].pods[${j}]`);
      const seen = new Set<string>();
      pod.ports.forEach((port, k) => {
        const id = `${port.port}/${port.protocol}`;
        if (seen.has(id)) errors.push(`nodes[${i}].pods[${j}].ports[${k}]: ${id} is listed twice`);
        seen.add(id);
      });
    });
  });
  if (topology.client !== null && nodeNames.has(topology.client.name)) {
    errors.push(`client.name: "${topology.client.name}" is also a node name`);
  }
}

/** One problem on one line; several as a list, each line still "file: field: problem". */
export function topologyError(label: string, errors: string[]): LabError {
  const lines = errors.map((e) => `${label}: ${e}`);
  return new LabError('TOPOLOGY_INVALID', lines.length === 1 ? lines[0]! : `invalid topology (${lines.length} problems):\n${lines.join('\n')}`);
}
