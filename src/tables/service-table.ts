// The compiled, immutable service tables for one ServiceSnapshot: the typed-array form
// the NAT engine reads per packet. Built by the control side (or the agent) after each
// sync and swapped whole into ServiceNat between batches; never changed after build.
//
// Layout: service ports are numbered 0..count-1 in snapshot order. Frontends map
// (address, protocol, port) to `index * 4 + FrontendKind`; node ports use address 0.
// Each service port has two endpoint lists (cluster: traffic from inside the cluster
// to the cluster IP; external: node ports, external IPs, load-balancer IPs) as ranges
// of the flat endpoint arrays, shared when their contents are equal.
import type { ServicePortSpec, ServiceSnapshot } from '../model/service-snapshot.ts';
import { FrontendMap } from './frontend-map.ts';
import { Ipv4Map } from './ipv4-map.ts';
import { MAGLEV_MAX_ENDPOINTS, maglevTableSize, populateMaglev } from './maglev.ts';
import { ipv4ToString } from '../wire/address.ts';

export const FrontendKind = { CLUSTER_IP: 0, EXTERNAL_IP: 1, LOAD_BALANCER: 2, NODE_PORT: 3 } as const;
export type FrontendKindCode = (typeof FrontendKind)[keyof typeof FrontendKind];
export const frontendKindNames: readonly string[] = ['cluster IP', 'external IP', 'load-balancer IP', 'node port'];

/** Per service port bits (ServiceTable.flags). */
export const PortFlag = {
  EXTERNAL_LOCAL: 1,
  INTERNAL_LOCAL: 2,
  MAGLEV: 4,
  /** Some endpoint list is non-empty: with none at all, traffic is rejected, not dropped. */
  HAS_ENDPOINTS: 8,
} as const;

/** The node-port "address" in the frontend map. */
export const NODE_PORT_ADDR = 0;

export class ServiceTable {
  readonly generation: number;
  /** The snapshot's service ports, by index (slow path: trace, diffs, status). */
  readonly ports: readonly ServicePortSpec[];
  readonly count: number;
  readonly frontends: FrontendMap;
  /** nodePortAddresses -> 0. */
  readonly nodePortAddresses: Ipv4Map;
  /** Cluster IPs -> first service port index: TCP/UDP to a cluster IP on no service port is rejected. */
  readonly clusterIPs: Ipv4Map;
  /** Every cluster, external and load-balancer IP: fragments to them are dropped (no reassembly). */
  readonly frontendIPs: Ipv4Map;

  readonly protocol: Uint8Array;
  readonly flags: Uint8Array;
  readonly affinityTimeout: Uint32Array;
  readonly clusterStart: Int32Array;
  readonly clusterCount: Int32Array;
  readonly externalStart: Int32Array;
  readonly externalCount: Int32Array;
  /** Offset into `maglev` of each list's lookup table (-1: random), and its size. */
  readonly clusterMaglev: Int32Array;
  readonly externalMaglev: Int32Array;
  readonly clusterMaglevSize: Int32Array;
  readonly externalMaglevSize: Int32Array;
  /** loadBalancerSourceRanges: rangeCount[i] CIDRs from rangeStart[i] (0 = everyone). */
  readonly rangeStart: Int32Array;
  readonly rangeCount: Int32Array;
  readonly rangeNet: Int32Array;
  readonly rangeMask: Int32Array;

  readonly endpointIP: Uint32Array;
  readonly endpointPort: Uint16Array;
  readonly endpointLocal: Uint8Array;
  readonly maglev: Uint16Array;

  /** "namespace/name:port" -> index. */
  readonly byKey: ReadonlyMap<string, number>;
  /** What the build had to leave out, one line each (frontend claimed twice, unsupported protocol, ...). */
  readonly problems: string[] = [];

