// The agent's configuration: one node's view of the cluster network. Read from a YAML
// or JSON file with the shared field reader, as manifests are: every problem at once,
// each as "FILE: field.path: what is wrong", and unknown keys are problems too (the
// file is Tapir's own, so a misspelt key is a mistake, not someone else's field).
//
// Two forms. The file may hold several documents: a TapirAgentConfiguration
// (tapir.dev/v1alpha1: VNI, MTU, underlay, paths, the static node list) and a
// KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1, kube-proxy-config.ts), so a
// cluster's kube-proxy ConfigMap can be reused; problems then name the document too
// ("FILE: document 2 (KubeProxyConfiguration): conntrack.min: ..."). Or, as before, one
// document without apiVersion and kind: the Tapir fields alone, kube-proxy's defaults
// for the rest. docs/agent-config.md documents every field.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseAllDocuments } from 'yaml';
import { Fields, Problems, checkIpv4, checkIpv6, isMapping, typeName } from '../config/fields.ts';
import { TapirError } from '../errors/tapir-error.ts';
import type { KubeAuth } from '../k8s/kube-api.ts';
import {
  DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, formatPortRange, parsePortRange, type PortRange,
} from '../model/cluster-defaults.ts';
import { ipv4, ipv4ToString, ipv6ToString, parseCidr, type Cidr, type Cidr6 } from '../wire/address.ts';
import type { ConntrackTimeouts } from '../tables/tcp-state.ts';
import { MAX_BUSY_POLL_MICROS } from '../device/busy-poll.ts';
import { isValidIfName } from './protocol.ts';
import {
  KUBE_PROXY_API_VERSION, KUBE_PROXY_KIND, conntrackCapacity, defaultKubeProxySettings, formatNodePortAddress,
  readKubeProxyConfiguration, type KubeProxySettings,
} from './kube-proxy-config.ts';

export const TAPIR_API_VERSION = 'tapir.dev/v1alpha1';
export const TAPIR_KIND = 'TapirAgentConfiguration';

export interface NodeRecord {
  name: string;
  underlayIP: number;
  /** The node's IPv6 underlay address, VXLAN's peer over an IPv6 underlay (`underlayIPv6`; cluster mode: the Node's IPv6 InternalIP); null/absent otherwise. */
  underlayIP6?: Uint8Array | null;
  podCIDR: Cidr;
  /** The node's IPv6 pod range (dual-stack), or null/absent. */
  podCIDRv6?: Cidr6 | null;
}

