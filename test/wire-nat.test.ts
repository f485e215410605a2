// NAT rewrites with incremental checksums, checked byte for byte against a full
// recompute of every checksum in the rewritten frame.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DropReason, IpProtocol, Ipv4Packet, LinkType, PacketInfo, TcpFlags, TcpSegment, UdpDatagram, Icmpv4Packet,
  buildPacket, checksum, decodeFrame, emitIcmpv4PortUnreachable, fold, get16, natRewriteDst4, natRewriteQuotedDst4,
  natRewriteQuotedSrc4, natRewriteSrc4, ipv4, pseudoHeaderV4, set16, sumData, verifyChecksums, type PacketRepr,
} from '../src/wire/index.ts';
import { icmp4EchoRequest, ipv4LastFragment, tcpSyn, udp4DnsQuery } from './fixtures/wire/frames.ts';
import { Prng } from './fixtures/wire/prng.ts';

const info = new PacketInfo();
const ip = new Ipv4Packet();
const tcp = new TcpSegment();
const udp = new UdpDatagram();
const icmp = new Icmpv4Packet();

function decodeOk(f: Uint8Array): PacketInfo {
  assert.equal(decodeFrame(info, f, 0, f.length, LinkType.ETHERNET), DropReason.OK);
  return info;
}

// Every checksum of an IPv4 TCP/UDP/ICMP frame computed from scratch (a UDP zero
// stays zero); for an ICMP error, the quoted IP header and, when the whole original
// datagram is quoted, its L4 checksum too.
function recomputed(frame: Uint8Array): Uint8Array {
  const f = frame.slice();
  const i = new PacketInfo();
  assert.equal(decodeFrame(i, f, 0, f.length, LinkType.ETHERNET), DropReason.OK);
  assert.ok(ip.wrap(f, i.l3Offset, f.length - i.l3Offset));
  ip.fillChecksum();
  if (i.isFragment) return f;
  const pseudo = pseudoHeaderV4(i.src4, i.dst4, i.protocol, i.l4Length);
  if (i.protocol === IpProtocol.TCP) { assert.ok(tcp.wrap(f, i.l4Offset, i.l4Length)); tcp.fillChecksum(pseudo); }
  if (i.protocol === IpProtocol.UDP) { assert.ok(udp.wrap(f, i.l4Offset, i.l4Length)); if (udp.checksum !== 0) udp.fillChecksum(pseudo); }
  if (i.protocol === IpProtocol.ICMP) {
    assert.ok(icmp.wrap(f, i.l4Offset, i.l4Length));
    if (i.origL3Offset >= 0) {
      const q = new Ipv4Packet();
      assert.ok(q.wrapEmbedded(f, i.origL3Offset, i.l4Offset + i.l4Length - i.origL3Offset));
      q.fillChecksum();
      const whole = q.off + q.totalLength === i.l4Offset + i.l4Length;
      const qPseudo = pseudoHeaderV4(q.src, q.dst, q.protocol, q.totalLength - q.headerLength);
      if (whole && q.protocol === IpProtocol.UDP) { assert.ok(udp.wrap(f, q.payloadOffset, q.totalLength - q.headerLength)); if (udp.checksum !== 0) udp.fillChecksum(qPseudo); }
      if (whole && q.protocol === IpProtocol.TCP) { assert.ok(tcp.wrap(f, q.payloadOffset, q.totalLength - q.headerLength)); tcp.fillChecksum(qPseudo); }
      if (whole && q.protocol === IpProtocol.ICMP) { const e = new Icmpv4Packet(); assert.ok(e.wrap(f, q.payloadOffset, q.totalLength - q.headerLength)); e.fillChecksum(); }
    }
    icmp.fillChecksum();
  }
  return f;
}

function randomSegment(rng: Prng, protocol: number): Uint8Array {
  const payload = new Uint8Array(rng.below(80));
  rng.fill(payload);
  const r: PacketRepr = {
    eth: { dst: 0x020000000001, src: 0x020000000002 },
    ipv4: { src: rng.next(), dst: rng.next(), ttl: 1 + rng.below(255), ident: rng.below(65536) },
    payload,
  };
  if (protocol === IpProtocol.TCP) r.tcp = { srcPort: rng.below(65536), dstPort: rng.below(65536), seq: rng.next(), ack: rng.next(), flags: TcpFlags.ACK };
  else r.udp = { srcPort: rng.below(65536), dstPort: rng.below(65536) };
  return buildPacket(r);
}

