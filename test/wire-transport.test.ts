// Byte fixtures for the TCP, UDP, ICMPv4 and ICMPv6 views.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DropReason, Icmpv4Packet, Icmpv4Type, Icmpv6Packet, Icmpv6Type, Icmpv6Unreachable, IpProtocol, Ipv4Packet, Ipv6Packet,
  TcpFlags, TcpOption, TcpSegment, UdpDatagram, checksum, combine, get16, ipv4ToString, ipv6ToString, pseudoHeaderV4,
  pseudoHeaderV6, set16,
} from '../src/wire/index.ts';
import {
  fullL4Checksums, icmp4EchoRequest, icmp4PortUnreachable, icmp6EchoRequest, icmp6NeighborAdvert, icmp6PortUnreachable,
  tcpData, tcpSyn, udp4DnsQuery, udp6DnsQuery,
} from './fixtures/wire/frames.ts';

// Ethernet 14 + IPv4 20.
const L4V4 = 34;
const tcp = new TcpSegment();
const udp = new UdpDatagram();
const ip4 = new Ipv4Packet();
const ip6 = new Ipv6Packet();

function pseudo4(frame: Uint8Array): number {
  assert.equal(ip4.wrap(frame, 14, frame.length - 14), true);
  return pseudoHeaderV4(ip4.src, ip4.dst, ip4.protocol, ip4.payloadLength);
}

test('TCP: the captured SYN with MSS, SACK-permitted, timestamps and window scale', () => {
  const f = tcpSyn.slice();
  assert.equal(tcp.wrap(f, L4V4, f.length - L4V4), true);
  assert.equal(tcp.srcPort, 41716);
  assert.equal(tcp.dstPort, 5201);
  assert.equal(tcp.seq, 2637016843);
  assert.equal(tcp.ack, 0);
  assert.equal(tcp.headerLength, 40);
  assert.equal(tcp.flags, TcpFlags.SYN);
  assert.equal(tcp.syn && !tcp.hasAck && !tcp.fin && !tcp.rst, true);
  assert.equal(tcp.window, 64240);
  assert.equal(tcp.mss, 1460);
  const ws = tcp.findOption(TcpOption.WINDOW_SCALE);
  assert.equal(f[ws + 2], 10);
  assert.ok(tcp.findOption(TcpOption.SACK_PERMITTED) > 0);
  assert.ok(tcp.findOption(TcpOption.TIMESTAMP) > 0);
  assert.equal(tcp.findOption(TcpOption.SACK), -1);
  assert.equal(tcp.optionsLength, 20);
  assert.equal(tcp.payloadLength, 0);
  assert.equal(tcp.segmentLength, 1);
});

test('TCP: the captured field holds the CHECKSUM_PARTIAL sum; filling it gives tshark\'s checksum', () => {
  for (const [name, frame] of [['tcpSyn', tcpSyn], ['tcpData', tcpData]] as const) {
    const f = frame.slice();
    const pseudo = pseudo4(f);
    assert.equal(tcp.wrap(f, L4V4, ip4.payloadLength), true);
    assert.equal(tcp.checksum, pseudo, `${name}: partial field is the pseudo-header sum`);
    assert.equal(tcp.verifyChecksum(pseudo), false);
    tcp.fillChecksum(pseudo);
    assert.equal(tcp.checksum, fullL4Checksums[name], name);
    assert.equal(tcp.verifyChecksum(pseudo), true);
  }
});

test('TCP: a data segment, and setters', () => {
  const f = tcpData.slice();
  assert.equal(tcp.wrap(f, L4V4, f.length - L4V4), true);
  assert.equal(tcp.flags, TcpFlags.PSH | TcpFlags.ACK);
  assert.equal(tcp.seq, 2637016844);
  assert.equal(tcp.ack, 1652298975);
  assert.equal(tcp.payloadOffset, L4V4 + 32);
  assert.equal(tcp.payloadLength, 37);
  assert.equal(tcp.mss, -1);
  tcp.srcPort = 1; tcp.dstPort = 65535; tcp.seq = 0xffffffff; tcp.ack = 7; tcp.flags = TcpFlags.RST; tcp.window = 0;
  assert.equal(Buffer.from(f.subarray(L4V4, L4V4 + 16)).toString('hex'), '0001ffff' + 'ffffffff' + '00000007' + '8004' + '0000');
});

