// In-place NAT66 rewrites of a decoded IPv6 packet with incremental checksums
// (RFC 1624), as Linux nf_nat_ipv6 does (nf_nat_ipv6_manip_pkt, the l4proto
// manip_pkt functions, inet_proto_csum_replace16). The IPv4 twins are in nat.ts; this
// file differs where IPv6 does:
// - no IP header checksum; the address change reaches the upper-layer checksum
//   through the pseudo-header (RFC 8200 §8.1), eight 16-bit words at once;
// - ICMPv6 covers that pseudo-header too (RFC 4443 §2.3), so an address change moves
//   the ICMPv6 checksum of every message, not only an echo's identifier change;
// - UDP's checksum is mandatory (RFC 8200 §8.1): a computed zero goes out as 0xffff.
//   A received zero stays zero, as Linux's __udp_manip_pkt leaves it (do_csum =
//   !!hdr->check): such a datagram only exists on a RFC 6936 zero-checksum tunnel
//   or as bad input, and a rewrite must not make it look checked.
//
// The new address is four big-endian 32-bit words, addr[at..at+3], int32 as the
// conntrack and service tables keep them (a uint32 >= 2^31 in a plain field or a
// non-inlined return would be a boxed heap number; Int32Array slots never are).
//
// l4Partial: the frame carries virtio-net NEEDS_CSUM (CHECKSUM_PARTIAL). The L4
// checksum field then holds the pseudo-header sum the device completes: an address
// change moves that sum, a port or identifier change does not touch it (the device
// sums those bytes). Linux applies the same to ICMPv6 (inet_proto_csum_replace16 with
// pseudohdr = true), and so does this file.
import { get16, set16 } from './bytes.ts';
import { fold, udpWireChecksum } from './checksum.ts';
import { IpProtocol } from './ipv4.ts';
import { Icmpv6Field, Icmpv6Type } from './icmpv6.ts';
import { TcpField } from './tcp.ts';
import { UdpField } from './udp.ts';
import type { PacketInfo } from './decode.ts';

// TCP and UDP put the ports at the same offsets (RFC 9293 §3.1, RFC 768).
const SRC_PORT = TcpField.SRC_PORT;
const DST_PORT = TcpField.DST_PORT;

// RFC 1624 eqn. 3 for many words: the folded sum of ~m + m' over the eight 16-bit
// words of the address at buf[off] being replaced by addr[at..at+3]. Read before the
// bytes are overwritten. At most 16 * 0xffff before the fold: a small integer.
function addressDelta6(buf: Uint8Array, off: number, addr: Int32Array, at: number): number {
  let s = 0;
  for (let k = 0; k < 4; k++) {
    const o = off + 4 * k;
    const w = addr[at + k]!;
    s += (~((buf[o]! << 8) | buf[o + 1]!) & 0xffff) + (~((buf[o + 2]! << 8) | buf[o + 3]!) & 0xffff)
      + ((w >>> 16) & 0xffff) + (w & 0xffff);
  }
  return fold(s);
}

function storeAddress6(buf: Uint8Array, off: number, addr: Int32Array, at: number): void {
  for (let k = 0; k < 4; k++) {
    const o = off + 4 * k;
    const w = addr[at + k]!;
    buf[o] = w >>> 24;
    buf[o + 1] = w >>> 16;
    buf[o + 2] = w >>> 8;
    buf[o + 3] = w;
  }
}

// ~m + m' of one 16-bit field.
function wordDelta(oldValue: number, newValue: number): number {
  return (~oldValue & 0xffff) + (newValue & 0xffff);
}

// HC' = ~(~HC + delta), RFC 1624 eqn. 3: never -0 where a full recompute gives 0.
function applyDelta(hc: number, delta: number): number {
  return ~fold((~hc & 0xffff) + delta) & 0xffff;
}

// The stored pseudo-header sum of a CHECKSUM_PARTIAL field moves by the same delta,
// not complemented (Linux inet_proto_csum_replace16, pseudohdr and CHECKSUM_PARTIAL).
function applyPartialDelta(sum: number, delta: number): number {
  return fold((sum & 0xffff) + delta);
}

