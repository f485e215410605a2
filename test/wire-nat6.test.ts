// NAT66 rewrites with incremental checksums (src/wire/nat6.ts), checked byte for byte
// against a full recompute of every checksum in the rewritten frame, against the same
// rewrite of the unfragmented datagram, and by tshark; the IPv6 rejects (port
// unreachable, TCP reset) and the RFC 4443 §2.4(e) rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DropReason, IpProtocol, Ipv6Packet, LinkType, PacketInfo, TcpFlags, Icmpv6Type, Icmpv6Unreachable, buildPacket, checksum,
  decodeFrame, emitIcmpv6Error, emitIcmpv6PortUnreachable, emitTcpReset, fold, get16, icmpErrorAllowed, ipv6ToString,
  loadIpv6Words, natRewriteDst6, natRewriteQuotedDst6, natRewriteQuotedSrc6, natRewriteSrc6, parseIpv6,
  pseudoHeaderV6, set16, sumData, udpWireChecksum, verifyChecksums, type PacketRepr,
} from '../src/wire/index.ts';
import { PcapLinkType, PcapWriter } from '../src/pcap/index.ts';
import { icmp6EchoRequest, icmp6NeighborAdvert, ipv6FirstFragment, ipv6LastFragment, tcpSyn, udp6DnsQuery } from './fixtures/wire/frames.ts';
import { Prng } from './fixtures/wire/prng.ts';

const ETH = LinkType.ETHERNET;
const TCP = IpProtocol.TCP;
const UDP = IpProtocol.UDP;
const ICMPV6 = IpProtocol.ICMPV6;
const POD_MAC = 0x02000000000a;
const GW_MAC = 0x02000000000b;

function decodeOk(f: Uint8Array, into = new PacketInfo()): PacketInfo {
  assert.equal(decodeFrame(into, f, 0, f.length, ETH), DropReason.OK);
  return into;
}

function ip6(text: string): Uint8Array {
  const a = parseIpv6(text);
  assert.ok(a, text);
  return a;
}

// Four int32 words of an address, as the NAT66 functions take them.
function words(a: Uint8Array, off = 0): Int32Array {
  const w = new Int32Array(4);
  loadIpv6Words(w, 0, a, off);
  return w;
}

function wordsText(w: Int32Array): string {
  return [...w].map((x) => (x >>> 0).toString(16)).join(' ');
}

function randomAddr(rng: Prng): Uint8Array {
  const a = new Uint8Array(16);
  rng.fill(a);
  // Half of them with the top bit set in every word: int32 words below zero.
  if (rng.below(2) === 0) for (let k = 0; k < 16; k += 4) a[k]! |= 0x80;
  return a;
}

function l4ChecksumAt(i: PacketInfo, protocol = i.protocol, l4 = i.l4Offset): number {
  return l4 + (protocol === TCP ? 16 : protocol === UDP ? 6 : 2);
}

// Every checksum of an IPv6 TCP/UDP/ICMPv6 frame computed from scratch (a UDP zero
// stays zero); for an ICMPv6 error whose quote holds the whole original packet, the
// quoted L4 checksum too, before the outer one. A fragment is returned as it is: its
// checksum covers bytes it does not hold (see the fragment test).
function recomputed(frame: Uint8Array): Uint8Array {
  const f = frame.slice();
  const i = decodeOk(f);
  if (i.isFragment) return f;
  const fill = (p: number, l4: number, n: number, pseudo: number) => {
    const at = l4ChecksumAt(i, p, l4);
    if (p === UDP && get16(f, at) === 0) return;
    set16(f, at, 0);
    const c = checksum(f, l4, n, pseudo);
    set16(f, at, p === UDP ? udpWireChecksum(c) : c);
  };
  if (i.protocol === ICMPV6 && i.origL3Offset >= 0 && i.origL4Offset >= 0) {
    const q = new Ipv6Packet();
    const quoteLength = i.l4Offset + i.l4Length - i.origL3Offset;
    if (q.wrap(f, i.origL3Offset, quoteLength) && q.len === quoteLength) {
      fill(q.upperProtocol, q.upperOffset, q.upperLength, pseudoHeaderV6(f, q.srcOffset, q.dstOffset, q.upperProtocol, q.upperLength));
    }
  }
  if (i.protocol === TCP || i.protocol === UDP || i.protocol === ICMPV6) {
    fill(i.protocol, i.l4Offset, i.l4Length, pseudoHeaderV6(f, i.src6Offset, i.dst6Offset, i.protocol, i.l4Length));
  }
  return f;
}

// CHECKSUM_PARTIAL: the field must hold the pseudo-header sum of the frame as it is.
function partialFieldOk(f: Uint8Array): boolean {
  const i = decodeOk(f);
  return get16(f, l4ChecksumAt(i)) === pseudoHeaderV6(f, i.src6Offset, i.dst6Offset, i.protocol, i.l4Length);
}

