// Where the agent's forwarding table sends a packet: to this node's pod ports, or over
// VXLAN to the node whose pod CIDR holds the destination. The other nodes come from
// the config (`nodes`) and, in cluster mode, from their Node objects, read as Flannel
// reads them; a change of either recompiles the whole table, which the datapath swaps
// in between two batches.
import { ForwardingTable, type PodEntry } from '../datapath/forwarding.ts';
import type { NodeObject } from '../k8s/objects.ts';
import { ipv4ToString } from '../wire/index.ts';
import { ipv6ToString, parseCidr, parseCidr6, parseIpv4, parseIpv6 } from '../wire/address.ts';
import type { AgentConfig, NodeRecord } from './config.ts';

/** A pod port in the datapath: its port index and the pod's addresses. */
export interface PodRoute {
  index: number;
  ip: number;
  mac: number;
  ip6: Uint8Array | null;
}

/** The forwarding table of this node's pod ports and of the other nodes (the config's and the API's). */
export function compileForwardingTable(c: AgentConfig, podPorts: Iterable<PodRoute>, apiNodes: readonly NodeRecord[]): ForwardingTable {
  const pods: PodEntry[] = [];
  for (const { index, ip, mac, ip6 } of podPorts) pods.push({ port: index, ip, mac, ip6 });
  return new ForwardingTable({
    podCIDR: c.podCIDR,
    clusterCIDR: c.clusterCIDR,
    podCIDR6: c.podCIDRv6,
    clusterCIDR6: c.clusterCIDRv6,
    underlayIP: c.underlayAddress,
    // Over an IPv6 underlay the tunnel's address is one of the node's own too.
    underlayIP6: c.underlayAddressV6 ?? c.vxlanAddress6,
    underlayFamily: c.underlayFamily,
    vni: c.vni,
    mtu: c.mtu,
    pods,
    // Over an IPv6 underlay a node without an IPv6 address cannot be reached (ClusterNodes.update leaves it out).
    remotes: [...c.nodes, ...apiNodes].filter((n) => n.name !== c.nodeName && (c.underlayFamily === 4 || n.underlayIP6 != null))
      .map((n) => ({ name: n.name, underlayIP: n.underlayIP, underlayIP6: n.underlayIP6 ?? null, podCIDR: n.podCIDR, podCIDR6: n.podCIDRv6 ?? null })),
  });
}

/** Cluster mode: the other nodes as their Node objects describe them. */
export class ClusterNodes {
  readonly #config: AgentConfig;
  readonly #log: (message: string) => void;
  /** Told when the nodes changed: the forwarding table is to be recompiled. */
  readonly #onChange: () => void;
  #apiNodes: NodeRecord[] = [];

  constructor(config: AgentConfig, log: (message: string) => void, onChange: () => void) {
    this.#config = config;
    this.#log = log;
    this.#onChange = onChange;
  }

  /** The nodes of the last update that had both an InternalIP and a pod CIDR. */
  get apiNodes(): readonly NodeRecord[] {
    return this.#apiNodes;
  }

  /**
   * Cluster mode: the Node objects, as Flannel reads them: each node's pod CIDR is
   * reached over VXLAN at its InternalIP. A node joining or leaving recompiles the
   * forwarding table; a Node without both is left out until it has them. The IPv6 entry
   * of spec.podCIDRs (dual-stack) is the node's IPv6 pod range, over the same tunnel.
   * Over an IPv6 underlay the tunnel goes to the Node's IPv6 InternalIP, and a Node
   * without one is left out (said in the log) until it has one.
   */
  update(nodes: readonly NodeObject[]): void {
    const next: NodeRecord[] = [];
    const unreachable: string[] = [];
    const six = this.#config.underlayFamily === 6;
    for (const n of nodes) {
      const ip = n.addresses.find((a) => a.type === 'InternalIP')?.address;
      const underlayIP = ip === undefined ? undefined : parseIpv4(ip);
      const podCIDR = n.podCIDRs?.[0] === undefined ? undefined : parseCidr(n.podCIDRs[0]);
      if (underlayIP === undefined || podCIDR === undefined) continue;
      if (this.#config.nodes.some((s) => s.name === n.metadata.name)) continue; // the file's word wins
      const podCIDRv6 = n.podCIDRv6 === undefined ? null : parseCidr6(n.podCIDRv6) ?? null;
      const ip6 = six ? n.addresses6?.find((a) => a.type === 'InternalIP')?.address : undefined;
      const underlayIP6 = ip6 === undefined ? null : parseIpv6(ip6) ?? null;
      if (six && underlayIP6 === null && n.metadata.name !== this.#config.nodeName) unreachable.push(n.metadata.name);
      next.push({ name: n.metadata.name, underlayIP, underlayIP6, podCIDR, podCIDRv6 });
    }
    const key = (list: NodeRecord[]): string => list.map((n) => `${n.name}=${n.underlayIP}/${n.underlayIP6 ? ipv6ToString(n.underlayIP6) : ''}/${n.podCIDR}/${n.podCIDRv6 ?? ''}`).sort().join();
    if (key(next) === key(this.#apiNodes)) return;
    this.#apiNodes = next;
    this.#onChange();
    const at = (n: NodeRecord): string => (six && n.underlayIP6 ? ipv6ToString(n.underlayIP6) : ipv4ToString(n.underlayIP));
    this.#log(`nodes: ${next.filter((n) => n.name !== this.#config.nodeName && (!six || n.underlayIP6)).map((n) => `${n.name} ${n.podCIDR}${n.podCIDRv6 ? ` ${n.podCIDRv6}` : ''} at ${at(n)}`).join(', ') || 'no other node'}`);
    if (unreachable.length > 0) this.#log(`nodes left out: ${unreachable.join(', ')} (no IPv6 InternalIP, and the underlay is IPv6)`);
  }
}
