// Strict packet descriptions and their emitters (smoltcp's *Repr::emit): the slow
// path that builds frames for tests, ICMP errors, TCP resets and tools. Allocation is
// fine here; the datapath never calls these per packet.
import { set16, set32, set48 } from './bytes.ts';
import { checksum, pseudoHeaderV4, pseudoHeaderV6, udpWireChecksum } from './checksum.ts';
import { ArpField, ARP_LENGTH } from './arp.ts';
import { ETHERNET_HEADER_LENGTH, EthernetField, EtherType, VLAN_TAG_LENGTH } from './ethernet.ts';
import { Icmpv4Field, ICMPV4_HEADER_LENGTH } from './icmpv4.ts';
import { IpProtocol, Ipv4Field, IPV4_HEADER_LENGTH } from './ipv4.ts';
import { Ipv6Field, IPV6_HEADER_LENGTH } from './ipv6.ts';
import { TcpField, TCP_HEADER_LENGTH } from './tcp.ts';
import { UdpField, UDP_HEADER_LENGTH } from './udp.ts';
import { VXLAN_FLAG_I, VXLAN_HEADER_LENGTH, VxlanField } from './vxlan.ts';

export interface EthernetRepr {
  dst: number;
  src: number;
  // An 802.1Q tag with this VLAN ID (0..4095), when present.
  vlan?: number;
}

export interface ArpRepr {
  op: number;
  senderMac: number;
  senderIp: number;
  targetMac: number;
  targetIp: number;
}

export interface Ipv4Repr {
  src: number;
  dst: number;
  ttl?: number;
  ident?: number;
  dontFragment?: boolean;
  dscp?: number;
  // Raw option bytes, a multiple of 4 long (RFC 791 pads to a 32-bit boundary).
  options?: Uint8Array;
  // For a payload other than tcp/udp/icmp (with `payload` on the PacketRepr).
  protocol?: number;
}

export interface Ipv6Repr {
  src: Uint8Array;
  dst: Uint8Array;
  hopLimit?: number;
  trafficClass?: number;
  flowLabel?: number;
  nextHeader?: number;
}

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window?: number;
  // Raw option bytes, a multiple of 4 long.
  options?: Uint8Array;
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
}

// ICMPv4 or ICMPv6, by the IP layer it is under.
export interface IcmpRepr {
  type: number;
  code: number;
  // Bytes 4..7: echo identifier << 16 | sequence, MTU, pointer, or 0.
  restOfHeader?: number;
}

export interface VxlanRepr {
  vni: number;
}

// One frame: optional Ethernet, then ARP or IPv4/IPv6, then at most one of tcp/udp/
// icmp, then `payload` (after VXLAN when `vxlan` is given, which needs `udp`).
// l4Checksum: 'full' (default), 'partial' (the CHECKSUM_PARTIAL pseudo-header sum, as
// a virtio-net NEEDS_CSUM frame carries) or 'none' (UDP over IPv4 only: field 0).
export interface PacketRepr {
  eth?: EthernetRepr;
  arp?: ArpRepr;
  ipv4?: Ipv4Repr;
  ipv6?: Ipv6Repr;
  tcp?: TcpRepr;
  udp?: UdpRepr;
  icmp?: IcmpRepr;
  vxlan?: VxlanRepr;
  payload?: Uint8Array;
  l4Checksum?: 'full' | 'partial' | 'none';
}

function l4HeaderLength(r: PacketRepr): number {
  if (r.tcp) return TCP_HEADER_LENGTH + (r.tcp.options?.length ?? 0);
  if (r.udp) return UDP_HEADER_LENGTH + (r.vxlan ? VXLAN_HEADER_LENGTH : 0);
  if (r.icmp) return ICMPV4_HEADER_LENGTH;
  return 0;
}

export function packetLength(r: PacketRepr): number {
  let n = r.eth ? ETHERNET_HEADER_LENGTH + (r.eth.vlan !== undefined ? VLAN_TAG_LENGTH : 0) : 0;
  if (r.arp) return n + ARP_LENGTH;
  if (r.ipv4) n += IPV4_HEADER_LENGTH + (r.ipv4.options?.length ?? 0);
  else if (r.ipv6) n += IPV6_HEADER_LENGTH;
  return n + l4HeaderLength(r) + (r.payload?.length ?? 0);
}