// What a device does with a NEEDS_CSUM frame: sum from csum_start, store the complement.
function deviceCompleted(frame: Uint8Array): Uint8Array {
  const f = frame.slice();
  const i = decodeOk(f);
  const at = l4ChecksumAt(i);
  const c = ~sumData(f, i.l4Offset, i.l4Length) & 0xffff;
  set16(f, at, i.protocol === UDP ? udpWireChecksum(c) : c);
  return f;
}

type Kind = 'tcp' | 'udp' | 'echo';
const KINDS: readonly Kind[] = ['tcp', 'udp', 'echo'];

function packet6(src: Uint8Array, dst: Uint8Array, kind: Kind, sport: number, dport: number, payload: Uint8Array, partial = false): Uint8Array {
  const r: PacketRepr = { eth: { dst: GW_MAC, src: POD_MAC }, ipv6: { src, dst, hopLimit: 64, flowLabel: 0x12345 }, payload };
  if (kind === 'tcp') r.tcp = { srcPort: sport, dstPort: dport, seq: 0x9abcdef0, ack: 0x80000001, flags: TcpFlags.ACK | TcpFlags.PSH };
  else if (kind === 'udp') r.udp = { srcPort: sport, dstPort: dport };
  else r.icmp = { type: Icmpv6Type.ECHO_REQUEST, code: 0, restOfHeader: ((sport << 16) | 7) >>> 0 };
  if (partial) r.l4Checksum = 'partial';
  const f = buildPacket(r);
  if (partial && kind === 'echo') {
    // The builder completes ICMP checksums; a NEEDS_CSUM ICMPv6 frame holds the pseudo sum.
    const i = decodeOk(f);
    set16(f, i.l4Offset + 2, pseudoHeaderV6(f, i.src6Offset, i.dst6Offset, ICMPV6, i.l4Length));
  }
  return f;
}

function randomPacket(rng: Prng, kind: Kind, partial = false): Uint8Array {
  const payload = new Uint8Array(rng.below(120));
  rng.fill(payload);
  return packet6(randomAddr(rng), randomAddr(rng), kind, rng.below(65536), rng.below(65536), payload, partial);
}

test('loadIpv6Words: big-endian int32 words, the top bit as a sign', () => {
  const w = words(ip6('fd00:10:96::a'));
  assert.deepEqual([...w], [0xfd000010 | 0, 0x00960000, 0, 10]);
  assert.ok(w[0]! < 0);
});

test('DNAT and SNAT of TCP, UDP and ICMPv6 echo: checksums equal a full recompute; the reverse rewrite restores every byte (30,000 random)', () => {
  const rng = new Prng(0x6666);
  const again = new PacketInfo();
  for (let round = 0; round < 30000; round++) {
    const kind = KINDS[round % 3]!;
    const partial = rng.below(3) === 0;
    const original = randomPacket(rng, kind, partial);
    const f = original.slice();
    const i = decodeOk(f);
    const dst = rng.below(2) === 0;
    const offset = dst ? i.dst6Offset : i.src6Offset;
    const oldAddr = words(f, offset);
    const oldPort = kind === 'echo' ? i.icmpEchoId : dst ? i.dstPort : i.srcPort;
    const addr = words(randomAddr(rng));
    const port = rng.below(4) === 0 ? -1 : rng.below(65536);
    const where = `round ${round} (${kind}${partial ? ', partial' : ''}, ${dst ? 'dst' : 'src'} -> [${wordsText(addr)}]:${port})`;
    if (dst) natRewriteDst6(i, f, addr, 0, port, partial);
    else natRewriteSrc6(i, f, addr, 0, port, partial);
    assert.deepEqual(words(f, offset), addr, where);
    if (partial) {
      assert.ok(partialFieldOk(f), where);
      assert.ok(verifyChecksums(decodeOk(f, again), f, true), where);
      assert.deepEqual(deviceCompleted(f), recomputed(deviceCompleted(f)), where);
    } else {
      assert.deepEqual(f, recomputed(f), where);
      assert.ok(verifyChecksums(decodeOk(f, again), f), where);
    }
    // The PacketInfo follows the rewrite, and its offsets still hold.
    decodeOk(f, again);
    assert.deepEqual([again.srcPort, again.dstPort, again.icmpEchoId], [i.srcPort, i.dstPort, i.icmpEchoId], where);
    assert.deepEqual([again.src6Offset, again.dst6Offset, again.l4Offset], [i.src6Offset, i.dst6Offset, i.l4Offset], where);
    if (port >= 0) assert.equal(kind === 'echo' ? i.icmpEchoId : dst ? i.dstPort : i.srcPort, port, where);
    // And back.
    if (dst) natRewriteDst6(i, f, oldAddr, 0, port >= 0 ? oldPort : -1, partial);
    else natRewriteSrc6(i, f, oldAddr, 0, port >= 0 ? oldPort : -1, partial);
    assert.deepEqual(f, original, where);
  }
});

