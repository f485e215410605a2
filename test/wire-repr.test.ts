// Repr builders and replies: rebuilt captures must come out byte for byte, built
// replies must decode and verify, and tshark must find nothing wrong with them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ArpOp, DropReason, Icmpv4Type, Icmpv6Type, IpProtocol, LinkType, MAC_BROADCAST, PacketInfo, TcpFlags, buildPacket,
  decodeFrame, emitIcmpv4Error, emitIcmpv4FragNeeded, emitIcmpv4PortUnreachable, emitIcmpv6Error, emitIcmpv6PacketTooBig,
  emitPacket, emitTcpReset, get16, get32, icmpErrorAllowed, packetLength, ipv4, parseIpv6, parseMac, set16, verifyChecksums,
  type PacketRepr,
} from '../src/wire/index.ts';
import * as fx from './fixtures/wire/frames.ts';

const A_MAC = parseMac('02:00:00:00:00:0a')!;
const B_MAC = parseMac('02:00:00:00:00:0b')!;
const A4 = ipv4('10.77.0.1');
const B4 = ipv4('10.77.0.2');
const A6 = parseIpv6('fd00:77::1')!;
const B6 = parseIpv6('fd00:77::2')!;

function decoded(f: Uint8Array, linkType: number = LinkType.ETHERNET): PacketInfo {
  const i = new PacketInfo();
  assert.equal(decodeFrame(i, f, 0, f.length, linkType), DropReason.OK);
  return i;
}

function withL4Checksum(frame: Uint8Array, at: number, value: number): Uint8Array {
  const f = frame.slice();
  set16(f, at, value);
  return f;
}

test('rebuilt captures are byte-identical: ARP, ICMP echo v4 and v6', () => {
  assert.deepEqual(buildPacket({
    eth: { dst: MAC_BROADCAST, src: A_MAC },
    arp: { op: ArpOp.REQUEST, senderMac: A_MAC, senderIp: A4, targetMac: 0, targetIp: B4 },
  }), fx.arpRequest);
  assert.deepEqual(buildPacket({
    eth: { dst: B_MAC, src: A_MAC },
    ipv4: { src: A4, dst: B4, ident: 0xb316, dontFragment: true },
    icmp: { type: Icmpv4Type.ECHO_REQUEST, code: 0, restOfHeader: (8379 << 16) | 1 },
    payload: fx.icmp4EchoRequest.subarray(42),
  }), fx.icmp4EchoRequest);
  assert.deepEqual(buildPacket({
    eth: { dst: B_MAC, src: A_MAC },
    ipv6: { src: A6, dst: B6, flowLabel: 0xf671e },
    icmp: { type: Icmpv6Type.ECHO_REQUEST, code: 0, restOfHeader: (8382 << 16) | 1 },
    payload: fx.icmp6EchoRequest.subarray(62),
  }), fx.icmp6EchoRequest);
});

test('rebuilt captures are byte-identical: TCP SYN and UDP, full and CHECKSUM_PARTIAL', () => {
  const syn: PacketRepr = {
    eth: { dst: B_MAC, src: A_MAC },
    ipv4: { src: A4, dst: B4, ident: 0x407b, dontFragment: true },
    tcp: { srcPort: 41716, dstPort: 5201, seq: 2637016843, ack: 0, flags: TcpFlags.SYN, window: 64240, options: fx.tcpSyn.subarray(54, 74) },
    l4Checksum: 'partial',
  };
  assert.deepEqual(buildPacket(syn), fx.tcpSyn);
  assert.deepEqual(buildPacket({ ...syn, l4Checksum: 'full' }), withL4Checksum(fx.tcpSyn, 50, fx.fullL4Checksums.tcpSyn));
  const udp6: PacketRepr = {
    eth: { dst: B_MAC, src: A_MAC },
    ipv6: { src: A6, dst: B6, flowLabel: 0x67eff },
    udp: { srcPort: 37135, dstPort: 5353 },
    payload: fx.udp6DnsQuery.subarray(62),
    l4Checksum: 'partial',
  };
  assert.deepEqual(buildPacket(udp6), fx.udp6DnsQuery);
  assert.deepEqual(buildPacket({ ...udp6, l4Checksum: 'full' }), withL4Checksum(fx.udp6DnsQuery, 60, fx.fullL4Checksums.udp6DnsQuery));
});

