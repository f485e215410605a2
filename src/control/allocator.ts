// Cluster IP, node port and health-check node port allocation for manifest mode (in a
// cluster the API server does this and stores the result in the object).
//
// Every agent compiles the same manifests on its own and must arrive at the same
// addresses, with nobody to write the choice back. So allocation is a pure function of
// the set of Services: requested values first (in namespace/name order; a later request
// for a taken value is rejected), then each remaining service hashes its own name into
// the range and probes linearly from there. A service keeps its value across syncs as
// long as the services around it do not take it first; the probing starts in the upper
// part of the range and leaves a static band at the bottom free for requested values,
// as the API server does (KEP-3070 for cluster IPs, KEP-3668 for node ports), so adding
// a service with a requested value rarely moves an allocated one.
//
// Dual-stack: ipFamilies and ipFamilyPolicy are settled as kube-apiserver settles them
// (k8s/ip-families.ts) against the configured service CIDRs, and each family's address
// comes from that family's CIDR; node ports belong to no family.
import { ipv4, ipv4ToString, ipv6ToString, parseIpv4, parseIpv6, type Cidr, type Cidr6 } from '../wire/address.ts';
import { kept } from '../config/compact.ts';
import { describeOrigin, namespacedName, type IpFamily, type IpFamilyPolicy, type ServiceObject } from '../k8s/objects.ts';
import { familyOfValid, resolveIpFamilies } from '../k8s/ip-families.ts';
import { formatPortRange, type PortRange, type ServiceCidrs } from '../model/cluster-defaults.ts';

export interface AllocatorConfig {
  /** The IPv4 service CIDR of an IPv4-only cluster; `serviceCIDRs` wins when given. */
  serviceCIDR: Cidr;
  /** One per family, primary first (a dual-stack or IPv6 cluster). */
  serviceCIDRs?: ServiceCidrs;
  nodePortRange: Readonly<PortRange>;
}

export interface ServiceAllocation {
  /** The IPv4 cluster IP; 0 for headless and ExternalName services and for those without an IPv4 one. */
  clusterIP: number;
  /**
   * Every cluster IP in ipFamilies order (primary first), IPv6 ones in RFC 5952 text;
   * [] for headless and ExternalName services.
   */
  clusterIPs: string[];
  /** As settled ([] for ExternalName); a headless Service has families but no addresses. */
  ipFamilies: IpFamily[];
  ipFamilyPolicy: '' | IpFamilyPolicy;
  /** Per spec.ports index; 0 = no node port. */
  nodePorts: number[];
  /** 0 = none (only LoadBalancer services with externalTrafficPolicy Local have one). */
  healthCheckNodePort: number;
}

export interface AllocationResult {
  /** By "namespace/name"; rejected services are absent. */
  allocations: Map<string, ServiceAllocation>;
  /** By "namespace/name": why the service was rejected. */
  rejected: Map<string, string[]>;
}

export function needsClusterIP(svc: ServiceObject): boolean {
  return svc.spec.type !== 'ExternalName' && svc.spec.clusterIP !== 'None';
}

export function needsNodePorts(svc: ServiceObject): boolean {
  return svc.spec.type === 'NodePort' || (svc.spec.type === 'LoadBalancer' && svc.spec.allocateLoadBalancerNodePorts);
}

export function needsHealthCheckNodePort(svc: ServiceObject): boolean {
  return svc.spec.type === 'LoadBalancer' && svc.spec.externalTrafficPolicy === 'Local';
}

/** FNV-1a (32 bit): a stable, well-spread start for probing. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A range of integers (addresses or ports) with its used values and the static band size. */
class Pool {
  readonly first: number;
  readonly last: number;
  readonly staticBand: number;
  readonly owners = new Map<number, string>();
  /** 'ip', 'ip6' or 'port': names the pool in the owners' field index. */
  readonly name: string;
  /** A value as the messages show it. */
  readonly format: (value: number) => string;

  constructor(first: number, last: number, staticBand: number, name: string, format: (value: number) => string) {
    this.first = first;
    this.last = last;
    this.staticBand = staticBand;
    this.name = name;
    this.format = format;
  }