test('TCP: static accessors read and write the same fields without a view', () => {
  const f = tcpData.slice();
  assert.equal(tcp.wrap(f, L4V4, f.length - L4V4), true);
  assert.equal(TcpSegment.seq(f, L4V4), tcp.seq);
  assert.equal(TcpSegment.ack(f, L4V4), tcp.ack);
  assert.equal(TcpSegment.headerLength(f, L4V4), 32);
  assert.equal(TcpSegment.flags(f, L4V4), TcpFlags.PSH | TcpFlags.ACK);
  assert.equal(TcpSegment.window(f, L4V4), tcp.window);
  assert.equal(TcpSegment.urgentPointer(f, L4V4), tcp.urgentPointer);
  TcpSegment.setChecksum(f, L4V4, 0xbeef);
  assert.equal(tcp.checksum, 0xbeef);
  TcpSegment.fillChecksum(f, L4V4, tcp.len, pseudo4(f));
  assert.equal(tcp.verifyChecksum(pseudo4(f)), true);
  TcpSegment.setSeq(f, L4V4, 0xfffffffe);
  TcpSegment.setFlags(f, L4V4, TcpFlags.FIN | TcpFlags.ACK);
  assert.equal(tcp.seq, 0xfffffffe);
  assert.equal(tcp.flags, TcpFlags.FIN | TcpFlags.ACK);
});

test('TCP: bad data offsets and options are refused', () => {
  const cases: Array<[string, (f: Uint8Array) => number, number]> = [
    ['shorter than 20 bytes', () => 19, DropReason.TRUNCATED_TCP],
    ['data offset 4', (f) => { f[L4V4 + 12] = 0x40; return f.length - L4V4; }, DropReason.BAD_TCP_DATA_OFFSET],
    ['data offset 0', (f) => { f[L4V4 + 12] = 0x00; return f.length - L4V4; }, DropReason.BAD_TCP_DATA_OFFSET],
    ['data offset past the segment', (f) => { f[L4V4 + 12] = 0xf0; return f.length - L4V4; }, DropReason.BAD_TCP_DATA_OFFSET],
    ['MSS option length past the header', (f) => { f[L4V4 + 21] = 30; return f.length - L4V4; }, DropReason.BAD_TCP_OPTIONS],
    ['option length 1', (f) => { f[L4V4 + 21] = 1; return f.length - L4V4; }, DropReason.BAD_TCP_OPTIONS],
    // Window scale (kind 3 at 37) becomes NOP, NOP, then a timestamp kind in the last byte.
    ['kind byte last, no length', (f) => { f[L4V4 + 37] = 1; f[L4V4 + 38] = 1; f[L4V4 + 39] = 8; return f.length - L4V4; }, DropReason.BAD_TCP_OPTIONS],
  ];
  for (const [name, mutate, reason] of cases) {
    const f = tcpSyn.slice();
    const len = mutate(f);
    assert.equal(tcp.wrap(f, L4V4, len), false, name);
    assert.equal(tcp.reason, reason, name);
  }
});

test('UDP: the captured IPv4 and IPv6 queries; filled checksums match tshark', () => {
  const f = udp4DnsQuery.slice();
  const pseudo = pseudo4(f);
  assert.equal(udp.wrap(f, L4V4, ip4.payloadLength), true);
  assert.equal(udp.srcPort, 58044);
  assert.equal(udp.dstPort, 5353);
  assert.equal(udp.length, 60);
  assert.equal(udp.payloadOffset, L4V4 + 8);
  assert.equal(udp.payloadLength, 52);
  udp.fillChecksum(pseudo);
  assert.equal(udp.checksum, fullL4Checksums.udp4DnsQuery);
  assert.equal(udp.verifyChecksum(pseudo, true), true);

  const g = udp6DnsQuery.slice();
  assert.equal(ip6.wrap(g, 14, g.length - 14), true);
  assert.equal(udp.wrap(g, ip6.upperOffset, ip6.upperLength), true);
  assert.equal(udp.srcPort, 37135);
  const pseudo6 = pseudoHeaderV6(g, ip6.srcOffset, ip6.dstOffset, IpProtocol.UDP, udp.length);
  udp.fillChecksum(pseudo6);
  assert.equal(udp.checksum, fullL4Checksums.udp6DnsQuery);
  assert.equal(udp.verifyChecksum(pseudo6, false), true);
});

