// Replies the agent writes in place over the request it answers, as the router and
// ARP responder of its pods: the frame keeps its slot and goes back out the same port.
import {
  ArpPacket, EthernetFrame, Icmpv4Packet, Icmpv4Type, Icmpv6Field, Icmpv6Type, IpProtocol, Ipv4Packet, Ipv6Field,
  UDP_HEADER_LENGTH, UdpField, checksum, get16, pseudoHeaderV4, pseudoHeaderV6, set16, set48, udpWireChecksum,
  updateChecksum16, verifyChecksum, IPV6_HEADER_LENGTH, type PacketInfo,
} from '../wire/index.ts';

/**
 * Turns the ARP request decoded in `info` (its frame at `off`, behind a `vnet`-byte
 * virtio-net header) into the reply "`target` is at `mac`" (RFC 826: swap sender and
 * target, fill in the answer, op = reply); the virtio-net header is zeroed.
 */
export function arpReplyInPlace(b: Buffer, info: PacketInfo, off: number, vnet: number, target: number, mac: number): void {
  const e = off + vnet;
  ArpPacket.replyInPlace(b, info.l3Offset, target, mac);
  EthernetFrame.setDst(b, e, info.ethSrc);
  EthernetFrame.setSrc(b, e, mac);
  b.fill(0, off, e);
}

/**
 * Turns the ICMP echo request decoded in `info` into its echo reply from the request's
 * destination, sent from `mac`. Swapping the addresses leaves the IPv4 checksum as it
 * is; type 8 -> 0 moves the ICMP checksum (RFC 1624).
 */
export function echoReplyInPlace(b: Buffer, info: PacketInfo, off: number, vnet: number, mac: number): void {
  const e = off + vnet;
  const ip = info.l3Offset;
  Ipv4Packet.setSrc(b, ip, info.dst4);
  Ipv4Packet.setDst(b, ip, info.src4);
  Icmpv4Packet.setTypeUpdatingChecksum(b, info.l4Offset, Icmpv4Type.ECHO_REPLY);
  EthernetFrame.setDst(b, e, info.ethSrc);
  EthernetFrame.setSrc(b, e, mac);
  b.fill(0, off, e);
}

/** TTL of the datagrams the agent answers itself (Linux's default). */
const ANSWER_TTL = 64;

/**
 * Turns the UDP datagram decoded in `info` (an IPv4 header without options) into the
 * reply from its destination address and port, whose `payloadLength` bytes are already
 * at `info.payloadOffset`: addresses and ports swapped, lengths, a fresh TTL and both
 * checksums. Returns the new frame length from `off` (virtio-net header included,
 * zeroed: the checksum is complete).
 */
export function udpReplyInPlace(b: Buffer, info: PacketInfo, off: number, vnet: number, mac: number, payloadLength: number): number {
  const e = off + vnet;
  const ip = info.l3Offset;
  const udp = info.l4Offset;
  const udpLength = UDP_HEADER_LENGTH + payloadLength;
  const src = info.dst4;
  const dst = info.src4;
  Ipv4Packet.setSrc(b, ip, src);
  Ipv4Packet.setDst(b, ip, dst);
  Ipv4Packet.setTotalLength(b, ip, 20 + udpLength);
  Ipv4Packet.setIdent(b, ip, 0);
  Ipv4Packet.setFlagsAndOffset(b, ip, true, false, 0);
  Ipv4Packet.setTtl(b, ip, ANSWER_TTL);
  Ipv4Packet.fillChecksum(b, ip);
  set16(b, udp + UdpField.SRC_PORT, info.dstPort);
  set16(b, udp + UdpField.DST_PORT, info.srcPort);
  set16(b, udp + UdpField.LENGTH, udpLength);
  set16(b, udp + UdpField.CHECKSUM, 0);
  set16(b, udp + UdpField.CHECKSUM, udpWireChecksum(checksum(b, udp, udpLength, pseudoHeaderV4(src, dst, IpProtocol.UDP, udpLength))));
  EthernetFrame.setDst(b, e, info.ethSrc);
  EthernetFrame.setSrc(b, e, mac);
  b.fill(0, off, e);
  return udp + udpLength - off;
}

