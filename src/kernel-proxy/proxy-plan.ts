// What kube-proxy's iptables and nftables backends share, computed once per service
// port from the compiled snapshot of one address family: the chain names (kube-proxy's
// own hashes, so the rules read like a real node's) and which endpoints sit behind the
// cluster-wide and node-local policy chains (pkg/proxy/iptables/proxier.go
// syncProxyRules). kube-proxy runs one proxier per family (a dual-stack node: the IPv4
// one on iptables / `table ip`, the IPv6 one on ip6tables / `table ip6`); here one plan
// serves both, over a ProxySnapshot whose addresses are text, converted from the two
// halves of the ServiceSnapshot (proxySnapshot4 from `ports`, proxySnapshot6 from
// `ports6`: one compiler, src/control/compile.ts, for every data plane).
import { createHash } from 'node:crypto';
import type { EndpointSpec, ServicePortSpec, ServicePortSpec6, ServiceSnapshot } from '../model/service-snapshot.ts';
import { ipv4ToString, parseIpv6 } from '../wire/address.ts';

export type ProxyFamily = 4 | 6;

/** An endpoint of one family, its address as text (RFC 5952 for IPv6). */
export interface ProxyEndpoint extends Omit<EndpointSpec, 'ip'> {
  ip: string;
}

/** One service port of one family as the rules need it: a ServicePortSpec with every address as text. */
export interface ProxyPortSpec extends Omit<ServicePortSpec, 'clusterIP' | 'externalIPs' | 'loadBalancerIPs' | 'loadBalancerSourceRanges' | 'allEndpoints' | 'clusterEndpoints' | 'externalEndpoints'> {
  /** '' for headless services (they are skipped: no frontends). */
  clusterIP: string;
  externalIPs: string[];
  loadBalancerIPs: string[];
  /** CIDRs as text ("10.0.0.0/8", "fd00::/64"). */
  loadBalancerSourceRanges: string[];
  allEndpoints: ProxyEndpoint[];
  clusterEndpoints: ProxyEndpoint[];
  externalEndpoints: ProxyEndpoint[];
}

/** What one family's proxier programs on this node. */
export interface ProxySnapshot {
  family: ProxyFamily;
  generation: number;
  ports: ProxyPortSpec[];
  /** This node's addresses of the family on which node ports are served. */
  nodePortAddresses: string[];
}

/** The IPv4 snapshot with its addresses as text (the same ports, in the same order). */
export function proxySnapshot4(snapshot: ServiceSnapshot): ProxySnapshot {
  return { family: 4, generation: snapshot.generation, ports: snapshot.ports.map(portSpec4), nodePortAddresses: snapshot.nodePortAddresses.map(ipv4ToString) };
}

/** The IPv6 half of the snapshot (its ports6 and nodePortAddresses6): the addresses are text already. */
export function proxySnapshot6(snapshot: ServiceSnapshot): ProxySnapshot {
  return { family: 6, generation: snapshot.generation, ports: (snapshot.ports6 ?? []).map(portSpec6), nodePortAddresses: [...(snapshot.nodePortAddresses6 ?? [])] };
}

function portSpec6(spec: ServicePortSpec6): ProxyPortSpec {
  return { ...spec, loadBalancerSourceRanges: spec.loadBalancerSourceRanges.map(([network, length]) => `${network}/${length}`) };
}

function portSpec4(spec: ServicePortSpec): ProxyPortSpec {
  const endpoints = (list: EndpointSpec[]): ProxyEndpoint[] => list.map((e) => ({ ...e, ip: ipv4ToString(e.ip) }));
  return {
    ...spec,
    clusterIP: spec.clusterIP === 0 ? '' : ipv4ToString(spec.clusterIP),
    externalIPs: spec.externalIPs.map(ipv4ToString),
    loadBalancerIPs: spec.loadBalancerIPs.map(ipv4ToString),
    loadBalancerSourceRanges: spec.loadBalancerSourceRanges.map(([network, length]) => `${ipv4ToString(network)}/${length}`),
    allEndpoints: endpoints(spec.allEndpoints),
    clusterEndpoints: endpoints(spec.clusterEndpoints),
    externalEndpoints: endpoints(spec.externalEndpoints),
  };
}