  /** Hash-probe the dynamic band, then the static band; -1 when full. */
  pick(key: string): number {
    const split = Math.min(this.first + this.staticBand, this.last + 1);
    const bands: [number, number][] = split <= this.last ? [[split, this.last], [this.first, split - 1]] : [[this.first, this.last]];
    for (const [lo, hi] of bands) {
      const size = hi - lo + 1;
      if (size <= 0) continue;
      const start = fnv1a(key) % size;
      for (let i = 0; i < size; i++) {
        const value = lo + ((start + i) % size);
        if (!this.owners.has(value)) return value;
      }
    }
    return -1;
  }
}

interface Claim {
  pool: Pool;
  value: number;
  field: string;
}

/** A family's pool and how its addresses map to the pool's numbers. */
interface FamilyPool {
  family: IpFamily;
  cidr: string;
  pool: Pool;
  /** The pool's number for a valid address of the family; undefined outside the CIDR. */
  valueOf(ip: string): number | undefined;
  /** What is wrong with a requested address the pool cannot give ('' = nothing). */
  misfit(ip: string): string;
  text(value: number): string;
}

function staticBand(size: number): number {
  return Math.min(Math.max(16, Math.floor(size / 16)), 256);
}

function ipv4Pool(cidr: Cidr): FamilyPool {
  // The network address and broadcast address are never handed out; the first
  // address belongs to the `kubernetes` service, so it is only given on request.
  const pool = new Pool(cidr.network + 2, cidr.broadcast - 1, staticBand(Math.max(0, cidr.size - 3)), 'ip', ipv4ToString);
  return {
    family: 'IPv4', cidr: cidr.toString(), pool, text: ipv4ToString,
    valueOf: (ip) => { const a = ipv4(ip); return cidr.contains(a) ? a : undefined; },
    misfit: (ip) => {
      const a = ipv4(ip);
      if (!cidr.contains(a)) return `${ip} is not in the service CIDR ${cidr}`;
      if (a === cidr.network || a === cidr.broadcast) return `${ip} is the ${a === cidr.network ? 'network' : 'broadcast'} address of the service CIDR ${cidr}`;
      return '';
    },
  };
}

/** IPv6: numbers are offsets into the CIDR (/108 or longer: at most 2^20); no broadcast address. */
function ipv6Pool(cidr: Cidr6): FamilyPool {
  const size = 2 ** (128 - cidr.prefixLength);
  const text = (offset: number): string => ipv6ToString(cidr.host(offset));
  const valueOf = (ip: string): number | undefined => {
    const b = parseIpv6(ip);
    if (b === null || !cidr.contains(b)) return undefined;
    return (((b[12]! << 24) | (b[13]! << 16) | (b[14]! << 8) | b[15]!) >>> 0) - cidr.word(3);
  };
  const pool = new Pool(2, size - 1, staticBand(Math.max(0, size - 2)), 'ip6', text);
  return {
    family: 'IPv6', cidr: cidr.toString(), pool, text, valueOf,
    misfit: (ip) => {
      const v = valueOf(ip);
      if (v === undefined) return `${ip} is not in the service CIDR ${cidr}`;
      return v === 0 ? `${ip} is the network address of the service CIDR ${cidr}` : '';
    },
  };
}