// ---- IPv6 (RFC 4861 neighbour discovery, RFC 4443 echo) ----------------------------

/** Neighbour Solicitation / Advertisement: type, code, checksum, 4 bytes, the 16-byte target. */
const ND_HEADER = 24;
/** The one option an answer carries: target link-layer address (type 2, length 1 = 8 bytes). */
const ND_OPTION_TLLA = 2;
const NA_LENGTH = ND_HEADER + 8;
/** NA flags (RFC 4861 §4.4): Router, Solicited, Override, in the first byte of the reserved word. */
const NA_ROUTER = 0x80, NA_SOLICITED = 0x40, NA_OVERRIDE = 0x20;
/** The hop limit every neighbour discovery message carries (RFC 4861 §7.1). */
const ND_HOP_LIMIT = 255;

/**
 * Whether the packet in `info` is a Neighbour Solicitation a node must process (RFC 4861
 * §7.1.1): plain IPv6 header, hop limit 255, code 0, at least 24 bytes, a valid checksum,
 * a unicast target, and well-formed options (none of length 0).
 */
export function isValidNeighborSolicit(b: Uint8Array, info: PacketInfo): boolean {
  if (info.protocol !== IpProtocol.ICMPV6 || info.icmpType !== Icmpv6Type.NEIGHBOR_SOLICIT || info.icmpCode !== 0) return false;
  if (info.ipHeaderLength !== IPV6_HEADER_LENGTH || info.ttl !== ND_HOP_LIMIT || info.l4Length < ND_HEADER) return false;
  const l4 = info.l4Offset;
  if (b[l4 + 8] === 0xff) return false;
  if (!verifyChecksum(b, l4, info.l4Length, pseudoHeaderV6(b, info.src6Offset, info.dst6Offset, IpProtocol.ICMPV6, info.l4Length))) return false;
  for (let o = l4 + ND_HEADER, end = l4 + info.l4Length; o < end; ) {
    if (o + 2 > end || b[o + 1] === 0) return false;
    o += b[o + 1]! * 8;
    if (o > end) return false;
  }
  return true;
}

/**
 * Turns the Neighbour Solicitation decoded in `info` (checked by isValidNeighborSolicit;
 * from a unicast or link-local source) into the advertisement "the target is at `mac`",
 * sent from the target to the solicitor (RFC 4861 §7.2.4): Solicited and Override set,
 * Router when the target is the gateway, one target link-layer address option. Returns
 * the new frame length from `off` (virtio-net header zeroed).
 */
export function neighborAdvertInPlace(b: Buffer, info: PacketInfo, off: number, vnet: number, mac: number, router: boolean): number {
  const e = off + vnet;
  const ip = info.l3Offset;
  const l4 = info.l4Offset;
  // Destination <- the solicitor; source <- the target (still at l4 + 8, where the NA keeps it).
  b.copy(b, ip + Ipv6Field.DST, ip + Ipv6Field.SRC, ip + Ipv6Field.SRC + 16);
  b.copy(b, ip + Ipv6Field.SRC, l4 + 8, l4 + 24);
  set16(b, ip + Ipv6Field.LENGTH, NA_LENGTH);
  b[ip + Ipv6Field.NXT_HDR] = IpProtocol.ICMPV6;
  b[ip + Ipv6Field.HOP_LIMIT] = ND_HOP_LIMIT;
  b[l4 + Icmpv6Field.TYPE] = Icmpv6Type.NEIGHBOR_ADVERT;
  b[l4 + Icmpv6Field.CODE] = 0;
  b[l4 + 4] = (router ? NA_ROUTER : 0) | NA_SOLICITED | NA_OVERRIDE;
  b[l4 + 5] = 0; b[l4 + 6] = 0; b[l4 + 7] = 0;
  b[l4 + ND_HEADER] = ND_OPTION_TLLA;
  b[l4 + ND_HEADER + 1] = 1;
  set48(b, l4 + ND_HEADER + 2, mac);
  set16(b, l4 + Icmpv6Field.CHECKSUM, 0);
  set16(b, l4 + Icmpv6Field.CHECKSUM, checksum(b, l4, NA_LENGTH, pseudoHeaderV6(b, ip + Ipv6Field.SRC, ip + Ipv6Field.DST, IpProtocol.ICMPV6, NA_LENGTH)));
  EthernetFrame.setDst(b, e, info.ethSrc);
  EthernetFrame.setSrc(b, e, mac);
  b.fill(0, off, e);
  return l4 + NA_LENGTH - off;
}