  constructor(snapshot: ServiceSnapshot) {
    const ports = snapshot.ports;
    const n = ports.length;
    this.generation = snapshot.generation;
    this.ports = ports;
    this.count = n;
    const problems = this.problems;

    // Sizes first, so every array is allocated once.
    let frontends = 0;
    let endpoints = 0;
    let ranges = 0;
    let maglevSlots = 0;
    const shared = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const p = ports[i]!;
      frontends += 1 + p.externalIPs.length + p.loadBalancerIPs.length + (p.nodePort !== 0 ? 1 : 0);
      ranges += p.loadBalancerSourceRanges.length;
      const same = sameEndpoints(p.clusterEndpoints, p.externalEndpoints);
      shared[i] = same ? 1 : 0;
      endpoints += p.clusterEndpoints.length + (same ? 0 : p.externalEndpoints.length);
      if (p.lb === 'maglev') {
        if (p.clusterEndpoints.length > 0) maglevSlots += maglevTableSize(p.clusterEndpoints.length);
        if (!same && p.externalEndpoints.length > 0) maglevSlots += maglevTableSize(p.externalEndpoints.length);
      }
    }

    this.frontends = new FrontendMap(frontends);
    this.nodePortAddresses = new Ipv4Map(snapshot.nodePortAddresses.length);
    for (const a of snapshot.nodePortAddresses) this.nodePortAddresses.set(a, 0);
    this.clusterIPs = new Ipv4Map(n);
    this.frontendIPs = new Ipv4Map(frontends);
    this.protocol = new Uint8Array(n);
    this.flags = new Uint8Array(n);
    this.affinityTimeout = new Uint32Array(n);
    this.clusterStart = new Int32Array(n);
    this.clusterCount = new Int32Array(n);
    this.externalStart = new Int32Array(n);
    this.externalCount = new Int32Array(n);
    this.clusterMaglev = new Int32Array(n).fill(-1);
    this.externalMaglev = new Int32Array(n).fill(-1);
    this.clusterMaglevSize = new Int32Array(n);
    this.externalMaglevSize = new Int32Array(n);
    this.rangeStart = new Int32Array(n);
    this.rangeCount = new Int32Array(n);
    this.rangeNet = new Int32Array(ranges);
    this.rangeMask = new Int32Array(ranges);
    this.endpointIP = new Uint32Array(endpoints);
    this.endpointPort = new Uint16Array(endpoints);
    this.endpointLocal = new Uint8Array(endpoints);
    this.maglev = new Uint16Array(maglevSlots);
    const byKey = new Map<string, number>();
    this.byKey = byKey;

