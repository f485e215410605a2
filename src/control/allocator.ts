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
import { ipv4, ipv4ToString, parseIpv4, type Cidr } from '../wire/address.ts';
import { describeOrigin, namespacedName, type ServiceObject } from '../k8s/objects.ts';
import { formatPortRange, type PortRange } from '../model/cluster-defaults.ts';

export interface AllocatorConfig {
  serviceCIDR: Cidr;
  nodePortRange: Readonly<PortRange>;
}

export interface ServiceAllocation {
  /** 0 for headless and ExternalName services. */
  clusterIP: number;
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

  constructor(first: number, last: number, staticBand: number) {
    this.first = first;
    this.last = last;
    this.staticBand = staticBand;
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

export function allocateServices(services: Iterable<ServiceObject>, config: AllocatorConfig): AllocationResult {
  const cidr = config.serviceCIDR;
  // The network address and (IPv4) broadcast address are never handed out; the first
  // address belongs to the `kubernetes` service, so it is only given on request.
  const ipSize = Math.max(0, cidr.size - 3);
  const ips = new Pool(cidr.network + 2, cidr.broadcast - 1, Math.min(Math.max(16, Math.floor(ipSize / 16)), 256));
  const range = config.nodePortRange;
  const portSize = range.max - range.min + 1;
  const ports = new Pool(range.min, range.max, Math.min(Math.max(16, Math.floor(portSize / 32)), 128));
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
        const what = c.pool === ips ? ipv4ToString(c.value) : String(c.value);
        reject(svc, c.field, `${what} is already allocated to Service ${owner} (${fields.get(`${c.pool === ips ? 'ip' : 'port'}:${c.value}`)})`);
      }
    }
    if (rejected.has(key)) return false;
    for (const c of claims) {
      c.pool.owners.set(c.value, key);
      fields.set(`${c.pool === ips ? 'ip' : 'port'}:${c.value}`, c.field);
    }
    return true;
  };

  // Pass 1: requested values.
  for (const svc of sorted) {
    const claims: Claim[] = [];
    const alloc: ServiceAllocation = { clusterIP: 0, nodePorts: svc.spec.ports.map(() => 0), healthCheckNodePort: 0 };
    if (needsClusterIP(svc) && svc.spec.clusterIP !== '') {
      // Validated by the manifest reader (k8s/validate-service.ts).
      const ip = ipv4(svc.spec.clusterIP);
      if (!cidr.contains(ip)) reject(svc, 'spec.clusterIP', `${svc.spec.clusterIP} is not in the service CIDR ${cidr}`);
      else if (ip === cidr.network || ip === cidr.broadcast) reject(svc, 'spec.clusterIP', `${svc.spec.clusterIP} is the ${ip === cidr.network ? 'network' : 'broadcast'} address of the service CIDR ${cidr}`);
      else claims.push({ pool: ips, value: ip, field: 'spec.clusterIP' });
      alloc.clusterIP = ip;
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
      fields.set(`${pool === ips ? 'ip' : 'port'}:${value}`, field);
      return value;
    };
    if (needsClusterIP(svc) && alloc.clusterIP === 0) alloc.clusterIP = take(ips, key, 'spec.clusterIP', `address in the service CIDR ${cidr}`);
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
      for (const pool of [ips, ports]) {
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
    let clusterIP = 0;
    if (needsClusterIP(svc)) {
      const ip = parseIpv4(svc.spec.clusterIP);
      if (ip === undefined) continue;
      clusterIP = ip;
    }
    allocations.set(namespacedName(svc), {
      clusterIP,
      nodePorts: svc.spec.ports.map((p) => (needsNodePorts(svc) ? p.nodePort : 0)),
      healthCheckNodePort: needsHealthCheckNodePort(svc) ? svc.spec.healthCheckNodePort : 0,
    });
  }
  return { allocations, rejected: new Map() };
}
