// Per-port counters. Drops are counted by reason in a Float64Array indexed by code:
// the wire layer's decode reasons (DropReason, 0..DROP_REASON_COUNT-1) followed by the
// datapath's own policy reasons below. Doubles, so counts never wrap.
import { DROP_REASON_COUNT, dropReasonNames } from '../wire/index.ts';

const base = DROP_REASON_COUNT;

export const DatapathDrop = {
  /** Source MAC of a pod's frame is not the pod's own (anti-spoofing). */
  SPOOFED_MAC: base + 0,
  /** Source IPv4 (or ARP sender) of a pod's frame is not the pod's own (anti-spoofing). */
  SPOOFED_IP: base + 1,
  /** ARP request for an address that is neither the gateway nor a local pod. */
  ARP_UNKNOWN_TARGET: base + 2,
  /** ARP replies and other ARP operations from pods: nothing to learn, the agent knows. */
  ARP_IGNORED: base + 3,
  /** IPv6 on a node with no IPv6 pod range (an IPv4-only cluster). */
  IPV6_UNSUPPORTED: base + 4,
  /** Destination MAC is neither the gateway nor a local pod (includes broadcast IPv4). */
  NOT_FOR_US: base + 5,
  /** Destination inside this node's pod CIDR with no pod on that address. */
  NO_SUCH_POD: base + 6,
  /** No route: not a pod, not a node, and not for the host port. */
  NO_ROUTE: base + 7,
  /** TTL would reach zero at this hop. */
  TTL_EXPIRED: base + 8,
  /** VXLAN with a VNI other than the cluster's. */
  WRONG_VNI: base + 9,
  /** VXLAN from an address that is not a known node. */
  UNKNOWN_PEER: base + 10,
  /** Too big for the overlay and DF set: answered with ICMP fragmentation needed. */
  FRAG_NEEDED: base + 11,
  /** Too big for the overlay without DF: IPv4 fragmentation is not done here. */
  TOO_BIG: base + 12,
  /** A GSO type the software segmenter does not do (TCPv6, UDP). */
  UNSUPPORTED_GSO: base + 13,
  /** A virtio-net header that does not fit the frame (csum_start past the end...). */
  BAD_VNET_HEADER: base + 14,
  /** 802.1Q-tagged frames on a pod port. */
  VLAN_UNSUPPORTED: base + 15,
  /** Echo request to the gateway answered; any other traffic to the gateway address. */
  FOR_GATEWAY: base + 16,
  /** Scratch space for built frames ran out within one batch. */
  NO_SCRATCH: base + 17,
  /** The device's queue was full or the kernel refused the frame. */
  TX_FAILED: base + 18,
  /** A service with no endpoints (answered with TCP RST / ICMP port unreachable). */
  SERVICE_REJECTED: base + 19,
  /** Dropped by the service proxy (no local endpoints, source range, conntrack full...; see the NAT counters). */
  SERVICE_DROPPED: base + 20,
  /**
   * VXLAN from a known node carrying an inner source that node cannot own (not in its
   * pod CIDR, not its address, not a reply of a flow tracked here): the overlay is
   * unauthenticated, as VXLAN is, so the source is checked against the sender.
   */
  UNDERLAY_SPOOFED: base + 21,
  /** An IPv4 header whose checksum fails (RFC 1812 §5.2.2: not forwarded). */
  BAD_IPV4_CHECKSUM: base + 22,
  /**
   * A pod's packet to 127.0.0.0/8 that is not the reply of a flow the service NAT
   * translated: the host TUN accepts loopback addresses (route_localnet, for localhost
   * node ports), so only the node's own flows may bring them there.
   */
  LOOPBACK_DESTINATION: base + 23,
  /**
   * IPv6 link control a pod sends that needs no answer: router solicitations (routes are
   * static), duplicate address detection, MLD reports, advertisements and redirects.
   */
  NDP_IGNORED: base + 24,
  /** A neighbour solicitation for an address that is neither the gateway nor a local pod. */
  NDP_UNKNOWN_TARGET: base + 25,
  /** A neighbour solicitation that fails RFC 4861 §7.1.1 (hop limit, checksum, options). */
  NDP_INVALID: base + 26,
  /** Too big for the overlay (IPv6 is never fragmented on the way): answered with ICMPv6 Packet Too Big. */
  PACKET_TOO_BIG: base + 27,
} as const;

const datapathDropNames = [
  'spoofed-mac', 'spoofed-ip', 'arp-unknown-target', 'arp-ignored', 'ipv6-unsupported',
  'not-for-us', 'no-such-pod', 'no-route', 'ttl-expired', 'wrong-vni', 'unknown-peer',
  'frag-needed', 'too-big', 'unsupported-gso', 'bad-vnet-header', 'vlan-unsupported',
  'for-gateway', 'no-scratch', 'tx-failed', 'service-rejected', 'service-dropped',
  'underlay-spoofed', 'bad-ipv4-checksum', 'loopback-destination',
  'ndp-ignored', 'ndp-unknown-target', 'ndp-invalid', 'packet-too-big',
];

export const DROP_SLOTS = base + datapathDropNames.length;

/** Names indexed by drop code (slow path: status output, metrics). */
export const dropNames: readonly string[] = [...dropReasonNames, ...datapathDropNames];

/**
 * Receive batches by size, in power-of-two buckets: bucket i holds batches of 2^i to
 * 2^(i+1) - 1 frames (the last one 64, RX_BATCH); `tapir_rx_batch_frames` on /metrics.
 */
export const BATCH_SIZE_BUCKETS = 7;

export class PortCounters {
  rxFrames = 0;
  rxBytes = 0;
  txFrames = 0;
  txBytes = 0;
  /** Device reads that returned frames (one per batch, not per frame), and the frames they brought. */
  rxBatches = 0;
  rxBatchFrames = 0;
  readonly rxBatchSizes = new Float64Array(BATCH_SIZE_BUCKETS);
  /** Frames dropped, by reason code (see dropNames). */
  readonly drops = new Float64Array(DROP_SLOTS);

  /** One receive batch of `n` (1..64) frames; once per batch, never per frame. */
  countBatch(n: number): void {
    this.rxBatches++;
    this.rxBatchFrames += n;
    this.rxBatchSizes[Math.min(BATCH_SIZE_BUCKETS - 1, 31 - Math.clz32(n))]!++;
  }

  toJSON(): { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; drops: Record<string, number> } {
    const drops: Record<string, number> = {};
    for (let i = 1; i < DROP_SLOTS; i++) if (this.drops[i]! > 0) drops[dropNames[i]!] = this.drops[i]!;
    return { rxFrames: this.rxFrames, rxBytes: this.rxBytes, txFrames: this.txFrames, txBytes: this.txBytes, drops };
  }
}