test('rebuilt capture: the kernel VXLAN frame (outer UDP partial, inner frame as payload)', () => {
  const vx: PacketRepr = {
    eth: { dst: B_MAC, src: A_MAC },
    ipv4: { src: A4, dst: B4, ident: 0xaa8a },
    udp: { srcPort: 36356, dstPort: 4789 },
    vxlan: { vni: 42 },
    payload: fx.vxlanEcho.subarray(50),
    l4Checksum: 'partial',
  };
  assert.deepEqual(buildPacket(vx), fx.vxlanEcho);
  const none = buildPacket({ ...vx, l4Checksum: 'none' });
  assert.equal(get16(none, 40), 0);
  assert.equal(verifyChecksums(decoded(none), none), true);
});

test('emitPacket: VLAN tag, buffer bounds and inconsistent descriptions', () => {
  const r: PacketRepr = { eth: { dst: B_MAC, src: A_MAC, vlan: 100 }, ipv4: { src: A4, dst: B4 }, udp: { srcPort: 1, dstPort: 2 }, payload: new Uint8Array(5) };
  const buf = new Uint8Array(100).fill(0xee);
  const n = emitPacket(r, buf, 3);
  assert.equal(n, packetLength(r));
  assert.equal(n, 18 + 20 + 8 + 5);
  assert.equal(buf[2], 0xee);
  assert.equal(buf[3 + n], 0xee);
  const i = new PacketInfo();
  assert.equal(decodeFrame(i, buf, 3, n, LinkType.ETHERNET), DropReason.OK);
  assert.equal(i.vlan, 100);
  assert.equal(verifyChecksums(i, buf), true);
  assert.throws(() => emitPacket(r, new Uint8Array(n - 1), 0), RangeError);
  assert.throws(() => buildPacket({ ipv4: { src: 1, dst: 2 }, ipv6: { src: A6, dst: B6 } }), RangeError);
  assert.throws(() => buildPacket({ udp: { srcPort: 1, dstPort: 2 } }), RangeError);
  assert.throws(() => buildPacket({ ipv6: { src: A6, dst: B6 }, udp: { srcPort: 1, dstPort: 2 }, l4Checksum: 'none' }), RangeError);
  assert.throws(() => buildPacket({ ipv4: { src: 1, dst: 2, options: new Uint8Array(3) } }), RangeError);
});

test('port unreachable: the ICMP message equals the one the kernel sent', () => {
  const query = decoded(fx.udp4DnsQuery);
  const out = new Uint8Array(600);
  const n = emitIcmpv4PortUnreachable(out, 0, query, fx.udp4DnsQuery);
  const f = out.subarray(0, n);
  const i = decoded(f);
  assert.equal(i.src4, B4);
  assert.equal(i.dst4, A4);
  assert.equal(i.ethDst, A_MAC);
  assert.equal(i.ethSrc, B_MAC);
  // IPv4 headers differ (the kernel's ident and TOS 0xc0); the ICMP messages do not.
  assert.deepEqual(f.subarray(34), fx.icmp4PortUnreachable.subarray(34));
  assert.equal(verifyChecksums(i, f), true);
});

test('ICMPv6 port unreachable equals the kernel\'s message; Packet Too Big carries the MTU', () => {
  const query = decoded(fx.udp6DnsQuery);
  const out = new Uint8Array(1600);
  let n = emitIcmpv6Error(out, 0, query, fx.udp6DnsQuery, Icmpv6Type.DEST_UNREACHABLE, 4, 0, B6);
  assert.deepEqual(out.subarray(54, n), fx.icmp6PortUnreachable.subarray(54));
  const big = decoded(fx.ipv6FirstFragment); // 1510 bytes: the quote must be cut to fit 1280
  n = emitIcmpv6PacketTooBig(out, 0, big, fx.ipv6FirstFragment, 1400, B6);
  const f = out.subarray(0, n);
  assert.equal(n, 14 + 1280);
  const i = decoded(f);
  assert.equal(i.icmpType, Icmpv6Type.PACKET_TOO_BIG);
  assert.equal(get32(f, i.l4Offset + 4), 1400);
  assert.equal(i.origProtocol, IpProtocol.ICMPV6);
  assert.equal(verifyChecksums(i, f), true);
});