export function allocateServices(services: Iterable<ServiceObject>, config: AllocatorConfig): AllocationResult {
  const cidrs: ServiceCidrs = config.serviceCIDRs ?? { families: ['IPv4'], v4: config.serviceCIDR, v6: undefined };
  const familyPools = cidrs.families.map((f) => (f === 'IPv4' ? ipv4Pool(cidrs.v4!) : ipv6Pool(cidrs.v6!)));
  const poolOf = (family: IpFamily): FamilyPool => familyPools.find((p) => p.family === family)!;
  const range = config.nodePortRange;
  const portSize = range.max - range.min + 1;
  const ports = new Pool(range.min, range.max, Math.min(Math.max(16, Math.floor(portSize / 32)), 128), 'port', String);
  const sorted = [...services].sort((a, b) => (namespacedName(a) < namespacedName(b) ? -1 : 1));
  const allocations = new Map<string, ServiceAllocation>();
  const rejected = new Map<string, string[]>();
  const fields = new Map<string, string>();

  const reject = (svc: ServiceObject, field: string, message: string): void => {
    const key = namespacedName(svc);
    const list = rejected.get(key) ?? [];
    list.push(`${describeOrigin(svc)}: ${field}: ${message}`);
    rejected.set(key, list);
  };
  const commit = (svc: ServiceObject, claims: Claim[]): boolean => {
    const key = namespacedName(svc);
    for (const c of claims) {
      const owner = c.pool.owners.get(c.value);
      if (owner !== undefined && owner !== key) {
        reject(svc, c.field, `${c.pool.format(c.value)} is already allocated to Service ${owner} (${fields.get(`${c.pool.name}:${c.value}`)})`);
      }
    }
    if (rejected.has(key)) return false;
    for (const c of claims) {
      c.pool.owners.set(c.value, key);
      fields.set(`${c.pool.name}:${c.value}`, c.field);
    }
    return true;
  };

  // Pass 1: requested values.
  for (const svc of sorted) {
    const claims: Claim[] = [];
    const headless = svc.spec.clusterIP === 'None';
    const requested = headless ? [] : svc.spec.clusterIPs;
    const decision = resolveIpFamilies({
      type: svc.spec.type, headless, hasSelector: svc.spec.selector !== null,
      clusterIPs: requested, ipFamilies: svc.spec.ipFamilies, ipFamilyPolicy: svc.spec.ipFamilyPolicy,
    }, cidrs.families);
    for (const p of decision.problems) reject(svc, p.field, p.message);
    const alloc: ServiceAllocation = {
      clusterIP: 0, clusterIPs: [], ipFamilies: decision.ipFamilies, ipFamilyPolicy: decision.ipFamilyPolicy,
      nodePorts: svc.spec.ports.map(() => 0), healthCheckNodePort: 0,
    };
    if (needsClusterIP(svc) && decision.problems.length === 0) {
      // Validated by the manifest reader (k8s/validate-service.ts): one per family, in ipFamilies order.
      requested.forEach((ip, i) => {
        const fp = poolOf(familyOfValid(ip));
        const field = svc.spec.clusterIPs.length > 1 ? `spec.clusterIPs[${i}]` : 'spec.clusterIP';
        const misfit = fp.misfit(ip);
        if (misfit !== '') reject(svc, field, misfit);
        else claims.push({ pool: fp.pool, value: fp.valueOf(ip)!, field });
        alloc.clusterIPs.push(ip);
      });
    }
    svc.spec.ports.forEach((p, i) => {
      if (p.nodePort === 0) return;
      const field = `spec.ports[${i}].nodePort`;
      if (p.nodePort < range.min || p.nodePort > range.max) reject(svc, field, `${p.nodePort} is out of the node port range ${formatPortRange(range)}`);
      else claims.push({ pool: ports, value: p.nodePort, field });
      alloc.nodePorts[i] = p.nodePort;
    });
    const hc = svc.spec.healthCheckNodePort;
    if (hc !== 0) {
      if (hc < range.min || hc > range.max) reject(svc, 'spec.healthCheckNodePort', `${hc} is out of the node port range ${formatPortRange(range)}`);
      else if (alloc.nodePorts.includes(hc)) reject(svc, 'spec.healthCheckNodePort', `${hc} is also one of the service's node ports`);
      else claims.push({ pool: ports, value: hc, field: 'spec.healthCheckNodePort' });
      alloc.healthCheckNodePort = hc;
    }
    if (!rejected.has(namespacedName(svc)) && commit(svc, claims)) allocations.set(namespacedName(svc), alloc);
  }

  // Pass 2: everything not requested, each service hashing its own name.
  for (const svc of sorted) {
    const key = namespacedName(svc);
    const alloc = allocations.get(key);
    if (alloc === undefined) continue;
    const take = (pool: Pool, hashKey: string, field: string, what: string): number => {
      const value = pool.pick(hashKey);
      if (value < 0) {
        reject(svc, field, `no ${what} is free`);
        return 0;
      }
      // Claim at once so this service's next port does not pick the same value.
      pool.owners.set(value, key);
      fields.set(`${pool.name}:${value}`, field);
      return value;
    };
    if (needsClusterIP(svc)) {
      for (let i = alloc.clusterIPs.length; i < alloc.ipFamilies.length; i++) {
        const fp = poolOf(alloc.ipFamilies[i]!);
        // The first family hashes the name alone, as an IPv4-only allocator always did.
        const value = take(fp.pool, i === 0 ? key : `${key}#${fp.family}`, alloc.ipFamilies.length > 1 ? `spec.clusterIPs[${i}]` : 'spec.clusterIP', `address in the service CIDR ${fp.cidr}`);
        if (value !== 0) alloc.clusterIPs.push(fp.text(value));
      }
      const v4 = alloc.clusterIPs.find((ip) => familyOfValid(ip) === 'IPv4');
      alloc.clusterIP = v4 === undefined ? 0 : ipv4(v4);
    }
    if (needsNodePorts(svc)) {
      svc.spec.ports.forEach((p, i) => {
        if (alloc.nodePorts[i] === 0) alloc.nodePorts[i] = take(ports, `${key}:${p.name}/${p.protocol}`, `spec.ports[${i}].nodePort`, `node port in ${formatPortRange(range)}`);
      });
    }
    if (needsHealthCheckNodePort(svc) && alloc.healthCheckNodePort === 0) {
      alloc.healthCheckNodePort = take(ports, `${key}#health`, 'spec.healthCheckNodePort', `node port in ${formatPortRange(range)}`);
    }
    if (rejected.has(key)) {
      // Give back what this service took in this pass and its requested values.
      for (const pool of [...familyPools.map((f) => f.pool), ports]) {
        for (const [value, owner] of pool.owners) if (owner === key) pool.owners.delete(value);
      }
      allocations.delete(key);
    }
  }
  return { allocations, rejected };
}

