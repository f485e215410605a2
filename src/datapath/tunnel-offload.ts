// UDP tunnel segmentation offload (Linux 6.17+, TUN_F_UDP_TUNNEL_GSO), both ends.
//
// Send: a TSO frame for a remote node is not cut in software. Its VXLAN, UDP, IPv4 and
// Ethernet headers are written in front of it (in the slot's headroom), a 24-byte
// virtio_net_hdr_v1_hash_tunnel in front of those, and the whole super-frame goes to the
// node's egress TAP (src/agent/tunnel-egress.ts). The kernel forwards it to the
// underlay like any packet of the node's own and segments outer and inner headers
// (software GSO, or the NIC's), computing every checksum.
//
// Receive: a device that passes GSO packets through (veth, as in the lab) delivers such
// a super-frame to the peer's UDP socket whole, its inner TCP checksum still partial,
// and without a segment size (the UDP_GRO report is for UDP GSO only). It is told by its
// size (past the overlay MTU, which no single packet is) and by its first inner packet
// spanning the whole datagram (not a GRO batch of equal datagrams back to back), and
// handed to the pod as a TSO frame whose segments fill the overlay MTU
// (tunnelSuperFrame, setTsoHeader).
import type { FrameDevice } from '../device/types.ts';
import {
  EtherType, EthernetFrame, IpProtocol, Ipv4Packet, TcpSegment, VirtioNetFlags, VirtioNetGso, VirtioNetHeader, VirtioNetTunnelField, VxlanHeader,
  ETHERNET_HEADER_LENGTH as ETH, IPV4_HEADER_LENGTH, IPV6_HEADER_LENGTH, UDP_HEADER_LENGTH,
  VIRTIO_NET_TUNNEL_HEADER_LENGTH, VXLAN_HEADER_LENGTH, VXLAN_PORT, get16, set16, set16le, type PacketInfo,
} from '../wire/index.ts';
import { TxQueue } from './arena.ts';
import { DatapathDrop, type PortCounters } from './counters.ts';
import type { ForwardingTable } from './forwarding.ts';

/** Outer headers of a VXLAN datagram over IPv4, as Ethernet sees it: 14 + 20 + 8 + 8. */
const OUTER4 = ETH + IPV4_HEADER_LENGTH + UDP_HEADER_LENGTH + VXLAN_HEADER_LENGTH;
/** What a super-frame needs in front of its inner frame: the tunnel header and OUTER4. */
export const TUNNEL_PREFIX = VIRTIO_NET_TUNNEL_HEADER_LENGTH + OUTER4;
/** The outer IPv4 total length must fit 16 bits. */
const MAX_INNER_FRAME = 0xffff - (OUTER4 - ETH);
const TCP_CHECKSUM_OFFSET = 16;
const IPV4_DONT_FRAGMENT = 0x4000;

/**
 * The node's egress TAP and its queue of super-frames, flushed with the datapath's other
 * queues. IPv4 underlays only: over an IPv6 one the kernel would need the same from an
 * IPv6 source it owns, not built yet.
 */
export class TunnelEgress {
  readonly queue = new TxQueue(64);
  readonly #device: FrameDevice;
  /** The TAP's own MAC: the kernel takes a frame to it as its own to route. */
  readonly #deviceMac: number;
  #ident = 0;
  /** Super-frames the kernel took. */
  sent = 0;

  constructor(device: FrameDevice, deviceMac: number) {
    this.#device = device;
    this.#deviceMac = deviceMac;
  }