function isEcho6(type: number): boolean {
  return type === Icmpv6Type.ECHO_REQUEST || type === Icmpv6Type.ECHO_REPLY;
}

// Rewrite the source address (and port, unless port < 0) of a decoded IPv6 packet;
// for an ICMPv6 echo the port is the echo identifier. A non-first fragment gets the
// address only: its L4 checksum lives in the first fragment. The address is written
// in place, so info.src6Offset stays valid. Does nothing to a packet that is not IPv6.
export function natRewriteSrc6(info: PacketInfo, buf: Uint8Array, addr: Int32Array, at: number, port: number, l4Partial: boolean): void {
  if (info.ipVersion !== 6) return;
  rewrite6(info, buf, info.src6Offset, SRC_PORT, addr, at, port, l4Partial);
  if (port >= 0) {
    if (info.icmpEchoId >= 0) info.icmpEchoId = port;
    else if (info.payloadOffset >= 0 && info.protocol !== IpProtocol.ICMPV6) info.srcPort = port;
  }
}

export function natRewriteDst6(info: PacketInfo, buf: Uint8Array, addr: Int32Array, at: number, port: number, l4Partial: boolean): void {
  if (info.ipVersion !== 6) return;
  rewrite6(info, buf, info.dst6Offset, DST_PORT, addr, at, port, l4Partial);
  if (port >= 0) {
    if (info.icmpEchoId >= 0) info.icmpEchoId = port;
    else if (info.payloadOffset >= 0 && info.protocol !== IpProtocol.ICMPV6) info.dstPort = port;
  }
}

function rewrite6(info: PacketInfo, buf: Uint8Array, addrOff: number, portField: number, addr: Int32Array, at: number, port: number, l4Partial: boolean): void {
  const delta = addressDelta6(buf, addrOff, addr, at);
  storeAddress6(buf, addrOff, addr, at);
  if (info.payloadOffset < 0) return;
  const l4 = info.l4Offset;
  const p = info.protocol;
  if (p === IpProtocol.TCP || p === IpProtocol.UDP) {
    const csAt = l4 + (p === IpProtocol.TCP ? TcpField.CHECKSUM : UdpField.CHECKSUM);
    const cs = get16(buf, csAt);
    const none = p === IpProtocol.UDP && cs === 0 && !l4Partial;
    let d = delta;
    if (port >= 0) {
      const oldPort = get16(buf, l4 + portField);
      set16(buf, l4 + portField, port);
      if (!l4Partial) d += wordDelta(oldPort, port);
    }
    if (none) return;
    if (l4Partial) set16(buf, csAt, applyPartialDelta(cs, d));
    else set16(buf, csAt, p === IpProtocol.UDP ? udpWireChecksum(applyDelta(cs, d)) : applyDelta(cs, d));
  } else if (p === IpProtocol.ICMPV6) {
    const csAt = l4 + Icmpv6Field.CHECKSUM;
    let d = delta;
    if (port >= 0 && info.icmpEchoId >= 0) {
      const oldId = get16(buf, l4 + Icmpv6Field.ECHO_IDENT);
      set16(buf, l4 + Icmpv6Field.ECHO_IDENT, port);
      if (!l4Partial) d += wordDelta(oldId, port);
    }
    const cs = get16(buf, csAt);
    set16(buf, csAt, l4Partial ? applyPartialDelta(cs, d) : applyDelta(cs, d));
  }
  // Other upper layers (ESP, SCTP with its CRC32c, ...) carry no pseudo-header sum.
}

