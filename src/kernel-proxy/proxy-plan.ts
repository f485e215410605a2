// What kube-proxy's iptables and nftables backends share, computed once per service
// port from the compiled ServiceSnapshot: the chain names (kube-proxy's own hashes, so
// the rules read like a real node's) and which endpoints sit behind the cluster-wide
// and node-local policy chains (pkg/proxy/iptables/proxier.go syncProxyRules).
import { createHash } from 'node:crypto';
import type { EndpointSpec, ServicePortSpec, ServiceSnapshot } from '../model/service-snapshot.ts';
import { ipv4ToString } from '../wire/address.ts';

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
  /** "10.244.1.2:8080" */
  address: string;
  /** iptables KUBE-SEP-… */
  sepChain: string;
  /** nftables endpoint-…, and affinity-… for its ClientIP set */
  nftEndpointChain: string;
  nftAffinitySet: string;
}

export interface PlannedPort {
  spec: ServicePortSpec;
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
function usable(endpoints: EndpointSpec[]): EndpointSpec[] {
  const ready = endpoints.filter((e) => e.ready);
  return ready.length > 0 ? ready : endpoints.filter((e) => e.serving && e.terminating);
}

function sortedUnique(endpoints: EndpointSpec[]): EndpointSpec[] {
  const seen = new Map<string, EndpointSpec>();
  for (const e of endpoints) seen.set(`${e.ip}:${e.port}`, e);
  return [...seen.values()].sort((a, b) => a.ip - b.ip || a.port - b.port);
}

export function planPort(spec: ServicePortSpec): PlannedPort {
  const protocol = spec.protocol === 6 ? 'tcp' : 'udp';
  const portName = spec.portName === '' ? `${spec.namespace}/${spec.name}` : `${spec.namespace}/${spec.name}:${spec.portName}`;
  const base = `${spec.namespace}/${spec.name}/${protocol}/${spec.portName}`;
  const svcHash = hashName(portName + protocol, 16);
  const endpoint = (e: EndpointSpec): PlannedEndpoint => {
    const ip = ipv4ToString(e.ip);
    const epBase = `${base}__${ip}/${e.port}`;
    return {
      ip, port: e.port, address: `${ip}:${e.port}`,
      sepChain: `KUBE-SEP-${hashName(portName + protocol + `${ip}:${e.port}`, 16)}`,
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
    spec,
    portName,
    protocol,
    clusterIP: ipv4ToString(spec.clusterIP),
    externalIPs: spec.externalIPs.map(ipv4ToString),
    loadBalancerIPs: spec.loadBalancerIPs.map(ipv4ToString),
    sourceRanges: spec.loadBalancerSourceRanges.map(([network, length]) => `${ipv4ToString(network)}/${length}`),
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
export function planPorts(snapshot: ServiceSnapshot): PlannedPort[] {
  return snapshot.ports.filter((p) => p.clusterIP !== 0).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.protocol - b.protocol)).map(planPort);
}

/** kube-proxy's probability for rule i of n: 1/(n-i), printed with 10 decimals. */
export function probability(i: number, n: number): string {
  return (1 / (n - i)).toFixed(10);
}