test('the address is read at `at` in a longer Int32Array', () => {
  const f = udp6DnsQuery.slice();
  const i = decodeOk(f);
  const table = new Int32Array(12);
  table.set(words(ip6('fd00:10:96::35')), 4);
  natRewriteDst6(i, f, table, 4, 53, false);
  assert.equal(ipv6ToString(f, i.dst6Offset), 'fd00:10:96::35');
  assert.equal(i.dstPort, 53);
});

test('captured frames (CHECKSUM_PARTIAL from a veth, and a full ICMPv6 echo)', () => {
  // udp6DnsQuery came off a veth with the pseudo-header sum in its checksum field.
  const f = udp6DnsQuery.slice();
  let i = decodeOk(f);
  assert.ok(partialFieldOk(f));
  natRewriteDst6(i, f, words(ip6('fd00:10:244:1::7')), 0, 5353, true);
  natRewriteSrc6(i, f, words(ip6('fd00:10:96::a')), 0, 53, true);
  assert.equal(ipv6ToString(f, i.src6Offset), 'fd00:10:96::a');
  assert.equal(get16(f, i.l4Offset), 53);
  assert.ok(partialFieldOk(f));
  assert.ok(verifyChecksums(i, f, true));

  const e = icmp6EchoRequest.slice();
  i = decodeOk(e);
  assert.ok(verifyChecksums(i, e));
  natRewriteSrc6(i, e, words(ip6('fd00:10:244::1')), 0, 0xbeef, false);
  assert.equal(i.icmpEchoId, 0xbeef);
  assert.equal(get16(e, i.l4Offset + 4), 0xbeef);
  assert.deepEqual(e, recomputed(e));
  // port < 0 keeps the identifier, and the address alone still moves the checksum:
  // ICMPv6, unlike ICMPv4, sums the pseudo-header.
  const before = get16(e, i.l4Offset + 2);
  natRewriteDst6(i, e, words(ip6('fd00:10:96::1')), 0, -1, false);
  assert.equal(get16(e, i.l4Offset + 4), 0xbeef);
  assert.notEqual(get16(e, i.l4Offset + 2), before);
  assert.deepEqual(e, recomputed(e));
});

test('ICMPv6 that is not an echo: the address moves the checksum, the port is ignored', () => {
  const f = icmp6NeighborAdvert.slice();
  const i = decodeOk(f);
  const body = f.slice(i.l4Offset + 4);
  natRewriteSrc6(i, f, words(ip6('fe80::1')), 0, 4242, false);
  assert.deepEqual(f.slice(i.l4Offset + 4), body);
  assert.deepEqual([i.srcPort, i.icmpEchoId], [0, -1]);
  assert.deepEqual(f, recomputed(f));
});

test('UDP over IPv6: a received zero checksum stays zero; a computed zero is sent as 0xffff', () => {
  const f = packet6(ip6('fd00::1'), ip6('fd00::2'), 'udp', 1000, 2000, new Uint8Array([1, 2, 3]));
  let i = decodeOk(f);
  set16(f, i.l4Offset + 6, 0);
  natRewriteDst6(i, f, words(ip6('fd00:10:96::1')), 0, 8080, false);
  assert.equal(get16(f, i.l4Offset + 6), 0);
  assert.equal(get16(f, i.l4Offset + 2), 8080);

  // Choose the new destination port so that the full checksum comes out as zero.
  const g = packet6(ip6('fd00::1'), ip6('fd00::2'), 'udp', 1000, 2000, new Uint8Array([9, 8, 7, 6, 5]));
  i = decodeOk(g);
  const newDst = ip6('fd00:10:96::99');
  const probe = g.slice();
  probe.set(newDst, i.dst6Offset);
  set16(probe, i.l4Offset + 2, 0);
  set16(probe, i.l4Offset + 6, 0);
  const rest = fold(sumData(probe, i.l4Offset, i.l4Length) + pseudoHeaderV6(probe, i.src6Offset, i.dst6Offset, UDP, i.l4Length));
  const port = ~rest & 0xffff;
  natRewriteDst6(i, g, words(newDst), 0, port, false);
  set16(probe, i.l4Offset + 2, port);
  assert.equal(checksum(probe, i.l4Offset, i.l4Length, pseudoHeaderV6(probe, i.src6Offset, i.dst6Offset, UDP, i.l4Length)), 0);
  assert.equal(get16(g, i.l4Offset + 6), 0xffff);
  assert.ok(verifyChecksums(i, g));
  assert.deepEqual(g, recomputed(g));
});

