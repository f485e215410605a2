// Cluster-wide settings that every reader (agent config, service controller, lab
// topology) defaults the same way, defined once.
import { ipv4ToString, parseCidr, parseCidr6, type Cidr, type Cidr6 } from '../wire/address.ts';

/**
 * The service CIDR when none is configured: kubeadm's default `serviceSubnet`
 * (networking.serviceSubnet), which most clusters a user meets were built with.
 */
export const DEFAULT_SERVICE_CIDR = '10.96.0.0/12';

/**
 * The cluster's service CIDRs, as kube-apiserver's --service-cluster-ip-range gives them
 * ("10.96.0.0/12" or "10.96.0.0/12,fd00:10:96::/112"): one per family, the first one
 * the primary (the family of Services that ask for none, and of the `kubernetes` one).
 */
export interface ServiceCidrs {
  /** Primary first; one or two, different. */
  families: readonly ('IPv4' | 'IPv6')[];
  v4: Cidr | undefined;
  v6: Cidr6 | undefined;
}

/**
 * kube-apiserver's limit on an IPv6 service CIDR (its bitmap allocator's): a prefix of
 * /108 or longer, at most 2^20 addresses, so an address's offset in it is a plain number.
 */
export const MIN_IPV6_SERVICE_PREFIX = 108;

/** "A[,B]" to ServiceCidrs; a string saying what is wrong when it is not one. */
export function parseServiceCidrs(text: string): ServiceCidrs | string {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length > 2) return `${JSON.stringify(text)}: at most two service CIDRs, one per family`;
  let v4: Cidr | undefined;
  let v6: Cidr6 | undefined;
  const families: ('IPv4' | 'IPv6')[] = [];
  for (const part of parts) {
    if (part.includes(':')) {
      const cidr = parseCidr6(part, true);
      if (cidr === undefined) return `${JSON.stringify(part)} is not an IPv6 network such as fd00:10:96::/112`;
      if (v6 !== undefined) return `${JSON.stringify(text)}: two IPv6 service CIDRs (one per family)`;
      if (cidr.prefixLength < MIN_IPV6_SERVICE_PREFIX) return `${JSON.stringify(part)} is too large: an IPv6 service CIDR must be /${MIN_IPV6_SERVICE_PREFIX} or longer (as kube-apiserver requires)`;
      v6 = cidr;
      families.push('IPv6');
    } else {
      const cidr = parseCidr(part, true);
      if (cidr === undefined) return `${JSON.stringify(part)} is not a network such as 10.96.0.0/12`;
      if (v4 !== undefined) return `${JSON.stringify(text)}: two IPv4 service CIDRs (one per family)`;
      v4 = cidr;
      families.push('IPv4');
    }
  }
  return { families, v4, v6 };
}

export function formatServiceCidrs(cidrs: ServiceCidrs): string {
  return cidrs.families.map((f) => (f === 'IPv4' ? cidrs.v4 : cidrs.v6)!.toString()).join(',');
}

/** An inclusive port range, such as kube-apiserver's --service-node-port-range. */
export interface PortRange {
  min: number;
  max: number;
}

/** kube-apiserver's default --service-node-port-range. */
export const DEFAULT_NODE_PORT_RANGE: Readonly<PortRange> = Object.freeze({ min: 30000, max: 32767 });

/** "30000-32767" (kube-apiserver's flag syntax) to a range; undefined when malformed. */
export function parsePortRange(text: string): PortRange | undefined {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(text.trim());
  if (m === null) return undefined;
  const min = Number(m[1]);
  const max = Number(m[2]);
  return min >= 1 && max <= 65535 && min <= max ? { min, max } : undefined;
}

export function formatPortRange(range: PortRange): string {
  return `${range.min}-${range.max}`;
}

/**
 * The cluster's DNS domain: the kubelet's --cluster-domain (clusterDomain), the zone of
 * CoreDNS's `kubernetes` plugin in kubeadm's Corefile, and the suffix of every pod's
 * search path.
 */
export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

/**
 * The cluster DNS Service (kube-dns) takes the tenth address of the service CIDR:
 * kubeadm's convention (10.96.0.10 in its default 10.96.0.0/12), which the kubelet's
 * clusterDNS names in every ClusterFirst pod's resolv.conf.
 */
export const CLUSTER_DNS_HOST_OFFSET = 10;

/** The cluster DNS address of a service CIDR: 10.96.0.10 for 10.96.0.0/12 or /16. */
export function clusterDnsAddress(serviceCIDR: Cidr): string {
  return ipv4ToString(serviceCIDR.host(CLUSTER_DNS_HOST_OFFSET));
}