test('fragmentation needed (RFC 1191): next-hop MTU, quote cut at 576 bytes', () => {
  const big = decoded(fx.ipv4FirstFragment);
  const out = new Uint8Array(700);
  const router = ipv4('10.77.0.254');
  const n = emitIcmpv4FragNeeded(out, 0, big, fx.ipv4FirstFragment, 1450, router, { dst: A_MAC, src: 0x02000000fffe });
  assert.equal(n, 14 + 576);
  const f = out.subarray(0, n);
  const i = decoded(f);
  assert.equal(i.src4, router);
  assert.equal(i.ethSrc, 0x02000000fffe);
  assert.equal(i.icmpType, 3);
  assert.equal(i.icmpCode, 4);
  assert.equal(get16(f, i.l4Offset + 6), 1450);
  assert.equal(get16(f, i.l4Offset + 4), 0);
  assert.equal(i.origSrc4, A4);
  assert.equal(verifyChecksums(i, f), true);
  // Over raw IP (TUN), no link header.
  const raw = fx.ipv4FirstFragment.slice(14);
  const ri = decoded(raw, LinkType.RAW_IP);
  assert.equal(emitIcmpv4Error(out, 0, ri, raw, Icmpv4Type.TIME_EXCEEDED, 0, 0, router), 576);
  assert.equal(out[0]! >>> 4, 4);
});

test('TCP reset (RFC 793 p.36): answers without ACK take ack = seq + len; with ACK take seq = ack', () => {
  const out = new Uint8Array(200);
  // A SYN (no ACK): seq 0, RST|ACK, ack = SEG.SEQ + 1.
  let n = emitTcpReset(out, 0, decoded(fx.tcpSyn), fx.tcpSyn);
  let i = decoded(out.subarray(0, n));
  assert.equal(i.tcpFlags, TcpFlags.RST | TcpFlags.ACK);
  assert.equal(i.tcpSeq, 0);
  assert.equal(i.tcpAck, 2637016844);
  assert.deepEqual([i.src4, i.dst4, i.srcPort, i.dstPort], [B4, A4, 5201, 41716]);
  assert.equal(verifyChecksums(i, out.subarray(0, n)), true);
  // A data segment with ACK: seq = SEG.ACK, RST only.
  n = emitTcpReset(out, 0, decoded(fx.tcpData), fx.tcpData);
  i = decoded(out.subarray(0, n));
  assert.equal(i.tcpFlags, TcpFlags.RST);
  assert.equal(i.tcpSeq, 1652298975);
  assert.equal(i.tcpAck, 0);
  // FIN and payload count in SEG.LEN when there is no ACK; sequence numbers wrap.
  const fin = buildPacket({ ipv6: { src: A6, dst: B6 }, tcp: { srcPort: 1, dstPort: 2, seq: 0xfffffffe, ack: 0, flags: TcpFlags.FIN }, payload: new Uint8Array(3) });
  n = emitTcpReset(out, 0, decoded(fin, LinkType.RAW_IP), fin);
  i = decoded(out.subarray(0, n), LinkType.RAW_IP);
  assert.equal(i.ipVersion, 6);
  assert.equal(i.tcpAck, 2);
  assert.equal(verifyChecksums(i, out.subarray(0, n)), true);
  // Never a reset for a reset.
  assert.equal(emitTcpReset(out, 0, decoded(fx.tcpRst), fx.tcpRst), 0);
  assert.equal(emitTcpReset(out, 0, decoded(fx.udp4DnsQuery), fx.udp4DnsQuery), 0);
});