// A datagram cut into two IPv6 fragments (RFC 8200 §4.5): the first holds `cut`
// bytes of the upper layer, its header included.
function fragments(full: Uint8Array, cut: number): [Uint8Array, Uint8Array] {
  const i = decodeOk(full);
  const l4 = full.subarray(i.l4Offset, i.l4Offset + i.l4Length);
  const make = (from: number, to: number, more: boolean): Uint8Array => {
    const f = new Uint8Array(14 + 40 + 8 + (to - from));
    f.set(full.subarray(0, 54));
    set16(f, 18, 8 + to - from);
    f[20] = IpProtocol.IPV6_FRAGMENT;
    f[54] = i.protocol;
    set16(f, 56, from | (more ? 1 : 0));
    f.set([0xca, 0xfe, 0xf0, 0x0d], 58);
    f.set(l4.subarray(from, to), 62);
    return f;
  };
  return [make(0, cut, true), make(cut, l4.length, false)];
}

test('fragments: the first gets address, port and L4 checksum as the whole datagram does; a later one the address only', () => {
  const rng = new Prng(8200);
  for (const kind of KINDS) {
    for (let round = 0; round < 50; round++) {
      const payload = new Uint8Array(100 + rng.below(300));
      rng.fill(payload);
      const full = packet6(randomAddr(rng), randomAddr(rng), kind, rng.below(65536), rng.below(65536), payload);
      const cut = 24 + 8 * rng.below(8);
      const [first, last] = fragments(full, cut);
      const fi = decodeOk(first);
      const li = decodeOk(last);
      assert.ok(fi.isFragment && fi.fragmentOffset === 0 && fi.payloadOffset > 0);
      assert.ok(li.isFragment && li.fragmentOffset === cut && li.l4Offset === -1);
      const addr = words(randomAddr(rng));
      const port = rng.below(65536);
      const src = rng.below(2) === 0;
      const rewrite = src ? natRewriteSrc6 : natRewriteDst6;
      const ui = decodeOk(full);
      rewrite(ui, full, addr, 0, port, false);
      rewrite(fi, first, addr, 0, port, false);
      const lastBody = last.slice(62);
      rewrite(li, last, addr, 0, port, false);
      assert.deepEqual(full, recomputed(full));
      // The reassembled datagram is the rewritten whole one.
      assert.deepEqual(first.subarray(22, 54), full.subarray(22, 54));
      assert.deepEqual(last.subarray(22, 54), full.subarray(22, 54));
      assert.deepEqual(first.subarray(62), full.subarray(54, 54 + cut), `${kind} round ${round}`);
      assert.deepEqual(last.subarray(62), lastBody);
      assert.deepEqual(last.subarray(62), full.subarray(54 + cut));
      assert.deepEqual([li.srcPort, li.dstPort, li.icmpEchoId], [0, 0, -1]);
    }
  }
  // The captured ping -s 3000 fragments: the last one keeps every byte after the header.
  const f = ipv6LastFragment.slice();
  const i = decodeOk(f);
  natRewriteDst6(i, f, words(ip6('fd00:10:244:2::9')), 0, 80, false);
  assert.deepEqual(f.subarray(54), ipv6LastFragment.subarray(54));
  assert.equal(ipv6ToString(f, i.dst6Offset), 'fd00:10:244:2::9');
  const g = ipv6FirstFragment.slice();
  const gi = decodeOk(g);
  natRewriteSrc6(gi, g, words(ip6('fd00:10:96::1')), 0, 0x1234, false);
  assert.equal(gi.icmpEchoId, 0x1234);
  assert.deepEqual(g.subarray(gi.l4Offset + 8), ipv6FirstFragment.subarray(gi.l4Offset + 8));
});

test('the IPv6 rewrites leave an IPv4 packet alone; the quoted ones a packet that is not an error', () => {
  const f = tcpSyn.slice();
  const i = decodeOk(f);
  natRewriteDst6(i, f, words(ip6('::1')), 0, 1, false);
  natRewriteSrc6(i, f, words(ip6('::1')), 0, 1, true);
  natRewriteQuotedDst6(i, f, words(ip6('::1')), 0, 1);
  natRewriteQuotedSrc6(i, f, words(ip6('::1')), 0, 1);
  assert.deepEqual(f, tcpSyn);
  const g = icmp6EchoRequest.slice();
  const gi = decodeOk(g);
  natRewriteQuotedDst6(gi, g, words(ip6('::1')), 0, 1); // not an error: nothing quoted
  assert.deepEqual(g, icmp6EchoRequest);
});

// ---- ICMPv6 errors about translated flows ----

const POD = ip6('fd00:10:244:1::5');
const CLUSTER_IP = ip6('fd00:10:96::80');
const ENDPOINT = ip6('fd00:10:244:2::7');
const NODE = ip6('fd00:10:244:1::1');

// A port unreachable from `from` about `seen` (what that node received), optionally
// with the quote cut to the quoted IPv6 header and `quoteL4` bytes after it (the outer
// payload length and checksum fixed to match).
function errorAbout(seen: Uint8Array, quoteL4 = -1): Uint8Array {
  const si = decodeOk(seen);
  const out = new Uint8Array(1600);
  let f = out.slice(0, emitIcmpv6PortUnreachable(out, 0, si, seen));
  if (quoteL4 >= 0) {
    f = f.slice(0, 14 + 40 + 8 + 40 + quoteL4);
    set16(f, 18, f.length - 54);
    set16(f, 56, 0);
    set16(f, 56, checksum(f, 54, f.length - 54, pseudoHeaderV6(f, 22, 38, ICMPV6, f.length - 54)));
  }
  return f;
}

