// In-place IPv4 NAT rewrites of a decoded packet with incremental checksums (RFC 1624),
// as Linux nf_nat does (l4proto manip_pkt + inet_proto_csum_replace*). Each rewrite
// also updates the PacketInfo so later stages see the translated tuple.
//
// l4Partial: the frame carries virtio-net NEEDS_CSUM (CHECKSUM_PARTIAL). The TCP/UDP
// field then holds the pseudo-header sum the device will complete: an address change
// moves that sum, a port change does not touch it (ports are summed by the device),
// and UDP's "0 = no checksum" does not apply.
import { get16, get32, set16, set32 } from './bytes.ts';
import { updateChecksum16, updateChecksum32, updatePartialSum32, udpWireChecksum } from './checksum.ts';
import { IpProtocol, Ipv4Field } from './ipv4.ts';
import { Icmpv4Field } from './icmpv4.ts';
import { TcpField } from './tcp.ts';
import { UdpField } from './udp.ts';
import type { PacketInfo } from './decode.ts';

// TCP and UDP put the ports at the same offsets (RFC 9293 §3.1, RFC 768).
const SRC_PORT = TcpField.SRC_PORT;
const DST_PORT = TcpField.DST_PORT;

// Where the L4 checksum of a TCP or UDP header sits.
function l4ChecksumAt(l4: number, protocol: number): number {
  return l4 + (protocol === IpProtocol.TCP ? TcpField.CHECKSUM : UdpField.CHECKSUM);
}

// Rewrite the source address (and port, unless port < 0) of an IPv4 TCP/UDP packet;
// for an ICMP echo the port is the echo identifier. Non-first fragments get the
// address only: their L4 checksum lives in the first fragment.
export function natRewriteSrc4(info: PacketInfo, buf: Uint8Array, addr: number, port: number, l4Partial: boolean): void {
  rewrite4(info, buf, Ipv4Field.SRC, SRC_PORT, addr, port, l4Partial);
  info.src4 = addr;
  if (port >= 0) {
    if (info.icmpEchoId >= 0) info.icmpEchoId = port;
    else if (info.payloadOffset >= 0) info.srcPort = port;
  }
}

export function natRewriteDst4(info: PacketInfo, buf: Uint8Array, addr: number, port: number, l4Partial: boolean): void {
  rewrite4(info, buf, Ipv4Field.DST, DST_PORT, addr, port, l4Partial);
  info.dst4 = addr;
  if (port >= 0) {
    if (info.icmpEchoId >= 0) info.icmpEchoId = port;
    else if (info.payloadOffset >= 0) info.dstPort = port;
  }
}

function rewrite4(info: PacketInfo, buf: Uint8Array, addrField: number, portField: number, addr: number, port: number, l4Partial: boolean): void {
  const l3 = info.l3Offset;
  const oldAddr = get32(buf, l3 + addrField);
  set16(buf, l3 + Ipv4Field.CHECKSUM, updateChecksum32(get16(buf, l3 + Ipv4Field.CHECKSUM), oldAddr, addr));
  set32(buf, l3 + addrField, addr);
  if (info.payloadOffset < 0) return;
  const l4 = info.l4Offset;
  const p = info.protocol;
  if (p === IpProtocol.TCP || p === IpProtocol.UDP) {
    const at = l4ChecksumAt(l4, p);
    let cs = get16(buf, at);
    // RFC 768: a zero UDP checksum over IPv4 means none was sent; it must stay zero.
    const none = p === IpProtocol.UDP && cs === 0 && !l4Partial;
    if (l4Partial) cs = updatePartialSum32(cs, oldAddr, addr);
    else if (!none) cs = updateChecksum32(cs, oldAddr, addr);
    if (port >= 0) {
      const oldPort = get16(buf, l4 + portField);
      if (!none && !l4Partial) cs = updateChecksum16(cs, oldPort, port);
      set16(buf, l4 + portField, port);
    }
    if (!none) set16(buf, at, p === IpProtocol.UDP && !l4Partial ? udpWireChecksum(cs) : cs);
  } else if (p === IpProtocol.ICMP && port >= 0 && info.icmpEchoId >= 0) {
    // ICMPv4 has no pseudo-header: only the identifier change reaches its checksum.
    const old = get16(buf, l4 + Icmpv4Field.ECHO_IDENT);
    set16(buf, l4 + Icmpv4Field.ECHO_IDENT, port);
    set16(buf, l4 + Icmpv4Field.CHECKSUM, updateChecksum16(get16(buf, l4 + Icmpv4Field.CHECKSUM), old, port));
  }
}

