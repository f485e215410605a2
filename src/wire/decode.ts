// One pass over a frame into a reused, all-numeric PacketInfo: the datapath's parsed
// packet (Tailscale net/packet.Parsed, wireguard-go style). decodeFrame never throws
// and never allocates; a frame it cannot use gets a DropReason code, never an
// exception. Fields decoded before the failure stay valid (pcap prints them).
import { get16, load32, load48 } from './bytes.ts';
import { DropReason } from './drop-reason.ts';
import { EthernetField, EthernetFrame, EtherType } from './ethernet.ts';
import { ArpField, ArpPacket } from './arp.ts';
import { Ipv4Field, Ipv4Packet, IpProtocol } from './ipv4.ts';
import { Ipv6Packet } from './ipv6.ts';
import { TcpField, TcpSegment } from './tcp.ts';
import { UdpDatagram, UdpField } from './udp.ts';
import { Icmpv4Field, Icmpv4Packet, isIcmpv4Error } from './icmpv4.ts';
import { Icmpv6Packet, isIcmpv6Error } from './icmpv6.ts';
import { VxlanHeader, VXLAN_PORT } from './vxlan.ts';

// pcap LINKTYPE_ values, so a capture's link type passes straight through.
export const LinkType = {
  ETHERNET: 1,
  RAW_IP: 101,
} as const;

// RFC 792 asks for the header plus 64 bits of the original datagram; RFC 4443 for
// as much as fits. 8 bytes hold the ports of TCP/UDP and the echo identifier.
const QUOTED_L4_MIN = 8;

// Slots of PacketInfo.wide: every field that may leave the small-integer range.
const W_ETH_DST = 0;
const W_ETH_SRC = 1;
const W_ARP_SENDER_IP = 2;
const W_ARP_TARGET_IP = 3;
const W_SRC4 = 4;
const W_DST4 = 5;
const W_TCP_SEQ = 6;
const W_TCP_ACK = 7;
const W_ORIG_SRC4 = 8;
const W_ORIG_DST4 = 9;
const WIDE_COUNT = 10;

export class PacketInfo {
  // uint32 addresses, sequence numbers and 48-bit MACs, read through the accessors
  // below. A Float64Array because V8 may box such numbers in plain fields or on a
  // non-inlined return (bytes.ts, load32); typed-array slots never allocate.
  readonly wide = new Float64Array(WIDE_COUNT);

  dropReason: number = DropReason.OK;
  linkType = 0;
  frameOffset = 0;
  frameLength = 0;

  // Ethernet (0 / -1 on raw IP). MACs are 48-bit numbers.
  get ethDst(): number { return this.wide[W_ETH_DST]!; }
  set ethDst(v: number) { this.wide[W_ETH_DST] = v; }
  get ethSrc(): number { return this.wide[W_ETH_SRC]!; }
  set ethSrc(v: number) { this.wide[W_ETH_SRC] = v; }
  // The payload's ethertype (after an 802.1Q tag); on raw IP, 0x0800 or 0x86dd by version.
  ethertype = 0;
  vlan = -1;

  // ARP (Ethernet/IPv4).
  arpOp = 0;
  get arpSenderIp(): number { return this.wide[W_ARP_SENDER_IP]!; }
  set arpSenderIp(v: number) { this.wide[W_ARP_SENDER_IP] = v; }
  get arpTargetIp(): number { return this.wide[W_ARP_TARGET_IP]!; }
  set arpTargetIp(v: number) { this.wide[W_ARP_TARGET_IP] = v; }

  // IP. l3Offset is absolute in the buffer; ipHeaderLength counts IPv6 extension
  // headers; ipLength is the whole IP packet (total length / 40 + payload length).
  l3Offset = -1;
  ipVersion = 0;
  ipHeaderLength = 0;
  ipLength = 0;
  ttl = 0;
  // IPv4 protocol, or IPv6's upper-layer protocol after the extension headers.
  protocol = -1;
  get src4(): number { return this.wide[W_SRC4]!; }
  set src4(v: number) { this.wide[W_SRC4] = v; }
  get dst4(): number { return this.wide[W_DST4]!; }
  set dst4(v: number) { this.wide[W_DST4] = v; }
  src6Offset = -1;
  dst6Offset = -1;
  isFragment = false;
  // In bytes. Non-zero: a later fragment, with no L4 header (l4Offset = -1).
  fragmentOffset = 0;

