// decodeFrame over the captured fixtures: the fields, drop reasons, checksum checks,
// and the promise that decoding allocates nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  DROP_REASON_COUNT, DropReason, EtherType, IpProtocol, LinkType, PacketInfo, TcpFlags, decodeFrame, dropReasonNames,
  ipv4ToString, ipv6ToString, macToString, set16, verifyChecksums, TcpSegment, pseudoHeaderV4, UdpDatagram,
} from '../src/wire/index.ts';
import * as fx from './fixtures/wire/frames.ts';

const info = new PacketInfo();

function decode(frame: Uint8Array, linkType: number = LinkType.ETHERNET, off = 0, len = frame.length - off): PacketInfo {
  decodeFrame(info, frame, off, len, linkType);
  return info;
}

test('every captured frame decodes with dropReason ok', () => {
  for (const [name, f] of fx.allFrames) assert.equal(dropReasonNames[decode(f).dropReason], 'ok', name);
});

test('ARP request: link and ARP fields', () => {
  const i = decode(fx.arpRequest);
  assert.equal(macToString(i.ethDst), 'ff:ff:ff:ff:ff:ff');
  assert.equal(macToString(i.ethSrc), '02:00:00:00:00:0a');
  assert.equal(i.ethertype, EtherType.ARP);
  assert.equal(i.vlan, -1);
  assert.equal(i.l3Offset, 14);
  assert.equal(i.arpOp, 1);
  assert.equal(ipv4ToString(i.arpSenderIp), '10.77.0.1');
  assert.equal(ipv4ToString(i.arpTargetIp), '10.77.0.2');
  assert.equal(i.ipVersion, 0);
});

test('TCP over IPv4: the 5-tuple, flags, sequence numbers and payload', () => {
  const i = decode(fx.tcpData);
  assert.equal(i.ipVersion, 4);
  assert.equal(i.protocol, IpProtocol.TCP);
  assert.equal(ipv4ToString(i.src4), '10.77.0.1');
  assert.equal(ipv4ToString(i.dst4), '10.77.0.2');
  assert.equal(i.srcPort, 41716);
  assert.equal(i.dstPort, 5201);
  assert.equal(i.tcpFlags, TcpFlags.PSH | TcpFlags.ACK);
  assert.equal(i.tcpSeq, 2637016844);
  assert.equal(i.tcpAck, 1652298975);
  assert.equal(i.ttl, 64);
  assert.equal(i.ipHeaderLength, 20);
  assert.equal(i.ipLength, 89);
  assert.equal(i.l4Offset, 34);
  assert.equal(i.l4Length, 69);
  assert.equal(i.payloadOffset, 66);
  assert.equal(i.payloadLength, 37);
});

test('UDP over IPv6: ports, address offsets, lengths', () => {
  const i = decode(fx.udp6DnsQuery);
  assert.equal(i.ipVersion, 6);
  assert.equal(i.ethertype, EtherType.IPV6);
  assert.equal(i.protocol, IpProtocol.UDP);
  assert.equal(ipv6ToString(fx.udp6DnsQuery, i.src6Offset), 'fd00:77::1');
  assert.equal(ipv6ToString(fx.udp6DnsQuery, i.dst6Offset), 'fd00:77::2');
  assert.equal(i.srcPort, 37135);
  assert.equal(i.dstPort, 5353);
  assert.equal(i.l4Length, 60);
  assert.equal(i.payloadLength, 52);
  assert.equal(i.src4, 0);
});

test('raw IP link type (TUN): the same packets without Ethernet', () => {
  const v4 = decode(fx.tcpSyn, LinkType.RAW_IP, 14);
  assert.equal(v4.dropReason, DropReason.OK);
  assert.equal(v4.ethertype, EtherType.IPV4);
  assert.equal(v4.l3Offset, 14);
  assert.equal(v4.dstPort, 5201);
  assert.equal(v4.ethSrc, 0);
  const v6 = decode(fx.icmp6EchoRequest, LinkType.RAW_IP, 14);
  assert.equal(v6.ipVersion, 6);
  assert.equal(v6.icmpType, 128);
  assert.equal(v6.icmpEchoId, 8382);
  assert.equal(decode(fx.arpRequest, LinkType.RAW_IP, 14).dropReason, DropReason.BAD_IP_VERSION);
  assert.equal(decode(fx.arpRequest, LinkType.RAW_IP, 14, 0).dropReason, DropReason.TRUNCATED_IPV4);
  assert.equal(decode(fx.arpRequest, 228).dropReason, DropReason.UNSUPPORTED_LINK_TYPE);
});