test('emitIcmpv6PortUnreachable: type 1 code 4 from the packet\'s destination, quoting it, checksummed', () => {
  const seen = packet6(POD, CLUSTER_IP, 'udp', 40000, 53, new Uint8Array(30));
  const f = errorAbout(seen);
  const i = decodeOk(f);
  assert.equal(i.protocol, ICMPV6);
  assert.deepEqual([i.icmpType, i.icmpCode], [Icmpv6Type.DEST_UNREACHABLE, Icmpv6Unreachable.PORT]);
  assert.equal(ipv6ToString(f, i.src6Offset), ipv6ToString(CLUSTER_IP));
  assert.equal(ipv6ToString(f, i.dst6Offset), ipv6ToString(POD));
  assert.deepEqual(f.subarray(i.origL3Offset), seen.subarray(14));
  assert.ok(verifyChecksums(i, f));
  // The link header answers the frame: its addresses swapped.
  assert.deepEqual([i.ethDst, i.ethSrc], [POD_MAC, GW_MAC]);
  assert.throws(() => emitIcmpv6PortUnreachable(new Uint8Array(200), 0, decodeOk(tcpSyn.slice()), tcpSyn), /not IPv6/);
});

// The flow a pod opened to a cluster IP, as the endpoint saw it after DNAT (and SNAT
// to the node when `masquerade`), the error the endpoint sent back, and that error
// after the reverse NAT the service engine applies. The quote must come back as the
// pod's own packet (RFC 5508 §4.2), byte for byte as far as it goes.
function reverseNatRound(rng: Prng, kind: Kind, masquerade: boolean, quoteL4: number): { original: Uint8Array; error: Uint8Array; info: PacketInfo } {
  // Longer than any cut quote, so a cut quote is really cut.
  const payload = new Uint8Array(32 + rng.below(100));
  rng.fill(payload);
  const podPort = rng.below(65536), servicePort = rng.below(65536), endpointPort = rng.below(65536), nodePort = rng.below(65536);
  const original = packet6(POD, CLUSTER_IP, kind, podPort, servicePort, payload);
  // Forward: what the datapath does to the pod's packet.
  const seen = original.slice();
  const si = decodeOk(seen);
  natRewriteDst6(si, seen, words(ENDPOINT), 0, kind === 'echo' ? -1 : endpointPort, false);
  if (masquerade) natRewriteSrc6(si, seen, words(NODE), 0, nodePort, false);
  assert.deepEqual(seen, recomputed(seen));
  // The endpoint answers with an error; the reverse NAT.
  const error = errorAbout(seen, quoteL4);
  const info = decodeOk(error);
  assert.ok(info.origL3Offset > 0 && info.origL4Offset > 0);
  natRewriteSrc6(info, error, words(CLUSTER_IP), 0, -1, false);
  if (masquerade) {
    natRewriteDst6(info, error, words(POD), 0, -1, false);
    natRewriteQuotedSrc6(info, error, words(POD), 0, podPort);
  }
  natRewriteQuotedDst6(info, error, words(CLUSTER_IP), 0, kind === 'echo' ? -1 : servicePort);
  return { original, error, info };
}

test('reverse NAT of ICMPv6 errors, whole quotes: quoted packet restored, every checksum equals a recompute (3,000 random)', () => {
  const rng = new Prng(5508);
  const again = new PacketInfo();
  for (let round = 0; round < 3000; round++) {
    const kind = KINDS[round % 3]!;
    const masquerade = rng.below(2) === 0;
    const { original, error, info } = reverseNatRound(rng, kind, masquerade, -1);
    const where = `round ${round} (${kind}${masquerade ? ', masquerade' : ''})`;
    assert.deepEqual(error.subarray(info.origL3Offset), original.subarray(14), where);
    assert.deepEqual(error, recomputed(error), where);
    assert.equal(ipv6ToString(error, info.src6Offset), ipv6ToString(CLUSTER_IP));
    assert.equal(ipv6ToString(error, info.dst6Offset), ipv6ToString(POD));
    decodeOk(error, again);
    assert.deepEqual([again.origSrcPort, again.origDstPort, again.origSrc6Offset, again.origDst6Offset],
      [info.origSrcPort, info.origDstPort, info.origSrc6Offset, info.origDst6Offset], where);
  }
});

