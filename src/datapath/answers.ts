// Replies the agent writes in place over the request it answers, as the router and
// ARP responder of its pods: the frame keeps its slot and goes back out the same port.
import { ArpOp, Icmpv4Type, get16, set16, set32, set48, updateChecksum16, type PacketInfo } from '../wire/index.ts';

/**
 * Turns the ARP request decoded in `info` (its frame at `off`, behind a `vnet`-byte
 * virtio-net header) into the reply "`target` is at `mac`" (RFC 826: swap sender and
 * target, fill in the answer, op = reply); the virtio-net header is zeroed.
 */
export function arpReplyInPlace(b: Buffer, info: PacketInfo, off: number, vnet: number, target: number, mac: number): void {
  const e = off + vnet;
  const arp = info.l3Offset;
  const requester = info.ethSrc;
  set16(b, arp + 6, ArpOp.REPLY);
  b.copy(b, arp + 18, arp + 8, arp + 18); // target hardware + protocol address <- the requester's
  set48(b, arp + 8, mac);
  set32(b, arp + 14, target);
  set48(b, e, requester);
  set48(b, e + 6, mac);
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
  const icmp = info.l4Offset;
  const src = info.src4;
  set32(b, ip + 12, info.dst4);
  set32(b, ip + 16, src);
  const old = get16(b, icmp);
  b[icmp] = Icmpv4Type.ECHO_REPLY;
  set16(b, icmp + 2, updateChecksum16(get16(b, icmp + 2), old, get16(b, icmp)));
  set48(b, e, info.ethSrc);
  set48(b, e + 6, mac);
  b.fill(0, off, e);
}
