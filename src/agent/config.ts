// The agent's configuration: one node's view of the cluster network. Read from a YAML
// or JSON file with the shared field reader, as manifests are: every problem at once,
// each as "FILE: field.path: what is wrong", and unknown keys are problems too (the
// file is Tapir's own, so a misspelt key is a mistake, not someone else's field).
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { Fields, Problems, isMapping, typeName } from '../config/fields.ts';
import { TapirError } from '../errors/tapir-error.ts';
import {
  DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, formatPortRange, parsePortRange, type PortRange,
} from '../model/cluster-defaults.ts';
import { ipv4, parseCidr, type Cidr } from '../wire/address.ts';
import { isValidIfName } from './protocol.ts';

export interface NodeRecord {
  name: string;
  underlayIP: number;
  podCIDR: Cidr;
}

export interface AgentConfig {
  nodeName: string;
  underlayInterface: string;
  underlayAddress: number;
  podCIDR: Cidr;
  clusterCIDR: Cidr;
  serviceCIDR: Cidr;
  /** VXLAN network identifier (24 bits, RFC 7348 section 5). */
  vni: number;
  /** Pod MTU: the underlay's MTU less the 50 bytes VXLAN over IPv4 adds. */
  mtu: number;
  stateDir: string;
  controlSocket: string;
  /** Name of the host TUN: the node's own stack's way into the pod network (and steered traffic's). */
  hostTun: string;
  nodes: NodeRecord[];
  /** Directory of Kubernetes manifests (Services, EndpointSlices, Pods, Nodes) to serve; none = no service proxy. */
  manifests: string | null;
  /** topology.kubernetes.io/zone of this node ('' = from its Node object, if any). */
  zone: string;
  /** Addresses on which node ports are served (kube-proxy's nodePortAddresses); default the underlay address. */
  nodePortAddresses: number[];
  /** Node ports (kube-apiserver's --service-node-port-range). */
  nodePortRange: PortRange;
  /** Connection-tracking table size (entries); a full table evicts expired entries, then refuses new flows. */
  conntrackSize: number;
}

/** VXLAN over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;

/** The config file cannot be read or is wrong; `problems` lists every one, each with its field path. */
export class AgentConfigError extends TapirError {
  readonly code = 'TAPIR_AGENT_CONFIG';
  readonly file: string;
  readonly problems: readonly string[];
  constructor(file: string, problems: readonly string[]) {
    super(problems.length === 1 ? problems[0]! : `${file}: ${problems.length} problems:\n  ${problems.join('\n  ')}`);
    this.file = file;
    this.problems = problems;
  }

  /** `tapir agent` was started wrongly (as with a bad option): nothing ran. */
  override get exitCode(): number {
    return 2;
  }
}

const TOP_FIELDS = [
  'nodeName', 'underlay', 'podCIDR', 'clusterCIDR', 'serviceCIDR', 'vni', 'mtu', 'stateDir', 'controlSocket', 'hostTun',
  'nodes', 'manifests', 'zone', 'nodePortAddresses', 'nodePortRange', 'conntrackSize',
] as const;

/** Keys an older config may still carry, and what to write instead. */
const RENAMED: Record<string, string> = {
  hostPort: 'renamed to hostTun (the name of the host TUN; a Kubernetes hostPort is something else)',
};

