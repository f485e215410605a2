// The compiled, immutable service tables for one ServiceSnapshot: the typed-array form
// the NAT engine reads per packet. Built by the control side (or the agent) after each
// sync and swapped whole into ServiceNat between batches; never changed after build.
//
// Layout: service ports are numbered 0..count-1 in snapshot order. Frontends map
// (address, protocol, port) to `index * 4 + FrontendKind`; node ports use address 0.
// Each service port has two endpoint lists (cluster: traffic from inside the cluster
// to the cluster IP; external: node ports, external IPs, load-balancer IPs) as ranges
// of the flat endpoint arrays, shared when their contents are equal.
//
// Incremental update (updateServiceTable): when a new snapshot differs from the one a
// table was built from only in the endpoints (or balancing, affinity, traffic policy)
// of a few service ports (service-table-changes.ts decides), the new table shares the
// previous one's frontend maps, key index and source ranges, copies the per-port arrays
// (a memcpy of 10k entries each) and the endpoint arrays with room for the changed
// ports' new lists appended at the end; only those lists and their Maglev tables are
// computed. The Maglev slots (1,021 or more per list: 2 MB at 10k services with one in
// ten on Maglev, whose copy was most of an update) are not copied: their array has room
// to spare, and a table derived from the newest one appends its tables after that one's
// last slot in the same array (its MaglevStore says which table wrote last; a table
// derived from an older one copies). The ranges changed lists had before become
// garbage, until a whole build compacts them. What the previous table reads is never
// written to: the datapath may still be reading it. The whole build stays the
// reference: a test compares the two over random change sequences.
//
// IPv6 (family 6, from the snapshot's ports6): the same arrays and rules, with three
// differences. Frontend addresses (cluster, external and load-balancer IPs, node-port
// addresses) are numbered 1, 2, ... per build in `frontendAddrs6`, and the frontend,
// cluster-IP and node-port maps are keyed by that number: a packet's destination is
// looked up once in frontendAddrs6, then as IPv4's is. Endpoints keep their address in
// `endpointIP6` (four big-endian int32 words each), and `endpointIP` holds a fixed
// 32-bit digest of it (address6Digest): Maglev hashes it (every node agrees), affinity
// and table diffs compare it next to the port. Source ranges are four-word network and
// mask pairs (rangeNet6, rangeMask6).
//
// The build's steps live beside it: frontend registration (service-frontends.ts),
// endpoint lists and Maglev tables (service-endpoint-lists.ts), addresses of either
// family (service-address.ts).
import type { ServicePortSpec, ServiceSnapshot } from '../model/service-snapshot.ts';
import { FrontendMap } from './frontend-map.ts';
import { Ipv4Map } from './ipv4-map.ts';
import { Ipv6Map } from './ipv6-map.ts';
import { words6, type Address, type AnyPortSpec } from './service-address.ts';
import { endpointSlots, maglevSlotsOf, putEndpoint, putMaglev, sameEndpoints } from './service-endpoint-lists.ts';
import { FrontendKind, NODE_PORT_ADDR, addFrontend, frontendKey } from './service-frontends.ts';
import { changedPorts } from './service-table-changes.ts';

/** Per service port bits (ServiceTable.flags). */
export const PortFlag = {
  EXTERNAL_LOCAL: 1,
  INTERNAL_LOCAL: 2,
  MAGLEV: 4,
  /** Some endpoint list is non-empty: with none at all, traffic is rejected, not dropped. */
  HAS_ENDPOINTS: 8,
} as const;

export class ServiceTable<A extends Address = number> {
  readonly generation: number;
  /** 4: built from the snapshot's `ports`; 6: from its `ports6`. */
  readonly family: 4 | 6;
  /** The snapshot's service ports of this family, by index (slow path: trace, diffs, status). */
  readonly ports: readonly ServicePortSpec<A>[];
  readonly count: number;
  /** (address, protocol, port) -> index * 4 + kind; IPv6: the address's number in frontendAddrs6. */
  readonly frontends: FrontendMap;
  /** IPv6: every frontend and node-port address -> its number (1, 2, ...); empty for IPv4. */
  readonly frontendAddrs6: Ipv6Map;
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
  /** IPv6 source ranges: four words of network and of mask per range. */
  readonly rangeNet6: Int32Array;
  readonly rangeMask6: Int32Array;

