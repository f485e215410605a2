// Byte fixtures for the link-level views: Ethernet/802.1Q, ARP, VXLAN, virtio-net
// header, and the address helpers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ArpOp, ArpPacket, DropReason, EthernetFrame, EtherType, VirtioNetGso, VirtioNetHeader, VxlanHeader, VIRTIO_NET_HEADER_LENGTH,
  ipv4ToString, ipv6ToString, macToString, ipv4, parseIpv4, parseIpv6, parseMac,
} from '../src/wire/index.ts';
import { arpRequest, hex, icmp4EchoRequest, vxlanEcho } from './fixtures/wire/frames.ts';

// The echo request with an 802.1Q tag (VID 100, PCP 5) inserted after the MACs,
// as a tagged trunk port would carry it.
function tagged(frame: Uint8Array, tci: number): Uint8Array {
  const out = new Uint8Array(frame.length + 4);
  out.set(frame.subarray(0, 12));
  out.set([0x81, 0x00, tci >>> 8, tci & 0xff], 12);
  out.set(frame.subarray(12), 16);
  return out;
}

test('Ethernet: the captured ARP request broadcast', () => {
  const eth = new EthernetFrame();
  assert.equal(eth.wrap(arpRequest, 0, arpRequest.length), true);
  assert.equal(macToString(eth.dst), 'ff:ff:ff:ff:ff:ff');
  assert.equal(eth.dstIsBroadcast, true);
  assert.equal(eth.dstIsMulticast, true);
  assert.equal(macToString(eth.src), '02:00:00:00:00:0a');
  assert.equal(eth.ethertype, EtherType.ARP);
  assert.equal(eth.hasVlan, false);
  assert.equal(eth.vlanId, -1);
  assert.equal(eth.headerLength, 14);
  assert.equal(eth.payloadOffset, 14);
  assert.equal(eth.payloadLength, 28);
});

test('Ethernet: one 802.1Q tag is recognised and the ethertype read after it', () => {
  const frame = tagged(icmp4EchoRequest, (5 << 13) | 100);
  const eth = new EthernetFrame();
  assert.equal(eth.wrap(frame, 0, frame.length), true);
  assert.equal(eth.hasVlan, true);
  assert.equal(eth.vlanId, 100);
  assert.equal(eth.vlanPcp, 5);
  assert.equal(eth.ethertype, EtherType.IPV4);
  assert.equal(eth.payloadOffset, 18);
  assert.equal(eth.payloadLength, icmp4EchoRequest.length - 14);
  eth.ethertype = EtherType.IPV6;
  assert.deepEqual([...frame.subarray(12, 18)], [0x81, 0x00, 0xa0, 0x64, 0x86, 0xdd]);
  // The tag announced but cut off.
  assert.equal(eth.wrap(frame, 0, 17), false);
  assert.equal(eth.reason, DropReason.TRUNCATED_ETHERNET);
});