function check(cond: boolean, what: string): void {
  // A wrong PacketRepr is a programmer error, not bad input: throw.
  if (!cond) throw new RangeError(`PacketRepr: ${what}`);
}

// Write the frame at `off`; returns its length. Throws RangeError when `buf` is too
// short or the description is inconsistent.
export function emitPacket(r: PacketRepr, buf: Uint8Array, off: number): number {
  const total = packetLength(r);
  check(off >= 0 && off + total <= buf.length, `needs ${total} bytes at offset ${off}, buffer has ${buf.length}`);
  check(!(r.ipv4 && r.ipv6) && !(r.arp && (r.ipv4 || r.ipv6)), 'one network layer only');
  check([r.tcp, r.udp, r.icmp].filter(Boolean).length <= 1, 'one transport layer only');
  check(!r.vxlan || r.udp !== undefined, 'vxlan needs udp');
  check(!(r.tcp || r.udp || r.icmp) || r.ipv4 !== undefined || r.ipv6 !== undefined, 'transport needs ipv4 or ipv6');
  check(r.l4Checksum !== 'none' || (r.udp !== undefined && r.ipv4 !== undefined), "l4Checksum 'none' is for UDP over IPv4");
  buf.fill(0, off, off + total);
  let at = off;
  if (r.eth) {
    set48(buf, at + EthernetField.DST, r.eth.dst);
    set48(buf, at + EthernetField.SRC, r.eth.src);
    let typeAt = at + EthernetField.ETHERTYPE;
    if (r.eth.vlan !== undefined) {
      set16(buf, typeAt, EtherType.VLAN);
      set16(buf, at + EthernetField.VLAN_TCI, r.eth.vlan & 0x0fff);
      typeAt = at + EthernetField.VLAN_ETHERTYPE;
    }
    set16(buf, typeAt, r.arp ? EtherType.ARP : r.ipv6 ? EtherType.IPV6 : EtherType.IPV4);
    at = typeAt + 2;
  }
  if (r.arp) {
    set16(buf, at + ArpField.HTYPE, 1);
    set16(buf, at + ArpField.PTYPE, EtherType.IPV4);
    buf[at + ArpField.HLEN] = 6;
    buf[at + ArpField.PLEN] = 4;
    set16(buf, at + ArpField.OPER, r.arp.op);
    set48(buf, at + ArpField.SHA, r.arp.senderMac);
    set32(buf, at + ArpField.SPA, r.arp.senderIp);
    set48(buf, at + ArpField.THA, r.arp.targetMac);
    set32(buf, at + ArpField.TPA, r.arp.targetIp);
    return total;
  }
  const protocol = r.tcp ? IpProtocol.TCP : r.udp ? IpProtocol.UDP
    : r.icmp ? (r.ipv6 ? IpProtocol.ICMPV6 : IpProtocol.ICMP) : (r.ipv4?.protocol ?? r.ipv6?.nextHeader ?? IpProtocol.IPV6_NO_NEXT);
  const l4Length = l4HeaderLength(r) + (r.payload?.length ?? 0);
  let pseudo = 0;
  if (r.ipv4) {
    const ip = r.ipv4;
    const hl = IPV4_HEADER_LENGTH + (ip.options?.length ?? 0);
    check(hl % 4 === 0 && hl <= 60, 'IPv4 options must be a multiple of 4 bytes, at most 40');
    buf[at + Ipv4Field.VER_IHL] = 0x40 | (hl >>> 2);
    buf[at + Ipv4Field.DSCP_ECN] = (ip.dscp ?? 0) << 2;
    set16(buf, at + Ipv4Field.LENGTH, hl + l4Length);
    set16(buf, at + Ipv4Field.IDENT, ip.ident ?? 0);
    set16(buf, at + Ipv4Field.FLG_OFF, ip.dontFragment ? 0x4000 : 0);
    buf[at + Ipv4Field.TTL] = ip.ttl ?? 64;
    buf[at + Ipv4Field.PROTOCOL] = protocol;
    set32(buf, at + Ipv4Field.SRC, ip.src);
    set32(buf, at + Ipv4Field.DST, ip.dst);
    if (ip.options) buf.set(ip.options, at + Ipv4Field.OPTIONS);
    set16(buf, at + Ipv4Field.CHECKSUM, checksum(buf, at, hl));
    pseudo = pseudoHeaderV4(ip.src, ip.dst, protocol, l4Length);
    at += hl;
  } else if (r.ipv6) {
    const ip = r.ipv6;
    set32(buf, at + Ipv6Field.VER_TC_FLOW, ((6 << 28) | ((ip.trafficClass ?? 0) << 20) | ((ip.flowLabel ?? 0) & 0xfffff)) >>> 0);
    set16(buf, at + Ipv6Field.LENGTH, l4Length);
    buf[at + Ipv6Field.NXT_HDR] = protocol;
    buf[at + Ipv6Field.HOP_LIMIT] = ip.hopLimit ?? 64;
    buf.set(ip.src.subarray(0, 16), at + Ipv6Field.SRC);
    buf.set(ip.dst.subarray(0, 16), at + Ipv6Field.DST);
    pseudo = pseudoHeaderV6(buf, at + Ipv6Field.SRC, at + Ipv6Field.DST, protocol, l4Length);
    at += IPV6_HEADER_LENGTH;
  }
  const l4 = at;
  let csumAt = -1;
  if (r.tcp) {
    const t = r.tcp;
    const hl = TCP_HEADER_LENGTH + (t.options?.length ?? 0);
    check(hl % 4 === 0 && hl <= 60, 'TCP options must be a multiple of 4 bytes, at most 40');
    set16(buf, at + TcpField.SRC_PORT, t.srcPort);
    set16(buf, at + TcpField.DST_PORT, t.dstPort);
    set32(buf, at + TcpField.SEQ_NUM, t.seq);
    set32(buf, at + TcpField.ACK_NUM, t.ack);
    buf[at + TcpField.DATA_OFF] = (hl >>> 2) << 4;
    buf[at + TcpField.FLAGS] = t.flags;
    set16(buf, at + TcpField.WIN_SIZE, t.window ?? 0xffff);
    if (t.options) buf.set(t.options, at + TcpField.OPTIONS);
    csumAt = at + TcpField.CHECKSUM;
    at += hl;
  } else if (r.udp) {
    set16(buf, at + UdpField.SRC_PORT, r.udp.srcPort);
    set16(buf, at + UdpField.DST_PORT, r.udp.dstPort);
    set16(buf, at + UdpField.LENGTH, l4Length);
    csumAt = at + UdpField.CHECKSUM;
    at += UDP_HEADER_LENGTH;
    if (r.vxlan) {
      set32(buf, at + VxlanField.FLAGS, VXLAN_FLAG_I << 24);
      set32(buf, at + VxlanField.VNI, (r.vxlan.vni << 8) >>> 0);
      at += VXLAN_HEADER_LENGTH;
    }
  } else if (r.icmp) {
    // ICMPv6 (RFC 4443 §2.1) lays out type, code, checksum and the 32-bit rest as ICMPv4 does.
    buf[at + Icmpv4Field.TYPE] = r.icmp.type;
    buf[at + Icmpv4Field.CODE] = r.icmp.code;
    set32(buf, at + Icmpv4Field.ECHO_IDENT, r.icmp.restOfHeader ?? 0);
    csumAt = at + Icmpv4Field.CHECKSUM;
    at += ICMPV4_HEADER_LENGTH;
  }
  if (r.payload) buf.set(r.payload, at);
  if (csumAt >= 0) {
    const withPseudo = !(r.icmp && r.ipv4);
    const mode = r.l4Checksum ?? 'full';
    let c: number;
    if (mode === 'none') c = 0;
    else if (mode === 'partial' && !r.icmp) c = pseudo;
    else c = checksum(buf, l4, l4Length, withPseudo ? pseudo : 0);
    if (r.udp && mode === 'full') c = udpWireChecksum(c);
    set16(buf, csumAt, c);
  }
  return total;
}

export function buildPacket(r: PacketRepr): Uint8Array {
  const buf = new Uint8Array(packetLength(r));
  emitPacket(r, buf, 0);
  return buf;
}