  /** IPv4: the endpoint's address. IPv6: address6Digest of it. */
  readonly endpointIP: Uint32Array;
  /** IPv6: four words per endpoint; empty for IPv4. */
  readonly endpointIP6: Int32Array;
  readonly endpointPort: Uint16Array;
  readonly endpointLocal: Uint8Array;
  /** The Maglev lookup tables; slots from maglevUsed on are free (or a later table's). */
  readonly maglev: Uint16Array;
  /** Slots of `maglev` this table's lists may point into: [0, maglevUsed). */
  readonly maglevUsed: number;

  /** "namespace/name:port" -> index. */
  readonly byKey: ReadonlyMap<string, number>;
  /** What the build had to leave out, one line each (frontend claimed twice, unsupported protocol, ...). */
  readonly problems: string[] = [];
  /** Entries of `endpointIP` and slots of `maglev` no port points to (left by incremental updates). */
  readonly garbage: number;
  /** True when this table was made by an incremental update of a previous one. */
  readonly incremental: boolean;
  readonly #nodePortAddressList: readonly Address[];
  /** Build cursor: the next free slot of `maglev`. */
  #slot = 0;
  /** Who wrote `maglev` last, shared by the tables that share the array. */
  readonly #maglevStore: MaglevStore;

  /** `previous`: update it incrementally when the change allows (see the header), else build whole. */
  constructor(snapshot: ServiceSnapshot, previous?: ServiceTable<A>, family: 4 | 6 = 4) {
    const ports: readonly AnyPortSpec[] = family === 6 ? snapshot.ports6 ?? [] : snapshot.ports;
    const nodePortAddressList: readonly Address[] = family === 6 ? snapshot.nodePortAddresses6 ?? [] : snapshot.nodePortAddresses;
    const n = ports.length;
    this.generation = snapshot.generation;
    this.family = family;
    this.ports = ports as readonly ServicePortSpec<A>[];
    this.count = n;
    this.#nodePortAddressList = nodePortAddressList;
    const problems = this.problems;

    const changed = previous === undefined || previous.family !== family ? null : changedPorts(previous, ports, nodePortAddressList);
    if (changed !== null) {
      const prev = previous!;
      this.incremental = true;
      // Unchanged by construction (changedPorts checked every field they derive from).
      this.frontends = prev.frontends;
      this.frontendAddrs6 = prev.frontendAddrs6;
      this.nodePortAddresses = prev.nodePortAddresses;
      this.clusterIPs = prev.clusterIPs;
      this.frontendIPs = prev.frontendIPs;
      this.byKey = prev.byKey;
      this.protocol = prev.protocol;
      this.rangeStart = prev.rangeStart;
      this.rangeCount = prev.rangeCount;
      this.rangeNet = prev.rangeNet;
      this.rangeMask = prev.rangeMask;
      this.rangeNet6 = prev.rangeNet6;
      this.rangeMask6 = prev.rangeMask6;
      this.flags = prev.flags.slice();
      this.affinityTimeout = prev.affinityTimeout.slice();
      this.clusterStart = prev.clusterStart.slice();
      this.clusterCount = prev.clusterCount.slice();
      this.externalStart = prev.externalStart.slice();
      this.externalCount = prev.externalCount.slice();
      this.clusterMaglev = prev.clusterMaglev.slice();
      this.externalMaglev = prev.externalMaglev.slice();
      this.clusterMaglevSize = prev.clusterMaglevSize.slice();
      this.externalMaglevSize = prev.externalMaglevSize.slice();
      let endpoints = 0;
      let maglevSlots = 0;
      let freed = 0;
      const shared = new Uint8Array(changed.length);
      for (let c = 0; c < changed.length; c++) {
        const i = changed[c]!;
        const p = ports[i]!;
        const same = sameEndpoints(p.clusterEndpoints, p.externalEndpoints);
        shared[c] = same ? 1 : 0;
        endpoints += endpointSlots(p, same);
        maglevSlots += maglevSlotsOf(p, same);
        const sharedBefore = prev.externalStart[i] === prev.clusterStart[i] && prev.externalCount[i] === prev.clusterCount[i];
        freed += prev.clusterCount[i]! + (sharedBefore ? 0 : prev.externalCount[i]!) + prev.clusterMaglevSize[i]!
          + (prev.externalMaglev[i] === prev.clusterMaglev[i] ? 0 : prev.externalMaglevSize[i]!);
      }
      this.garbage = prev.garbage + freed;
      this.endpointIP = new Uint32Array(prev.endpointIP.length + endpoints);
      this.endpointIP.set(prev.endpointIP);
      this.endpointIP6 = new Int32Array(family === 6 ? this.endpointIP.length * 4 : 0);
      this.endpointIP6.set(prev.endpointIP6);
      this.endpointPort = new Uint16Array(prev.endpointPort.length + endpoints);
      this.endpointPort.set(prev.endpointPort);
      this.endpointLocal = new Uint8Array(prev.endpointLocal.length + endpoints);
      this.endpointLocal.set(prev.endpointLocal);
      const store = prev.#maglevStore;
      if (maglevSlots === 0 || (store.end === prev.maglevUsed && prev.maglev.length - prev.maglevUsed >= maglevSlots)) {
        // Nothing to add, or prev is the newest table on this array: append after its slots.
        this.maglev = prev.maglev;
        this.#maglevStore = store;
      } else {
        const used = prev.maglevUsed + maglevSlots;
        this.maglev = new Uint16Array(used + (used >>> 1));
        this.maglev.set(prev.maglev.subarray(0, prev.maglevUsed));
        this.#maglevStore = { end: 0 };
      }
      let ep = prev.endpointIP.length;
      this.#slot = prev.maglevUsed;
      for (let c = 0; c < changed.length; c++) {
        const i = changed[c]!;
        const p = ports[i]!;
        this.affinityTimeout[i] = p.affinityTimeoutSeconds > 0 ? p.affinityTimeoutSeconds : 0;
        this.clusterMaglev[i] = this.externalMaglev[i] = -1;
        this.clusterMaglevSize[i] = this.externalMaglevSize[i] = 0;
        ep = this.#putLists(i, p, shared[c] === 1, ep);
      }
      this.maglevUsed = this.#slot;
      // Only a table that wrote slots owns the end: one that added none may sit behind a sibling's.
      if (maglevSlots > 0) this.#maglevStore.end = this.#slot;
      return;
    }
    this.incremental = false;
    this.garbage = 0;

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
      endpoints += endpointSlots(p, same);
      maglevSlots += maglevSlotsOf(p, same);
    }

