// Replies the agent writes in place over the request it answers, as the router and
// ARP responder of its pods: the frame keeps its slot and goes back out the same port.
import { ArpPacket, EthernetFrame, Icmpv4Packet, Icmpv4Type, Ipv4Packet, type PacketInfo } from '../wire/index.ts';

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