// Rewrite the source (or destination) of the packet quoted in an ICMPv6 error: the
// reverse NAT of an error about a translated flow (RFC 5508 §4.2 applied to IPv6, as
// Linux nf_nat_icmpv6_reply_translation does). Updates the quoted L4 checksum when the
// quote holds it (a quote cut after 8 bytes of TCP does not; one of UDP does), and the
// outer ICMPv6 checksum for every 16-bit word that changed. All rewritten words sit at
// even offsets from the ICMPv6 header (the quote starts 8 bytes in and IPv6 extension
// headers are multiples of 8), as RFC 1624 needs. The outer packet's own addresses are
// natRewriteSrc6/Dst6's job. Does nothing unless info.origL3Offset >= 0 on an IPv6
// packet (an ICMPv6 error whose quote decoded).
export function natRewriteQuotedSrc6(info: PacketInfo, buf: Uint8Array, addr: Int32Array, at: number, port: number): void {
  if (info.ipVersion !== 6 || info.origL3Offset < 0) return;
  rewriteQuoted6(info, buf, info.origSrc6Offset, SRC_PORT, addr, at, port);
  if (port >= 0 && info.origL4Offset >= 0) {
    // A quoted echo carries its identifier in both port fields (decode.ts).
    if (info.origProtocol === IpProtocol.ICMPV6) info.origDstPort = port;
    info.origSrcPort = port;
  }
}

export function natRewriteQuotedDst6(info: PacketInfo, buf: Uint8Array, addr: Int32Array, at: number, port: number): void {
  if (info.ipVersion !== 6 || info.origL3Offset < 0) return;
  rewriteQuoted6(info, buf, info.origDst6Offset, DST_PORT, addr, at, port);
  if (port >= 0 && info.origL4Offset >= 0) {
    if (info.origProtocol === IpProtocol.ICMPV6) info.origSrcPort = port;
    info.origDstPort = port;
  }
}

function rewriteQuoted6(info: PacketInfo, buf: Uint8Array, addrOff: number, portField: number, addr: Int32Array, at: number, port: number): void {
  const icmpAt = info.l4Offset + Icmpv6Field.CHECKSUM;
  const delta = addressDelta6(buf, addrOff, addr, at);
  storeAddress6(buf, addrOff, addr, at);
  // The outer checksum sums the quoted bytes: every changed word goes into it.
  let outer = delta;
  const l4 = info.origL4Offset;
  if (l4 >= 0) {
    const quoteEnd = info.l4Offset + info.l4Length;
    const p = info.origProtocol;
    if (p === IpProtocol.TCP || p === IpProtocol.UDP) {
      const csAt = l4 + (p === IpProtocol.TCP ? TcpField.CHECKSUM : UdpField.CHECKSUM);
      const present = csAt + 2 <= quoteEnd && !(p === IpProtocol.UDP && get16(buf, csAt) === 0);
      let d = delta;
      if (port >= 0) {
        const oldPort = get16(buf, l4 + portField);
        set16(buf, l4 + portField, port);
        const pd = wordDelta(oldPort, port);
        d += pd;
        outer += pd;
      }
      if (present) {
        const oldCs = get16(buf, csAt);
        let cs = applyDelta(oldCs, d);
        if (p === IpProtocol.UDP) cs = udpWireChecksum(cs);
        set16(buf, csAt, cs);
        outer += wordDelta(oldCs, cs);
      }
    } else if (p === IpProtocol.ICMPV6 && l4 + Icmpv6Field.ECHO_IDENT + 2 <= quoteEnd) {
      // A quoted ICMPv6 message: its checksum covers its own pseudo-header (unlike a
      // quoted ICMPv4 one), so the address change reaches it; an echo's identifier
      // plays the port (Linux icmpv6_manip_pkt rewrites it for echoes only).
      let d = delta;
      if (port >= 0 && isEcho6(buf[l4 + Icmpv6Field.TYPE]!)) {
        const oldId = get16(buf, l4 + Icmpv6Field.ECHO_IDENT);
        set16(buf, l4 + Icmpv6Field.ECHO_IDENT, port);
        const pd = wordDelta(oldId, port);
        d += pd;
        outer += pd;
      }
      const csAt = l4 + Icmpv6Field.CHECKSUM;
      const oldCs = get16(buf, csAt);
      const cs = applyDelta(oldCs, d);
      set16(buf, csAt, cs);
      outer += wordDelta(oldCs, cs);
    }
  }
  set16(buf, icmpAt, applyDelta(get16(buf, icmpAt), outer));
}
