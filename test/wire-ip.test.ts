// Byte fixtures for the IPv4 and IPv6 views, including the malformed cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DropReason, IpProtocol, Ipv4Packet, Ipv6Packet, ipv4ToString, ipv6ToString, ipv4, get16, set16, updateChecksum16 } from '../src/wire/index.ts';
import {
  icmp4EchoRecordRoute, icmp4EchoRequest, icmp4PortUnreachable, icmp6EchoRequest, icmp6PortUnreachable,
  ipv4FirstFragment, ipv4LastFragment, ipv6FirstFragment, ipv6LastFragment, mldv2HopByHop, udp6DnsQuery,
} from './fixtures/wire/frames.ts';

const ETH = 14;
const ip4 = new Ipv4Packet();
const ip6 = new Ipv6Packet();

function l3(frame: Uint8Array): Uint8Array {
  return frame.slice(ETH);
}

test('IPv4: the captured echo request, field by field', () => {
  const p = l3(icmp4EchoRequest);
  assert.equal(ip4.wrap(p, 0, p.length), true);
  assert.equal(ip4.version, 4);
  assert.equal(ip4.headerLength, 20);
  assert.equal(ip4.totalLength, 84);
  assert.equal(ip4.ident, 0xb316);
  assert.equal(ip4.dontFragment, true);
  assert.equal(ip4.moreFragments, false);
  assert.equal(ip4.fragmentOffset, 0);
  assert.equal(ip4.isFragment, false);
  assert.equal(ip4.ttl, 64);
  assert.equal(ip4.protocol, IpProtocol.ICMP);
  assert.equal(ip4.checksum, 0x72f6);
  assert.equal(ipv4ToString(ip4.src), '10.77.0.1');
  assert.equal(ipv4ToString(ip4.dst), '10.77.0.2');
  assert.equal(ip4.payloadOffset, 20);
  assert.equal(ip4.payloadLength, 64);
  assert.equal(ip4.verifyChecksum(), true);
});

test('IPv4: Ethernet padding after the total length is not part of the packet', () => {
  const p = new Uint8Array(l3(icmp4EchoRequest).length + 10);
  p.set(l3(icmp4EchoRequest));
  assert.equal(ip4.wrap(p, 0, p.length), true);
  assert.equal(ip4.len, 84);
  assert.equal(ip4.payloadLength, 64);
});

test('IPv4: a record-route option (IHL 15) is walked and the header still verifies', () => {
  const p = l3(icmp4EchoRecordRoute);
  assert.equal(ip4.wrap(p, 0, p.length), true);
  assert.equal(ip4.headerLength, 60);
  assert.equal(ip4.optionsLength, 40);
  assert.equal(ip4.payloadOffset, 60);
  assert.equal(ip4.verifyChecksum(), true);
});

test('IPv4: fragments are recognised (MF, offset in bytes, isFragment)', () => {
  const first = l3(ipv4FirstFragment);
  assert.equal(ip4.wrap(first, 0, first.length), true);
  assert.equal(ip4.moreFragments, true);
  assert.equal(ip4.fragmentOffset, 0);
  assert.equal(ip4.isFragment, true);
  const last = l3(ipv4LastFragment);
  assert.equal(ip4.wrap(last, 0, last.length), true);
  assert.equal(ip4.moreFragments, false);
  assert.equal(ip4.fragmentOffset, 2960);
  assert.equal(ip4.isFragment, true);
  ip4.setFlagsAndOffset(false, true, 1480);
  assert.equal(ip4.moreFragments, true);
  assert.equal(ip4.dontFragment, false);
  assert.equal(ip4.fragmentOffset, 1480);
});

test('IPv4: malformed headers are refused with a reason', () => {
  const good = l3(icmp4EchoRequest);
  const cases: Array<[string, (p: Uint8Array) => number, number]> = [
    ['shorter than 20 bytes', () => 19, DropReason.TRUNCATED_IPV4],
    ['version 6 in an IPv4 slot', (p) => { p[0] = 0x65; return p.length; }, DropReason.BAD_IP_VERSION],
    ['IHL 4 (16 bytes)', (p) => { p[0] = 0x44; return p.length; }, DropReason.BAD_IPV4_IHL],
    ['IHL 15 with 40 bytes in the buffer', (p) => { p[0] = 0x4f; return 40; }, DropReason.BAD_IPV4_IHL],
    ['total length past the buffer', (p) => { set16(p, 2, 85); return p.length; }, DropReason.BAD_IPV4_TOTAL_LENGTH],
    ['total length shorter than the header', (p) => { set16(p, 2, 19); return p.length; }, DropReason.BAD_IPV4_TOTAL_LENGTH],
  ];
  for (const [name, mutate, reason] of cases) {
    const p = good.slice();
    const len = mutate(p);
    assert.equal(ip4.wrap(p, 0, len), false, name);
    assert.equal(ip4.reason, reason, name);
  }
  // A view never reads past the Uint8Array, whatever len claims.
  assert.equal(ip4.wrap(good, 10, good.length), false);
});