/** The family's single-host prefix length (`-d 10.96.0.1/32`, `-d fd00:10:96::1/128`). */
export function hostBits(family: ProxyFamily): number {
  return family === 4 ? 32 : 128;
}

/** "10.244.1.2:8080", "[fd00:10:244:1::2]:8080" (Go's net.JoinHostPort, as kube-proxy names endpoints). */
export function joinHostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** A sort key in address order for either family: the address's bytes in hex. */
function addressKey(ip: string): string {
  if (!ip.includes(':')) return ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('');
  const bytes = parseIpv6(ip);
  return bytes === null ? ip : Buffer.from(bytes).toString('hex');
}

/** kube-proxy's masquerade mark bit (--iptables-masquerade-bit 14). */
export const MASQUERADE_MARK = '0x4000';

/** Facts about the node that the snapshot does not carry. */
export interface ProxyNode {
  /** Traffic from here is "from a pod" (kube-proxy's --cluster-cidr local detector). */
  clusterCIDR: string;
  /** Addresses in it without a service are dropped (nftables mode only, as kube-proxy). */
  serviceCIDR: string;
}

export interface PlannedEndpoint {
  ip: string;
  port: number;
  /** "10.244.1.2:8080", "[fd00:10:244:1::2]:8080" */
  address: string;
  /** iptables KUBE-SEP-… */
  sepChain: string;
  /** nftables endpoint-…, and affinity-… for its ClientIP set */
  nftEndpointChain: string;
  nftAffinitySet: string;
}

export interface PlannedPort {
  family: ProxyFamily;
  spec: ProxyPortSpec;
  /** "ns/name:port" as kube-proxy comments name it ("ns/name" when the port has no name). */
  portName: string;
  protocol: 'tcp' | 'udp';
  clusterIP: string;
  externalIPs: string[];
  loadBalancerIPs: string[];
  sourceRanges: string[];
  /** Endpoints of the Cluster policy (every usable endpoint in the cluster). */
  clusterEndpoints: PlannedEndpoint[];
  /** Endpoints of the Local policy (this node's), used when a traffic policy is Local. */
  localEndpoints: PlannedEndpoint[];
  /** Endpoints internal (cluster IP) and external (node port, external and LB IPs) traffic reaches. */
  hasInternalEndpoints: boolean;
  hasExternalEndpoints: boolean;
  /** Endpoints exist somewhere, but none for external traffic here: drop (Local policy), not reject. */
  externalDropsForLocalPolicy: boolean;
  externallyAccessible: boolean;
  names: {
    svc: string; svl: string; ext: string; fw: string;
    nftService: string; nftLocal: string; nftExternal: string; nftFirewall: string;
  };
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 (with Go's StdEncoding alphabet) of sha256(text), as kube-proxy hashes chain names. */
export function hashName(text: string, length: number): string {
  const digest = createHash('sha256').update(text).digest();
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of digest) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5 && out.length < length) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length >= length) break;
  }
  return out;
}

/** nftables chain names are capped at 256 bytes (NFT_CHAIN_MAXNAMELEN); kube-proxy truncates at 255. */
function nftName(prefix: string, base: string): string {
  const name = `${prefix}-${hashName(base, 8)}-${base}`;
  return name.length > 255 ? `${name.slice(0, 252)}...` : name;
}

/** The endpoints traffic may use when the policy is "Cluster": ready, else serving+terminating. */
function usable(endpoints: ProxyEndpoint[]): ProxyEndpoint[] {
  const ready = endpoints.filter((e) => e.ready);
  return ready.length > 0 ? ready : endpoints.filter((e) => e.serving && e.terminating);
}