  // L4. payloadOffset >= 0 means the TCP/UDP/ICMP header decoded.
  l4Offset = -1;
  l4Length = 0;
  srcPort = 0;
  dstPort = 0;
  tcpFlags = 0;
  get tcpSeq(): number { return this.wide[W_TCP_SEQ]!; }
  set tcpSeq(v: number) { this.wide[W_TCP_SEQ] = v; }
  get tcpAck(): number { return this.wide[W_TCP_ACK]!; }
  set tcpAck(v: number) { this.wide[W_TCP_ACK] = v; }
  icmpType = -1;
  icmpCode = -1;
  // Echo request/reply identifier (conntrack's "port" for ICMP), else -1.
  icmpEchoId = -1;
  payloadOffset = -1;
  payloadLength = 0;

  // VXLAN, recognised on UDP destination port 4789 with the I flag set; the inner
  // Ethernet frame is left for a second decodeFrame call.
  vni = -1;
  innerOffset = -1;
  innerLength = 0;

  // The original datagram quoted by an ICMP/ICMPv6 error (for reverse NAT).
  origL3Offset = -1;
  origProtocol = -1;
  get origSrc4(): number { return this.wide[W_ORIG_SRC4]!; }
  set origSrc4(v: number) { this.wide[W_ORIG_SRC4] = v; }
  get origDst4(): number { return this.wide[W_ORIG_DST4]!; }
  set origDst4(v: number) { this.wide[W_ORIG_DST4] = v; }
  origSrc6Offset = -1;
  origDst6Offset = -1;
  origL4Offset = -1;
  origSrcPort = 0;
  origDstPort = 0;

  reset(): void {
    this.dropReason = DropReason.OK;
    this.linkType = 0; this.frameOffset = 0; this.frameLength = 0;
    const w = this.wide; // plain stores: fill() is a builtin call per frame
    w[0] = 0; w[1] = 0; w[2] = 0; w[3] = 0; w[4] = 0; w[5] = 0; w[6] = 0; w[7] = 0; w[8] = 0; w[9] = 0;
    this.ethertype = 0; this.vlan = -1;
    this.arpOp = 0;
    this.l3Offset = -1; this.ipVersion = 0; this.ipHeaderLength = 0; this.ipLength = 0; this.ttl = 0;
    this.protocol = -1; this.src6Offset = -1; this.dst6Offset = -1;
    this.isFragment = false; this.fragmentOffset = 0;
    this.l4Offset = -1; this.l4Length = 0; this.srcPort = 0; this.dstPort = 0;
    this.tcpFlags = 0;
    this.icmpType = -1; this.icmpCode = -1; this.icmpEchoId = -1;
    this.payloadOffset = -1; this.payloadLength = 0;
    this.vni = -1; this.innerOffset = -1; this.innerLength = 0;
    this.origL3Offset = -1; this.origProtocol = -1;
    this.origSrc6Offset = -1; this.origDst6Offset = -1; this.origL4Offset = -1;
    this.origSrcPort = 0; this.origDstPort = 0;
  }
}

// Views owned by the decoder, re-pointed per frame. decodeFrame runs to completion
// synchronously, so one set per thread is enough.
const eth = new EthernetFrame();
const arp = new ArpPacket();
const ip4 = new Ipv4Packet();
const ip6 = new Ipv6Packet();
const tcp = new TcpSegment();
const udp = new UdpDatagram();
const icmp4 = new Icmpv4Packet();
const icmp6 = new Icmpv6Packet();
const vxlan = new VxlanHeader();
const orig4 = new Ipv4Packet();
const orig6 = new Ipv6Packet();