export interface AgentConfig {
  nodeName: string;
  underlayInterface: string;
  underlayAddress: number;
  podCIDR: Cidr;
  clusterCIDR: Cidr;
  serviceCIDR: Cidr;
  /** This node's IPv6 pod range and the cluster's (dual-stack): both or neither (null). The IPv6 gateway is podCIDRv6's ::1. */
  podCIDRv6: Cidr6 | null;
  clusterCIDRv6: Cidr6 | null;
  /** The cluster IPs' IPv6 range (routed into the host TUN; NAT66 serves it); null = none. */
  serviceCIDRv6: Cidr6 | null;
  /** The node's IPv6 address (the source of its IPv6 traffic to this node's pods); null = the IPv6 pod gateway, on the host TUN, for those too. */
  underlayAddressV6: Uint8Array | null;
  /**
   * The family VXLAN rides (`underlay.family`): 4, or 6 for an IPv6 underlay, one for the
   * whole cluster. Inner frames of both families ride either.
   */
  underlayFamily: 4 | 6;
  /** Over an IPv6 underlay, this node's end of the tunnels: underlay.addressV6, else (cluster mode) the Node's IPv6 InternalIP; null over IPv4. */
  vxlanAddress6: Uint8Array | null;
  /**
   * `tunnelOffload` (default true): where the kernel can (Linux 6.17+, the node
   * forwarding IPv4), hand it whole VXLAN super-frames through an egress TAP and let it
   * segment them (src/agent/tunnel-egress.ts); false keeps segmenting in software.
   */
  tunnelOffload: boolean;
  /** VXLAN network identifier (24 bits, RFC 7348 section 5). */
  vni: number;
  /** Pod MTU: the underlay's MTU less what VXLAN adds (50 bytes over IPv4, 70 over IPv6). */
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
  /** Addresses on which node ports are served (kube-proxy's nodePortAddresses), 127.0.0.1 for localhost node ports; default the underlay address and 127.0.0.1. */
  nodePortAddresses: number[];
  /**
   * The IPv6 addresses node ports are served on (a node with IPv6 pods): underlay.addressV6,
   * else (cluster mode) the Node's IPv6 InternalIP, as kube-proxy's "primary" takes each
   * family's node IP; [] = IPv6 node ports nowhere.
   */
  nodePortAddressesV6: Uint8Array[];
  /** Node ports (kube-apiserver's --service-node-port-range). */
  nodePortRange: PortRange;
  /** Connection-tracking table size (entries); a full table evicts expired entries, then refuses new flows. */
  conntrackSize: number;
  /**
   * Busy polling after traffic (microseconds, 0 = off, the default): the data path keeps
   * polling its ports and the underlay this long after the last packet before it sleeps,
   * so request/response traffic does not wait for the agent to be woken (Linux's
   * net.core.busy_poll, for the agent; src/device/busy-poll.ts). Buys connections/s and
   * latency with CPU.
   */
  busyPollMicros: number;
  /** Conntrack timeouts the config sets, in seconds (the rest keep DEFAULT_TIMEOUTS). */
  conntrackTimeouts: Partial<ConntrackTimeouts>;
  /** The service sync runner: bursts within this become one sync (kube-proxy's minSyncPeriod). */
  minSyncIntervalMs: number;
  /** A full sync at least this often (kube-proxy's syncPeriod); healthz fails after twice this. */
  maxSyncIntervalMs: number;
  /** The KubeProxyConfiguration's settings (its defaults when the file has none). */
  kubeProxy: KubeProxySettings;
  /** Cluster mode: Services, EndpointSlices and Nodes from this API server (set from `tapir agent --kubernetes`); null reads `manifests`. */
  kubernetes: KubeAuth | null;
  /** The node's cluster DNS server (docs/dns.md); null = not served (no `dns` field). */
  dns: AgentDnsConfig | null;
}

export interface AgentDnsConfig {
  /** The IPv4 cluster DNS addresses (kubelet's clusterDNS) this node answers, on the host TUN; default the service CIDR's tenth address. */
  clusterDNS: number[];
  /**
   * Its IPv6 ones (RFC 5952 text), from the same `clusterDNS` list: an IPv6-only or
   * IPv6-primary cluster's kube-dns address (the IPv6 service range's tenth, fd00:10:96::a
   * in the lab). Served like the IPv4 ones, the node's IPv6 stack permitting.
   */
  clusterDNS6: string[];
  /** A CoreDNS Corefile; null = the built-in one (kubeadm's default Corefile). */
  corefile: string | null;
  /** Also answer on the node's underlay address (the kube-dns Service's endpoints contract). */
  nodeAddress: boolean;
}

/** Tapir's own sync intervals when the config names none (kube-proxy's are 1 s and 30 s). */
export const DEFAULT_MIN_SYNC_INTERVAL_MS = 100;
export const DEFAULT_MAX_SYNC_INTERVAL_MS = 30_000;
/** Without a KubeProxyConfiguration, the conntrack table has this many entries. */
export const DEFAULT_CONNTRACK_SIZE = 262144;

/** What the config may take from the process: NODE_NAME (the downward API's), the hostname, the CPU count. */
export interface AgentConfigEnvironment {
  nodeName?: string | undefined;
  hostname?: string;
  cores?: number;
  /**
   * Cluster mode: what this node's Node object says (its InternalIP, the interface that
   * holds it, spec.podCIDR). Fields the file leaves out are taken from here, so one
   * ConfigMap serves every node.
   */
  node?: {
    address?: number | undefined; interface?: string | undefined; podCIDR?: Cidr | undefined;
    /** The Node's IPv6 InternalIP (dual-stack). */
    address6?: Uint8Array | undefined;
    /** The IPv6 entry of spec.podCIDRs (dual-stack). */
    podCIDRv6?: Cidr6 | undefined;
  };
}