function sortedUnique(endpoints: ProxyEndpoint[]): ProxyEndpoint[] {
  const seen = new Map<string, { e: ProxyEndpoint; key: string }>();
  for (const e of endpoints) seen.set(`${e.ip}/${e.port}`, { e, key: addressKey(e.ip) });
  return [...seen.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.e.port - b.e.port)).map((x) => x.e);
}

/** An IPv4 port of the ServiceSnapshot. */
export function planPort(spec: ServicePortSpec): PlannedPort {
  return planProxyPort(portSpec4(spec), 4);
}

export function planProxyPort(spec: ProxyPortSpec, family: ProxyFamily): PlannedPort {
  const protocol = spec.protocol === 6 ? 'tcp' : 'udp';
  const portName = spec.portName === '' ? `${spec.namespace}/${spec.name}` : `${spec.namespace}/${spec.name}:${spec.portName}`;
  const base = `${spec.namespace}/${spec.name}/${protocol}/${spec.portName}`;
  const svcHash = hashName(portName + protocol, 16);
  const endpoint = (e: ProxyEndpoint): PlannedEndpoint => {
    const ip = e.ip;
    const address = joinHostPort(ip, e.port);
    // An nft identifier may not hold ':' (the scanner ends it there), so an IPv6 address
    // is written with '.' in the endpoint's chain and set names.
    const epBase = `${base}__${ip.replaceAll(':', '.')}/${e.port}`;
    return {
      ip, port: e.port, address,
      sepChain: `KUBE-SEP-${hashName(portName + protocol + address, 16)}`,
      nftEndpointChain: nftName('endpoint', epBase),
      nftAffinitySet: nftName('affinity', epBase),
    };
  };
  // The snapshot's lists are already filtered for this node's policies; the Cluster
  // list behind a Local internal policy is recomputed from every endpoint.
  const clusterWide = sortedUnique(spec.internalLocal ? usable(spec.allEndpoints) : spec.clusterEndpoints);
  const local = sortedUnique(spec.externalLocal ? spec.externalEndpoints : spec.internalLocal ? spec.clusterEndpoints : []);
  const externallyAccessible = spec.nodePort !== 0 || spec.externalIPs.length > 0 || spec.loadBalancerIPs.length > 0;
  const hasInternalEndpoints = spec.clusterEndpoints.length > 0;
  const hasExternalEndpoints = spec.externalEndpoints.length > 0;
  return {
    family,
    spec,
    portName,
    protocol,
    clusterIP: spec.clusterIP,
    externalIPs: spec.externalIPs,
    loadBalancerIPs: spec.loadBalancerIPs,
    sourceRanges: spec.loadBalancerSourceRanges,
    clusterEndpoints: clusterWide.map(endpoint),
    localEndpoints: local.map(endpoint),
    hasInternalEndpoints,
    hasExternalEndpoints,
    externalDropsForLocalPolicy: spec.externalLocal && !hasExternalEndpoints && spec.allEndpoints.some((e) => e.ready || e.serving),
    externallyAccessible,
    names: {
      svc: `KUBE-SVC-${svcHash}`,
      svl: `KUBE-SVL-${svcHash}`,
      ext: `KUBE-EXT-${svcHash}`,
      fw: `KUBE-FW-${svcHash}`,
      nftService: nftName('service', base),
      nftLocal: nftName('local', base),
      nftExternal: nftName('external', base),
      nftFirewall: nftName('firewall', base),
    },
  };
}

/** Ports with a cluster IP (headless ones have no frontend), sorted by key for stable output. */
export function planPorts(snapshot: ProxySnapshot): PlannedPort[] {
  return snapshot.ports.filter((p) => p.clusterIP !== '').sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.protocol - b.protocol)).map((p) => planProxyPort(p, snapshot.family));
}

/** kube-proxy's probability for rule i of n: 1/(n-i), printed with 10 decimals. */
export function probability(i: number, n: number): string {
  return (1 / (n - i)).toFixed(10);
}