// Returns info.dropReason (0 = ok).
export function decodeFrame(info: PacketInfo, buf: Uint8Array, off: number, len: number, linkType: number): number {
  info.reset();
  info.linkType = linkType;
  info.frameOffset = off;
  info.frameLength = len;
  if (off < 0 || len < 0 || off + len > buf.length) return (info.dropReason = linkType === LinkType.ETHERNET ? DropReason.TRUNCATED_ETHERNET : DropReason.TRUNCATED_IPV4);
  if (linkType === LinkType.ETHERNET) {
    if (!eth.wrap(buf, off, len)) return (info.dropReason = eth.reason);
    load48(info.wide, W_ETH_DST, buf, off + EthernetField.DST);
    load48(info.wide, W_ETH_SRC, buf, off + EthernetField.SRC);
    info.vlan = eth.vlanId;
    const type = eth.ethertype;
    info.ethertype = type;
    const at = eth.payloadOffset;
    const n = eth.payloadLength;
    if (type === EtherType.IPV4) return decodeIpv4(info, buf, at, n);
    if (type === EtherType.IPV6) return decodeIpv6(info, buf, at, n);
    if (type === EtherType.ARP) return decodeArp(info, buf, at, n);
    return (info.dropReason = DropReason.UNSUPPORTED_ETHERTYPE);
  }
  if (linkType === LinkType.RAW_IP) {
    if (len < 1) return (info.dropReason = DropReason.TRUNCATED_IPV4);
    const version = buf[off]! >>> 4;
    if (version === 4) { info.ethertype = EtherType.IPV4; return decodeIpv4(info, buf, off, len); }
    if (version === 6) { info.ethertype = EtherType.IPV6; return decodeIpv6(info, buf, off, len); }
    return (info.dropReason = DropReason.BAD_IP_VERSION);
  }
  return (info.dropReason = DropReason.UNSUPPORTED_LINK_TYPE);
}

function decodeArp(info: PacketInfo, buf: Uint8Array, off: number, len: number): number {
  if (!arp.wrap(buf, off, len)) return (info.dropReason = arp.reason);
  info.l3Offset = off;
  info.arpOp = arp.op;
  load32(info.wide, W_ARP_SENDER_IP, buf, off + ArpField.SPA);
  load32(info.wide, W_ARP_TARGET_IP, buf, off + ArpField.TPA);
  return DropReason.OK;
}

function decodeIpv4(info: PacketInfo, buf: Uint8Array, off: number, len: number): number {
  if (!ip4.wrap(buf, off, len)) return (info.dropReason = ip4.reason);
  info.l3Offset = off;
  info.ipVersion = 4;
  const hl = ip4.headerLength;
  info.ipHeaderLength = hl;
  info.ipLength = ip4.len;
  info.ttl = ip4.ttl;
  info.protocol = ip4.protocol;
  load32(info.wide, W_SRC4, buf, off + Ipv4Field.SRC);
  load32(info.wide, W_DST4, buf, off + Ipv4Field.DST);
  info.isFragment = ip4.isFragment;
  info.fragmentOffset = ip4.fragmentOffset;
  if (info.fragmentOffset !== 0) return DropReason.OK;
  info.l4Offset = off + hl;
  info.l4Length = ip4.len - hl;
  return decodeL4(info, buf, 4);
}

function decodeIpv6(info: PacketInfo, buf: Uint8Array, off: number, len: number): number {
  if (!ip6.wrap(buf, off, len)) return (info.dropReason = ip6.reason);
  info.l3Offset = off;
  info.ipVersion = 6;
  info.ipHeaderLength = ip6.upperOffset - off;
  info.ipLength = ip6.len;
  info.ttl = ip6.hopLimit;
  info.protocol = ip6.upperProtocol;
  info.src6Offset = ip6.srcOffset;
  info.dst6Offset = ip6.dstOffset;
  info.isFragment = ip6.isFragment;
  info.fragmentOffset = ip6.fragmentOffset;
  if (info.fragmentOffset !== 0) return DropReason.OK;
  info.l4Offset = ip6.upperOffset;
  info.l4Length = ip6.upperLength;
  return decodeL4(info, buf, 6);
}