test('IPv4: options that run past the header are refused', () => {
  const rr = l3(icmp4EchoRecordRoute);
  const cases: Array<[string, (p: Uint8Array) => void]> = [
    // RR at byte 21: type 7, length 39 fills the header exactly; 41 runs 2 bytes past it.
    ['option length past IHL', (p) => { p[22] = 41; }],
    ['option length 1', (p) => { p[22] = 1; }],
    ['option length 0', (p) => { p[22] = 0; }],
    ['a type byte with no room for its length', (p) => { p[22] = 38; p[59] = 0x44; }],
  ];
  for (const [name, mutate] of cases) {
    const p = rr.slice();
    mutate(p);
    assert.equal(ip4.wrap(p, 0, p.length), false, name);
    assert.equal(ip4.reason, DropReason.BAD_IPV4_OPTIONS, name);
  }
  // End-of-list stops the walk: garbage after it is padding.
  const eol = rr.slice();
  eol[20] = 0; eol[21] = 0xff;
  assert.equal(ip4.wrap(eol, 0, eol.length), true);
});

test('IPv4: setters, TTL decrement and address rewrites keep the header checksum right', () => {
  const p = l3(icmp4EchoRecordRoute);
  assert.equal(ip4.wrap(p, 0, p.length), true);
  ip4.decrementTtl();
  assert.equal(ip4.ttl, 63);
  assert.equal(ip4.verifyChecksum(), true);
  ip4.rewriteSrc(ipv4('192.168.7.9'));
  ip4.rewriteDst(ipv4('10.96.0.1'));
  assert.equal(ipv4ToString(ip4.src), '192.168.7.9');
  assert.equal(ip4.verifyChecksum(), true);
  const incremental = ip4.checksum;
  ip4.fillChecksum();
  assert.equal(ip4.checksum, incremental);
  ip4.ttl = 1;
  ip4.ident = 0x1234;
  assert.equal(ip4.verifyChecksum(), false);
});

test('IPv4: static accessors read and write the same fields without a view', () => {
  const f = icmp4EchoRecordRoute.slice();
  assert.equal(ip4.wrap(f, ETH, f.length - ETH), true);
  assert.equal(Ipv4Packet.headerLength(f, ETH), 60);
  assert.equal(Ipv4Packet.totalLength(f, ETH), ip4.totalLength);
  assert.equal(Ipv4Packet.ident(f, ETH), ip4.ident);
  assert.equal(Ipv4Packet.dontFragment(f, ETH), ip4.dontFragment);
  assert.equal(Ipv4Packet.ttl(f, ETH), 64);
  assert.equal(Ipv4Packet.protocol(f, ETH), IpProtocol.ICMP);
  assert.equal(Ipv4Packet.src(f, ETH), ip4.src);
  assert.equal(Ipv4Packet.dst(f, ETH), ip4.dst);
  assert.equal(Ipv4Packet.checksum(f, ETH), ip4.checksum);
  // One hop: TTL 63 and a checksum that still verifies, equal to a full recompute.
  Ipv4Packet.decrementTtl(f, ETH);
  assert.equal(ip4.ttl, 63);
  assert.equal(ip4.verifyChecksum(), true);
  const incremental = ip4.checksum;
  Ipv4Packet.setChecksum(f, ETH, 0);
  Ipv4Packet.fillChecksum(f, ETH);
  assert.equal(ip4.checksum, incremental);
  Ipv4Packet.setSrc(f, ETH, ipv4('192.168.7.9'));
  Ipv4Packet.setDst(f, ETH, ipv4('10.96.0.1'));
  Ipv4Packet.setTotalLength(f, ETH, 100);
  Ipv4Packet.setIdent(f, ETH, 0x1234);
  assert.equal(ipv4ToString(ip4.src), '192.168.7.9');
  assert.equal(ipv4ToString(ip4.dst), '10.96.0.1');
  assert.equal(ip4.totalLength, 100);
  assert.equal(ip4.ident, 0x1234);
  assert.equal(ip4.verifyChecksum(), false);
});