    this.frontends = new FrontendMap(frontends);
    this.frontendAddrs6 = new Ipv6Map(family === 6 ? frontends + nodePortAddressList.length : 0);
    this.nodePortAddresses = new Ipv4Map(nodePortAddressList.length);
    for (const a of nodePortAddressList) this.nodePortAddresses.set(frontendKey(this, a), 0);
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
    this.rangeNet = new Int32Array(family === 6 ? 0 : ranges);
    this.rangeMask = new Int32Array(family === 6 ? 0 : ranges);
    this.rangeNet6 = new Int32Array(family === 6 ? ranges * 4 : 0);
    this.rangeMask6 = new Int32Array(family === 6 ? ranges * 4 : 0);
    this.endpointIP = new Uint32Array(endpoints);
    this.endpointIP6 = new Int32Array(family === 6 ? endpoints * 4 : 0);
    this.endpointPort = new Uint16Array(endpoints);
    this.endpointLocal = new Uint8Array(endpoints);
    this.maglev = new Uint16Array(maglevSlots);
    const byKey = new Map<string, number>();
    this.byKey = byKey;

    let ep = 0;
    let range = 0;
    for (let i = 0; i < n; i++) {
      const p = ports[i]!;
      if (byKey.has(p.key)) problems.push(`service port ${p.key}: key listed twice (lookups by key find the first)`);
      else byKey.set(p.key, i);
      this.protocol[i] = p.protocol;
      this.affinityTimeout[i] = p.affinityTimeoutSeconds > 0 ? p.affinityTimeoutSeconds : 0;
      ep = this.#putLists(i, p, shared[i] === 1, ep);

      this.rangeStart[i] = range;
      this.rangeCount[i] = p.loadBalancerSourceRanges.length;
      for (const [net, prefix] of p.loadBalancerSourceRanges) {
        if (typeof net === 'number') {
          const mask = prefix <= 0 ? 0 : prefix >= 32 ? -1 : (-1 << (32 - prefix));
          this.rangeMask[range] = mask;
          this.rangeNet[range] = net & mask;
        } else {
          const words = words6(net);
          for (let w = 0; w < 4; w++) {
            const bits = Math.min(32, Math.max(0, prefix - 32 * w));
            const mask = bits === 0 ? 0 : bits === 32 ? -1 : (-1 << (32 - bits));
            this.rangeMask6[range * 4 + w] = mask;
            this.rangeNet6[range * 4 + w] = words[w]! & mask;
          }
        }
        range++;
      }

      if (p.protocol !== 6 && p.protocol !== 17) {
        problems.push(`service port ${p.key}: protocol ${p.protocol} is not served (TCP and UDP only)`);
        continue;
      }
      if (p.clusterIP === 0 || p.clusterIP === '') continue; // headless: DNS only, no frontends
      addFrontend(this, p.clusterIP, p, i, FrontendKind.CLUSTER_IP, p.port);
      const clusterKey = frontendKey(this, p.clusterIP);
      if (this.clusterIPs.get(clusterKey) < 0) this.clusterIPs.set(clusterKey, i);
      for (const a of p.externalIPs) addFrontend(this, a, p, i, FrontendKind.EXTERNAL_IP, p.port);
      for (const a of p.loadBalancerIPs) addFrontend(this, a, p, i, FrontendKind.LOAD_BALANCER, p.port);
      if (p.nodePort !== 0) addFrontend(this, NODE_PORT_ADDR, p, i, FrontendKind.NODE_PORT, p.nodePort);
    }
    this.maglevUsed = this.#slot;
    this.#maglevStore = { end: this.#slot };
    this.nodePortAddresses.freeze();
    this.frontendAddrs6.freeze();
    this.clusterIPs.freeze();
    this.frontendIPs.freeze();
  }

  /** Writes port i's endpoint lists from `ep` on (and their Maglev tables at #slot), and its flags; returns the next free endpoint. */
  #putLists(i: number, p: AnyPortSpec, shared: boolean, ep: number): number {
    this.clusterStart[i] = ep;
    this.clusterCount[i] = p.clusterEndpoints.length;
    for (const e of p.clusterEndpoints) ep = putEndpoint(this, ep, e.ip, e.port, e.local);
    if (shared) {
      this.externalStart[i] = this.clusterStart[i]!;
    } else {
      this.externalStart[i] = ep;
      for (const e of p.externalEndpoints) ep = putEndpoint(this, ep, e.ip, e.port, e.local);
    }
    this.externalCount[i] = p.externalEndpoints.length;

    let flags = 0;
    if (p.externalLocal) flags |= PortFlag.EXTERNAL_LOCAL;
    if (p.internalLocal) flags |= PortFlag.INTERNAL_LOCAL;
    if (p.clusterEndpoints.length + p.externalEndpoints.length > 0) flags |= PortFlag.HAS_ENDPOINTS;
    if (p.lb === 'maglev') {
      flags |= PortFlag.MAGLEV;
      this.#slot = putMaglev(this, i, this.#slot, this.clusterStart[i]!, this.clusterCount[i]!, this.clusterMaglev, this.clusterMaglevSize, p);
      if (shared) {
        this.externalMaglev[i] = this.clusterMaglev[i]!;
        this.externalMaglevSize[i] = this.clusterMaglevSize[i]!;
      } else {
        this.#slot = putMaglev(this, i, this.#slot, this.externalStart[i]!, this.externalCount[i]!, this.externalMaglev, this.externalMaglevSize, p);
      }
    }
    this.flags[i] = flags;
    return ep;
  }

  /** The snapshot's nodePortAddresses (for changedPorts). */
  get nodePortAddressList(): readonly Address[] {
    return this.#nodePortAddressList;
  }

  /** The service port owning a frontend, with its kind packed (index * 4 + kind), or -1. IPv6: `addr` is its number (frontendAddrs6). */
  frontend(addr: number, protocol: number, port: number): number {
    return this.frontends.get(addr, protocol, port);
  }
}

export function buildServiceTable(snapshot: ServiceSnapshot): ServiceTable {
  return new ServiceTable(snapshot);
}

/** The IPv6 table of a snapshot (its ports6). */
export function buildServiceTable6(snapshot: ServiceSnapshot): ServiceTable<string> {
  return new ServiceTable<string>(snapshot, undefined, 6);
}

/** updateServiceTable for the IPv6 half. */
export function updateServiceTable6(previous: ServiceTable<string>, snapshot: ServiceSnapshot): ServiceTable<string> {
  return new ServiceTable<string>(snapshot, previous, 6);
}

/**
 * The table for `snapshot`, updated from `previous` (built from an earlier snapshot of
 * the same control side) when only a few ports' endpoints changed; a whole build otherwise.
 */
export function updateServiceTable(previous: ServiceTable, snapshot: ServiceSnapshot): ServiceTable {
  return new ServiceTable(snapshot, previous);
}

/** A Maglev array shared by successive tables: the end of the slots the newest of them wrote. */
interface MaglevStore { end: number }