/** VXLAN over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;
/** VXLAN over IPv6: the outer IPv6 header is 40 bytes, 20 more than IPv4's. */
export const VXLAN6_OVERHEAD = 70;

/** What VXLAN adds to a pod's packet over an underlay of this family. */
export function vxlanOverhead(family: 4 | 6): number {
  return family === 6 ? VXLAN6_OVERHEAD : VXLAN_OVERHEAD;
}

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
  'nodeName', 'underlay', 'podCIDR', 'clusterCIDR', 'serviceCIDR', 'podCIDRv6', 'clusterCIDRv6', 'serviceCIDRv6', 'vni', 'mtu', 'stateDir', 'controlSocket', 'hostTun',
  'nodes', 'manifests', 'zone', 'nodePortAddresses', 'nodePortRange', 'conntrackSize', 'dns', 'busyPollMicros', 'tunnelOffload',
] as const;

/** Keys an older config may still carry, and what to write instead. */
const RENAMED: Record<string, string> = {
  hostPort: 'renamed to hostTun (the name of the host TUN; a Kubernetes hostPort is something else)',
};

/**
 * Every problem of `raw`, one document of the legacy form (no apiVersion, no kind) or a
 * TapirAgentConfiguration alone, as "WHERE: field.path: what is wrong", then the config.
 */
export function parseAgentConfig(raw: unknown, where: string, env: AgentConfigEnvironment = {}): AgentConfig {
  return parseAgentConfigDocuments([raw], where, env);
}

/** The documents of one file: the legacy single document, or a TapirAgentConfiguration with an optional KubeProxyConfiguration. */
export function parseAgentConfigDocuments(docs: readonly unknown[], where: string, env: AgentConfigEnvironment = {}): AgentConfig {
  const list: string[] = [];
  const present = docs.filter((d) => d !== null && d !== undefined);
  if (present.length === 0) {
    new Problems(where, list).add('', 'the file is empty: an agent config needs at least nodeName, underlay (interface, address), podCIDR and clusterCIDR');
    throw new AgentConfigError(where, list);
  }
  if (present.length === 1 && isMapping(present[0]) && present[0].apiVersion === undefined && present[0].kind === undefined) {
    return readTapir(new Fields(present[0], '', new Problems(where, list)), null, true, env, where, list);
  }
  if (present.length === 1 && !isMapping(present[0])) {
    new Problems(where, list).add('', `must be a mapping of the agent's fields, not ${typeName(present[0])}`);
    throw new AgentConfigError(where, list);
  }
  let kubeProxy: KubeProxySettings | null = null;
  let tapir: Fields | null = null;
  docs.forEach((doc, i) => {
    if (doc === null || doc === undefined) return;
    const problems = new Problems(`${where}: document ${i + 1}`, list);
    if (!isMapping(doc)) {
      problems.add('', `must be a mapping, not ${typeName(doc)}`);
      return;
    }
    const kind = doc.kind;
    const apiVersion = doc.apiVersion;
    const expected = kind === KUBE_PROXY_KIND ? KUBE_PROXY_API_VERSION : kind === TAPIR_KIND ? TAPIR_API_VERSION : undefined;
    if (expected === undefined) {
      problems.add(kind === undefined ? 'kind' : '', kind === undefined
        ? `required field is missing: a file of several documents holds a ${TAPIR_KIND} (${TAPIR_API_VERSION}) and optionally a ${KUBE_PROXY_KIND} (${KUBE_PROXY_API_VERSION})`
        : `kind ${JSON.stringify(kind)} is not one the agent reads: give a ${TAPIR_KIND} (${TAPIR_API_VERSION}) and optionally a ${KUBE_PROXY_KIND} (${KUBE_PROXY_API_VERSION})`);
      return;
    }
    problems.prefix = `${where}: document ${i + 1} (${kind as string})`;
    if (apiVersion !== expected) {
      problems.add('apiVersion', apiVersion === undefined ? `required field is missing: ${expected}` : `${JSON.stringify(apiVersion)} is not ${expected}, the version Tapir reads`);
    }
    if ((kind === KUBE_PROXY_KIND ? kubeProxy : tapir) !== null) {
      problems.add('', `a second ${kind as string}: give one`);
      return;
    }
    const fields = new Fields(doc, '', problems);
    if (kind === KUBE_PROXY_KIND) kubeProxy = readKubeProxyConfiguration(fields);
    else tapir = fields;
  });
  if (tapir === null) {
    new Problems(where, list).add('', `no ${TAPIR_KIND} (${TAPIR_API_VERSION}) document: the agent needs its underlay, podCIDR and paths from one`);
    throw new AgentConfigError(where, list);
  }
  return readTapir(tapir, kubeProxy, false, env, where, list);
}

