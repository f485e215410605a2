// The TapirAgentConfiguration document (tapir.dev/v1alpha1), or the legacy single
// document without apiVersion and kind: its fields read with the shared field reader,
// every problem at once, and unknown keys are problems too (the file is Tapir's own, so
// a misspelt key is a mistake, not someone else's field). A KubeProxyConfiguration given
// beside it (kube-proxy-config.ts) fills in what this document leaves out (the node's
// name and address, clusterCIDR, node port addresses, conntrack size and timeouts, sync
// periods) and must agree with what it says; in cluster mode the Node object fills in
// the node's own fields. The result is config.ts's AgentConfig.
import { hostname } from 'node:os';
import { Fields, checkIpv4, checkIpv6, isMapping } from '../config/fields.ts';
import {
  DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, formatPortRange, parsePortRange, type PortRange,
} from '../model/cluster-defaults.ts';
import { ipv4, ipv4ToString, ipv6ToString, parseCidr, type Cidr, type Cidr6 } from '../wire/address.ts';
import { MAX_BUSY_POLL_MICROS } from '../device/busy-poll.ts';
import {
  AgentConfigError, DEFAULT_CONNTRACK_SIZE, DEFAULT_MAX_SYNC_INTERVAL_MS, DEFAULT_MIN_SYNC_INTERVAL_MS, vxlanOverhead,
  type AgentConfig, type AgentConfigEnvironment, type AgentDnsConfig, type NodeRecord,
} from './config.ts';
import { isValidIfName } from './protocol.ts';
import {
  KUBE_PROXY_KIND, conntrackCapacity, defaultKubeProxySettings, formatNodePortAddress, type KubeProxySettings,
} from './kube-proxy-config.ts';

export const TAPIR_API_VERSION = 'tapir.dev/v1alpha1';
export const TAPIR_KIND = 'TapirAgentConfiguration';

const TOP_FIELDS = [
  'nodeName', 'underlay', 'podCIDR', 'clusterCIDR', 'serviceCIDR', 'podCIDRv6', 'clusterCIDRv6', 'serviceCIDRv6', 'vni', 'mtu', 'stateDir', 'controlSocket', 'hostTun',
  'nodes', 'manifests', 'zone', 'nodePortAddresses', 'nodePortRange', 'conntrackSize', 'dns', 'busyPollMicros', 'tunnelOffload',
] as const;

/** Keys an older config may still carry, and what to write instead. */
const RENAMED: Record<string, string> = {
  hostPort: 'renamed to hostTun (the name of the host TUN; a Kubernetes hostPort is something else)',
};

/**
 * The config of the Tapir document's fields `top` (legacy: the single document without
 * apiVersion and kind) and the KubeProxyConfiguration's settings `kp` (null: none given).
 * Problems go to `list`, and any there are thrown as one AgentConfigError.
 */
export function readTapir(top: Fields, kp: KubeProxySettings | null, legacy: boolean, env: AgentConfigEnvironment, where: string, list: string[]): AgentConfig {
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
  // unless asked (see hostTunIpv6 in host-tun.ts).
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