test('802.1Q: the VLAN ID is reported and decoding continues after the tag', () => {
  const f = new Uint8Array(fx.udp4DnsQuery.length + 4);
  f.set(fx.udp4DnsQuery.subarray(0, 12));
  f.set([0x81, 0x00, 0x00, 0x0a], 12);
  f.set(fx.udp4DnsQuery.subarray(12), 16);
  const i = decode(f);
  assert.equal(i.vlan, 10);
  assert.equal(i.l3Offset, 18);
  assert.equal(i.dstPort, 5353);
});

test('fragments: the first carries the L4 header, later ones none', () => {
  let i = decode(fx.ipv4FirstFragment);
  assert.equal(i.isFragment, true);
  assert.equal(i.fragmentOffset, 0);
  assert.equal(i.icmpType, 8);
  i = decode(fx.ipv4LastFragment);
  assert.equal(i.isFragment, true);
  assert.equal(i.fragmentOffset, 2960);
  assert.equal(i.protocol, IpProtocol.ICMP);
  assert.equal(i.l4Offset, -1);
  assert.equal(i.icmpType, -1);
  i = decode(fx.ipv6FirstFragment);
  assert.equal(i.isFragment, true);
  assert.equal(i.l4Offset, 62);
  assert.equal(i.icmpEchoId, 8383);
  i = decode(fx.ipv6LastFragment);
  assert.equal(i.fragmentOffset, 2896);
  assert.equal(i.l4Offset, -1);
});

test('a first UDP fragment: the length field is not held against the fragment', () => {
  const f = fx.udp4DnsQuery.slice();
  set16(f, 14 + 6, 0x2000); // MF, offset 0
  set16(f, 34 + 4, 3000); // the UDP length of the whole datagram
  const i = decode(f);
  assert.equal(i.dropReason, DropReason.OK);
  assert.equal(i.isFragment, true);
  assert.equal(i.dstPort, 5353);
  assert.equal(i.payloadLength, 52);
});

test('ICMP errors: the quoted datagram\'s addresses and ports (IPv4 and IPv6)', () => {
  let i = decode(fx.icmp4PortUnreachable);
  assert.equal(i.icmpType, 3);
  assert.equal(i.icmpCode, 3);
  assert.equal(i.icmpEchoId, -1);
  assert.equal(i.origL3Offset, 42);
  assert.equal(i.origProtocol, IpProtocol.UDP);
  assert.equal(ipv4ToString(i.origSrc4), '10.77.0.1');
  assert.equal(ipv4ToString(i.origDst4), '10.77.0.2');
  assert.equal(i.origL4Offset, 62);
  assert.equal(i.origSrcPort, 58044);
  assert.equal(i.origDstPort, 5353);
  i = decode(fx.icmp6PortUnreachable);
  assert.equal(i.icmpType, 1);
  assert.equal(i.icmpCode, 4);
  assert.equal(i.origProtocol, IpProtocol.UDP);
  assert.equal(ipv6ToString(fx.icmp6PortUnreachable, i.origDst6Offset), 'fd00:77::2');
  assert.equal(i.origSrcPort, 37135);
  assert.equal(i.origDstPort, 5353);
});

test('ICMP errors: a quote too short for the ports, or not IP, is a drop', () => {
  // Keep the quoted IPv4 header and 4 bytes of UDP: RFC 792 asks for 8.
  const short = fx.icmp4PortUnreachable.slice(0, 42 + 20 + 4);
  set16(short, 14 + 2, short.length - 14);
  assert.equal(decode(short).dropReason, DropReason.BAD_ICMP_EMBEDDED);
  const notIp = fx.icmp4PortUnreachable.slice();
  notIp[42] = 0x00;
  assert.equal(decode(notIp).dropReason, DropReason.BAD_ICMP_EMBEDDED);
  assert.equal(info.icmpType, 3); // what decoded before the failure stays
});