  /**
   * Queues the TSO frame at `e` (`frameLen` bytes, its virtio-net header at `vh`, in front)
   * for remote node `node` of table `t` as one super-frame; false when it cannot go this
   * way (no NEEDS_CSUM, too long for one outer IPv4 packet), and the caller segments it in
   * software. The TUNNEL_PREFIX bytes in front of `e` must be free (headroom). (Addresses
   * are read from the table here: passed as arguments, those above 2^31 would be boxed,
   * an allocation per frame.)
   */
  push(b: Uint8Array, vh: number, e: number, frameLen: number, t: ForwardingTable, node: number, c: PortCounters): boolean {
    if (!VirtioNetHeader.needsCsum(b, vh) || frameLen > MAX_INNER_FRAME) return false;
    // Everything read from the pod's header before the outer headers overwrite it.
    const gsoType = VirtioNetHeader.gsoType(b, vh);
    const mss = VirtioNetHeader.gsoSize(b, vh);
    const innerTcp = VirtioNetHeader.csumStart(b, vh);
    const csumOffset = VirtioNetHeader.csumOffset(b, vh);
    const csumStart = OUTER4 + innerTcp;
    const thl = TcpSegment.headerLength(b, e + innerTcp);
    // The receiver tells a super-frame by its inner length spanning the datagram.
    setInnerLength(b, e + ETH, frameLen - ETH, EthernetFrame.ethertype(b, e) === EtherType.IPV6);
    const f = e - OUTER4; // the outer Ethernet header
    const h = f - VIRTIO_NET_TUNNEL_HEADER_LENGTH;

    EthernetFrame.setDst(b, f, this.#deviceMac);
    EthernetFrame.setSrc(b, f, t.gatewayMac);
    set16(b, f + 12, EtherType.IPV4);
    const ip = f + ETH;
    b[ip] = 0x45;
    b[ip + 1] = 0;
    set16(b, ip + 2, OUTER4 - ETH + frameLen);
    set16(b, ip + 4, this.#ident);
    this.#ident = (this.#ident + 1) & 0xffff;
    set16(b, ip + 6, IPV4_DONT_FRAGMENT);
    b[ip + 8] = 64;
    b[ip + 9] = IpProtocol.UDP;
    // In 16-bit halves: an address above 2^31 handed whole to a call that is not
    // inlined would be boxed.
    const src = t.underlayIP;
    const dst = t.nodeUnderlay[node]!;
    set16(b, ip + 12, src >>> 16);
    set16(b, ip + 14, src & 0xffff);
    set16(b, ip + 16, dst >>> 16);
    set16(b, ip + 18, dst & 0xffff);
    Ipv4Packet.fillChecksum(b, ip);
    const udp = ip + IPV4_HEADER_LENGTH;
    set16(b, udp, VXLAN_PORT);
    set16(b, udp + 2, VXLAN_PORT);
    set16(b, udp + 4, UDP_HEADER_LENGTH + VXLAN_HEADER_LENGTH + frameLen);
    set16(b, udp + 6, 0); // no outer checksum (RFC 7348 §5), so no UDP_TUNNEL_CSUM
    VxlanHeader.emit(b, udp + UDP_HEADER_LENGTH, t.vni);

    for (let i = 0; i < VIRTIO_NET_TUNNEL_HEADER_LENGTH; i++) b[h + i] = 0;
    VirtioNetHeader.setFlags(b, h, VirtioNetFlags.NEEDS_CSUM);
    VirtioNetHeader.setGsoType(b, h, gsoType | VirtioNetGso.UDP_TUNNEL_IPV4);
    VirtioNetHeader.setHdrLen(b, h, csumStart + thl);
    VirtioNetHeader.setGsoSize(b, h, mss);
    VirtioNetHeader.setCsumStart(b, h, csumStart);
    VirtioNetHeader.setCsumOffset(b, h, csumOffset);
    set16le(b, h + VirtioNetTunnelField.OUTER_TH_OFFSET, ETH + IPV4_HEADER_LENGTH);
    set16le(b, h + VirtioNetTunnelField.INNER_NH_OFFSET, OUTER4 + ETH);

    const q = this.queue;
    if (q.full) this.flush(b, c);
    q.push(h, VIRTIO_NET_TUNNEL_HEADER_LENGTH + OUTER4 + frameLen);
    return true;
  }

  /** Writes what is queued, counting it on `c` (bytes from the outer Ethernet header). */
  flush(b: Uint8Array, c: PortCounters): void {
    const q = this.queue;
    if (q.count === 0) return;
    const n = this.#device.writeBatch(b, q.offsets, q.lengths, q.count);
    for (let i = 0; i < n; i++) c.txBytes += q.lengths[i]! - VIRTIO_NET_TUNNEL_HEADER_LENGTH;
    c.txFrames += n;
    if (n < q.count) c.drops[DatapathDrop.TX_FAILED]! += q.count - n;
    this.sent += n;
    q.count = 0;
  }
}

/** The inner packet's own length field set to `len` (IPv4 total length, its checksum redone; IPv6 payload length). */
function setInnerLength(b: Uint8Array, ip: number, len: number, v6: boolean): void {
  if (v6) {
    set16(b, ip + 4, len - IPV6_HEADER_LENGTH);
  } else if (get16(b, ip + 2) !== len) {
    set16(b, ip + 2, len);
    Ipv4Packet.fillChecksum(b, ip);
  }
}

/**
 * Whether the VXLAN datagram at `d` (`len` bytes, longer than an overlay packet can be)
 * is one super-frame rather than a GRO batch: its first inner packet spans it.
 */
export function tunnelSuperFrame(b: Uint8Array, d: number, len: number): boolean {
  const ip = d + VXLAN_HEADER_LENGTH + ETH;
  if (len < VXLAN_HEADER_LENGTH + ETH + IPV4_HEADER_LENGTH) return false;
  const type = get16(b, ip - 2);
  if (type === EtherType.IPV4) return VXLAN_HEADER_LENGTH + ETH + get16(b, ip + 2) === len;
  if (type === EtherType.IPV6) return len >= VXLAN_HEADER_LENGTH + ETH + IPV6_HEADER_LENGTH && VXLAN_HEADER_LENGTH + ETH + IPV6_HEADER_LENGTH + get16(b, ip + 4) === len;
  return false;
}

/**
 * Marks the virtio-net header at `vh` for the TCP packet decoded in `info` (a received
 * super-frame) as the TSO frame it is: partial checksum, segments of `mss`. `start` is
 * where the frame behind the header begins (its Ethernet header, or the IP header when
 * the frame goes to the host TUN without one).
 */
export function setTsoHeader(b: Uint8Array, vh: number, info: PacketInfo, start: number, mss: number): void {
  const csumStart = info.l4Offset - start;
  VirtioNetHeader.setFlags(b, vh, VirtioNetFlags.NEEDS_CSUM);
  VirtioNetHeader.setGsoType(b, vh, info.ipVersion === 6 ? VirtioNetGso.TCPV6 : VirtioNetGso.TCPV4);
  VirtioNetHeader.setHdrLen(b, vh, info.payloadOffset - start);
  VirtioNetHeader.setGsoSize(b, vh, mss);
  VirtioNetHeader.setCsumStart(b, vh, csumStart);
  VirtioNetHeader.setCsumOffset(b, vh, TCP_CHECKSUM_OFFSET);
}
