// Replies the agent writes in place over the request it answers, as the router and
// ARP responder of its pods: the frame keeps its slot and goes back out the same port.
import {
  ArpPacket, EthernetFrame, Icmpv4Packet, Icmpv4Type, IpProtocol, Ipv4Packet, UDP_HEADER_LENGTH, UdpField,
  checksum, pseudoHeaderV4, set16, udpWireChecksum, type PacketInfo,
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