/**
 * Turns the ICMPv6 echo request decoded in `info` into its reply from the request's
 * destination, sent from `mac`: the addresses swap (the pseudo-header sum does not
 * change) and type 128 -> 129 moves the checksum (RFC 1624).
 */
export function echo6ReplyInPlace(b: Buffer, info: PacketInfo, off: number, vnet: number, mac: number): void {
  const e = off + vnet;
  const ip = info.l3Offset;
  const l4 = info.l4Offset;
  for (let i = 0; i < 16; i++) {
    const s = b[ip + Ipv6Field.SRC + i]!;
    b[ip + Ipv6Field.SRC + i] = b[ip + Ipv6Field.DST + i]!;
    b[ip + Ipv6Field.DST + i] = s;
  }
  const old = get16(b, l4);
  b[l4 + Icmpv6Field.TYPE] = Icmpv6Type.ECHO_REPLY;
  set16(b, l4 + Icmpv6Field.CHECKSUM, updateChecksum16(get16(b, l4 + Icmpv6Field.CHECKSUM), old, get16(b, l4)));
  EthernetFrame.setDst(b, e, info.ethSrc);
  EthernetFrame.setSrc(b, e, mac);
  b.fill(0, off, e);
}

/**
 * IPv6's udpReplyInPlace: the UDP datagram decoded in `info` (a plain IPv6 header, no
 * extension headers) becomes the reply from its destination address and port, whose
 * `payloadLength` bytes are already at `info.payloadOffset`: addresses and ports
 * swapped, the payload length, a fresh hop limit and the UDP checksum, which IPv6
 * makes mandatory (RFC 8200 §8.1). Returns the new frame length from `off`
 * (virtio-net header included, zeroed: the checksum is complete).
 */
export function udp6ReplyInPlace(b: Buffer, info: PacketInfo, off: number, vnet: number, mac: number, payloadLength: number): number {
  const e = off + vnet;
  const ip = info.l3Offset;
  const udp = info.l4Offset;
  const udpLength = UDP_HEADER_LENGTH + payloadLength;
  for (let i = 0; i < 16; i++) {
    const s = b[ip + Ipv6Field.SRC + i]!;
    b[ip + Ipv6Field.SRC + i] = b[ip + Ipv6Field.DST + i]!;
    b[ip + Ipv6Field.DST + i] = s;
  }
  set16(b, ip + Ipv6Field.LENGTH, udpLength);
  b[ip + Ipv6Field.HOP_LIMIT] = ANSWER_TTL;
  set16(b, udp + UdpField.SRC_PORT, info.dstPort);
  set16(b, udp + UdpField.DST_PORT, info.srcPort);
  set16(b, udp + UdpField.LENGTH, udpLength);
  set16(b, udp + UdpField.CHECKSUM, 0);
  set16(b, udp + UdpField.CHECKSUM, udpWireChecksum(checksum(b, udp, udpLength, pseudoHeaderV6(b, ip + Ipv6Field.SRC, ip + Ipv6Field.DST, IpProtocol.UDP, udpLength))));
  EthernetFrame.setDst(b, e, info.ethSrc);
  EthernetFrame.setSrc(b, e, mac);
  b.fill(0, off, e);
  return udp + udpLength - off;
}