function readTapir(top: Fields, kp: KubeProxySettings | null, legacy: boolean, env: AgentConfigEnvironment, where: string, list: string[]): AgentConfig {
  const kpWhere = `the ${KUBE_PROXY_KIND}'s`;
  top.rejectUnknown(legacy ? TOP_FIELDS : ['apiVersion', 'kind', ...TOP_FIELDS], RENAMED);

  let nodeName = top.string('nodeName', legacy);
  if (!legacy) {
    const override = kp?.hostnameOverride ?? '';
    if (nodeName !== '' && override !== '' && nodeName !== override) top.fail('nodeName', `${nodeName} differs from ${kpWhere} hostnameOverride ${override}: give the Node's name once`);
    if (nodeName === '') nodeName = override || (env.nodeName ?? '').trim() || (env.hostname ?? hostname()).toLowerCase();
  }
  // A missing or malformed underlay is one problem, not one per field in it.
  const fromNode = env.node;
  const underlay = top.map('underlay', fromNode === undefined);
  const underlayOk = underlay !== undefined && isMapping(top.value.underlay);
  if (underlayOk) underlay.rejectUnknown(['interface', 'address', 'addressV6', 'family']);
  const underlayFamily = underlayOk ? readFamily(underlay) : 4;
  const underlayInterface = underlayOk && (fromNode?.interface === undefined || underlay.has('interface')) ? ifName(underlay, 'interface', '') : (fromNode?.interface ?? '');
  const bindAddress = kp?.bindAddress;
  let underlayAddress = underlayOk ? underlay.ipv4('address', bindAddress === undefined && fromNode?.address === undefined) : undefined;
  if (underlayAddress === undefined && bindAddress === undefined && fromNode?.address !== undefined) underlayAddress = fromNode.address;
  if (fromNode !== undefined && !underlayOk && bindAddress !== undefined) underlayAddress = bindAddress;
  if (underlayOk && bindAddress !== undefined) {
    if (underlayAddress === undefined && !underlay.has('address')) underlayAddress = bindAddress;
    else if (underlayAddress !== undefined && underlayAddress !== bindAddress) underlay.fail('address', `${ipv4ToString(underlayAddress)} differs from ${kpWhere} bindAddress ${ipv4ToString(bindAddress)}: give the node's address once`);
  }
  const podCIDR = top.has('podCIDR') || fromNode?.podCIDR === undefined ? top.cidr('podCIDR', true) : fromNode.podCIDR;
  let clusterCIDR = top.cidr('clusterCIDR', kp?.clusterCIDR === undefined);
  if (kp?.clusterCIDR !== undefined) {
    if (clusterCIDR === undefined && !top.has('clusterCIDR')) clusterCIDR = kp.clusterCIDR;
    else if (clusterCIDR !== undefined && clusterCIDR.toString() !== kp.clusterCIDR.toString()) top.fail('clusterCIDR', `${clusterCIDR} differs from ${kpWhere} clusterCIDR ${kp.clusterCIDR}: give it once`);
  }
  if (podCIDR !== undefined && clusterCIDR !== undefined && !clusterCIDR.covers(podCIDR)) {
    top.fail('podCIDR', `${podCIDR} is not inside clusterCIDR ${clusterCIDR}: give this node a part of the cluster's pod network`);
  }
  if (podCIDR !== undefined && podCIDR.prefixLength > 30) top.fail('podCIDR', `${podCIDR} leaves no room for a gateway and pods: use a /30 or a shorter prefix`);
  const serviceCIDR = top.has('serviceCIDR') ? top.cidr('serviceCIDR') : parseCidr(DEFAULT_SERVICE_CIDR);
  const v6 = readIpv6(top, underlayOk ? underlay : undefined, kp, env);
  const stateDir = path(top, 'stateDir', '/run/tapir');
  const controlSocket = path(top, 'controlSocket', `${stateDir}/agent.sock`);
  const nodes = readNodes(top, v6.clusterCIDRv6, underlayFamily);
  let vxlanAddress6: Uint8Array | null = null;
  if (underlayFamily === 6) {
    vxlanAddress6 = v6.underlayAddressV6 ?? fromNode?.address6 ?? null;
    if (vxlanAddress6 === null) {
      underlay!.fail('addressV6', `required with family ipv6: the node's IPv6 address that VXLAN is sent from and to${fromNode !== undefined ? ' (this node\'s Node object has no IPv6 InternalIP either)' : ''}`);
    }
  }

  // Unset everywhere: kube-proxy's iptables mode, every address of the node and, with
  // localhostNodePorts (default true), 127.0.0.1.
  const localhostNodePorts = kp?.localhostNodePorts ?? true;
  let nodePortAddresses: number[] = underlayAddress === undefined ? [] : [underlayAddress, ...(localhostNodePorts ? [LOCALHOST] : [])];
  if (top.has('nodePortAddresses')) {
    const listed = top.value.nodePortAddresses;
    if (Array.isArray(listed) && listed.length === 0) top.fail('nodePortAddresses', 'must not be empty: list the addresses node ports are served on, or leave the field out for the underlay address and 127.0.0.1');
    nodePortAddresses = top.ipv4s('nodePortAddresses').map((a) => ipv4(a));
    if (kp?.nodePortAddresses !== undefined) top.fail('nodePortAddresses', `${kpWhere} nodePortAddresses says where node ports are served too: keep one of them`);
  } else if (kp?.nodePortAddresses !== undefined && underlayAddress !== undefined) {
    nodePortAddresses = resolveNodePortAddresses(kp, underlayAddress);
    if (nodePortAddresses.length === 0) {
      const offLocalhost = kp.nodePortAddresses.some((a) => a.kind === 'localhost') ? ` (localhost is, but ${kpWhere} iptables.localhostNodePorts is false)` : '';
      top.fail('underlay.address', `${ipv4ToString(underlayAddress)}, this node's only address, is not in ${kpWhere} nodePortAddresses [${kp.nodePortAddresses.map(formatNodePortAddress).join(', ')}]${offLocalhost}: node ports would be served nowhere`);
    }
  }
  const address6 = v6.underlayAddressV6 ?? fromNode?.address6 ?? null;
  const nodePortAddressesV6 = v6.podCIDRv6 !== null && address6 !== null ? [address6] : [];
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
  // conntrackSize, when given, wins over kube-proxy's per-core sizing.
  const conntrackFallback = kp === null ? DEFAULT_CONNTRACK_SIZE : conntrackCapacity(kp.conntrack, DEFAULT_CONNTRACK_SIZE, env.cores);
  const kubeProxy = kp ?? defaultKubeProxySettings();

  const config = {
    nodeName,
    underlayInterface,
    underlayAddress,
    podCIDR,
    clusterCIDR,
    serviceCIDR,
    ...v6,
    underlayFamily,
    vxlanAddress6,
    tunnelOffload: top.bool('tunnelOffload', true),
    vni: top.int('vni', 1, 0xffffff, 4242),
    mtu: top.int('mtu', underlayFamily === 6 ? 1280 : 576, 65535 - vxlanOverhead(underlayFamily), 1500 - vxlanOverhead(underlayFamily)),
    stateDir,
    controlSocket,
    hostTun: ifName(top, 'hostTun', 'tapir0'),
    nodes,
    manifests: top.has('manifests') ? path(top, 'manifests', '') : null,
    zone: top.string('zone'),
    nodePortAddresses,
    nodePortAddressesV6,
    nodePortRange,
    conntrackSize: top.int('conntrackSize', 1024, 1 << 24, Math.max(1024, conntrackFallback)),
    busyPollMicros: top.int('busyPollMicros', 0, MAX_BUSY_POLL_MICROS, 0),
    conntrackTimeouts: { ...kubeProxy.conntrack.timeouts },
    minSyncIntervalMs: kubeProxy.minSyncPeriodMs ?? DEFAULT_MIN_SYNC_INTERVAL_MS,
    maxSyncIntervalMs: kubeProxy.syncPeriodMs ?? DEFAULT_MAX_SYNC_INTERVAL_MS,
    kubeProxy,
    kubernetes: null,
    dns: serviceCIDR === undefined ? null : readDns(top, serviceCIDR),
  };
  if (fromNode !== undefined && underlayInterface === '') list.push(`${where}: underlay.interface: not given, and no interface of this node holds its InternalIP`);
  if (list.length > 0) throw new AgentConfigError(where, list);
  // No problem: every required field was read (the reads above record one otherwise).
  return { ...config, underlayAddress: underlayAddress!, podCIDR: podCIDR!, clusterCIDR: clusterCIDR!, serviceCIDR: serviceCIDR! };
}