test('Ethernet: setters write MACs in place; short and out-of-buffer wraps fail', () => {
  const frame = icmp4EchoRequest.slice();
  const eth = new EthernetFrame();
  assert.equal(eth.wrap(frame, 0, frame.length), true);
  eth.dst = parseMac('aa:bb:cc:dd:ee:ff')!;
  eth.src = parseMac('01-00-5e-00-00-fb')!;
  assert.deepEqual([...frame.subarray(0, 12)], [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
  assert.equal(eth.dstIsMulticast, false);
  assert.equal(eth.wrap(frame, 0, 13), false);
  assert.equal(eth.reason, DropReason.TRUNCATED_ETHERNET);
  assert.equal(eth.wrap(frame, frame.length - 10, 20), false);
  assert.equal(eth.wrap(frame, 10, frame.length - 10), true); // a view may start anywhere
});

test('ARP: the captured request, field by field, and rewriting it into a reply', () => {
  const frame = arpRequest.slice();
  const arp = new ArpPacket();
  assert.equal(arp.wrap(frame, 14, frame.length - 14), true);
  assert.equal(arp.op, ArpOp.REQUEST);
  assert.equal(macToString(arp.senderMac), '02:00:00:00:00:0a');
  assert.equal(ipv4ToString(arp.senderIp), '10.77.0.1');
  assert.equal(arp.targetMac, 0);
  assert.equal(ipv4ToString(arp.targetIp), '10.77.0.2');
  arp.op = ArpOp.REPLY;
  arp.targetMac = arp.senderMac;
  arp.targetIp = arp.senderIp;
  arp.senderMac = parseMac('02:00:00:00:00:0b')!;
  arp.senderIp = ipv4('10.77.0.2');
  assert.equal(Buffer.from(frame.subarray(14)).toString('hex'),
    '0001080006040002' + '02000000000b0a4d0002' + '02000000000a0a4d0001');
});

test('ARP: replyInPlace (no view) writes the same reply as the setters', () => {
  const frame = arpRequest.slice();
  ArpPacket.replyInPlace(frame, 14, ipv4('10.77.0.2'), parseMac('02:00:00:00:00:0b')!);
  assert.equal(Buffer.from(frame.subarray(14)).toString('hex'),
    '0001080006040002' + '02000000000b0a4d0002' + '02000000000a0a4d0001');
});

test('Ethernet: static setters write an untagged header without a view', () => {
  const b = new Uint8Array(16).fill(0xee);
  EthernetFrame.setDst(b, 1, parseMac('0a:58:0a:f4:01:07')!);
  EthernetFrame.setSrc(b, 1, parseMac('0a:58:0a:f4:01:01')!);
  EthernetFrame.setEthertype(b, 1, EtherType.IPV4);
  assert.equal(Buffer.from(b).toString('hex'), 'ee' + '0a580af40107' + '0a580af40101' + '0800' + 'ee');
  assert.equal(EthernetFrame.ethertype(b, 1), EtherType.IPV4);
  assert.equal(EthernetFrame.ethertype(arpRequest, 0), EtherType.ARP);
});

test('ARP: short, and not Ethernet/IPv4, are refused', () => {
  const arp = new ArpPacket();
  assert.equal(arp.wrap(arpRequest, 14, 27), false);
  assert.equal(arp.reason, DropReason.TRUNCATED_ARP);
  const ieee1394 = arpRequest.slice();
  ieee1394[15] = 24; // htype 24 (IEEE 1394)
  assert.equal(arp.wrap(ieee1394, 14, 28), false);
  assert.equal(arp.reason, DropReason.UNSUPPORTED_ARP);
  const plen6 = arpRequest.slice();
  plen6[14 + 5] = 16;
  assert.equal(arp.wrap(plen6, 14, 28), false);
  assert.equal(arp.reason, DropReason.UNSUPPORTED_ARP);
});

test('VXLAN: the captured kernel VXLAN frame (VNI 42) and its inner frame', () => {
  const vx = new VxlanHeader();
  // Ethernet 14 + IPv4 20 + UDP 8.
  assert.equal(vx.wrap(vxlanEcho, 42, vxlanEcho.length - 42), true);
  assert.equal(vx.flags, 0x08);
  assert.equal(vx.vni, 42);
  assert.equal(vx.innerOffset, 50);
  const inner = new EthernetFrame();
  assert.equal(inner.wrap(vxlanEcho, vx.innerOffset, vx.innerLength), true);
  assert.equal(macToString(inner.dst), '02:00:00:00:01:0b');
  assert.equal(inner.ethertype, EtherType.IPV4);
});

test('VXLAN: I flag required, short refused, VNI setter and emit', () => {
  const b = vxlanEcho.slice();
  const vx = new VxlanHeader();
  b[42] = 0x00;
  assert.equal(vx.wrap(b, 42, b.length - 42), false);
  assert.equal(vx.reason, DropReason.BAD_VXLAN_FLAGS);
  b[42] = 0x08 | 0x80; // reserved bits are ignored on receipt (RFC 7348 §5)
  assert.equal(vx.wrap(b, 42, b.length - 42), true);
  assert.equal(vx.wrap(b, 42, 7), false);
  assert.equal(vx.reason, DropReason.TRUNCATED_VXLAN);
  assert.equal(VxlanHeader.flags(b, 42), 0x88);
  assert.equal(VxlanHeader.vni(b, 42), 42);
  const h = new Uint8Array(8).fill(0xee);
  VxlanHeader.emit(h, 0, 0xabcdef);
  assert.equal(Buffer.from(h).toString('hex'), '0800000' + '0abcdef00');
  assert.equal(vx.wrap(h, 0, 8), true);
  vx.vni = 0xffffff;
  assert.equal(vx.vni, 0xffffff);
  assert.equal(h[7], 0);
});

test('virtio-net header: a TSO frame header as Linux writes it (little-endian fields)', () => {
  // flags NEEDS_CSUM, gso TCPV4|ECN, hdr_len 66, gso_size 1448, csum_start 34, csum_offset 16
  const b = hex('01 81 4200 a805 2200 1000');
  const h = new VirtioNetHeader();
  assert.equal(h.headerLength, 10);
  assert.equal(h.wrap(b, 0, b.length), true);
  assert.equal(h.needsCsum, true);
  assert.equal(h.dataValid, false);
  assert.equal(h.gsoType, 0x81);
  assert.equal(h.gsoProtocol, VirtioNetGso.TCPV4);
  assert.equal(h.gsoEcn, true);
  assert.equal(h.hdrLen, 66);
  assert.equal(h.gsoSize, 1448);
  assert.equal(h.csumStart, 34);
  assert.equal(h.csumOffset, 16);
  assert.equal(h.numBuffers, 1);
  assert.equal(h.frameOffset, 10);
  h.gsoType = VirtioNetGso.UDP_L4;
  h.gsoSize = 1472;
  h.csumOffset = 6;
  assert.equal(Buffer.from(b).toString('hex'), '0105' + '4200' + 'c005' + '2200' + '0600');
  h.clear();
  assert.equal(b.every((x) => x === 0), true);
  assert.equal(h.wrap(b, 0, 9), false);
  assert.equal(h.reason, DropReason.TRUNCATED_VIRTIO_NET_HEADER);
});

test('virtio-net header: static accessors read and write the same fields without a view', () => {
  const b = hex('ee 01 81 4200 a805 2200 1000');
  assert.equal(VirtioNetHeader.flags(b, 1), 1);
  assert.equal(VirtioNetHeader.needsCsum(b, 1), true);
  assert.equal(VirtioNetHeader.gsoType(b, 1), 0x81);
  assert.equal(VirtioNetHeader.gsoProtocol(b, 1), VirtioNetGso.TCPV4);
  assert.equal(VirtioNetHeader.hdrLen(b, 1), 66);
  assert.equal(VirtioNetHeader.gsoSize(b, 1), 1448);
  assert.equal(VirtioNetHeader.csumStart(b, 1), 34);
  assert.equal(VirtioNetHeader.csumOffset(b, 1), 16);
  VirtioNetHeader.setGsoType(b, 1, VirtioNetGso.UDP_L4);
  VirtioNetHeader.setGsoSize(b, 1, 1472);
  VirtioNetHeader.setCsumOffset(b, 1, 6);
  VirtioNetHeader.setHdrLen(b, 1, 42);
  VirtioNetHeader.setCsumStart(b, 1, 20);
  VirtioNetHeader.setFlags(b, 1, 0);
  assert.equal(Buffer.from(b).toString('hex'), 'ee' + '0005' + '2a00' + 'c005' + '1400' + '0600');
  VirtioNetHeader.clear(b, 1);
  assert.equal(Buffer.from(b).toString('hex'), 'ee' + '00'.repeat(VIRTIO_NET_HEADER_LENGTH));
});

test('virtio-net header: move shifts csum_start and hdr_len with the link header', () => {
  // A TSO frame's header (NEEDS_CSUM, TCPV4, hdr_len 66, csum_start 34) moving 14 bytes
  // up when Ethernet is stripped, then back down when it is prepended again.
  const b = new Uint8Array(44);
  b.set(hex('01 01 4200 a805 2200 1000'), 20);
  VirtioNetHeader.move(b, 20, 34, -14);
  assert.equal(Buffer.from(b.subarray(34, 40)).toString('hex'), '0101' + '3400' + 'a805');
  assert.equal(VirtioNetHeader.hdrLen(b, 34), 52);
  assert.equal(VirtioNetHeader.csumStart(b, 34), 20);
  assert.equal(VirtioNetHeader.gsoSize(b, 34), 1448);
  assert.equal(VirtioNetHeader.csumOffset(b, 34), 16);
  VirtioNetHeader.move(b, 34, 0, 14);
  assert.equal(Buffer.from(b.subarray(0, 10)).toString('hex'), '0101' + '4200' + 'a805' + '2200' + '1000');
  // No offload requested: nothing to shift, the header is copied as it is.
  const plain = new Uint8Array(30);
  plain.set(hex('00 00 4200 0000 2200 1000'), 0);
  VirtioNetHeader.move(plain, 0, 14, 14);
  assert.equal(Buffer.from(plain.subarray(14, 24)).toString('hex'), '0000' + '4200' + '0000' + '2200' + '1000');
});

test('virtio-net header: the 12-byte num_buffers variant', () => {
  const b = hex('02 00 0000 0000 0000 0000 0300');
  const h = new VirtioNetHeader(true);
  assert.equal(h.headerLength, 12);
  assert.equal(h.wrap(b, 0, 11), false);
  assert.equal(h.wrap(b, 0, 12), true);
  assert.equal(h.dataValid, true);
  assert.equal(h.gsoType, VirtioNetGso.NONE);
  assert.equal(h.numBuffers, 3);
  h.numBuffers = 1;
  assert.equal(b[10], 1);
  assert.equal(h.frameOffset, 12);
});

test('address helpers: IPv4 and MAC text round trips, malformed input gives -1', () => {
  assert.equal(ipv4('10.96.0.10'), 0x0a60000a);
  assert.equal(ipv4('255.255.255.255'), 0xffffffff);
  assert.equal(ipv4ToString(0xffffffff), '255.255.255.255');
  assert.equal(ipv4ToString(0x0a60000a), '10.96.0.10');
  for (const bad of ['10.0.0', '10.0.0.256', '1.2.3.4.5', '01.2.3.4', 'a.b.c.d', '', '1..2.3', '256.1.1.1', '1.300.1.1', '1.2.3.00', '1.2.3.', '.1.2.3',
    ' 1.2.3.4', '1.2.3.4 ', '1.2.3.0x1', '1.2.3.-1', '1000.1.1.1', '1.2.3.4\n']) assert.equal(parseIpv4(bad), undefined, bad);
  for (const [text, value] of [['0.0.0.0', 0], ['255.255.255.255', 0xffffffff], ['10.96.0.1', 0x0a600001], ['1.20.100.0', 0x01146400]] as const) assert.equal(parseIpv4(text), value, text);
  assert.equal(macToString(parseMac('02:42:AC:11:00:02')!), '02:42:ac:11:00:02');
  assert.equal(parseMac('02:42:ac:11:00')!, undefined);
  assert.equal(parseMac('02:42:ac:11:00:zz')!, undefined);
});

test('address helpers: IPv6 text per RFC 5952', () => {
  const cases: Array<[string, string]> = [
    ['2001:db8::1', '2001:db8::1'],
    ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group stays
    ['::', '::'],
    ['::1', '::1'],
    ['fe80::ff:fe00:a', 'fe80::ff:fe00:a'],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], // the longest run wins
  ];
  for (const [input, text] of cases) {
    const b = parseIpv6(input);
    assert.ok(b, input);
    assert.equal(ipv6ToString(b), text);
  }
  for (const bad of ['1::2::3', '1:2:3:4:5:6:7', '12345::', 'g::1', '1:2:3:4:5:6:7:8:9']) assert.equal(parseIpv6(bad), null, bad);
});