test('IPv4: decrementTtl\'s folded update equals the general RFC 1624 one for any TTL, protocol and checksum', () => {
  const b = new Uint8Array(20);
  let checked = 0;
  for (let ttl = 2; ttl < 256; ttl++) {
    for (const protocol of [IpProtocol.ICMP, IpProtocol.TCP, IpProtocol.UDP, 0xff]) {
      for (let hc = 0; hc < 0x10000; hc += 251) {
        b[8] = ttl; b[9] = protocol; set16(b, 10, hc);
        const word = get16(b, 8);
        Ipv4Packet.decrementTtl(b, 0);
        assert.equal(b[8], ttl - 1);
        assert.equal(get16(b, 10), updateChecksum16(hc, word, word - 0x100));
        checked++;
      }
    }
  }
  assert.ok(checked > 250_000);
});

test('IPv4: the original header quoted in an ICMP error may be cut short', () => {
  // ICMP at 20, its quote at 28; keep the quoted header plus 8 bytes (RFC 792 minimum).
  const p = l3(icmp4PortUnreachable).slice(0, 20 + 8 + 28);
  assert.equal(ip4.wrap(p, 28, 28), false);
  assert.equal(ip4.reason, DropReason.BAD_IPV4_TOTAL_LENGTH);
  assert.equal(ip4.wrapEmbedded(p, 28, 28), true);
  assert.equal(ip4.protocol, IpProtocol.UDP);
  assert.equal(ipv4ToString(ip4.src), '10.77.0.1');
  assert.equal(ip4.totalLength, 80);
  assert.equal(ip4.len, 28);
  assert.equal(ip4.wrapEmbedded(p, 28, 19), false);
});

test('IPv6: the captured echo request', () => {
  const p = l3(icmp6EchoRequest);
  assert.equal(ip6.wrap(p, 0, p.length), true);
  assert.equal(ip6.version, 6);
  assert.equal(ip6.payloadLength, 64);
  assert.equal(ip6.nextHeader, IpProtocol.ICMPV6);
  assert.equal(ip6.hopLimit, 64);
  assert.equal(ipv6ToString(p, ip6.srcOffset), 'fd00:77::1');
  assert.equal(ipv6ToString(p, ip6.dstOffset), 'fd00:77::2');
  assert.equal(ip6.srcWord(0), 0xfd000077);
  assert.equal(ip6.dstWord(3), 2);
  assert.equal(ip6.upperProtocol, IpProtocol.ICMPV6);
  assert.equal(ip6.upperOffset, 40);
  assert.equal(ip6.upperLength, 64);
  assert.equal(ip6.isFragment, false);
  ip6.hopLimit = 3;
  ip6.copySrcFrom(p, ip6.dstOffset);
  assert.equal(ipv6ToString(p, 8), 'fd00:77::2');
  assert.equal(p[7], 3);
});

test('IPv6: the captured MLDv2 report skips its hop-by-hop header', () => {
  const p = l3(mldv2HopByHop);
  assert.equal(ip6.wrap(p, 0, p.length), true);
  assert.equal(ip6.nextHeader, IpProtocol.HOP_BY_HOP);
  assert.equal(ip6.upperProtocol, IpProtocol.ICMPV6);
  assert.equal(ip6.upperOffset, 48);
});

test('IPv6: the captured fragments', () => {
  const first = l3(ipv6FirstFragment);
  assert.equal(ip6.wrap(first, 0, first.length), true);
  assert.equal(ip6.isFragment, true);
  assert.equal(ip6.fragmentHeaderOffset, 40);
  assert.equal(ip6.fragmentOffset, 0);
  assert.equal(ip6.moreFragments, true);
  assert.notEqual(ip6.fragmentIdent, 0);
  const ident = ip6.fragmentIdent;
  assert.equal(ip6.upperProtocol, IpProtocol.ICMPV6);
  assert.equal(ip6.upperOffset, 48);
  const last = l3(ipv6LastFragment);
  assert.equal(ip6.wrap(last, 0, last.length), true);
  assert.equal(ip6.fragmentOffset, 2896);
  assert.equal(ip6.moreFragments, false);
  assert.equal(ip6.fragmentIdent, ident);
  // A later fragment's data has no header of its own: the walk stops after the fragment header.
  assert.equal(ip6.upperOffset, 48);
});