// The L4 header at info.l4Offset. A first fragment's UDP length field describes the
// whole datagram, so only the header is checked there.
function decodeL4(info: PacketInfo, buf: Uint8Array, version: number): number {
  const p = info.protocol;
  const at = info.l4Offset;
  const n = info.l4Length;
  if (p === IpProtocol.TCP) {
    if (!tcp.wrap(buf, at, n)) return (info.dropReason = tcp.reason);
    info.srcPort = tcp.srcPort;
    info.dstPort = tcp.dstPort;
    info.tcpFlags = tcp.flags;
    load32(info.wide, W_TCP_SEQ, buf, at + TcpField.SEQ_NUM);
    load32(info.wide, W_TCP_ACK, buf, at + TcpField.ACK_NUM);
    info.payloadOffset = tcp.payloadOffset;
    info.payloadLength = tcp.payloadLength;
    return DropReason.OK;
  }
  if (p === IpProtocol.UDP) {
    if (info.isFragment) {
      if (!udp.wrapHeader(buf, at, n)) return (info.dropReason = udp.reason);
    } else {
      if (!udp.wrap(buf, at, n)) return (info.dropReason = udp.reason);
      info.l4Length = udp.len;
    }
    info.srcPort = udp.srcPort;
    info.dstPort = udp.dstPort;
    info.payloadOffset = udp.payloadOffset;
    info.payloadLength = info.isFragment ? n - 8 : udp.payloadLength;
    if (info.dstPort === VXLAN_PORT && !info.isFragment && vxlan.wrap(buf, info.payloadOffset, info.payloadLength)) {
      info.vni = vxlan.vni;
      info.innerOffset = vxlan.innerOffset;
      info.innerLength = vxlan.innerLength;
    }
    return DropReason.OK;
  }
  if (p === IpProtocol.ICMP && version === 4) {
    if (!icmp4.wrap(buf, at, n)) return (info.dropReason = icmp4.reason);
    const type = icmp4.type;
    info.icmpType = type;
    info.icmpCode = icmp4.code;
    info.payloadOffset = icmp4.dataOffset;
    info.payloadLength = icmp4.dataLength;
    if (icmp4.isEcho) info.icmpEchoId = icmp4.echoIdent;
    else if (isIcmpv4Error(type)) return decodeQuoted4(info, buf);
    return DropReason.OK;
  }
  if (p === IpProtocol.ICMPV6 && version === 6) {
    if (!icmp6.wrap(buf, at, n)) return (info.dropReason = icmp6.reason);
    const type = icmp6.type;
    info.icmpType = type;
    info.icmpCode = icmp6.code;
    info.payloadOffset = icmp6.dataOffset;
    info.payloadLength = icmp6.dataLength;
    if (icmp6.isEcho) info.icmpEchoId = icmp6.echoIdent;
    else if (isIcmpv6Error(type)) return decodeQuoted6(info, buf);
    return DropReason.OK;
  }
  // Other protocols (ESP, GRE, SCTP, ...) pass with no ports; policy is the caller's.
  return DropReason.OK;
}

function decodeQuoted4(info: PacketInfo, buf: Uint8Array): number {
  if (!icmp4.embedded(orig4)) return (info.dropReason = DropReason.BAD_ICMP_EMBEDDED);
  info.origL3Offset = orig4.off;
  info.origProtocol = orig4.protocol;
  load32(info.wide, W_ORIG_SRC4, buf, orig4.off + Ipv4Field.SRC);
  load32(info.wide, W_ORIG_DST4, buf, orig4.off + Ipv4Field.DST);
  if (orig4.fragmentOffset !== 0) return DropReason.OK;
  return decodeQuotedPorts(info, buf, orig4.payloadOffset, orig4.off + orig4.len - orig4.payloadOffset, IpProtocol.ICMP);
}

function decodeQuoted6(info: PacketInfo, buf: Uint8Array): number {
  if (!icmp6.embedded(orig6)) return (info.dropReason = DropReason.BAD_ICMP_EMBEDDED);
  info.origL3Offset = orig6.off;
  info.origProtocol = orig6.upperProtocol;
  info.origSrc6Offset = orig6.srcOffset;
  info.origDst6Offset = orig6.dstOffset;
  if (orig6.fragmentOffset !== 0) return DropReason.OK;
  return decodeQuotedPorts(info, buf, orig6.upperOffset, orig6.upperLength, IpProtocol.ICMPV6);
}

// Ports (or the echo identifier, in both port fields) of the quoted datagram.
function decodeQuotedPorts(info: PacketInfo, buf: Uint8Array, at: number, quoted: number, icmpProtocol: number): number {
  const p = info.origProtocol;
  if (p !== IpProtocol.TCP && p !== IpProtocol.UDP && p !== icmpProtocol) return DropReason.OK;
  if (quoted < QUOTED_L4_MIN) return (info.dropReason = DropReason.BAD_ICMP_EMBEDDED);
  info.origL4Offset = at;
  if (p === icmpProtocol) {
    // ICMPv4 and ICMPv6 echoes carry the identifier at the same offset.
    info.origSrcPort = info.origDstPort = get16(buf, at + Icmpv4Field.ECHO_IDENT);
  } else {
    // TCP and UDP put the ports at the same offsets.
    info.origSrcPort = get16(buf, at + UdpField.SRC_PORT);
    info.origDstPort = get16(buf, at + UdpField.DST_PORT);
  }
  return DropReason.OK;
}