/** The `dns` section: absent = no DNS server; `{}` = the defaults. */
function readDns(top: Fields, serviceCIDR: Cidr): AgentDnsConfig | null {
  if (!top.has('dns')) return null;
  const dns = top.map('dns');
  if (dns === undefined || !isMapping(top.value.dns)) return null;
  dns.rejectUnknown(['clusterDNS', 'corefile', 'nodeAddress']);
  // Either family, as the kubelet's clusterDNS: IPv6 entries are told by their colons.
  const clusterDNS: number[] = [];
  const clusterDNS6: string[] = [];
  if (dns.has('clusterDNS')) {
    for (const item of dns.list('clusterDNS')) {
      if (typeof item.value === 'string' && item.value.includes(':')) {
        const a6 = checkIpv6(item.value, item.path, top.problems);
        if (a6 !== undefined) clusterDNS6.push(ipv6ToString(a6));
      } else if (checkIpv4(item.value, item.path, top.problems)) {
        clusterDNS.push(ipv4(item.value as string));
      }
    }
  } else {
    clusterDNS.push(serviceCIDR.host(10));
  }
  if (Array.isArray(dns.value.clusterDNS) && dns.value.clusterDNS.length === 0) dns.fail('clusterDNS', 'must not be empty: list the addresses pods are given as their nameserver, or leave the field out for the service CIDR\'s tenth address');
  const corefile = dns.has('corefile') ? path(dns, 'corefile', '') : null;
  return { clusterDNS, clusterDNS6, corefile, nodeAddress: dns.bool('nodeAddress', true) };
}

