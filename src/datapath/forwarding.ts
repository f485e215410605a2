// The forwarding table: everything the datapath needs to decide where a frame goes,
// compiled by the control side from the node's config and its pod ports. Immutable;
// a change (a pod added or removed, a node joining) compiles a new table that the
// datapath swaps in between batches, so a batch never sees half an update.
import { Ipv4Map } from '../tables/ipv4-map.ts';
import { DatapathDrop } from './counters.ts';
import type { Cidr, Cidr6 } from '../wire/address.ts';

export interface PodEntry {
  /** The datapath's port index. */
  port: number;
  /** The pod's IPv4 address; 0 for an IPv6-only pod. */
  ip: number;
  mac: number;
  /** The pod's IPv6 address (16 bytes), or null/absent for an IPv4-only pod. */
  ip6?: Uint8Array | null;
}

export interface RemoteNode {
  name: string;
  underlayIP: number;
  podCIDR: Cidr;
  /** The node's IPv6 pod range (Node spec.podCIDRs), or null/absent. */
  podCIDR6?: Cidr6 | null;
}

export interface ForwardingInput {
  podCIDR: Cidr;
  clusterCIDR: Cidr;
  /** This node's IPv6 pod range and the cluster's (dual-stack or IPv6 pods); null/absent: IPv4 only. */
  podCIDR6?: Cidr6 | null;
  clusterCIDR6?: Cidr6 | null;
  /** This node's underlay address: traffic for it goes to the host TUN. */
  underlayIP: number;
  vni: number;
  mtu: number;
  pods: readonly PodEntry[];
  /** The other nodes (this one excluded). */
  remotes: readonly RemoteNode[];
}

/** Locally administered MAC for an IPv4 address, 0a:58:a.b.c.d (as OVN-Kubernetes does). */
export function macForIpv4(ip: number): number {
  return 0x0a58 * 0x1_0000_0000 + (ip >>> 0);
}

/**
 * The MAC of an IPv6-only pod: 0a:5a and the address's last four bytes (a dual-stack
 * pod keeps its IPv4 MAC). The other prefix keeps it apart from every IPv4-derived MAC.
 */
export function macForIpv6(ip6: Uint8Array): number {
  return 0x0a5a * 0x1_0000_0000 + ((ip6[12]! << 24) | (ip6[13]! << 16) | (ip6[14]! << 8) | ip6[15]!) >>> 0;
}

export class ForwardingTable {
  readonly podCIDR: Cidr;
  readonly clusterCIDR: Cidr;
  readonly gateway: number;
  readonly gatewayMac: number;
  readonly underlayIP: number;
  readonly vni: number;
  readonly mtu: number;
  /** Pod IPv4 -> port index. */
  readonly podPorts: Ipv4Map;
  /** Port index -> the pod's MAC (0 for ports that are not pods). */
  readonly portMacs: Float64Array;
  /** Remote node index -> underlay address. */
  readonly nodeUnderlay: Uint32Array;
  readonly #nodeByUnderlay: Ipv4Map;
  /** Distinct pod CIDR masks of remote nodes, longest first, and network -> node index per mask. */
  readonly #masks: Uint32Array;
  readonly #prefixes: Ipv4Map[];
  readonly pods: readonly PodEntry[];
  readonly remotes: readonly RemoteNode[];

  constructor(input: ForwardingInput) {
    this.podCIDR = input.podCIDR;
    this.clusterCIDR = input.clusterCIDR;
    this.gateway = input.podCIDR.host(1);
    this.gatewayMac = macForIpv4(this.gateway);
    this.underlayIP = input.underlayIP;
    this.vni = input.vni;
    this.mtu = input.mtu;
    this.pods = input.pods;
    this.remotes = input.remotes;

    this.podPorts = new Ipv4Map(input.pods.length);
    let maxPort = 0;
    for (const p of input.pods) maxPort = Math.max(maxPort, p.port);
    this.portMacs = new Float64Array(maxPort + 1);
    for (const p of input.pods) {
      this.podPorts.set(p.ip, p.port);
      this.portMacs[p.port] = p.mac;
    }
    this.podPorts.freeze();

    this.nodeUnderlay = new Uint32Array(input.remotes.length);
    this.#nodeByUnderlay = new Ipv4Map(input.remotes.length);
    const byLength = new Map<number, Ipv4Map>();
    input.remotes.forEach((n, i) => {
      this.nodeUnderlay[i] = n.underlayIP;
      this.#nodeByUnderlay.set(n.underlayIP, i);
      let m = byLength.get(n.podCIDR.prefixLength);
      if (m === undefined) byLength.set(n.podCIDR.prefixLength, (m = new Ipv4Map(input.remotes.length)));
      m.set(n.podCIDR.network, i);
    });
    this.#nodeByUnderlay.freeze();
    const lengths = [...byLength.keys()].sort((a, b) => b - a);
    this.#masks = Uint32Array.from(lengths, (l) => (l === 0 ? 0 : (0xffffffff << (32 - l)) >>> 0));
    this.#prefixes = lengths.map((l) => byLength.get(l)!.freeze());
  }

  /** The remote node that owns `dst` (a pod of it, or its underlay address); -1 if none. */
  remoteNode(dst: number): number {
    const masks = this.#masks;
    for (let i = 0; i < masks.length; i++) {
      const n = this.#prefixes[i]!.get((dst & masks[i]!) >>> 0);
      if (n >= 0) return n;
    }
    return this.#nodeByUnderlay.get(dst);
  }

  /** Index of the remote node with this underlay address; -1 for a stranger. */
  nodeByUnderlay(addr: number): number {
    return this.#nodeByUnderlay.get(addr);
  }
}

/** Where a routed packet entered: a pod's TAP, or the host TUN (the node's stack, or steered in from outside). */
export const RouteFrom = { POD: 0, HOST_TUN: 1 } as const;
export type RouteFrom = (typeof RouteFrom)[keyof typeof RouteFrom];

/**
 * Where the datapath sends an IPv4 packet for a destination, as data (slow path:
 * `tapir trace`). One kind per branch of Datapath's routing, in the same order:
 * gateway (answered by the agent), a local pod's port, a drop, a remote node over
 * VXLAN, or the host TUN.
 */
export type Route =
  | { kind: 'gateway' }
  | { kind: 'pod'; /** The datapath port index. */ port: number }
  | { kind: 'remote-node'; /** Index into `table.remotes` (and `nodeUnderlay`). */ node: number }
  | { kind: 'host-tun' }
  | { kind: 'drop'; /** DatapathDrop.NO_SUCH_POD or NO_ROUTE, the counter the drop lands in. */ reason: number };

/**
 * The route of a packet for `dst` after service NAT, decided by the same table reads
 * as Datapath's pod and host-TUN receive paths (test/datapath-route.test.ts pushes
 * packets through a Datapath and checks the two agree).
 */
export function explainRoute(table: ForwardingTable, dst: number, from: RouteFrom = RouteFrom.POD): Route {
  if (from === RouteFrom.POD && dst === table.gateway) return { kind: 'gateway' };
  const port = table.podPorts.get(dst);
  if (port >= 0) return { kind: 'pod', port };
  if (table.podCIDR.contains(dst)) return { kind: 'drop', reason: DatapathDrop.NO_SUCH_POD };
  const node = table.remoteNode(dst);
  if (node >= 0) return { kind: 'remote-node', node };
  // From a pod, everything else is the node's own stack (its addresses, or beyond it);
  // what came from that stack is not sent back to it.
  return from === RouteFrom.POD ? { kind: 'host-tun' } : { kind: 'drop', reason: DatapathDrop.NO_ROUTE };
}