test('VXLAN: VNI and the inner frame, decoded with a second PacketInfo', () => {
  const i = decode(fx.vxlanEcho);
  assert.equal(i.dstPort, 4789);
  assert.equal(i.vni, 42);
  assert.equal(i.innerOffset, 50);
  assert.equal(i.innerLength, 98);
  const inner = new PacketInfo();
  assert.equal(decodeFrame(inner, fx.vxlanEcho, i.innerOffset, i.innerLength, LinkType.ETHERNET), DropReason.OK);
  assert.equal(macToString(inner.ethDst), '02:00:00:00:01:0b');
  assert.equal(ipv4ToString(inner.src4), '10.79.0.1');
  assert.equal(inner.icmpType, 8);
  assert.equal(inner.icmpEchoId, 8422);
  // Without the I flag it is just UDP to 4789: no VNI, not a drop.
  const noI = fx.vxlanEcho.slice();
  noI[42] = 0;
  assert.equal(decode(noI).dropReason, DropReason.OK);
  assert.equal(info.vni, -1);
});

test('drop reasons: each malformed layer reports its own code', () => {
  const cases: Array<[string, Uint8Array, number, number]> = [
    ['13-byte frame', fx.tcpSyn, 13, DropReason.TRUNCATED_ETHERNET],
    ['unknown ethertype (LLDP)', (() => { const f = fx.tcpSyn.slice(); set16(f, 12, 0x88cc); return f; })(), -1, DropReason.UNSUPPORTED_ETHERTYPE],
    ['ARP cut short', fx.arpRequest, 30, DropReason.TRUNCATED_ARP],
    ['IPv4 cut short', fx.tcpSyn, 30, DropReason.TRUNCATED_IPV4],
    ['IPv4 total length past the frame', fx.tcpSyn, 60, DropReason.BAD_IPV4_TOTAL_LENGTH],
    ['IPv6 cut short', fx.icmp6EchoRequest, 50, DropReason.TRUNCATED_IPV6],
    ['TCP data offset past the segment', (() => { const f = fx.tcpSyn.slice(); f[46] = 0xf0; return f; })(), -1, DropReason.BAD_TCP_DATA_OFFSET],
    ['ICMP header cut short', (() => { const f = fx.icmp4EchoRequest.slice(0, 14 + 20 + 4); set16(f, 16, 24); return f; })(), -1, DropReason.TRUNCATED_ICMP],
    ['UDP length past the packet', (() => { const f = fx.udp4DnsQuery.slice(); set16(f, 38, 100); return f; })(), -1, DropReason.BAD_UDP_LENGTH],
  ];
  for (const [name, f, len, reason] of cases) {
    assert.equal(decode(f, LinkType.ETHERNET, 0, len < 0 ? f.length : len).dropReason, reason, name);
  }
  // An offset or length outside the buffer is a drop, never a throw.
  assert.equal(decode(fx.tcpSyn, LinkType.ETHERNET, 70, 100).dropReason, DropReason.TRUNCATED_ETHERNET);
  assert.equal(decode(fx.tcpSyn, LinkType.ETHERNET, -1, 10).dropReason, DropReason.TRUNCATED_ETHERNET);
});

test('drop reason table: one unique name per code', () => {
  const codes = Object.values(DropReason);
  assert.equal(codes.length, DROP_REASON_COUNT);
  assert.deepEqual([...codes].sort((a, b) => a - b), codes.map((_, i) => i));
  assert.equal(new Set(dropReasonNames).size, DROP_REASON_COUNT);
});

test('fields from the previous frame never leak into the next', () => {
  decode(fx.icmp4PortUnreachable);
  const i = decode(fx.arpRequest);
  const fresh = new PacketInfo();
  decodeFrame(fresh, fx.arpRequest, 0, fx.arpRequest.length, LinkType.ETHERNET);
  assert.deepEqual({ ...i }, { ...fresh });
});

