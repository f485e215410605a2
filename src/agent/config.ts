// The agent's configuration: one node's view of the cluster network. Read from a YAML
// or JSON file; every problem is reported as "FILE: field.path: what is wrong".
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseCidr, type Cidr } from '../wire/address.ts';
import { parseIpv4 } from '../wire/index.ts';

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
  /** Name of the TUN that gives the node's own stack a way into the pod network. */
  hostTun: string;
  nodes: NodeRecord[];
  /** Directory of Kubernetes manifests (Services, EndpointSlices, Pods, Nodes) to serve; none = no service proxy. */
  manifests: string | null;
  /** topology.kubernetes.io/zone of this node ('' = from its Node object, if any). */
  zone: string;
  /** Addresses on which node ports are served (kube-proxy's nodePortAddresses); default the underlay address. */
  nodePortAddresses: number[];
  /** Inclusive node-port range. */
  nodePortRange: [number, number];
  /** Connection-tracking table size (entries); a full table evicts expired entries, then refuses new flows. */
  conntrackSize: number;
}

export class ConfigError extends Error {
  readonly code = 'TAPIR_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** VXLAN over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;

type Raw = Record<string, unknown>;

class Reader {
  readonly where: string;
  constructor(where: string) { this.where = where; }

  fail(field: string, message: string): never {
    throw new ConfigError(`${this.where}: ${field}: ${message}`);
  }

  object(value: unknown, field: string): Raw {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) this.fail(field, 'must be a mapping');
    return value as Raw;
  }

  string(obj: Raw, key: string, field: string, fallback?: string): string {
    const v = obj[key];
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'string' || v === '') this.fail(field, v === undefined ? 'is required' : 'must be a non-empty string');
    return v;
  }

  integer(obj: Raw, key: string, field: string, min: number, max: number, fallback?: number): number {
    const v = obj[key];
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.fail(field, v === undefined ? 'is required' : `must be an integer from ${min} to ${max}`);
    }
    return v;
  }

  ipv4(obj: Raw, key: string, field: string): number {
    const text = this.string(obj, key, field);
    const addr = parseIpv4(text);
    if (addr === undefined) return this.fail(field, `'${text}' is not an IPv4 address`);
    return addr;
  }

  cidr(obj: Raw, key: string, field: string, fallback?: string): Cidr {
    const text = this.string(obj, key, field, fallback);
    const cidr = parseCidr(text);
    if (cidr === undefined) return this.fail(field, `'${text}' is not an IPv4 CIDR like 10.244.1.0/24`);
    return cidr;
  }
}

export function parseAgentConfig(raw: unknown, where: string): AgentConfig {
  const r = new Reader(where);
  const top = r.object(raw, '(top)');
  const nodeName = r.string(top, 'nodeName', 'nodeName');
  const underlay = r.object(top.underlay, 'underlay');
  const podCIDR = r.cidr(top, 'podCIDR', 'podCIDR');
  const clusterCIDR = r.cidr(top, 'clusterCIDR', 'clusterCIDR');
  if (!clusterCIDR.contains(podCIDR.network) || podCIDR.prefixLength < clusterCIDR.prefixLength) {
    r.fail('podCIDR', `${podCIDR} is not inside clusterCIDR ${clusterCIDR}`);
  }
  if (podCIDR.prefixLength > 30) r.fail('podCIDR', 'needs room for a gateway and pods (prefix /30 or shorter)');
  const stateDir = r.string(top, 'stateDir', 'stateDir', '/run/tapir');
  const nodesRaw: unknown = top.nodes ?? [];
  if (!Array.isArray(nodesRaw)) r.fail('nodes', 'must be a list');
  const nodes: NodeRecord[] = (nodesRaw as unknown[]).map((n, i) => {
    const f = `nodes[${i}]`;
    const o = r.object(n, f);
    return { name: r.string(o, 'name', `${f}.name`), underlayIP: r.ipv4(o, 'underlayIP', `${f}.underlayIP`), podCIDR: r.cidr(o, 'podCIDR', `${f}.podCIDR`) };
  });
  for (let i = 0; i < nodes.length; i++) {
    for (let j = 0; j < i; j++) {
      if (nodes[i]!.podCIDR.overlaps(nodes[j]!.podCIDR)) r.fail(`nodes[${i}].podCIDR`, `overlaps nodes[${j}] (${nodes[j]!.name})`);
    }
  }
  return {
    nodeName,
    underlayInterface: r.string(underlay, 'interface', 'underlay.interface'),
    underlayAddress: r.ipv4(underlay, 'address', 'underlay.address'),
    podCIDR,
    clusterCIDR,
    serviceCIDR: r.cidr(top, 'serviceCIDR', 'serviceCIDR', '10.96.0.0/16'),
    vni: r.integer(top, 'vni', 'vni', 1, 0xffffff, 4242),
    mtu: r.integer(top, 'mtu', 'mtu', 576, 65535 - VXLAN_OVERHEAD, 1500 - VXLAN_OVERHEAD),
    stateDir,
    controlSocket: r.string(top, 'controlSocket', 'controlSocket', `${stateDir}/agent.sock`),
    hostTun: r.string(top, 'hostTun', 'hostTun', 'tapir0'),
    nodes,
    manifests: top.manifests === undefined ? null : r.string(top, 'manifests', 'manifests'),
    zone: top.zone === undefined ? '' : r.string(top, 'zone', 'zone'),
    nodePortAddresses: nodePortAddresses(r, top),
    nodePortRange: portRange(r, top),
    conntrackSize: r.integer(top, 'conntrackSize', 'conntrackSize', 1024, 1 << 24, 262144),
  };
}

function nodePortAddresses(r: Reader, top: Raw): number[] {
  const raw: unknown = top.nodePortAddresses;
  if (raw === undefined) return [r.ipv4(r.object(top.underlay, 'underlay'), 'address', 'underlay.address')];
  if (!Array.isArray(raw) || raw.length === 0) r.fail('nodePortAddresses', 'must be a non-empty list of IPv4 addresses');
  return (raw as unknown[]).map((_, i) => r.ipv4(raw as unknown as Raw, String(i), `nodePortAddresses[${i}]`));
}

function portRange(r: Reader, top: Raw): [number, number] {
  const text = r.string(top, 'nodePortRange', 'nodePortRange', '30000-32767');
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(text);
  const lo = m === null ? NaN : Number(m[1]);
  const hi = m === null ? NaN : Number(m[2]);
  if (!(lo >= 1 && hi <= 65535 && lo <= hi)) r.fail('nodePortRange', `'${text}' is not a port range like 30000-32767`);
  return [lo, hi];
}

export function loadAgentConfig(file: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid YAML/JSON: ${(err as Error).message}`);
  }
  return parseAgentConfig(raw, file);
}
