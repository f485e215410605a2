// The lab plays the cloud's load balancer for Services of type LoadBalancer, the way
// MetalLB does on bare metal: an address from the topology's pool is assigned when the
// Service is applied (kept for as long as the Service exists, written to
// status.loadBalancer.ingress), and one node answers ARP for it on the underlay (the
// node daemon adds it to the node's eth0 as a /32; see src/lab/node/speaker.ts).
import type { ServiceObject } from '../../k8s/objects.ts';
import { ipv4ToString, parseCidr, parseIpv4 } from '../../wire/address.ts';

export interface AddressPool { first: number; last: number }

/** "172.30.0.200-172.30.0.250" or "172.30.0.192/27" (network and broadcast left out). */
export function parsePool(text: string): AddressPool | undefined {
  const dash = text.indexOf('-');
  if (dash >= 0) {
    const first = parseIpv4(text.slice(0, dash).trim());
    const last = parseIpv4(text.slice(dash + 1).trim());
    if (first === undefined || last === undefined || last < first) return undefined;
    return { first, last };
  }
  const prefix = parseCidr(text.trim(), true);
  if (prefix === undefined) return undefined;
  if (prefix.prefixLength >= 31) return { first: prefix.network, last: prefix.network + prefix.size - 1 };
  return { first: prefix.network + 1, last: prefix.network + prefix.size - 2 };
}

export function formatPool(pool: AddressPool): string {
  return `${ipv4ToString(pool.first)}-${ipv4ToString(pool.last)}`;
}

export function poolContains(pool: AddressPool, address: number): boolean {
  return address >= pool.first && address <= pool.last;
}

/**
 * The address a LoadBalancer Service gets: the one it already has (while the Service
 * exists its address never changes), else the one it asks for in the deprecated
 * spec.loadBalancerIP if free, else the lowest free one. undefined when the pool is
 * exhausted (the Service then stays pending, as with a real cloud).
 */
export function assignLoadBalancerIP(pool: AddressPool, current: string | undefined, requested: string | undefined, taken: ReadonlySet<string>): string | undefined {
  if (current !== undefined) return current;
  if (requested !== undefined && !taken.has(requested)) {
    const address = parseIpv4(requested);
    if (address !== undefined && poolContains(pool, address)) return requested;
  }
  for (let address = pool.first; address <= pool.last; address++) {
    const text = ipv4ToString(address);
    if (!taken.has(text)) return text;
  }
  return undefined;
}

/** Addresses in use by LoadBalancer Services (their VIP ingress entries). */
export function takenAddresses(services: Iterable<ServiceObject>, except?: string): Set<string> {
  const taken = new Set<string>();
  for (const svc of services) {
    if (`${svc.metadata.namespace}/${svc.metadata.name}` === except || svc.spec.type !== 'LoadBalancer') continue;
    for (const ingress of svc.status.loadBalancerIngress) taken.add(ingress.ip);
  }
  return taken;
}