test('UDP: zero means "no checksum" over IPv4 only; a computed zero is sent as 0xffff', () => {
  const f = udp4DnsQuery.slice();
  const pseudo = pseudo4(f);
  assert.equal(udp.wrap(f, L4V4, ip4.payloadLength), true);
  udp.checksum = 0;
  assert.equal(udp.verifyChecksum(pseudo, true), true);
  assert.equal(udp.verifyChecksum(pseudo, false), false);
  // Shift one payload word by the current checksum so the data sums to 0xffff.
  const c = checksum(f, L4V4, udp.length, pseudo);
  const at = udp.payloadOffset;
  set16(f, at, combine(get16(f, at), c));
  assert.equal(checksum(f, L4V4, udp.length, pseudo), 0);
  udp.fillChecksum(pseudo);
  assert.equal(udp.checksum, 0xffff);
  assert.equal(udp.verifyChecksum(pseudo, true), true);
});

test('UDP: bad lengths are refused; bytes past the length field are ignored', () => {
  const f = udp4DnsQuery.slice();
  assert.equal(udp.wrap(f, L4V4, 7), false);
  assert.equal(udp.reason, DropReason.TRUNCATED_UDP);
  set16(f, L4V4 + 4, 7);
  assert.equal(udp.wrap(f, L4V4, 60), false);
  assert.equal(udp.reason, DropReason.BAD_UDP_LENGTH);
  set16(f, L4V4 + 4, 61);
  assert.equal(udp.wrap(f, L4V4, 60), false);
  assert.equal(udp.reason, DropReason.BAD_UDP_LENGTH);
  set16(f, L4V4 + 4, 20);
  assert.equal(udp.wrap(f, L4V4, 60), true);
  assert.equal(udp.payloadLength, 12);
  // wrapHeader ignores the length field (a first fragment's describes the whole datagram).
  set16(f, L4V4 + 4, 3000);
  assert.equal(udp.wrapHeader(f, L4V4, 60), true);
  assert.equal(udp.dstPort, 5353);
});

test('ICMPv4: the captured echo request', () => {
  const icmp = new Icmpv4Packet();
  const f = icmp4EchoRequest;
  assert.equal(icmp.wrap(f, L4V4, 64), true);
  assert.equal(icmp.type, Icmpv4Type.ECHO_REQUEST);
  assert.equal(icmp.code, 0);
  assert.equal(icmp.isEcho, true);
  assert.equal(icmp.isError, false);
  assert.equal(icmp.echoIdent, 8379);
  assert.equal(icmp.echoSeq, 1);
  assert.equal(icmp.verifyChecksum(), true);
  assert.equal(icmp.embedded(new Ipv4Packet()), false);
  assert.equal(icmp.wrap(f, L4V4, 7), false);
  assert.equal(icmp.reason, DropReason.TRUNCATED_ICMP);
});

test('ICMPv4: static accessors; an echo request turned into its reply keeps a valid checksum', () => {
  const f = icmp4EchoRequest.slice();
  const icmp = new Icmpv4Packet();
  assert.equal(icmp.wrap(f, L4V4, 64), true);
  assert.equal(Icmpv4Packet.type(f, L4V4), Icmpv4Type.ECHO_REQUEST);
  assert.equal(Icmpv4Packet.echoIdent(f, L4V4), 8379);
  assert.equal(Icmpv4Packet.checksum(f, L4V4), icmp.checksum);
  Icmpv4Packet.setTypeUpdatingChecksum(f, L4V4, Icmpv4Type.ECHO_REPLY);
  assert.equal(icmp.type, Icmpv4Type.ECHO_REPLY);
  assert.equal(icmp.verifyChecksum(), true);
  const incremental = icmp.checksum;
  icmp.fillChecksum();
  assert.equal(icmp.checksum, incremental);
  Icmpv4Packet.setEchoIdent(f, L4V4, 1);
  assert.equal(icmp.echoIdent, 1);
  assert.equal(icmp.verifyChecksum(), false);
});