/**
 * Cluster mode: the API server allocated, and wrote its choice into each Service, so
 * allocation is reading it. A Service the API has not yet given the address it needs is
 * not programmed (absent); nothing is ever rejected: the API server already refused
 * what conflicts.
 */
export function allocationsFromSpec(services: Iterable<ServiceObject>): AllocationResult {
  const allocations = new Map<string, ServiceAllocation>();
  for (const svc of services) {
    const a = allocationFromSpec(svc);
    if (a !== undefined) allocations.set(namespacedName(svc), a);
  }
  return { allocations, rejected: new Map() };
}

/**
 * One Service's allocation as the API server wrote it (see allocationsFromSpec), or
 * undefined while it lacks the address it needs. It depends on that Service alone, so
 * a sync re-reads only the Services that changed.
 */
export function allocationFromSpec(svc: ServiceObject): ServiceAllocation | undefined {
  let clusterIP = 0;
  const clusterIPs = needsClusterIP(svc) ? svc.spec.clusterIPs : [];
  if (needsClusterIP(svc)) {
    if (clusterIPs.length === 0) return undefined;
    const v4 = clusterIPs.find((ip) => familyOfValid(ip) === 'IPv4');
    clusterIP = v4 === undefined ? 0 : parseIpv4(v4) ?? 0;
  }
  // An object written before dual-stack (or by a test) may lack ipFamilies: its addresses say them.
  const ipFamilies = svc.spec.ipFamilies.length > 0 || svc.spec.type === 'ExternalName' ? svc.spec.ipFamilies : clusterIPs.map(familyOfValid);
  return {
    clusterIP,
    clusterIPs,
    ipFamilies,
    ipFamilyPolicy: svc.spec.ipFamilyPolicy,
    nodePorts: needsNodePorts(svc) ? kept(svc.spec.ports.map((p) => p.nodePort)) : noNodePorts(svc.spec.ports.length),
    healthCheckNodePort: needsHealthCheckNodePort(svc) ? svc.spec.healthCheckNodePort : 0,
  };
}

/** Most Services have no node ports: they share one frozen list of zeros per port count. */
const NO_NODE_PORTS: number[][] = [];
function noNodePorts(count: number): number[] {
  return (NO_NODE_PORTS[count] ??= Object.freeze(new Array<number>(count).fill(0)) as number[]);
}
