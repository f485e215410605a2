// Checksum verification over a decoded frame: for pcap's `checksumOk`, tests, and the
// slow path. The datapath trusts the kernel's (or the device's) verification instead.
import { get16 } from './bytes.ts';
import { pseudoHeaderV4, pseudoHeaderV6, sumData, verifyChecksum } from './checksum.ts';
import { IpProtocol } from './ipv4.ts';
import { Icmpv6Field } from './icmpv6.ts';
import { TcpField } from './tcp.ts';
import { UdpField } from './udp.ts';
import type { PacketInfo } from './decode.ts';

// True when every checksum the decode reached is right: the IPv4 header checksum once
// the IPv4 header decoded; the TCP, UDP, ICMP or ICMPv6 checksum once that header
// decoded (info.payloadOffset >= 0) and the packet is not a fragment (a fragment's
// checksum covers bytes it does not hold). UDP over IPv4 with checksum 0 ("none",
// RFC 768) passes; over IPv6 it fails (RFC 8200 §8.1).
//
// l4Partial: the frame came with virtio-net NEEDS_CSUM (CHECKSUM_PARTIAL), so the TCP,
// UDP or ICMPv6 field must hold the folded pseudo-header sum rather than a full
// checksum (ICMPv4 has no pseudo-header and is always checked in full).
export function verifyChecksums(info: PacketInfo, buf: Uint8Array, l4Partial = false): boolean {
  if (info.ipVersion === 4 && sumData(buf, info.l3Offset, info.ipHeaderLength) !== 0xffff) return false;
  if (info.ipVersion === 0 || info.payloadOffset < 0 || info.isFragment) return true;
  const p = info.protocol;
  const at = info.l4Offset;
  const n = info.l4Length;
  if (p === IpProtocol.ICMP && info.ipVersion === 4) return sumData(buf, at, n) === 0xffff;
  const pseudo = info.ipVersion === 4
    ? pseudoHeaderV4(info.src4, info.dst4, p, n)
    : pseudoHeaderV6(buf, info.src6Offset, info.dst6Offset, p, n);
  if (p === IpProtocol.ICMPV6) return l4Partial ? get16(buf, at + Icmpv6Field.CHECKSUM) === pseudo : verifyChecksum(buf, at, n, pseudo);
  if (p !== IpProtocol.TCP && p !== IpProtocol.UDP) return true;
  const field = get16(buf, at + (p === IpProtocol.TCP ? TcpField.CHECKSUM : UdpField.CHECKSUM));
  if (l4Partial) return field === pseudo;
  if (p === IpProtocol.UDP && field === 0) return info.ipVersion === 4;
  return verifyChecksum(buf, at, n, pseudo);
}