test('ICMPv4: the captured port unreachable and the datagram it quotes', () => {
  const icmp = new Icmpv4Packet();
  const f = icmp4PortUnreachable.slice();
  assert.equal(icmp.wrap(f, L4V4, f.length - L4V4), true);
  assert.equal(icmp.type, Icmpv4Type.DEST_UNREACHABLE);
  assert.equal(icmp.code, 3);
  assert.equal(icmp.isError, true);
  assert.equal(icmp.verifyChecksum(), true);
  const orig = new Ipv4Packet();
  assert.equal(icmp.embedded(orig), true);
  assert.equal(orig.off, L4V4 + 8);
  assert.equal(ipv4ToString(orig.src), '10.77.0.1');
  assert.equal(ipv4ToString(orig.dst), '10.77.0.2');
  assert.equal(orig.protocol, IpProtocol.UDP);
  assert.equal(get16(f, orig.payloadOffset), 58044);
  assert.equal(get16(f, orig.payloadOffset + 2), 5353);
  icmp.type = Icmpv4Type.DEST_UNREACHABLE;
  icmp.code = 4;
  icmp.nextHopMtu = 1450;
  icmp.fillChecksum();
  assert.equal(icmp.nextHopMtu, 1450);
  assert.equal(icmp.verifyChecksum(), true);
  // A quote that is not an IPv4 header.
  f[L4V4 + 8] = 0x60;
  assert.equal(icmp.embedded(orig), false);
  assert.equal(orig.reason, DropReason.BAD_IP_VERSION);
});

test('ICMPv6: echo request, neighbor advertisement target, port unreachable quote', () => {
  const icmp = new Icmpv6Packet();
  const echo = icmp6EchoRequest;
  assert.equal(ip6.wrap(echo, 14, echo.length - 14), true);
  assert.equal(icmp.wrap(echo, ip6.upperOffset, ip6.upperLength), true);
  assert.equal(icmp.type, Icmpv6Type.ECHO_REQUEST);
  assert.equal(icmp.echoIdent, 8382);
  assert.equal(icmp.ndTargetOffset, -1);
  assert.equal(icmp.verifyChecksum(pseudoHeaderV6(echo, ip6.srcOffset, ip6.dstOffset, IpProtocol.ICMPV6, ip6.upperLength)), true);

  const na = icmp6NeighborAdvert;
  assert.equal(ip6.wrap(na, 14, na.length - 14), true);
  assert.equal(icmp.wrap(na, ip6.upperOffset, ip6.upperLength), true);
  assert.equal(icmp.type, Icmpv6Type.NEIGHBOR_ADVERT);
  assert.equal(ipv6ToString(na, icmp.ndTargetOffset), 'fd00:77::2');

  const f = icmp6PortUnreachable.slice();
  assert.equal(ip6.wrap(f, 14, f.length - 14), true);
  assert.equal(icmp.wrap(f, ip6.upperOffset, ip6.upperLength), true);
  assert.equal(icmp.type, Icmpv6Type.DEST_UNREACHABLE);
  assert.equal(icmp.code, Icmpv6Unreachable.PORT);
  assert.equal(icmp.isError, true);
  const pseudo = pseudoHeaderV6(f, ip6.srcOffset, ip6.dstOffset, IpProtocol.ICMPV6, ip6.upperLength);
  assert.equal(icmp.verifyChecksum(pseudo), true);
  const orig = new Ipv6Packet();
  assert.equal(icmp.embedded(orig), true);
  assert.equal(orig.upperProtocol, IpProtocol.UDP);
  assert.equal(get16(f, orig.upperOffset), 37135);
  // Turned into a Packet Too Big, the 32-bit MTU and the checksum follow.
  icmp.type = Icmpv6Type.PACKET_TOO_BIG;
  icmp.code = 0;
  icmp.mtu = 1280;
  icmp.fillChecksum(pseudo);
  assert.equal(icmp.verifyChecksum(pseudo), true);
  assert.equal(icmp.mtu, 1280);
});