// The captured UDP/IPv6 query with extension headers put in front of UDP. Each entry
// is [type, bytes]; next-header bytes and the payload length are filled in.
function withExtensions(headers: Array<[number, number[]]>): Uint8Array {
  const base = l3(udp6DnsQuery);
  const ext = headers.reduce((n, [, b]) => n + b.length, 0);
  const p = new Uint8Array(base.length + ext);
  p.set(base.subarray(0, 40));
  let at = 40;
  p[6] = headers.length > 0 ? headers[0]![0] : IpProtocol.UDP;
  headers.forEach(([, bytes], i) => {
    p.set(bytes, at);
    p[at] = i + 1 < headers.length ? headers[i + 1]![0] : IpProtocol.UDP;
    at += bytes.length;
  });
  p.set(base.subarray(40), at);
  set16(p, 4, p.length - 40);
  return p;
}

const HBH = (): [number, number[]] => [0, [0, 0, 1, 4, 0, 0, 0, 0]]; // PadN
const ROUTING = (): [number, number[]] => [43, [0, 0, 4, 0, 0, 0, 0, 0]]; // type 4, segments left 0
const DSTOPT16 = (): [number, number[]] => [60, [0, 1, 1, 12, ...new Array<number>(12).fill(0)]];
const AH24 = (): [number, number[]] => [51, [0, 4, 0, 0, ...new Array<number>(20).fill(0xab)]]; // (4+2)*4
const FRAG0 = (): [number, number[]] => [44, [0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]]; // offset 0, M=0

test('IPv6: hop-by-hop, routing, destination options, AH and fragment headers are skipped', () => {
  const p = withExtensions([HBH(), DSTOPT16(), ROUTING(), FRAG0(), AH24(), DSTOPT16()]);
  assert.equal(ip6.wrap(p, 0, p.length), true, `reason ${ip6.reason}`);
  assert.equal(ip6.upperProtocol, IpProtocol.UDP);
  assert.equal(ip6.upperOffset, 40 + 8 + 16 + 8 + 8 + 24 + 16);
  assert.equal(get16(p, ip6.upperOffset + 2), 5353); // the UDP destination port is there
  assert.equal(ip6.upperLength, 60);
  assert.equal(ip6.isFragment, true); // an atomic fragment (RFC 6946): offset 0, no M
  assert.equal(ip6.fragmentIdent, 0xdeadbeef);
});

test('IPv6: malformed extension chains are refused', () => {
  const cases: Array<[string, Uint8Array, number, number]> = [];
  const past = withExtensions([HBH()]);
  past[41] = 20; // hop-by-hop claims (20+1)*8 bytes
  cases.push(['hop-by-hop past the end', past, past.length, DropReason.BAD_IPV6_EXTENSION_HEADER]);
  const ah = withExtensions([AH24()]);
  ah[41] = 40;
  cases.push(['AH past the end', ah, ah.length, DropReason.BAD_IPV6_EXTENSION_HEADER]);
  const late = withExtensions([DSTOPT16(), HBH()]);
  cases.push(['hop-by-hop not first', late, late.length, DropReason.BAD_IPV6_EXTENSION_HEADER]);
  const twoFrags = withExtensions([FRAG0(), FRAG0()]);
  cases.push(['two fragment headers', twoFrags, twoFrags.length, DropReason.BAD_IPV6_EXTENSION_HEADER]);
  const cut = withExtensions([DSTOPT16()]);
  set16(cut, 4, 10); // the payload ends inside the destination options
  cases.push(['payload length ends inside a header', cut, cut.length, DropReason.BAD_IPV6_EXTENSION_HEADER]);
  const long = l3(icmp6EchoRequest);
  set16(long, 4, 65);
  cases.push(['payload length past the buffer', long, long.length, DropReason.BAD_IPV6_PAYLOAD_LENGTH]);
  cases.push(['shorter than 40 bytes', l3(icmp6EchoRequest), 39, DropReason.TRUNCATED_IPV6]);
  const v4 = l3(icmp6EchoRequest);
  v4[0] = 0x45;
  cases.push(['version 4 in an IPv6 slot', v4, v4.length, DropReason.BAD_IP_VERSION]);
  for (const [name, p, len, reason] of cases) {
    assert.equal(ip6.wrap(p, 0, len), false, name);
    assert.equal(ip6.reason, reason, name);
  }
});

test('IPv6: the invoking packet quoted in an ICMPv6 error', () => {
  const p = l3(icmp6PortUnreachable);
  // ICMPv6 at 40, quote at 48. Cut the quote to its IPv6 header + 8 bytes.
  const cut = p.slice(0, 48 + 48);
  assert.equal(ip6.wrap(cut, 48, 48), false);
  assert.equal(ip6.wrapEmbedded(cut, 48, 48), true);
  assert.equal(ip6.upperProtocol, IpProtocol.UDP);
  assert.equal(ip6.upperOffset, 88);
  assert.equal(ipv6ToString(cut, ip6.dstOffset), 'fd00:77::2');
});
