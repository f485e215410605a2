// Replies the data plane originates about a packet it received: ICMP errors (RFC 792,
// RFC 1191, RFC 1812 §4.3.2; RFC 4443) and TCP resets (RFC 9293 §3.10.7.1, the rules of
// RFC 793 p.36). Slow path, built from a decoded PacketInfo with emitPacket.
import { LinkType, type PacketInfo } from './decode.ts';
import { emitPacket, type EthernetRepr, type PacketRepr } from './repr.ts';
import { IpProtocol, IPV4_HEADER_LENGTH } from './ipv4.ts';
import { IPV6_HEADER_LENGTH, isUnspecifiedIpv6 } from './ipv6.ts';
import { ICMPV4_HEADER_LENGTH, Icmpv4Type, Icmpv4Unreachable, isIcmpv4Error } from './icmpv4.ts';
import { ICMPV6_HEADER_LENGTH, Icmpv6Type, Icmpv6Unreachable, isIcmpv6Error } from './icmpv6.ts';
import { TcpFlags } from './tcp.ts';

// RFC 1812 §4.3.2.3: quote as much as fits without the ICMP datagram exceeding 576
// bytes. RFC 4443 §2.4(c): without exceeding the minimum IPv6 MTU, 1280.
const ICMPV4_MAX_DATAGRAM = 576;
const ICMPV6_MAX_PACKET = 1280;

// The link header for a reply: given explicitly, or the received frame's addresses
// swapped (and its VLAN kept) when it came over Ethernet; none for raw IP.
function replyLink(info: PacketInfo, link: EthernetRepr | undefined): EthernetRepr | undefined {
  if (link !== undefined || info.linkType !== LinkType.ETHERNET) return link;
  return info.vlan >= 0 ? { dst: info.ethSrc, src: info.ethDst, vlan: info.vlan } : { dst: info.ethSrc, src: info.ethDst };
}

function isUnicast4(a: number): boolean {
  const first = a >>> 24;
  return a !== 0 && first !== 127 && first < 224;
}

// RFC 1812 §4.3.2.7 and RFC 4443 §2.4(e): no ICMP error about an ICMP error (or,
// for IPv6, a Redirect: §2.4(e.2)), a non-first fragment, a link-layer or IP
// broadcast/multicast, or a packet whose source is not a unicast address (IPv6: not
// the unspecified address nor a multicast one, §2.4(e.5)). (Packet Too Big, and
// Parameter Problem code 2, are allowed for IPv6 multicast; pass `type`/`code` to get
// that exception.) Limited broadcast within a subnet is the caller's to know.
export function icmpErrorAllowed(info: PacketInfo, buf: Uint8Array, type = -1, code = -1): boolean {
  // A packet that did not decode cleanly gets no reply: its quote could not be matched
  // to a flow by whoever receives the error.
  if (info.dropReason !== 0 || info.ipVersion === 0 || info.fragmentOffset !== 0) return false;
  const linkMulticast = info.linkType === LinkType.ETHERNET && Math.floor(info.ethDst / 0x100_0000_0000) % 2 === 1;
  if (info.ipVersion === 4) {
    if (info.protocol === IpProtocol.ICMP && (info.icmpType < 0 || isIcmpv4Error(info.icmpType))) return false;
    if (linkMulticast || info.dst4 === 0xffffffff || (info.dst4 >>> 28) === 0xe) return false;
    return isUnicast4(info.src4);
  }
  if (info.protocol === IpProtocol.ICMPV6 && (info.icmpType < 0 || isIcmpv6Error(info.icmpType) || info.icmpType === Icmpv6Type.REDIRECT)) return false;
  const multicastOk = type === Icmpv6Type.PACKET_TOO_BIG || (type === Icmpv6Type.PARAM_PROBLEM && code === 2);
  if (!multicastOk && (linkMulticast || buf[info.dst6Offset] === 0xff)) return false;
  return !isUnspecifiedIpv6(buf, info.src6Offset) && buf[info.src6Offset] !== 0xff;
}

// An ICMPv4 error about the IPv4 packet `info` describes, from `routerAddr`, quoting
// its header and as much data as RFC 1812 allows. Returns the frame's length.
export function emitIcmpv4Error(out: Uint8Array, outOff: number, info: PacketInfo, buf: Uint8Array, type: number, code: number, restOfHeader: number, routerAddr: number, link?: EthernetRepr): number {
  if (info.ipVersion !== 4) throw new RangeError('emitIcmpv4Error: the packet is not IPv4');
  const quoteLength = Math.min(info.ipLength, ICMPV4_MAX_DATAGRAM - IPV4_HEADER_LENGTH - ICMPV4_HEADER_LENGTH);
  const r: PacketRepr = {
    ipv4: { src: routerAddr, dst: info.src4, ttl: 64 },
    icmp: { type, code, restOfHeader },
    payload: buf.subarray(info.l3Offset, info.l3Offset + quoteLength),
  };
  const eth = replyLink(info, link);
  if (eth) r.eth = eth;
  return emitPacket(r, out, outOff);
}

// Destination unreachable, fragmentation needed and DF set, with the next-hop MTU
// (RFC 1191 §4: low 16 bits of the rest of the header).
export function emitIcmpv4FragNeeded(out: Uint8Array, outOff: number, info: PacketInfo, buf: Uint8Array, nextHopMtu: number, routerAddr: number, link?: EthernetRepr): number {
  return emitIcmpv4Error(out, outOff, info, buf, Icmpv4Type.DEST_UNREACHABLE, Icmpv4Unreachable.FRAG_NEEDED, nextHopMtu & 0xffff, routerAddr, link);
}