test('verifyChecksums: right, wrong, partial and UDP zero', () => {
  // ICMP, ICMPv6 (with a hop-by-hop header) and IPv4 headers as captured are all right.
  for (const f of [fx.icmp4EchoRequest, fx.icmp4EchoRecordRoute, fx.icmp4PortUnreachable, fx.icmp6PortUnreachable, fx.mldv2HopByHop, fx.arpRequest]) {
    assert.equal(verifyChecksums(decode(f), f), true);
  }
  // TCP/UDP as captured on veth hold the CHECKSUM_PARTIAL sum.
  const syn = fx.tcpSyn.slice();
  assert.equal(verifyChecksums(decode(syn), syn), false);
  assert.equal(verifyChecksums(info, syn, true), true);
  set16(syn, 34 + 16, fx.fullL4Checksums.tcpSyn);
  assert.equal(verifyChecksums(decode(syn), syn), true);
  assert.equal(verifyChecksums(info, syn, true), false);
  // A wrong IPv4 header checksum is found whatever the L4 says.
  syn[14 + 8] = 63;
  assert.equal(verifyChecksums(decode(syn), syn), false);
  const udp = fx.udp4DnsQuery.slice();
  set16(udp, 34 + 6, 0);
  assert.equal(verifyChecksums(decode(udp), udp), true);
  const udp6 = fx.udp6DnsQuery.slice();
  set16(udp6, 54 + 6, 0);
  assert.equal(verifyChecksums(decode(udp6), udp6), false);
  // A corrupted ICMP byte.
  const echo = fx.icmp4EchoRequest.slice();
  echo[50]! ^= 1;
  assert.equal(verifyChecksums(decode(echo), echo), false);
});

test('verifyChecksums agrees with the views after a fill', () => {
  const f = fx.tcpData.slice();
  const i = decode(f);
  const tcp = new TcpSegment();
  assert.equal(tcp.wrap(f, i.l4Offset, i.l4Length), true);
  tcp.fillChecksum(pseudoHeaderV4(i.src4, i.dst4, IpProtocol.TCP, i.l4Length));
  assert.equal(verifyChecksums(i, f), true);
  const g = fx.vxlanEcho.slice();
  const j = decode(g);
  const udp = new UdpDatagram();
  assert.equal(udp.wrap(g, j.l4Offset, j.l4Length), true);
  udp.fillChecksum(pseudoHeaderV4(j.src4, j.dst4, IpProtocol.UDP, j.l4Length));
  assert.equal(udp.checksum, fx.fullL4Checksums.vxlanEcho);
  assert.equal(verifyChecksums(j, g), true);
});

test('decoding allocates nothing: no GC and ~0 heap growth over 1,000,000 frames', () => {
  const child = fileURLToPath(new URL('./fixtures/wire/alloc-child.ts', import.meta.url));
  // A 1 MB young generation: allocating even a few bytes per frame would force
  // dozens of scavenges inside the measured loop.
  const out = execFileSync(process.execPath, ['--expose-gc', '--trace-gc', '--max-semi-space-size=1', child, '1000000'], { encoding: 'utf8', timeout: 60_000 });
  const lines = out.split('\n');
  const start = lines.indexOf('MARK start');
  const end = lines.indexOf('MARK end');
  assert.ok(start >= 0 && end > start, out);
  const gcs = lines.slice(start + 1, end).filter((l) => /Scavenge|Mark-Compact|Minor/.test(l));
  assert.deepEqual(gcs, [], 'garbage collections inside the decode loop');
  const result = JSON.parse(lines[end + 1]!) as { n: number; heapGrowth: number };
  assert.equal(result.n, 1_000_000);
  // What remains is one-off (optimised code, feedback): ~100 KB whether the loop runs
  // 100k or 3M times. Half a byte per frame would already be 500 KB.
  assert.ok(result.heapGrowth < 400 * 1024, `heap grew by ${result.heapGrowth} bytes`);
});