/** 127.0.0.1, where localhost node ports answer. */
const LOCALHOST = ipv4('127.0.0.1');

/**
 * The node's addresses that kube-proxy's nodePortAddresses select (Tapir knows one: the
 * underlay's), and 127.0.0.1 when the list covers it (`localhost`, `all`, or a prefix
 * holding it) and iptables.localhostNodePorts is true, as kube-proxy's iptables mode does.
 */
function resolveNodePortAddresses(kp: KubeProxySettings, underlayAddress: number): number[] {
  const list = kp.nodePortAddresses ?? [];
  const covers = (ip: number, keyword: 'primary' | 'localhost'): boolean => list.some((a) => a.kind === keyword || a.kind === 'all' || (a.kind === 'cidr' && a.cidr.contains(ip)));
  const out: number[] = [];
  if (covers(underlayAddress, 'primary')) out.push(underlayAddress);
  if (kp.localhostNodePorts && covers(LOCALHOST, 'localhost')) out.push(LOCALHOST);
  return out;
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

/**
 * The IPv6 half of a dual-stack node: podCIDRv6 and clusterCIDRv6 (both or neither, each
 * a network: no host bits), serviceCIDRv6, underlay.addressV6. In cluster mode the
 * Node's IPv6 podCIDR fills in what the file leaves out, once the
 * cluster's IPv6 range is known (the file's clusterCIDRv6, or the IPv6 half of the
 * KubeProxyConfiguration's dual-stack clusterCIDR): a Node that is dual-stack in a
 * cluster Tapir was not given an IPv6 range for stays IPv4 only.
 */
function readIpv6(top: Fields, underlay: Fields | undefined, kp: KubeProxySettings | null, env: AgentConfigEnvironment): Pick<AgentConfig, 'podCIDRv6' | 'clusterCIDRv6' | 'serviceCIDRv6' | 'underlayAddressV6'> {
  const kpWhere = `the ${KUBE_PROXY_KIND}'s`;
  let clusterCIDRv6 = top.cidr6('clusterCIDRv6', false, true);
  const fromKp = kp?.clusterCIDRv6;
  if (fromKp !== undefined) {
    if (clusterCIDRv6 === undefined && !top.has('clusterCIDRv6')) clusterCIDRv6 = fromKp;
    else if (clusterCIDRv6 !== undefined && clusterCIDRv6.toString() !== fromKp.toString()) {
      top.fail('clusterCIDRv6', `${clusterCIDRv6} differs from ${kpWhere} IPv6 clusterCIDR ${fromKp}: give it once`);
      clusterCIDRv6 = undefined; // one problem, not its consequences too
    }
  }
  let podCIDRv6 = top.cidr6('podCIDRv6', false, true);
  if (podCIDRv6 === undefined && !top.has('podCIDRv6') && clusterCIDRv6 !== undefined) podCIDRv6 = env.node?.podCIDRv6;
  const serviceCIDRv6 = top.cidr6('serviceCIDRv6', false, true);
  // Not from the Node's IPv6 InternalIP: the host TUN's IPv6 source stays the pod gateway
  // unless asked (see hostTunIpv6 in agent.ts).
  const underlayAddressV6 = underlay?.ipv6('addressV6');
  const none = { podCIDRv6: null, clusterCIDRv6: null, serviceCIDRv6: null, underlayAddressV6: underlayAddressV6 ?? null };
  if (podCIDRv6 === undefined && clusterCIDRv6 === undefined) {
    if (serviceCIDRv6 !== undefined) top.fail('serviceCIDRv6', 'needs podCIDRv6 and clusterCIDRv6: IPv6 Services are for a node with IPv6 pods');
    return none;
  }
  if (podCIDRv6 === undefined && !top.has('podCIDRv6') && !top.has('clusterCIDRv6') && fromKp !== undefined) {
    // Only kube-proxy's dual-stack clusterCIDR, and no IPv6 range for this node: as before IPv6, the node stays IPv4 only.
    kp!.ignored.push(`clusterCIDR (the IPv6 range ${fromKp}: no podCIDRv6 for this node, its pods are IPv4 only)`);
    if (serviceCIDRv6 !== undefined) top.fail('serviceCIDRv6', 'needs podCIDRv6: IPv6 Services are for a node with IPv6 pods');
    return none;
  }
  if (podCIDRv6 === undefined) {
    if (!top.has('podCIDRv6')) top.fail('podCIDRv6', `required with clusterCIDRv6${fromKp !== undefined && !top.has('clusterCIDRv6') ? ` (${kpWhere} clusterCIDR has an IPv6 range)` : ''}: this node's part of the cluster's IPv6 pod range, such as "fd00:10:244:1::/64"`);
    return none;
  }
  if (clusterCIDRv6 === undefined) {
    if (!top.has('clusterCIDRv6')) top.fail('clusterCIDRv6', 'required with podCIDRv6: the cluster\'s IPv6 pod range, routed from the node into the host TUN');
    return none;
  }
  if (!clusterCIDRv6.covers(podCIDRv6)) top.fail('podCIDRv6', `${podCIDRv6} is not inside clusterCIDRv6 ${clusterCIDRv6}: give this node a part of the cluster's IPv6 pod network`);
  if (podCIDRv6.prefixLength > 126) top.fail('podCIDRv6', `${podCIDRv6} leaves no room for a gateway and pods: use a /126 or a shorter prefix (a /64 is usual)`);
  if (serviceCIDRv6 !== undefined && serviceCIDRv6.overlaps(clusterCIDRv6)) top.fail('serviceCIDRv6', `${serviceCIDRv6} overlaps clusterCIDRv6 ${clusterCIDRv6}: cluster IPs and pod addresses must be apart`);
  if (underlayAddressV6 !== undefined && clusterCIDRv6.contains(underlayAddressV6)) {
    underlay!.fail('addressV6', `${ipv6ToString(underlayAddressV6)} is inside clusterCIDRv6 ${clusterCIDRv6}: the node's underlay address is not a pod address (leave it out to use the IPv6 pod gateway)`);
  }
  return { podCIDRv6, clusterCIDRv6, serviceCIDRv6: serviceCIDRv6 ?? null, underlayAddressV6: underlayAddressV6 ?? null };
}

/**
 * `underlay.family`: "ipv4" (the default) or "ipv6". One family for the cluster: every
 * node's agent must say the same, as every node's VXLAN peers are of that family.
 */
function readFamily(underlay: Fields): 4 | 6 {
  if (!underlay.has('family')) return 4;
  const text = underlay.string('family');
  if (text === 'ipv4' || text === 'ipv6') return text === 'ipv6' ? 6 : 4;
  if (typeof underlay.value.family === 'string') underlay.fail('family', `${JSON.stringify(text)} is not "ipv4" or "ipv6": the family of the underlay VXLAN rides (one for the whole cluster)`);
  return 4;
}

function readNodes(top: Fields, clusterCIDRv6: Cidr6 | null, underlayFamily: 4 | 6): NodeRecord[] {
  const nodes: NodeRecord[] = [];
  const complete: { node: NodeRecord; path: string }[] = [];
  for (const item of top.list('nodes')) {
    const n = new Fields(item.value, item.path, top.problems);
    if (!isMapping(item.value)) continue; // one problem, said by Fields
    n.rejectUnknown(['name', 'underlayIP', 'underlayIPv6', 'podCIDR', 'podCIDRv6']);
    const name = n.string('name', true);
    const underlayIP = n.ipv4('underlayIP', true);
    const underlayIP6 = n.ipv6('underlayIPv6') ?? null;
    if (underlayFamily === 6 && !n.has('underlayIPv6')) n.fail('underlayIPv6', 'required with underlay.family ipv6: the node\'s IPv6 address its VXLAN datagrams come from');
    if (underlayIP6 !== null && underlayFamily === 4) n.fail('underlayIPv6', 'is the node\'s VXLAN address over an IPv6 underlay, and this one is IPv4: set underlay.family to ipv6, or leave the field out');
    const podCIDR = n.cidr('podCIDR', true);
    const podCIDRv6 = n.cidr6('podCIDRv6', false, true) ?? null;
    if (podCIDRv6 !== null && clusterCIDRv6 === null) n.fail('podCIDRv6', 'needs clusterCIDRv6 (and this node\'s podCIDRv6): the IPv6 pod network is off');
    else if (podCIDRv6 !== null && clusterCIDRv6 !== null && !clusterCIDRv6.covers(podCIDRv6)) n.fail('podCIDRv6', `${podCIDRv6} is not inside clusterCIDRv6 ${clusterCIDRv6}`);
    if (underlayIP === undefined || podCIDR === undefined) continue;
    const node: NodeRecord = { name, underlayIP, underlayIP6, podCIDR, podCIDRv6 };
    for (const other of complete) {
      if (other.node.podCIDR.overlaps(podCIDR)) n.fail('podCIDR', `${podCIDR} overlaps ${other.path}.podCIDR ${other.node.podCIDR} (${other.node.name}): pod CIDRs of nodes must be disjoint`);
      const o6 = other.node.podCIDRv6;
      if (podCIDRv6 !== null && o6 && o6.overlaps(podCIDRv6)) n.fail('podCIDRv6', `${podCIDRv6} overlaps ${other.path}.podCIDRv6 ${o6} (${other.node.name}): pod CIDRs of nodes must be disjoint`);
    }
    complete.push({ node, path: n.path });
    nodes.push(node);
  }
  return nodes;
}

export function loadAgentConfig(file: string, env: AgentConfigEnvironment = { nodeName: process.env.NODE_NAME }): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new AgentConfigError(file, [`${file}: cannot read: ${(err as Error).message}`]);
  }
  const docs: unknown[] = [];
  for (const doc of parseAllDocuments(text, { uniqueKeys: true })) {
    const error = doc.errors[0];
    if (error !== undefined) throw new AgentConfigError(file, [`${file}: not valid YAML or JSON: ${error.message.split('\n')[0]}`]);
    docs.push(doc.toJS());
  }
  return parseAgentConfigDocuments(docs, file, env);
}
