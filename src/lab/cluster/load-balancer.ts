// The lab plays the cloud's load balancer for Services of type LoadBalancer, the way
// MetalLB does on bare metal: an address from the topology's pool is assigned when the
// Service is applied (kept for as long as the Service exists, written to
// status.loadBalancer.ingress), and one node answers ARP for it on the underlay (the
// node daemon adds it to the node's eth0 as a /32; see src/lab/node/speaker.ts).
// Dual-stack labs also have an IPv6 pool: a Service gets one address per family it has
// (its spec.ipFamilies, in that order), as MetalLB gives dual-stack Services two.
import type { IpFamily, ServiceObject } from '../../k8s/objects.ts';
import { ipv4ToString, ipv6ToString, parseCidr, parseIpv4, parseIpv6 } from '../../wire/address.ts';

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

/** An IPv6 pool: `count` addresses from `first` ("fd00:172:30::c8-fd00:172:30::fa", within one /112). */
export interface AddressPool6 { first: Uint8Array; count: number }

export function parsePool6(text: string): AddressPool6 | undefined {
  const dash = text.indexOf('-');
  if (dash < 0) return undefined;
  const first = parseIpv6(text.slice(0, dash).trim());
  const last = parseIpv6(text.slice(dash + 1).trim());
  if (first === null || last === null) return undefined;
  for (let i = 0; i < 14; i++) if (first[i] !== last[i]) return undefined;
  const count = ((last[14]! << 8) | last[15]!) - ((first[14]! << 8) | first[15]!) + 1;
  return count > 0 ? { first, count } : undefined;
}

export function formatPool6(pool: AddressPool6): string {
  return `${ipv6ToString(pool.first)}-${ipv6ToString(pool6Address(pool, pool.count - 1))}`;
}

/** The pool's k-th address. */
function pool6Address(pool: AddressPool6, k: number): Uint8Array {
  const a = pool.first.slice();
  const low = ((a[14]! << 8) | a[15]!) + k;
  a[14] = low >> 8;
  a[15] = low & 0xff;
  return a;
}

/** assignLoadBalancerIP for the IPv6 pool: the requested address when it is in the pool and free, else the lowest free one. */
export function assignLoadBalancerIP6(pool: AddressPool6, requested: string | undefined, taken: ReadonlySet<string>): string | undefined {
  const asked = requested === undefined ? null : parseIpv6(requested);
  if (asked !== null && inPool6(pool, asked) && !taken.has(ipv6ToString(asked))) return ipv6ToString(asked);
  for (let k = 0; k < pool.count; k++) {
    const text = ipv6ToString(pool6Address(pool, k));
    if (!taken.has(text)) return text;
  }
  return undefined;
}

function inPool6(pool: AddressPool6, a: Uint8Array): boolean {
  for (let i = 0; i < 14; i++) if (a[i] !== pool.first[i]) return false;
  const k = ((a[14]! << 8) | a[15]!) - ((pool.first[14]! << 8) | pool.first[15]!);
  return k >= 0 && k < pool.count;
}

/**
 * The addresses a LoadBalancer Service gets, one per family it has and the lab has a
 * pool for (spec.ipFamilies order; none given: IPv4), or undefined when a pool it needs
 * is exhausted. `requested`: the deprecated spec.loadBalancerIP, for its family.
 */
export function assignLoadBalancerIPs(families: readonly IpFamily[], pool: AddressPool, pool6: AddressPool6 | undefined, requested: string | undefined, taken: ReadonlySet<string>): string[] | undefined {
  const out: string[] = [];
  for (const family of families.length > 0 ? families : ['IPv4' as const]) {
    const ask = requested !== undefined && requested.includes(':') === (family === 'IPv6') ? requested : undefined;
    if (family === 'IPv6' && pool6 === undefined) continue;
    const ip = family === 'IPv6' ? assignLoadBalancerIP6(pool6!, ask, taken) : assignLoadBalancerIP(pool, undefined, ask, taken);
    if (ip === undefined) return undefined;
    out.push(ip);
  }
  return out.length > 0 ? out : undefined;
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