    let ep = 0;
    let range = 0;
    let slot = 0;
    for (let i = 0; i < n; i++) {
      const p = ports[i]!;
      if (byKey.has(p.key)) problems.push(`service port ${p.key}: key listed twice (lookups by key find the first)`);
      else byKey.set(p.key, i);
      this.protocol[i] = p.protocol;
      this.affinityTimeout[i] = p.affinityTimeoutSeconds > 0 ? p.affinityTimeoutSeconds : 0;

      this.clusterStart[i] = ep;
      this.clusterCount[i] = p.clusterEndpoints.length;
      for (const e of p.clusterEndpoints) ep = this.#putEndpoint(ep, e.ip, e.port, e.local);
      if (shared[i] === 1) {
        this.externalStart[i] = this.clusterStart[i]!;
      } else {
        this.externalStart[i] = ep;
        for (const e of p.externalEndpoints) ep = this.#putEndpoint(ep, e.ip, e.port, e.local);
      }
      this.externalCount[i] = p.externalEndpoints.length;

      let flags = 0;
      if (p.externalLocal) flags |= PortFlag.EXTERNAL_LOCAL;
      if (p.internalLocal) flags |= PortFlag.INTERNAL_LOCAL;
      if (p.clusterEndpoints.length + p.externalEndpoints.length > 0) flags |= PortFlag.HAS_ENDPOINTS;
      if (p.lb === 'maglev') {
        flags |= PortFlag.MAGLEV;
        slot = this.#putMaglev(i, slot, this.clusterStart[i]!, this.clusterCount[i]!, this.clusterMaglev, this.clusterMaglevSize, p);
        if (shared[i] === 1) {
          this.externalMaglev[i] = this.clusterMaglev[i]!;
          this.externalMaglevSize[i] = this.clusterMaglevSize[i]!;
        } else {
          slot = this.#putMaglev(i, slot, this.externalStart[i]!, this.externalCount[i]!, this.externalMaglev, this.externalMaglevSize, p);
        }
      }
      this.flags[i] = flags;

      this.rangeStart[i] = range;
      this.rangeCount[i] = p.loadBalancerSourceRanges.length;
      for (const [net, prefix] of p.loadBalancerSourceRanges) {
        const mask = prefix <= 0 ? 0 : prefix >= 32 ? -1 : (-1 << (32 - prefix));
        this.rangeMask[range] = mask;
        this.rangeNet[range] = net & mask;
        range++;
      }

      if (p.protocol !== 6 && p.protocol !== 17) {
        problems.push(`service port ${p.key}: protocol ${p.protocol} is not served (TCP and UDP only)`);
        continue;
      }
      if (p.clusterIP === 0) continue; // headless: DNS only, no frontends
      this.#addFrontend(p.clusterIP, p, i, FrontendKind.CLUSTER_IP, p.port);
      if (this.clusterIPs.get(p.clusterIP) < 0) this.clusterIPs.set(p.clusterIP, i);
      for (const a of p.externalIPs) this.#addFrontend(a, p, i, FrontendKind.EXTERNAL_IP, p.port);
      for (const a of p.loadBalancerIPs) this.#addFrontend(a, p, i, FrontendKind.LOAD_BALANCER, p.port);
      if (p.nodePort !== 0) this.#addFrontend(NODE_PORT_ADDR, p, i, FrontendKind.NODE_PORT, p.nodePort);
    }
    this.nodePortAddresses.freeze();
    this.clusterIPs.freeze();
    this.frontendIPs.freeze();
  }

  #putEndpoint(at: number, ip: number, port: number, local: boolean): number {
    this.endpointIP[at] = ip;
    this.endpointPort[at] = port;
    this.endpointLocal[at] = local ? 1 : 0;
    return at + 1;
  }

  #putMaglev(i: number, slot: number, start: number, count: number, offsets: Int32Array, sizes: Int32Array, p: ServicePortSpec): number {
    if (count === 0) return slot;
    if (count > MAGLEV_MAX_ENDPOINTS) {
      this.problems.push(`service port ${p.key}: ${count} endpoints exceed Maglev's ${MAGLEV_MAX_ENDPOINTS}; random choice used`);
      return slot;
    }
    const size = maglevTableSize(count);
    populateMaglev(this.endpointIP, this.endpointPort, start, count, size, this.maglev, slot);
    offsets[i] = slot;
    sizes[i] = size;
    return slot + size;
  }

  #addFrontend(addr: number, p: ServicePortSpec, i: number, kind: number, port: number): void {
    const had = this.frontends.add(addr, p.protocol, port, i * 4 + kind);
    if (had >= 0) {
      const other = this.ports[had >>> 2]!;
      const where = kind === FrontendKind.NODE_PORT ? `node port ${port}` : `${ipv4ToString(addr)}:${port}`;
      this.problems.push(`service port ${p.key}: ${where}/${p.protocol === 6 ? 'TCP' : 'UDP'} is already ${other.key}'s; ignored`);
      return;
    }
    if (kind !== FrontendKind.NODE_PORT && this.frontendIPs.get(addr) < 0) this.frontendIPs.set(addr, i);
  }

  /** The service port owning a frontend, with its kind packed (index * 4 + kind), or -1. */
  frontend(addr: number, protocol: number, port: number): number {
    return this.frontends.get(addr, protocol, port);
  }
}

export function buildServiceTable(snapshot: ServiceSnapshot): ServiceTable {
  return new ServiceTable(snapshot);
}

function sameEndpoints(a: ServicePortSpec['clusterEndpoints'], b: ServicePortSpec['clusterEndpoints']): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.ip !== b[i]!.ip || a[i]!.port !== b[i]!.port || a[i]!.local !== b[i]!.local) return false;
  return true;
}