/** Every problem of `raw` as "WHERE: field.path: what is wrong", then the config. */
export function parseAgentConfig(raw: unknown, where: string): AgentConfig {
  const problems = new Problems(where, []);
  if (raw === null || raw === undefined) {
    problems.add('', 'the file is empty: an agent config needs at least nodeName, underlay (interface, address), podCIDR and clusterCIDR');
    throw new AgentConfigError(where, problems.list);
  }
  if (!isMapping(raw)) {
    problems.add('', `must be a mapping of the agent's fields, not ${typeName(raw)}`);
    throw new AgentConfigError(where, problems.list);
  }
  const top = new Fields(raw, '', problems);
  top.rejectUnknown(TOP_FIELDS, RENAMED);

  const nodeName = top.string('nodeName', true);
  // A missing or malformed underlay is one problem, not one per field in it.
  const underlay = top.map('underlay', true);
  const underlayOk = underlay !== undefined && isMapping(top.value.underlay);
  if (underlayOk) underlay.rejectUnknown(['interface', 'address']);
  const underlayInterface = underlayOk ? ifName(underlay, 'interface', '') : '';
  const underlayAddress = underlayOk ? underlay.ipv4('address', true) : undefined;
  const podCIDR = top.cidr('podCIDR', true);
  const clusterCIDR = top.cidr('clusterCIDR', true);
  if (podCIDR !== undefined && clusterCIDR !== undefined && !clusterCIDR.covers(podCIDR)) {
    top.fail('podCIDR', `${podCIDR} is not inside clusterCIDR ${clusterCIDR}: give this node a part of the cluster's pod network`);
  }
  if (podCIDR !== undefined && podCIDR.prefixLength > 30) top.fail('podCIDR', `${podCIDR} leaves no room for a gateway and pods: use a /30 or a shorter prefix`);
  const serviceCIDR = top.has('serviceCIDR') ? top.cidr('serviceCIDR') : parseCidr(DEFAULT_SERVICE_CIDR);
  const stateDir = path(top, 'stateDir', '/run/tapir');
  const controlSocket = path(top, 'controlSocket', `${stateDir}/agent.sock`);
  const nodes = readNodes(top);

  let nodePortAddresses: number[] = underlayAddress === undefined ? [] : [underlayAddress];
  if (top.has('nodePortAddresses')) {
    const listed = top.value.nodePortAddresses;
    if (Array.isArray(listed) && listed.length === 0) top.fail('nodePortAddresses', 'must not be empty: list the addresses node ports are served on, or leave the field out for the underlay address');
    nodePortAddresses = top.ipv4s('nodePortAddresses').map((a) => ipv4(a));
  }
  let nodePortRange: PortRange = DEFAULT_NODE_PORT_RANGE;
  if (top.has('nodePortRange')) {
    const text = top.string('nodePortRange');
    const range = parsePortRange(text);
    if (range === undefined) {
      if (typeof top.value.nodePortRange === 'string') top.fail('nodePortRange', `${JSON.stringify(text)} is not a port range such as "${formatPortRange(DEFAULT_NODE_PORT_RANGE)}"`);
    } else {
      nodePortRange = range;
    }
  }

  const config = {
    nodeName,
    underlayInterface,
    underlayAddress,
    podCIDR,
    clusterCIDR,
    serviceCIDR,
    vni: top.int('vni', 1, 0xffffff, 4242),
    mtu: top.int('mtu', 576, 65535 - VXLAN_OVERHEAD, 1500 - VXLAN_OVERHEAD),
    stateDir,
    controlSocket,
    hostTun: ifName(top, 'hostTun', 'tapir0'),
    nodes,
    manifests: top.has('manifests') ? path(top, 'manifests', '') : null,
    zone: top.string('zone'),
    nodePortAddresses,
    nodePortRange,
    conntrackSize: top.int('conntrackSize', 1024, 1 << 24, 262144),
  };
  if (problems.list.length > 0) throw new AgentConfigError(where, problems.list);
  // No problem: every required field was read (the reads above record one otherwise).
  return { ...config, underlayAddress: underlayAddress!, podCIDR: podCIDR!, clusterCIDR: clusterCIDR!, serviceCIDR: serviceCIDR! };
}

/** A non-empty path (or `fallback` when absent; '' = required). */
function path(f: Fields, key: string, fallback: string): string {
  if (!f.has(key)) {
    if (fallback === '') f.missing(key);
    return fallback;
  }
  const v = f.string(key);
  if (v === '' && typeof f.value[key] === 'string') f.fail(key, 'must not be empty');
  return v;
}

/** A Linux interface name (or `fallback` when absent; '' = required). */
function ifName(f: Fields, key: string, fallback: string): string {
  const v = path(f, key, fallback);
  if (v !== '' && !isValidIfName(v)) f.fail(key, `${JSON.stringify(v)} is not a Linux interface name (1 to 15 bytes, no '/', ':' or spaces)`);
  return v;
}

function readNodes(top: Fields): NodeRecord[] {
  const nodes: NodeRecord[] = [];
  const complete: { node: NodeRecord; path: string }[] = [];
  for (const item of top.list('nodes')) {
    const n = new Fields(item.value, item.path, top.problems);
    if (!isMapping(item.value)) continue; // one problem, said by Fields
    n.rejectUnknown(['name', 'underlayIP', 'podCIDR']);
    const name = n.string('name', true);
    const underlayIP = n.ipv4('underlayIP', true);
    const podCIDR = n.cidr('podCIDR', true);
    if (underlayIP === undefined || podCIDR === undefined) continue;
    const node = { name, underlayIP, podCIDR };
    for (const other of complete) {
      if (other.node.podCIDR.overlaps(podCIDR)) n.fail('podCIDR', `${podCIDR} overlaps ${other.path}.podCIDR ${other.node.podCIDR} (${other.node.name}): pod CIDRs of nodes must be disjoint`);
    }
    complete.push({ node, path: n.path });
    nodes.push(node);
  }
  return nodes;
}

export function loadAgentConfig(file: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new AgentConfigError(file, [`${file}: cannot read: ${(err as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new AgentConfigError(file, [`${file}: not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`]);
  }
  return parseAgentConfig(raw, file);
}