test('DNAT and SNAT of TCP and UDP: incremental checksums equal a full recompute (20,000 random rewrites)', () => {
  const rng = new Prng(0x5eed);
  for (let round = 0; round < 20000; round++) {
    const protocol = round % 2 === 0 ? IpProtocol.TCP : IpProtocol.UDP;
    const f = randomSegment(rng, protocol);
    const i = decodeOk(f);
    const addr = rng.next();
    const port = rng.below(4) === 0 ? -1 : rng.below(65536);
    const oldSrcPort = i.srcPort, oldDstPort = i.dstPort;
    if (rng.below(2) === 0) natRewriteDst4(i, f, addr, port, false);
    else natRewriteSrc4(i, f, addr, port, false);
    assert.deepEqual(f, recomputed(f), `round ${round}`);
    // The PacketInfo follows the rewrite.
    const again = new PacketInfo();
    decodeFrame(again, f, 0, f.length, LinkType.ETHERNET);
    assert.deepEqual([again.src4, again.dst4, again.srcPort, again.dstPort], [i.src4, i.dst4, i.srcPort, i.dstPort], `round ${round}`);
    if (port < 0) assert.deepEqual([i.srcPort, i.dstPort], [oldSrcPort, oldDstPort]);
  }
});

test('UDP over IPv4 with checksum 0 keeps 0; a checksum that becomes 0 is sent as 0xffff', () => {
  const f = randomSegment(new Prng(7), IpProtocol.UDP);
  let i = decodeOk(f);
  set16(f, i.l4Offset + 6, 0);
  natRewriteDst4(i, f, ipv4('10.244.1.7'), 8080, false);
  assert.equal(get16(f, i.l4Offset + 6), 0);
  assert.equal(verifyChecksums(i, f), true);

  // Choose the new destination port so the full checksum comes out as zero.
  const g = randomSegment(new Prng(8), IpProtocol.UDP);
  i = decodeOk(g);
  const probe = g.slice();
  set16(probe, i.l4Offset + 2, 0);
  set16(probe, i.l4Offset + 6, 0);
  const rest = fold(sumData(probe, i.l4Offset, i.l4Length) + pseudoHeaderV4(i.src4, i.dst4, IpProtocol.UDP, i.l4Length));
  const port = ~rest & 0xffff;
  natRewriteDst4(i, g, i.dst4, port, false);
  assert.equal(get16(g, i.l4Offset + 2), port);
  set16(probe, i.l4Offset + 2, port);
  assert.equal(checksum(probe, i.l4Offset, i.l4Length, pseudoHeaderV4(i.src4, i.dst4, IpProtocol.UDP, i.l4Length)), 0);
  assert.equal(get16(g, i.l4Offset + 6), 0xffff);
  assert.equal(verifyChecksums(i, g), true);
});

test('CHECKSUM_PARTIAL (captured veth frames): address moves the pseudo sum, port does not', () => {
  for (const frame of [tcpSyn, udp4DnsQuery]) {
    const f = frame.slice();
    const i = decodeOk(f);
    const csAt = i.l4Offset + (i.protocol === IpProtocol.TCP ? 16 : 6);
    assert.equal(verifyChecksums(i, f, true), true);
    natRewriteDst4(i, f, ipv4('192.168.200.17'), 30080, true);
    natRewriteSrc4(i, f, ipv4('10.96.0.1'), 443, true);
    assert.equal(get16(f, i.l4Offset + 2), 30080);
    assert.equal(get16(f, csAt), pseudoHeaderV4(ipv4('10.96.0.1'), ipv4('192.168.200.17'), i.protocol, i.l4Length));
    assert.equal(verifyChecksums(i, f, true), true);
    // What the device then does (sum from csum_start, store the complement) gives the
    // same checksum as computing it from scratch.
    const device = f.slice();
    set16(device, csAt, ~sumData(device, i.l4Offset, i.l4Length) & 0xffff);
    assert.deepEqual(device, recomputed(f));
  }
});

test('ICMP echo: the identifier is the port; ICMP has no pseudo-header', () => {
  const f = icmp4EchoRequest.slice();
  const i = decodeOk(f);
  natRewriteSrc4(i, f, ipv4('172.16.0.9'), 0xbeef, false);
  assert.equal(i.icmpEchoId, 0xbeef);
  assert.equal(get16(f, i.l4Offset + 4), 0xbeef);
  assert.deepEqual(f, recomputed(f));
  natRewriteDst4(i, f, ipv4('10.0.0.1'), -1, false);
  assert.equal(get16(f, i.l4Offset + 4), 0xbeef);
  assert.deepEqual(f, recomputed(f));
});

