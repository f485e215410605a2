// The forwarding table: everything the datapath needs to decide where a frame goes,
// compiled by the control side from the node's config and its pod ports. Immutable;
// a change (a pod added or removed, a node joining) compiles a new table that the
// datapath swaps in between batches, so a batch never sees half an update.
import { Ipv4Map } from '../tables/ipv4-map.ts';
import { Ipv6Map } from '../tables/ipv6-map.ts';
import { linkLocalForMac } from '../wire/address.ts';
import { loadIpv6Words } from '../wire/ipv6.ts';
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
  /** The node's IPv4 address (its stack's, and the VXLAN peer over an IPv4 underlay). */
  underlayIP: number;
  /** The node's IPv6 underlay address (16 bytes): the VXLAN peer over an IPv6 underlay, where every remote needs one. */
  underlayIP6?: Uint8Array | null;
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
  /** This node's IPv6 underlay address (16 bytes), or null/absent. */
  underlayIP6?: Uint8Array | null;
  vni: number;
  mtu: number;
  /**
   * The family VXLAN rides (default 4). One per cluster: with 6, datagrams go to and come
   * from the remotes' `underlayIP6`, and the socket is an IPv6 one. Inner frames of both
   * families ride either.
   */
  underlayFamily?: 4 | 6;
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
  return 0x0a5a * 0x1_0000_0000 + (((ip6[12]! << 24) | (ip6[13]! << 16) | (ip6[14]! << 8) | ip6[15]!) >>> 0);
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
  /** 4 or 6: the family of the VXLAN datagrams (ForwardingInput.underlayFamily). */
  readonly underlayFamily: 4 | 6;
  /**
   * Over an IPv6 underlay: remote node i's IPv6 underlay address as four host-order
   * words at [4i, 4i + 4), the form the UDP socket sends to and reports sources in.
   * Empty over an IPv4 underlay.
   */
  readonly nodeUnderlay6: Uint32Array;
  readonly #nodeByUnderlay6: Ipv6Map;
  /** Distinct pod CIDR masks of remote nodes, longest first, and network -> node index per mask. */
  readonly #masks: Uint32Array;
  readonly #prefixes: Ipv4Map[];
  readonly pods: readonly PodEntry[];
  readonly remotes: readonly RemoteNode[];

  // ---- IPv6 (dual-stack or IPv6 pods; `hasIpv6` false: every IPv6 frame is dropped) ----
  readonly hasIpv6: boolean;
  readonly podCIDR6: Cidr6 | null;
  readonly clusterCIDR6: Cidr6 | null;
  /** The node's IPv6 gateway (podCIDR6 ::1), the pods' default router; all zeros without IPv6. */
  readonly gateway6: Uint8Array;
  /** This node's IPv6 underlay address; all zeros without one. */
  readonly underlayIP6: Uint8Array;
  /** Pod IPv6 -> port index. */
  readonly podPorts6: Ipv6Map;
  /** Port index -> the pod's IPv4 address (0: none, an IPv6-only pod or not a pod). */
  readonly portIp4: Float64Array;
  /** Port index i -> the pod's IPv6 address at [16i, 16i + 16) (all zeros: none). */
  readonly portIp6: Uint8Array;
  /** Port index i -> the link-local address of the pod's MAC (EUI-64, what its kernel configures), at [16i, 16i + 16). */
  readonly portLinkLocal: Uint8Array;
  /** Port index -> 1 when the pod has an IPv6 address. */
  readonly portHasIp6: Uint8Array;
  /** Remote nodes' IPv6 pod ranges: masks (4 words per distinct length, longest first) and network -> node per mask. */
  readonly #masks6: Int32Array;
  readonly #prefixes6: Ipv6Map[];

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
    this.portIp4 = new Float64Array(maxPort + 1);
    this.portIp6 = new Uint8Array(16 * (maxPort + 1));
    this.portLinkLocal = new Uint8Array(16 * (maxPort + 1));
    this.portHasIp6 = new Uint8Array(maxPort + 1);
    this.podCIDR6 = input.podCIDR6 ?? null;
    this.clusterCIDR6 = input.clusterCIDR6 ?? null;
    this.hasIpv6 = this.podCIDR6 !== null;
    this.gateway6 = this.podCIDR6 !== null ? this.podCIDR6.host(1) : new Uint8Array(16);
    this.underlayIP6 = input.underlayIP6 ?? new Uint8Array(16);
    this.podPorts6 = new Ipv6Map(input.pods.length);
    for (const p of input.pods) {
      if (p.ip !== 0) this.podPorts.set(p.ip, p.port);
      this.portMacs[p.port] = p.mac;
      this.portIp4[p.port] = p.ip >>> 0;
      linkLocalForMac(p.mac, this.portLinkLocal, 16 * p.port);
      if (p.ip6 != null) {
        this.portIp6.set(p.ip6, 16 * p.port);
        this.portHasIp6[p.port] = 1;
        this.podPorts6.setAt(p.ip6, 0, p.port);
      }
    }
    this.podPorts.freeze();
    this.podPorts6.freeze();

    this.nodeUnderlay = new Uint32Array(input.remotes.length);
    this.#nodeByUnderlay = new Ipv4Map(input.remotes.length);
    this.underlayFamily = input.underlayFamily ?? 4;
    const six = this.underlayFamily === 6;
    this.nodeUnderlay6 = new Uint32Array(six ? 4 * input.remotes.length : 0);
    const words = new Int32Array(4);
    this.#nodeByUnderlay6 = new Ipv6Map(six ? input.remotes.length : 0);
    const byLength = new Map<number, Ipv4Map>();
    input.remotes.forEach((n, i) => {
      this.nodeUnderlay[i] = n.underlayIP;
      this.#nodeByUnderlay.set(n.underlayIP, i);
      if (six) {
        const a = n.underlayIP6;
        // The agent leaves out a node without one (and says so); here it is a bug.
        if (a == null) throw new RangeError(`remote node ${n.name} has no IPv6 underlay address, and the underlay is IPv6`);
        loadIpv6Words(words, 0, a, 0);
        this.nodeUnderlay6.set(words, 4 * i); // int32 words stored as uint32: the same bits
        this.#nodeByUnderlay6.setAt(a, 0, i);
      }
      let m = byLength.get(n.podCIDR.prefixLength);
      if (m === undefined) byLength.set(n.podCIDR.prefixLength, (m = new Ipv4Map(input.remotes.length)));
      m.set(n.podCIDR.network, i);
    });
    this.#nodeByUnderlay.freeze();
    this.#nodeByUnderlay6.freeze();
    const lengths = [...byLength.keys()].sort((a, b) => b - a);
    this.#masks = Uint32Array.from(lengths, (l) => (l === 0 ? 0 : (0xffffffff << (32 - l)) >>> 0));
    this.#prefixes = lengths.map((l) => byLength.get(l)!.freeze());

    const byLength6 = new Map<number, { mask: Cidr6; map: Ipv6Map }>();
    input.remotes.forEach((n, i) => {
      const c = n.podCIDR6;
      if (c == null) return;
      let m = byLength6.get(c.prefixLength);
      if (m === undefined) byLength6.set(c.prefixLength, (m = { mask: c, map: new Ipv6Map(input.remotes.length) }));
      m.map.setWords(c.word(0), c.word(1), c.word(2), c.word(3), i);
    });
    const lengths6 = [...byLength6.keys()].sort((a, b) => b - a);
    this.#masks6 = new Int32Array(4 * lengths6.length);
    lengths6.forEach((l, k) => {
      for (let w = 0; w < 4; w++) this.#masks6[4 * k + w] = byLength6.get(l)!.mask.maskWord(w) | 0;
    });
    this.#prefixes6 = lengths6.map((l) => byLength6.get(l)!.map.freeze());
  }

  /** The remote node whose IPv6 pod range holds the 16 bytes at `b[off]`; -1 if none. */
  remoteNode6(b: Uint8Array, off: number): number {
    const masks = this.#masks6;
    if (masks.length === 0) return -1;
    const w0 = (b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!;
    const w1 = (b[off + 4]! << 24) | (b[off + 5]! << 16) | (b[off + 6]! << 8) | b[off + 7]!;
    const w2 = (b[off + 8]! << 24) | (b[off + 9]! << 16) | (b[off + 10]! << 8) | b[off + 11]!;
    const w3 = (b[off + 12]! << 24) | (b[off + 13]! << 16) | (b[off + 14]! << 8) | b[off + 15]!;
    for (let i = 0; i < this.#prefixes6.length; i++) {
      const n = this.#prefixes6[i]!.getWords(w0 & masks[4 * i]!, w1 & masks[4 * i + 1]!, w2 & masks[4 * i + 2]!, w3 & masks[4 * i + 3]!);
      if (n >= 0) return n;
    }
    return -1;
  }

  /** Whether the 16 bytes at `b[off]` are this node's IPv6 gateway address. */
  isGateway6(b: Uint8Array, off: number): boolean {
    const g = this.gateway6;
    for (let i = 15; i >= 0; i--) if (b[off + i] !== g[i]) return false;
    return this.hasIpv6;
  }

  /**
   * Whether the 16 bytes at `b[off]` are an IPv6 address of this node's own stack: its
   * gateway address (its source towards pods), its underlay address, or ::1.
   */
  isNodeAddress6(b: Uint8Array, off: number): boolean {
    if (this.isGateway6(b, off)) return true;
    const u = this.underlayIP6;
    let same = u[0] !== 0 || u[1] !== 0;
    for (let i = 15; same && i >= 0; i--) if (b[off + i] !== u[i]) same = false;
    if (same) return true;
    for (let i = 0; i < 15; i++) if (b[off + i] !== 0) return false;
    return b[off + 15] === 1;
  }

  /** Whether the 16 bytes at `b[off]` are the IPv6 address, or the link-local address, of the pod on `port`. */
  isPodSource6(port: number, b: Uint8Array, off: number): boolean {
    if (port >= this.portHasIp6.length) return false;
    const base = 16 * port;
    const a = this.portIp6;
    let same = this.portHasIp6[port] === 1;
    for (let i = 15; same && i >= 0; i--) if (b[off + i] !== a[base + i]) same = false;
    if (same) return true;
    const ll = this.portLinkLocal;
    for (let i = 15; i >= 0; i--) if (b[off + i] !== ll[base + i]) return false;
    return this.portMacs[port]! > 0;
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

  /** Over an IPv6 underlay: the remote node whose underlay address is the four words at `words[at]`; -1 for a stranger. */
  nodeByUnderlay6(words: Uint32Array, at: number): number {
    return this.#nodeByUnderlay6.getWords(words[at]!, words[at + 1]!, words[at + 2]!, words[at + 3]!);
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

/**
 * IPv6's explainRoute (slow path: `tapir trace`), the same table reads as Datapath's
 * IPv6 receive paths for a TCP or UDP packet: the gateway address is the node's own (host
 * TUN), then a local pod, this node's range (drop), a remote node's range, and beyond.
 */
export function explainRoute6(table: ForwardingTable, dst: Uint8Array, from: RouteFrom = RouteFrom.POD): Route {
  if (!table.hasIpv6) return { kind: 'drop', reason: DatapathDrop.IPV6_UNSUPPORTED };
  if (table.isGateway6(dst, 0)) return from === RouteFrom.POD ? { kind: 'host-tun' } : { kind: 'drop', reason: DatapathDrop.NO_ROUTE };
  const port = table.podPorts6.getAt(dst, 0);
  if (port >= 0) return { kind: 'pod', port };
  if (table.podCIDR6!.contains(dst)) return { kind: 'drop', reason: DatapathDrop.NO_SUCH_POD };
  const node = table.remoteNode6(dst, 0);
  if (node >= 0) return { kind: 'remote-node', node };
  return from === RouteFrom.POD ? { kind: 'host-tun' } : { kind: 'drop', reason: DatapathDrop.NO_ROUTE };
}