// Rewrite the source (or destination) of the datagram quoted in an ICMPv4 error: the
// reverse NAT of an error about a translated flow (RFC 5508 §4.2; Linux
// nf_nat_icmp_reply_translation). Updates the quoted IP header checksum, the quoted
// L4 checksum when the quote holds it (an 8-byte quote of TCP does not), and the
// ICMP checksum for every 16-bit word that changed. All rewritten words sit at even
// offsets from the ICMP header, as RFC 1624 needs. Does nothing unless
// info.origL3Offset >= 0 (an IPv4 ICMP error that decoded).
export function natRewriteQuotedSrc4(info: PacketInfo, buf: Uint8Array, addr: number, port: number): void {
  if (!rewriteQuoted4(info, buf, Ipv4Field.SRC, SRC_PORT, addr, port)) return;
  info.origSrc4 = addr;
  if (port >= 0 && info.origL4Offset >= 0) {
    if (info.origProtocol === IpProtocol.ICMP) info.origDstPort = port;
    info.origSrcPort = port;
  }
}

export function natRewriteQuotedDst4(info: PacketInfo, buf: Uint8Array, addr: number, port: number): void {
  if (!rewriteQuoted4(info, buf, Ipv4Field.DST, DST_PORT, addr, port)) return;
  info.origDst4 = addr;
  if (port >= 0 && info.origL4Offset >= 0) {
    if (info.origProtocol === IpProtocol.ICMP) info.origSrcPort = port;
    info.origDstPort = port;
  }
}

function rewriteQuoted4(info: PacketInfo, buf: Uint8Array, addrField: number, portField: number, addr: number, port: number): boolean {
  if (info.ipVersion !== 4 || info.origL3Offset < 0) return false;
  const icmpAt = info.l4Offset + Icmpv4Field.CHECKSUM;
  let icmpCs = get16(buf, icmpAt);
  const q = info.origL3Offset;
  const oldAddr = get32(buf, q + addrField);
  const oldIpCs = get16(buf, q + Ipv4Field.CHECKSUM);
  const newIpCs = updateChecksum32(oldIpCs, oldAddr, addr);
  set32(buf, q + addrField, addr);
  set16(buf, q + Ipv4Field.CHECKSUM, newIpCs);
  icmpCs = updateChecksum16(updateChecksum32(icmpCs, oldAddr, addr), oldIpCs, newIpCs);
  const l4 = info.origL4Offset;
  if (l4 >= 0) {
    const quoteEnd = info.l4Offset + info.l4Length;
    const p = info.origProtocol;
    if (p === IpProtocol.TCP || p === IpProtocol.UDP) {
      const at = l4ChecksumAt(l4, p);
      const present = at + 2 <= quoteEnd && !(p === IpProtocol.UDP && get16(buf, at) === 0);
      const oldCs = present ? get16(buf, at) : 0;
      let cs = present ? updateChecksum32(oldCs, oldAddr, addr) : 0;
      if (port >= 0) {
        const oldPort = get16(buf, l4 + portField);
        set16(buf, l4 + portField, port);
        icmpCs = updateChecksum16(icmpCs, oldPort, port);
        if (present) cs = updateChecksum16(cs, oldPort, port);
      }
      if (present) {
        if (p === IpProtocol.UDP) cs = udpWireChecksum(cs);
        set16(buf, at, cs);
        icmpCs = updateChecksum16(icmpCs, oldCs, cs);
      }
    } else if (p === IpProtocol.ICMP && port >= 0) {
      // A quoted echo: its identifier plays the port, its own checksum covers it.
      const oldId = get16(buf, l4 + Icmpv4Field.ECHO_IDENT);
      set16(buf, l4 + Icmpv4Field.ECHO_IDENT, port);
      icmpCs = updateChecksum16(icmpCs, oldId, port);
      if (l4 + Icmpv4Field.CHECKSUM + 2 <= quoteEnd) {
        const oldCs = get16(buf, l4 + Icmpv4Field.CHECKSUM);
        const cs = updateChecksum16(oldCs, oldId, port);
        set16(buf, l4 + Icmpv4Field.CHECKSUM, cs);
        icmpCs = updateChecksum16(icmpCs, oldCs, cs);
      }
    }
  }
  set16(buf, icmpAt, icmpCs);
  return true;
}
