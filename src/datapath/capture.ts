// `tapir capture`: copies the frames that pass one port into a pcap file while the
// agent runs. Pod ports are Ethernet, the host port raw IP; the underlay socket only
// sees UDP payloads (VXLAN), so outer Ethernet/IPv4/UDP headers (Ethernet/IPv6/UDP over
// an IPv6 underlay) are rebuilt around each datagram from the addresses the socket
// reported, and Wireshark decodes the VXLAN.
import {
  EthernetFrame, EtherType, IpProtocol, Ipv4Field, Ipv4Packet, Ipv6Field, UdpField, checksum, pseudoHeaderV6, set16,
  ETHERNET_HEADER_LENGTH as ETH, IPV4_HEADER_LENGTH, IPV6_HEADER_LENGTH, UDP_HEADER_LENGTH, VXLAN_PORT,
} from '../wire/index.ts';
import { PcapWriter } from '../pcap/index.ts';

const OUTER = ETH + IPV4_HEADER_LENGTH + UDP_HEADER_LENGTH;
const UDP = ETH + IPV4_HEADER_LENGTH;
// Placeholder MACs for the rebuilt outer Ethernet header (locally administered).
const OUTER_SRC_MAC = 0x02_00_00_00_00_01;
const OUTER_DST_MAC = 0x02_00_00_00_00_02;

export class PortCapture {
  readonly writer: PcapWriter;
  readonly #scratch: Buffer | null;
  #sec = 0;
  #nsec = 0;
  #ident = 0;

  constructor(writer: PcapWriter, underlay: boolean) {
    this.writer = writer;
    this.#scratch = underlay ? Buffer.alloc(ETH + IPV6_HEADER_LENGTH + UDP_HEADER_LENGTH + 65536) : null;
  }

  /** One clock reading per batch: frames of a batch share a timestamp. */
  stamp(nowMs: number): void {
    this.#sec = Math.floor(nowMs / 1000);
    this.#nsec = (nowMs % 1000) * 1_000_000;
  }

  frame(b: Uint8Array, off: number, len: number): void {
    this.writer.writeFrameAt(b, off, len, this.#sec, this.#nsec);
  }

  /** A VXLAN datagram (or a GSO/GRO train of `segment`-byte datagrams) with its outer addresses. */
  datagrams(b: Buffer, off: number, len: number, segment: number, src: number, dst: number): void {
    const step = segment > 0 ? segment : len;
    for (let at = off; at < off + len; at += step) this.#datagram(b, at, Math.min(step, off + len - at), src, dst);
  }

  #datagram(b: Buffer, off: number, len: number, src: number, dst: number): void {
    const s = this.#scratch!;
    EthernetFrame.setDst(s, 0, OUTER_DST_MAC);
    EthernetFrame.setSrc(s, 0, OUTER_SRC_MAC);
    EthernetFrame.setEthertype(s, 0, EtherType.IPV4);
    Ipv4Packet.setHeaderLength(s, ETH, IPV4_HEADER_LENGTH);
    s[ETH + Ipv4Field.DSCP_ECN] = 0;
    Ipv4Packet.setTotalLength(s, ETH, IPV4_HEADER_LENGTH + UDP_HEADER_LENGTH + len);
    Ipv4Packet.setIdent(s, ETH, this.#ident++ & 0xffff);
    Ipv4Packet.setFlagsAndOffset(s, ETH, true, false, 0);
    Ipv4Packet.setTtl(s, ETH, 64);
    Ipv4Packet.setProtocol(s, ETH, IpProtocol.UDP);
    Ipv4Packet.setSrc(s, ETH, src);
    Ipv4Packet.setDst(s, ETH, dst);
    Ipv4Packet.fillChecksum(s, ETH);
    set16(s, UDP + UdpField.SRC_PORT, VXLAN_PORT);
    set16(s, UDP + UdpField.DST_PORT, VXLAN_PORT);
    set16(s, UDP + UdpField.LENGTH, UDP_HEADER_LENGTH + len);
    set16(s, UDP + UdpField.CHECKSUM, 0); // "none" over IPv4 (the kernel's was not visible here)
    b.copy(s, OUTER, off, off + len);
    this.writer.writeFrameAt(s, 0, OUTER + len, this.#sec, this.#nsec);
  }

  /** datagrams() over an IPv6 underlay: the addresses as four host-order words at `srcWords[srcAt]`, `dstWords[dstAt]`. */
  datagrams6(b: Buffer, off: number, len: number, segment: number, srcWords: Uint32Array, srcAt: number, dstWords: Uint32Array, dstAt: number): void {
    const step = segment > 0 ? segment : len;
    for (let at = off; at < off + len; at += step) this.#datagram6(b, at, Math.min(step, off + len - at), srcWords, srcAt, dstWords, dstAt);
  }

  #datagram6(b: Buffer, off: number, len: number, srcWords: Uint32Array, srcAt: number, dstWords: Uint32Array, dstAt: number): void {
    const s = this.#scratch!;
    const udp = ETH + IPV6_HEADER_LENGTH;
    EthernetFrame.setDst(s, 0, OUTER_DST_MAC);
    EthernetFrame.setSrc(s, 0, OUTER_SRC_MAC);
    EthernetFrame.setEthertype(s, 0, EtherType.IPV6);
    s.writeUInt32BE(0x6000_0000, ETH + Ipv6Field.VER_TC_FLOW);
    set16(s, ETH + Ipv6Field.LENGTH, UDP_HEADER_LENGTH + len);
    s[ETH + Ipv6Field.NXT_HDR] = IpProtocol.UDP;
    s[ETH + Ipv6Field.HOP_LIMIT] = 64;
    for (let w = 0; w < 4; w++) {
      s.writeUInt32BE(srcWords[srcAt + w]!, ETH + Ipv6Field.SRC + 4 * w);
      s.writeUInt32BE(dstWords[dstAt + w]!, ETH + Ipv6Field.DST + 4 * w);
    }
    set16(s, udp + UdpField.SRC_PORT, VXLAN_PORT);
    set16(s, udp + UdpField.DST_PORT, VXLAN_PORT);
    set16(s, udp + UdpField.LENGTH, UDP_HEADER_LENGTH + len);
    set16(s, udp + UdpField.CHECKSUM, 0);
    b.copy(s, udp + UDP_HEADER_LENGTH, off, off + len);
    // Over IPv6 a UDP checksum is required (RFC 8200 §8.1), and the kernel's socket
    // computed one; this one is the same sum, so Wireshark finds it right.
    const sum = checksum(s, udp, UDP_HEADER_LENGTH + len, pseudoHeaderV6(s, ETH + Ipv6Field.SRC, ETH + Ipv6Field.DST, IpProtocol.UDP, UDP_HEADER_LENGTH + len));
    set16(s, udp + UdpField.CHECKSUM, sum === 0 ? 0xffff : sum);
    this.writer.writeFrameAt(s, 0, udp + UDP_HEADER_LENGTH + len, this.#sec, this.#nsec);
  }

  close(): void {
    this.writer.close();
  }
}