test('reverse NAT of ICMPv6 errors, cut quotes (8 bytes of L4 and more): as far as the quote goes it is the pod\'s packet; the outer checksum holds', () => {
  const rng = new Prng(4443);
  for (let round = 0; round < 1500; round++) {
    const kind = KINDS[round % 3]!;
    const quoteL4 = rng.below(3) === 0 ? 8 : 8 + rng.below(20);
    const { original, error, info } = reverseNatRound(rng, kind, rng.below(2) === 0, quoteL4);
    const where = `round ${round} (${kind}, ${quoteL4} bytes of L4 quoted)`;
    assert.equal(info.origL4Offset + quoteL4, error.length, where);
    // The quoted payload length still names the whole packet, so this is a prefix;
    // except a quote that ends inside the TCP checksum: half a field cannot be updated
    // and is left as the endpoint quoted it (as Linux tcp_manip_pkt leaves a short header).
    const halfChecksum = kind === 'tcp' && quoteL4 === 17 ? 1 : 0;
    assert.deepEqual(error.subarray(info.origL3Offset, error.length - halfChecksum), original.subarray(14, 14 + 40 + quoteL4 - halfChecksum), where);
    assert.ok(verifyChecksums(info, error), where);
    assert.deepEqual(error, recomputed(error), where);
  }
  // An 8-byte TCP quote has no checksum field to update; an 8-byte UDP quote has one.
  const tcp = reverseNatRound(new Prng(1), 'tcp', true, 8);
  assert.equal(tcp.error.length - tcp.info.origL4Offset, 8);
  const udp = reverseNatRound(new Prng(2), 'udp', true, 8);
  assert.equal(get16(udp.error, udp.info.origL4Offset + 6), get16(udp.original, 54 + 6));
});

test('reverse NAT of an ICMPv6 error quoting an echo: the quoted identifier and echo checksum', () => {
  const original = packet6(POD, CLUSTER_IP, 'echo', 0x1111, 0, new Uint8Array(16));
  const seen = original.slice();
  const si = decodeOk(seen);
  natRewriteDst6(si, seen, words(ENDPOINT), 0, -1, false);
  natRewriteSrc6(si, seen, words(NODE), 0, 0x2222, false);
  assert.equal(si.icmpEchoId, 0x2222);
  const error = errorAbout(seen);
  const i = decodeOk(error);
  assert.deepEqual([i.origProtocol, i.origSrcPort, i.origDstPort], [ICMPV6, 0x2222, 0x2222]);
  natRewriteQuotedSrc6(i, error, words(POD), 0, 0x1111);
  assert.deepEqual([i.origSrcPort, i.origDstPort], [0x1111, 0x1111]);
  natRewriteQuotedDst6(i, error, words(CLUSTER_IP), 0, -1);
  natRewriteSrc6(i, error, words(CLUSTER_IP), 0, -1, false);
  natRewriteDst6(i, error, words(POD), 0, -1, false);
  assert.deepEqual(error.subarray(i.origL3Offset), original.subarray(14));
  assert.deepEqual(error, recomputed(error));
  // A quoted ICMPv6 message that is not an echo keeps its identifier field.
  const na = icmp6NeighborAdvert.slice();
  const nai = decodeOk(na);
  const out = new Uint8Array(400);
  const e2 = out.slice(0, emitIcmpv6Error(out, 0, nai, na, Icmpv6Type.PARAM_PROBLEM, 0, 0, ip6('fe80::99')));
  const e2i = decodeOk(e2);
  const word = get16(e2, e2i.origL4Offset + 4);
  natRewriteQuotedDst6(e2i, e2, words(ip6('fe80::5')), 0, 0x7777);
  assert.equal(get16(e2, e2i.origL4Offset + 4), word);
  assert.deepEqual(e2, recomputed(e2));
});

// ---- RFC 4443 §2.4(e) and TCP resets over IPv6 ----

function withBytes(f: Uint8Array, at: number, bytes: ArrayLike<number>): Uint8Array {
  const g = f.slice();
  g.set(bytes, at);
  return g;
}