test('icmpErrorAllowed: RFC 1812 §4.3.2.7 and RFC 4443 §2.4(e)', () => {
  assert.equal(icmpErrorAllowed(decoded(fx.udp4DnsQuery), fx.udp4DnsQuery), true);
  assert.equal(icmpErrorAllowed(decoded(fx.icmp4EchoRequest), fx.icmp4EchoRequest), true);
  assert.equal(icmpErrorAllowed(decoded(fx.icmp4PortUnreachable), fx.icmp4PortUnreachable), false);
  assert.equal(icmpErrorAllowed(decoded(fx.ipv4LastFragment), fx.ipv4LastFragment), false);
  assert.equal(icmpErrorAllowed(decoded(fx.arpRequest), fx.arpRequest), false);
  const bcast = fx.udp4DnsQuery.slice();
  bcast.fill(0xff, 0, 6);
  assert.equal(icmpErrorAllowed(decoded(bcast), bcast), false);
  const fromZero = buildPacket({ ipv4: { src: 0, dst: B4 }, udp: { srcPort: 68, dstPort: 67 } });
  assert.equal(icmpErrorAllowed(decoded(fromZero, LinkType.RAW_IP), fromZero), false);
  assert.equal(icmpErrorAllowed(decoded(fx.udp6DnsQuery), fx.udp6DnsQuery), true);
  assert.equal(icmpErrorAllowed(decoded(fx.icmp6PortUnreachable), fx.icmp6PortUnreachable), false);
  const mcast = buildPacket({ ipv6: { src: A6, dst: parseIpv6('ff02::1')! }, udp: { srcPort: 1, dstPort: 2 } });
  const mi = decoded(mcast, LinkType.RAW_IP);
  assert.equal(icmpErrorAllowed(mi, mcast, Icmpv6Type.DEST_UNREACHABLE, 4), false);
  assert.equal(icmpErrorAllowed(mi, mcast, Icmpv6Type.PACKET_TOO_BIG, 0), true);
});

// A classic pcap file (LINKTYPE_ETHERNET, microseconds) of the given frames.
function pcapOf(frames: Uint8Array[]): Buffer {
  const parts = [Buffer.from('d4c3b2a1020004000000000000000000ffff000001000000', 'hex')];
  for (const f of frames) {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(f.length, 8);
    h.writeUInt32LE(f.length, 12);
    parts.push(h, Buffer.from(f));
  }
  return Buffer.concat(parts);
}

test('tshark finds no malformed packet and no bad checksum in the built frames', (t) => {
  try { execFileSync('tshark', ['--version'], { stdio: 'ignore' }); } catch { t.skip('tshark not installed'); return; }
  const out = new Uint8Array(2000);
  const frames: Uint8Array[] = [];
  const take = (n: number) => frames.push(out.slice(0, n));
  // The captured query carries a CHECKSUM_PARTIAL field; quote it with its full checksum.
  const query = withL4Checksum(fx.udp4DnsQuery, 40, fx.fullL4Checksums.udp4DnsQuery);
  take(emitIcmpv4PortUnreachable(out, 0, decoded(query), query));
  take(emitIcmpv4FragNeeded(out, 0, decoded(fx.ipv4FirstFragment), fx.ipv4FirstFragment, 1450, ipv4('10.77.0.254')));
  take(emitIcmpv6PacketTooBig(out, 0, decoded(fx.ipv6FirstFragment), fx.ipv6FirstFragment, 1400, B6));
  take(emitTcpReset(out, 0, decoded(fx.tcpSyn), fx.tcpSyn));
  take(emitTcpReset(out, 0, decoded(fx.tcpData), fx.tcpData));
  frames.push(buildPacket({ eth: { dst: B_MAC, src: A_MAC, vlan: 7 }, ipv4: { src: A4, dst: B4, options: Uint8Array.from([1, 1, 1, 0]) }, udp: { srcPort: 1000, dstPort: 53 }, payload: new Uint8Array(13) }));
  frames.push(buildPacket({ eth: { dst: B_MAC, src: A_MAC }, ipv4: { src: A4, dst: B4 }, udp: { srcPort: 999, dstPort: 4789 }, vxlan: { vni: 0xabcdef }, payload: withL4Checksum(fx.tcpData, 50, fx.fullL4Checksums.tcpData) }));
  const dir = mkdtempSync(join(tmpdir(), 'tapir-wire-'));
  try {
    const file = join(dir, 'built.pcap');
    writeFileSync(file, pcapOf(frames));
    const text = execFileSync('tshark', ['-r', file, '-V', '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE'], { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'ignore'] });
    assert.equal((text.match(/^Frame \d+:/gm) ?? []).length, frames.length);
    const bad = text.split('\n').filter((l) => /Malformed|Bad checksum|incorrect|Checksum Status: Bad/.test(l));
    assert.deepEqual(bad, []);
    assert.match(text, /Fragmentation needed.*|MTU of next hop: 1450/);
    assert.match(text, /VXLAN Network Identifier \(VNI\): 11259375/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