// Port unreachable: sent by the destination itself, so from the packet's own dst.
export function emitIcmpv4PortUnreachable(out: Uint8Array, outOff: number, info: PacketInfo, buf: Uint8Array, link?: EthernetRepr): number {
  return emitIcmpv4Error(out, outOff, info, buf, Icmpv4Type.DEST_UNREACHABLE, Icmpv4Unreachable.PORT, 0, info.dst4, link);
}

// An ICMPv6 error about the IPv6 packet `info` describes, from `routerAddr` (16 bytes).
export function emitIcmpv6Error(out: Uint8Array, outOff: number, info: PacketInfo, buf: Uint8Array, type: number, code: number, restOfHeader: number, routerAddr: Uint8Array, link?: EthernetRepr): number {
  if (info.ipVersion !== 6) throw new RangeError('emitIcmpv6Error: the packet is not IPv6');
  const quoteLength = Math.min(info.ipLength, ICMPV6_MAX_PACKET - IPV6_HEADER_LENGTH - ICMPV6_HEADER_LENGTH);
  const r: PacketRepr = {
    ipv6: { src: routerAddr, dst: buf.slice(info.src6Offset, info.src6Offset + 16), hopLimit: 64 },
    icmp: { type, code, restOfHeader },
    payload: buf.subarray(info.l3Offset, info.l3Offset + quoteLength),
  };
  const eth = replyLink(info, link);
  if (eth) r.eth = eth;
  return emitPacket(r, out, outOff);
}

// Packet Too Big with the MTU of the next link (RFC 4443 §3.2).
export function emitIcmpv6PacketTooBig(out: Uint8Array, outOff: number, info: PacketInfo, buf: Uint8Array, mtu: number, routerAddr: Uint8Array, link?: EthernetRepr): number {
  return emitIcmpv6Error(out, outOff, info, buf, Icmpv6Type.PACKET_TOO_BIG, 0, mtu >>> 0, routerAddr, link);
}

// Port unreachable (RFC 4443 §3.1 code 4): sent by the destination itself, so from
// the packet's own destination address, as emitIcmpv4PortUnreachable is. The caller
// asks icmpErrorAllowed first.
export function emitIcmpv6PortUnreachable(out: Uint8Array, outOff: number, info: PacketInfo, buf: Uint8Array, link?: EthernetRepr): number {
  if (info.ipVersion !== 6) throw new RangeError('emitIcmpv6PortUnreachable: the packet is not IPv6');
  return emitIcmpv6Error(out, outOff, info, buf, Icmpv6Type.DEST_UNREACHABLE, Icmpv6Unreachable.PORT, 0, buf.slice(info.dst6Offset, info.dst6Offset + 16), link);
}

// A reset answering the TCP segment `info` describes (RFC 9293 §3.10.7.1, RFC 793
// p.36): never for a RST; if the segment had ACK, seq = SEG.ACK and no ACK flag;
// otherwise seq = 0, ACK set, ack = SEG.SEQ + SEG.LEN (SYN and FIN count one).
// Over IPv6 it is sourced from the segment's destination as over IPv4, and never sent
// about a segment to a multicast address or from a multicast or unspecified one
// (Linux tcp_v6_send_reset: ipv6_unicast_destination; RFC 4291 §2.7: a multicast
// address is never a source), which no TCP connection can have.
// Returns the frame's length, or 0 when no reset is due.
export function emitTcpReset(out: Uint8Array, outOff: number, info: PacketInfo, buf: Uint8Array, link?: EthernetRepr): number {
  if (info.protocol !== IpProtocol.TCP || info.payloadOffset < 0 || info.isFragment) return 0;
  const flags = info.tcpFlags;
  if ((flags & TcpFlags.RST) !== 0) return 0;
  if (info.ipVersion === 6 && (buf[info.dst6Offset] === 0xff || buf[info.src6Offset] === 0xff || isUnspecifiedIpv6(buf, info.src6Offset))) return 0;
  let seq = 0;
  let ack = 0;
  let rstFlags = TcpFlags.RST;
  if ((flags & TcpFlags.ACK) !== 0) {
    seq = info.tcpAck;
  } else {
    const segLen = info.payloadLength + ((flags & TcpFlags.SYN) !== 0 ? 1 : 0) + ((flags & TcpFlags.FIN) !== 0 ? 1 : 0);
    ack = (info.tcpSeq + segLen) >>> 0;
    rstFlags |= TcpFlags.ACK;
  }
  const r: PacketRepr = { tcp: { srcPort: info.dstPort, dstPort: info.srcPort, seq, ack, flags: rstFlags, window: 0 } };
  if (info.ipVersion === 4) {
    r.ipv4 = { src: info.dst4, dst: info.src4, ttl: 64, dontFragment: true };
  } else {
    r.ipv6 = { src: buf.slice(info.dst6Offset, info.dst6Offset + 16), dst: buf.slice(info.src6Offset, info.src6Offset + 16), hopLimit: 64 };
  }
  const eth = replyLink(info, link);
  if (eth) r.eth = eth;
  return emitPacket(r, out, outOff);
}