test('icmpErrorAllowed over IPv6: RFC 4443 §2.4(e)', () => {
  const udp = packet6(POD, CLUSTER_IP, 'udp', 1, 2, new Uint8Array(4));
  const ok = (f: Uint8Array, type = -1, code = -1) => icmpErrorAllowed(decodeOk(f), f, type, code);
  assert.equal(ok(udp), true);
  assert.equal(ok(packet6(POD, CLUSTER_IP, 'echo', 1, 2, new Uint8Array(4))), true);
  // (e.1) an ICMPv6 error; (e.2) a redirect.
  assert.equal(ok(errorAbout(udp)), false);
  const redirect = buildPacket({ eth: { dst: GW_MAC, src: POD_MAC }, ipv6: { src: ip6('fe80::1'), dst: POD }, icmp: { type: Icmpv6Type.REDIRECT, code: 0 }, payload: new Uint8Array(32) });
  assert.equal(ok(redirect), false);
  // (e.3) an IPv6 multicast destination, (e.4) a link-layer multicast or broadcast one;
  // Packet Too Big and Parameter Problem code 2 are the exceptions.
  const mcast = withBytes(udp, 38, ip6('ff02::1'));
  assert.equal(ok(mcast), false);
  assert.equal(ok(mcast, Icmpv6Type.PACKET_TOO_BIG, 0), true);
  assert.equal(ok(mcast, Icmpv6Type.PARAM_PROBLEM, 2), true);
  assert.equal(ok(mcast, Icmpv6Type.PARAM_PROBLEM, 1), false);
  assert.equal(ok(withBytes(udp, 0, [0x33, 0x33, 0, 0, 0, 1])), false);
  assert.equal(ok(withBytes(udp, 0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), false);
  // (e.5) a source that does not name one node: unspecified or multicast.
  assert.equal(ok(withBytes(udp, 22, new Uint8Array(16))), false);
  assert.equal(ok(withBytes(udp, 22, ip6('ff05::2'))), false);
  // A later fragment cannot be matched to a flow.
  assert.equal(ok(ipv6LastFragment), false);
  assert.equal(ok(ipv6FirstFragment), true);
});

function resetFor(f: Uint8Array): { n: number; out: Uint8Array; info: PacketInfo } {
  const out = new Uint8Array(200);
  const n = emitTcpReset(out, 0, decodeOk(f), f);
  const info = new PacketInfo();
  if (n > 0) decodeOk(out.subarray(0, n), info);
  return { n, out: out.subarray(0, n), info };
}

test('emitTcpReset over IPv6: RFC 9293 §3.10.7.1, from the segment\'s destination', () => {
  const syn = buildPacket({ eth: { dst: GW_MAC, src: POD_MAC }, ipv6: { src: POD, dst: CLUSTER_IP }, tcp: { srcPort: 40000, dstPort: 80, seq: 0xfffffffe, ack: 0, flags: TcpFlags.SYN } });
  let r = resetFor(syn);
  assert.ok(r.n > 0);
  assert.equal(r.info.ipVersion, 6);
  assert.equal(ipv6ToString(r.out, r.info.src6Offset), ipv6ToString(CLUSTER_IP));
  assert.equal(ipv6ToString(r.out, r.info.dst6Offset), ipv6ToString(POD));
  assert.deepEqual([r.info.srcPort, r.info.dstPort], [80, 40000]);
  // No ACK on the segment: seq 0, ACK set, ack = SEG.SEQ + SEG.LEN (SYN counts one, mod 2^32).
  assert.deepEqual([r.info.tcpFlags, r.info.tcpSeq, r.info.tcpAck], [TcpFlags.RST | TcpFlags.ACK, 0, 0xffffffff]);
  assert.ok(verifyChecksums(r.info, r.out));
  assert.deepEqual([r.info.ethDst, r.info.ethSrc], [POD_MAC, GW_MAC]);

  const data = buildPacket({ eth: { dst: GW_MAC, src: POD_MAC }, ipv6: { src: POD, dst: CLUSTER_IP }, tcp: { srcPort: 40000, dstPort: 80, seq: 5, ack: 0x90000000, flags: TcpFlags.ACK | TcpFlags.FIN }, payload: new Uint8Array(10) });
  r = resetFor(data);
  // ACK on the segment: seq = SEG.ACK, no ACK flag.
  assert.deepEqual([r.info.tcpFlags, r.info.tcpSeq, r.info.tcpAck], [TcpFlags.RST, 0x90000000, 0]);
  assert.ok(verifyChecksums(r.info, r.out));

  const finNoAck = buildPacket({ ipv6: { src: POD, dst: CLUSTER_IP }, tcp: { srcPort: 1, dstPort: 2, seq: 100, ack: 0, flags: TcpFlags.FIN }, payload: new Uint8Array(3) });
  const raw = new PacketInfo();
  assert.equal(decodeFrame(raw, finNoAck, 0, finNoAck.length, LinkType.RAW_IP), DropReason.OK);
  const out = new Uint8Array(100);
  const n = emitTcpReset(out, 0, raw, finNoAck);
  const ri = new PacketInfo();
  assert.equal(decodeFrame(ri, out, 0, n, LinkType.RAW_IP), DropReason.OK);
  assert.equal(ri.tcpAck, 104); // 3 bytes + FIN
  assert.ok(verifyChecksums(ri, out.subarray(0, n)));

  // Never about a reset, a fragment, a multicast destination or a non-unicast source.
  const rst = buildPacket({ eth: { dst: GW_MAC, src: POD_MAC }, ipv6: { src: POD, dst: CLUSTER_IP }, tcp: { srcPort: 1, dstPort: 2, seq: 1, ack: 1, flags: TcpFlags.RST | TcpFlags.ACK } });
  assert.equal(resetFor(rst).n, 0);
  assert.equal(resetFor(withBytes(syn, 38, ip6('ff02::1'))).n, 0);
  assert.equal(resetFor(withBytes(syn, 22, ip6('ff02::1'))).n, 0);
  assert.equal(resetFor(withBytes(syn, 22, new Uint8Array(16))).n, 0);
  const payload = new Uint8Array(64);
  const [first] = fragments(packet6(POD, CLUSTER_IP, 'tcp', 1, 2, payload), 32);
  assert.equal(resetFor(first).n, 0);
});

// ---- A real decoder's opinion ----

function hasTshark(): boolean {
  try {
    execFileSync('tshark', ['--version'], { stdio: 'ignore', timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

test('tshark validates the checksums of rewritten frames (TCP, UDP, ICMPv6 echo and error, completed partial frames)', (t) => {
  if (!hasTshark()) {
    t.skip('tshark is not installed (apt-get install tshark): the checksums were checked by recompute only');
    return;
  }
  const rng = new Prng(0x75a4);
  const frames: Uint8Array[] = [];
  for (let k = 0; k < 30; k++) {
    const kind = KINDS[k % 3]!;
    const partial = k % 6 >= 3;
    const f = randomPacket(rng, kind, partial);
    const i = decodeOk(f);
    natRewriteDst6(i, f, words(ENDPOINT), 0, kind === 'echo' ? -1 : 1 + rng.below(65535), partial);
    natRewriteSrc6(i, f, words(randomAddr(rng)), 0, 1 + rng.below(65535), partial);
    frames.push(partial ? deviceCompleted(f) : f);
  }
  for (let k = 0; k < 6; k++) frames.push(reverseNatRound(rng, KINDS[k % 3]!, k % 2 === 0, -1).error);
  const dir = mkdtempSync(join(tmpdir(), 'tapir-nat6-'));
  try {
    const path = join(dir, 'nat6.pcap');
    {
      using w = PcapWriter.toFile(path, { linkType: PcapLinkType.ETHERNET });
      frames.forEach((f, n) => w.writeFrameAt(f, 0, f.length, 1_700_000_000 + n, 0));
    }
    const out = execFileSync('tshark', ['-r', path, '-n', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE',
      '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=,',
      '-e', 'frame.number', '-e', 'tcp.checksum.status', '-e', 'udp.checksum.status', '-e', 'icmpv6.checksum.status', '-e', '_ws.expert.message'],
    { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = out.split('\n').filter((l) => /^\d+\t/.test(l));
    assert.equal(lines.length, frames.length, out);
    // Wireshark's checksum status: 0 bad, 1 good, 2 unverified. It checks the TCP or UDP
    // packet quoted in an ICMPv6 error too, not a quoted ICMPv6 message (2).
    lines.forEach((line, n) => {
      const [, tcp, udp, icmp, expert] = line.split('\t');
      const l4 = [tcp, udp].flatMap((s) => (s ? s.split(',') : []));
      const icmpv6 = icmp ? icmp.split(',') : [];
      assert.ok(l4.length + icmpv6.length > 0, `frame ${n + 1}: no checksum status: ${line}`);
      assert.ok(l4.every((s) => s === '1'), `frame ${n + 1}: ${line}`);
      if (icmpv6.length > 0) assert.equal(icmpv6[0], '1', `frame ${n + 1}: ${line}`);
      assert.ok(icmpv6.every((s) => s !== '0'), `frame ${n + 1}: ${line}`);
      assert.ok(!/checksum/i.test(expert ?? ''), `frame ${n + 1}: ${expert}`);
    });
    // The error frames really carry a checked quote: the last six have two statuses each.
    assert.ok(lines.slice(-6).every((l) => l.split('\t').slice(1, 4).join(',').split(',').filter((s) => s !== '').length === 2), out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the rewrites allocate nothing: no GC and ~0 heap growth over 1,000,000 calls', () => {
  const child = fileURLToPath(new URL('./fixtures/wire/nat6-alloc-child.ts', import.meta.url));
  const out = execFileSync(process.execPath, ['--expose-gc', '--trace-gc', '--max-semi-space-size=1', child, '1000000'], { encoding: 'utf8', timeout: 120_000 });
  const lines = out.split('\n');
  const start = lines.indexOf('MARK start');
  const end = lines.indexOf('MARK end');
  assert.ok(start >= 0 && end > start, out);
  const gcs = lines.slice(start + 1, end).filter((l) => /Scavenge|Mark-Compact|Minor/.test(l));
  assert.deepEqual(gcs, [], 'garbage collections inside the rewrite loop');
  const result = JSON.parse(lines[end + 1]!) as { n: number; calls: number; heapGrowth: number; ok: boolean };
  assert.equal(result.n, 1_000_000);
  assert.ok(result.calls >= 1_000_000, `calls: ${result.calls}`);
  // The loop rewrites every frame and back: the frames must still be the originals.
  assert.equal(result.ok, true, 'frames restored after the loop');
  assert.ok(result.heapGrowth < 400 * 1024, `heap grew by ${result.heapGrowth} bytes`);
});
