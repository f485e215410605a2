// Cluster-wide settings that every reader (agent config, service controller, lab
// topology) defaults the same way, defined once.
import { ipv4ToString, type Cidr } from '../wire/address.ts';

/**
 * The service CIDR when none is configured: kubeadm's default `serviceSubnet`
 * (networking.serviceSubnet), which most clusters a user meets were built with.
 */
export const DEFAULT_SERVICE_CIDR = '10.96.0.0/12';

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