test('a non-first fragment gets the address only', () => {
  const f = ipv4LastFragment.slice();
  const i = decodeOk(f);
  const payload = f.slice(34);
  natRewriteDst4(i, f, ipv4('10.244.3.3'), 80, false);
  assert.deepEqual(f.slice(34), payload);
  assert.equal(verifyChecksums(decodeOk(f), f), true);
});

// An ICMP port unreachable from `endpoint` about a datagram pod -> endpoint, as a
// kernel would send it back through the node, with the original fully quoted.
function errorAbout(rng: Prng, protocol: number, quoteBytes = -1): Uint8Array {
  const original = randomSegment(rng, protocol);
  const oi = new PacketInfo();
  decodeFrame(oi, original, 0, original.length, LinkType.ETHERNET);
  const out = new Uint8Array(1600);
  const n = emitIcmpv4PortUnreachable(out, 0, oi, original);
  let f = out.slice(0, n);
  if (quoteBytes >= 0) {
    f = f.slice(0, 14 + 20 + 8 + quoteBytes);
    set16(f, 16, f.length - 14);
    const i = new PacketInfo();
    decodeFrame(i, f, 0, f.length, LinkType.ETHERNET);
    assert.ok(ip.wrap(f, 14, f.length - 14)); ip.fillChecksum();
    assert.ok(icmp.wrap(f, 34, f.length - 34)); icmp.fillChecksum();
  }
  return f;
}

test('reverse NAT of ICMP errors: quoted header, quoted L4 and ICMP checksums (2,000 random)', () => {
  const rng = new Prng(5508);
  for (let round = 0; round < 2000; round++) {
    const protocol = round % 2 === 0 ? IpProtocol.TCP : IpProtocol.UDP;
    const f = errorAbout(rng, protocol);
    const i = decodeOk(f);
    assert.ok(i.origL3Offset > 0);
    const clusterIp = rng.next();
    const servicePort = rng.below(65536);
    // The error comes from the endpoint; the pod must see it from the cluster IP, about
    // a datagram it sent to the cluster IP.
    natRewriteSrc4(i, f, clusterIp, -1, false);
    if (rng.below(2) === 0) natRewriteQuotedDst4(i, f, clusterIp, servicePort);
    else natRewriteQuotedSrc4(i, f, clusterIp, servicePort);
    assert.deepEqual(f, recomputed(f), `round ${round}`);
    const again = decodeOk(f.slice());
    assert.deepEqual([again.origSrc4, again.origDst4, again.origSrcPort, again.origDstPort], [i.origSrc4, i.origDst4, i.origSrcPort, i.origDstPort]);
  }
});

test('reverse NAT of ICMP errors: an 8-byte TCP quote has no checksum to update', () => {
  const f = errorAbout(new Prng(11), IpProtocol.TCP, 28);
  const i = decodeOk(f);
  assert.equal(i.origL4Offset + 8, f.length);
  natRewriteQuotedDst4(i, f, ipv4('10.96.0.10'), 53);
  assert.equal(get16(f, i.origL4Offset + 2), 53);
  assert.equal(verifyChecksums(i, f), true);
  assert.ok(ip.wrapEmbedded(f, i.origL3Offset, 28));
  assert.equal(ip.verifyChecksum(), true);
});

test('reverse NAT of an ICMP error about an echo request rewrites the quoted identifier', () => {
  const original = icmp4EchoRequest.slice();
  const oi = new PacketInfo();
  decodeFrame(oi, original, 0, original.length, LinkType.ETHERNET);
  const out = new Uint8Array(200);
  const f = out.slice(0, emitIcmpv4PortUnreachable(out, 0, oi, original));
  const i = decodeOk(f);
  assert.equal(i.origProtocol, IpProtocol.ICMP);
  assert.equal(i.origSrcPort, 8379);
  natRewriteQuotedSrc4(i, f, ipv4('10.244.0.5'), 4242);
  assert.equal(i.origSrcPort, 4242);
  assert.deepEqual(f, recomputed(f));
});

test('quoted rewrites do nothing on a packet that is not an ICMP error', () => {
  const f = tcpSyn.slice();
  const i = decodeOk(f);
  natRewriteQuotedDst4(i, f, 1, 1);
  assert.deepEqual(f, tcpSyn);
});
