// Packet-trace tests of the datapath's IPv6 paths on a dual-stack node (pods
// fd00:10:244:1::/64 beside 10.244.1.0/24, a remote node with fd00:10:244:2::/64):
// neighbour solicitations answered, echo to the gateway, anti-spoofing, switching and
// routing between local pods, to the node's stack and over VXLAN, from the host TUN and
// from the underlay, Packet Too Big, TSO segmentation, GRO coalescing, and a node with
// no IPv6 range. Every reply is checked byte for byte or decoded and checksum-verified.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ForwardingTable, macForIpv4, macForIpv6, type PodEntry } from '../src/datapath/forwarding.ts';
import {
  Icmpv6Type, IpProtocol, LinkType, TcpFlags, VIRTIO_NET_HEADER_LENGTH, VirtioNetFlags, VirtioNetGso, buildPacket,
  ipv6ToString, linkLocalForMac, macToString, parseCidr6, parseIpv6, pseudoHeaderV6, verifyChecksum, verifyChecksums,
  type PacketRepr,
} from '../src/wire/index.ts';
import {
  CLUSTER_CIDR, GATEWAY_MAC, MAC_A, MAC_B, MTU, POD_A, POD_B, POD_CIDR, REMOTE_NODE_IP, REMOTE_POD_CIDR, Rig,
  UNDERLAY_IP, VNI, assertSameBytes, decode, decodeHostFrame, decodePodFrame, pattern, readVnet, vxlanPayload, withVnet,
} from './helpers/datapath.ts';

const v6 = (s: string): Uint8Array => parseIpv6(s)!;
const POD_CIDR6 = parseCidr6('fd00:10:244:1::/64')!;
const REMOTE_POD_CIDR6 = parseCidr6('fd00:10:244:2::/64')!;
const GW6 = v6('fd00:10:244:1::1');
const POD_A6 = v6('fd00:10:244:1::2');
const POD_B6 = v6('fd00:10:244:1::3');
const REMOTE_POD6 = v6('fd00:10:244:2::5');
const REMOTE_GW6 = v6('fd00:10:244:2::1');
const LL_A = linkLocalForMac(MAC_A);
const REMOTE_POD6_MAC = macForIpv6(REMOTE_POD6);

function table6(pods: readonly PodEntry[], withIpv6 = true): ForwardingTable {
  return new ForwardingTable({
    podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR, underlayIP: UNDERLAY_IP, vni: VNI, mtu: MTU, pods,
    podCIDR6: withIpv6 ? POD_CIDR6 : null, clusterCIDR6: withIpv6 ? parseCidr6('fd00:10:244::/56')! : null,
    remotes: [{ name: 'node-2', underlayIP: REMOTE_NODE_IP, podCIDR: REMOTE_POD_CIDR, podCIDR6: withIpv6 ? REMOTE_POD_CIDR6 : null }],
  });
}

/** The standard rig with pods A and B made dual-stack. */
function dualRig(withIpv6 = true): Rig {
  const rig = new Rig();
  rig.datapath.setTable(table6([
    { port: rig.portA, ip: POD_A, mac: MAC_A, ip6: POD_A6 },
    { port: rig.portB, ip: POD_B, mac: MAC_B, ip6: POD_B6 },
  ], withIpv6));
  return rig;
}

/** The solicited-node multicast address of `target` (RFC 4291 §2.7.1) and its MAC 33:33:ff:xx:xx:xx. */
function solicitedNode(target: Uint8Array): { ip: Uint8Array; mac: number } {
  const ip = v6('ff02::1:ff00:0');
  ip[13] = target[13]!; ip[14] = target[14]!; ip[15] = target[15]!;
  return { ip, mac: 0x3333_ff00_0000 + target[13]! * 65536 + target[14]! * 256 + target[15]! };
}

function neighborSolicit(src: Uint8Array, srcMac: number, target: Uint8Array, opts: { hopLimit?: number; unicastTo?: number; corrupt?: boolean } = {}): Uint8Array {
  const sn = solicitedNode(target);
  const body = new Uint8Array(16 + 8);
  body.set(target, 0);
  body[16] = 1; body[17] = 1; // source link-layer address option
  for (let i = 0; i < 6; i++) body[18 + i] = Math.floor(srcMac / 2 ** (8 * (5 - i))) % 256;
  const frame = withVnet({
    eth: { dst: opts.unicastTo ?? sn.mac, src: srcMac },
    ipv6: { src, dst: opts.unicastTo !== undefined ? target : sn.ip, hopLimit: opts.hopLimit ?? 255 },
    icmp: { type: Icmpv6Type.NEIGHBOR_SOLICIT, code: 0, restOfHeader: 0 },
    payload: body,
  });
  if (opts.corrupt) frame[frame.length - 1]! ^= 0xff;
  return frame;
}

function udp6(src: Uint8Array, dst: Uint8Array, ethSrc: number, ethDst: number, opts: { hopLimit?: number; payload?: Uint8Array } = {}): PacketRepr {
  return {
    eth: { dst: ethDst, src: ethSrc },
    ipv6: { src, dst, hopLimit: opts.hopLimit ?? 64 },
    udp: { srcPort: 40000, dstPort: 5353 },
    payload: opts.payload ?? pattern(100),
  };
}

function bytesOf(a: Uint8Array, off: number): string {
  return ipv6ToString(a, off);
}

test('a neighbour solicitation for the IPv6 gateway is answered with a neighbour advertisement of the gateway MAC, Router flag set (RFC 4861 §7.2.4)', async () => {
  const rig = dualRig();
  try {
    await rig.send(rig.podA, neighborSolicit(LL_A, MAC_A, GW6), neighborSolicit(POD_A6, MAC_A, GW6, { unicastTo: GATEWAY_MAC }));
    const out = rig.podA.takeWritten();
    assert.equal(out.length, 2);
    for (const [i, frame] of out.entries()) {
      assert.deepEqual(readVnet(frame), { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });
      const info = decodePodFrame(frame);
      assert.equal(info.ethDst, MAC_A);
      assert.equal(info.ethSrc, GATEWAY_MAC);
      assert.equal(info.icmpType, Icmpv6Type.NEIGHBOR_ADVERT);
      assert.equal(info.ttl, 255, 'hop limit 255');
      assert.equal(bytesOf(frame, info.src6Offset), 'fd00:10:244:1::1', 'from the target');
      assert.equal(bytesOf(frame, info.dst6Offset), i === 0 ? ipv6ToString(LL_A) : 'fd00:10:244:1::2', 'to the solicitor');
      assert.ok(verifyChecksum(frame, info.l4Offset, info.l4Length, pseudoHeaderV6(frame, info.src6Offset, info.dst6Offset, IpProtocol.ICMPV6, info.l4Length)), 'ICMPv6 checksum');
      const l4 = info.l4Offset;
      assert.equal(frame[l4 + 4], 0xe0, 'Router, Solicited and Override');
      assert.equal(bytesOf(frame, l4 + 8), 'fd00:10:244:1::1', 'target');
      assert.deepEqual([...frame.subarray(l4 + 24, l4 + 32)], [2, 1, 0x0a, 0x58, 10, 244, 1, 1], 'target link-layer address option: the gateway MAC');
      assert.equal(info.l4Length, 32);
    }
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, {});
  } finally {
    rig.close();
  }
});

test("a solicitation for another local pod is answered with that pod's MAC (no Router flag); unknown targets and bad ones are counted", async () => {
  const rig = dualRig();
  try {
    await rig.send(rig.podA, neighborSolicit(LL_A, MAC_A, POD_B6));
    const [na] = rig.podA.takeWritten();
    const info = decodePodFrame(na!);
    assert.equal(info.ethSrc, MAC_B);
    assert.equal(na![info.l4Offset + 4], 0x60, 'Solicited and Override');
    assert.equal(na![info.l4Offset + 26], 0x0a);
    assert.equal(na![info.l4Offset + 31], 3, "pod B's MAC in the option");
    await rig.send(rig.podA,
      neighborSolicit(LL_A, MAC_A, v6('fd00:10:244:1::77')), // nobody
      neighborSolicit(LL_A, MAC_A, REMOTE_POD6), // a remote pod: routed, never on-link
      neighborSolicit(LL_A, MAC_A, GW6, { hopLimit: 64 }), // forwarded NS: invalid (RFC 4861 §7.1.1)
      neighborSolicit(LL_A, MAC_A, GW6, { corrupt: true }), // bad checksum
    );
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'ndp-unknown-target': 2, 'ndp-invalid': 2 });
  } finally {
    rig.close();
  }
});

test('duplicate address detection, router solicitations and MLD reports are link control: ignored and counted, never answered', async () => {
  const rig = dualRig();
  try {
    const dad = neighborSolicit(new Uint8Array(16), MAC_A, POD_A6);
    const rs = withVnet({ eth: { dst: 0x3333_0000_0002, src: MAC_A }, ipv6: { src: LL_A, dst: v6('ff02::2'), hopLimit: 255 }, icmp: { type: Icmpv6Type.ROUTER_SOLICIT, code: 0, restOfHeader: 0 } });
    const mld = withVnet({ eth: { dst: 0x3333_0000_0016, src: MAC_A }, ipv6: { src: LL_A, dst: v6('ff02::16'), hopLimit: 1 }, icmp: { type: 143, code: 0, restOfHeader: 1 }, payload: pattern(20) });
    await rig.send(rig.podA, dad, rs, mld);
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'ndp-ignored': 3 });
  } finally {
    rig.close();
  }
});

test('echo to the IPv6 gateway is answered in place; other traffic to it goes to the node (its IPv6 address on the host TUN)', async () => {
  const rig = dualRig();
  try {
    const req: PacketRepr = { eth: { dst: GATEWAY_MAC, src: MAC_A }, ipv6: { src: POD_A6, dst: GW6, hopLimit: 64 }, icmp: { type: Icmpv6Type.ECHO_REQUEST, code: 0, restOfHeader: 0x1234_0001 }, payload: pattern(56) };
    await rig.send(rig.podA, withVnet(req));
    const reply: PacketRepr = { eth: { dst: MAC_A, src: GATEWAY_MAC }, ipv6: { src: GW6, dst: POD_A6, hopLimit: 64 }, icmp: { type: Icmpv6Type.ECHO_REPLY, code: 0, restOfHeader: 0x1234_0001 }, payload: pattern(56) };
    assert.deepEqual(rig.podA.takeWritten(), [withVnet(reply)]);
    await rig.send(rig.podA, withVnet(udp6(POD_A6, GW6, MAC_A, GATEWAY_MAC)));
    const [h] = rig.host.takeWritten();
    const info = decodeHostFrame(h!);
    assert.equal(info.ipVersion, 6);
    assert.equal(info.ttl, 63);
    assert.equal(bytesOf(h!, info.dst6Offset), 'fd00:10:244:1::1');
    assert.equal(rig.nothingWritten(), '');
  } finally {
    rig.close();
  }
});

test('IPv6 anti-spoofing: the pod may send from its address or its EUI-64 link-local, nothing else', async () => {
  const rig = dualRig();
  try {
    await rig.send(rig.podA,
      withVnet(udp6(POD_B6, REMOTE_POD6, MAC_A, GATEWAY_MAC)), // pod B's address
      withVnet(udp6(v6('fd00:10:244:1::99'), REMOTE_POD6, MAC_A, GATEWAY_MAC)), // nobody's
      withVnet(udp6(linkLocalForMac(MAC_B), POD_B6, MAC_A, MAC_B)), // pod B's link-local
      withVnet(udp6(POD_A6, REMOTE_POD6, MAC_B, GATEWAY_MAC)), // pod B's MAC
    );
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'spoofed-ip': 3, 'spoofed-mac': 1 });
    // An IPv6-only pod sends no IPv4 at all: its IPv4 "address" is none, not 0.0.0.0.
    rig.datapath.setTable(table6([{ port: rig.portA, ip: 0, mac: macForIpv6(POD_A6), ip6: POD_A6 }]));
    await rig.send(rig.podA, withVnet({ eth: { dst: GATEWAY_MAC, src: macForIpv6(POD_A6) }, ipv4: { src: 0, dst: POD_B, ttl: 64 }, udp: { srcPort: 68, dstPort: 67 }, payload: pattern(10) }));
    assert.equal(rig.nothingWritten(), '');
    assert.equal(rig.counters(rig.portA).drops['spoofed-ip'], 4);
  } finally {
    rig.close();
  }
});

test('pod -> pod over IPv6: routed via the gateway MAC (MACs rewritten, hop limit - 1) and switched to the pod MAC (unchanged)', async () => {
  const rig = dualRig();
  try {
    await rig.send(rig.podA, withVnet(udp6(POD_A6, POD_B6, MAC_A, GATEWAY_MAC)));
    const expected = udp6(POD_A6, POD_B6, GATEWAY_MAC, MAC_B, { hopLimit: 63 });
    assert.deepEqual(rig.podB.takeWritten(), [withVnet(expected)]);
    const switched = withVnet(udp6(LL_A, linkLocalForMac(MAC_B), MAC_A, MAC_B));
    await rig.send(rig.podA, withVnet(udp6(POD_A6, POD_B6, MAC_A, MAC_B)));
    assert.deepEqual(rig.podB.takeWritten(), [withVnet(udp6(POD_A6, POD_B6, MAC_A, MAC_B))]);
    // Link-local to link-local is switched only by MAC: pod B's link-local is not in the pod table.
    await rig.send(rig.podA, switched);
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'not-for-us': 1 });
  } finally {
    rig.close();
  }
});

test('pod -> remote pod over IPv6 leaves in VXLAN to the node that owns the range; no pod at a local address is no-such-pod', async () => {
  const rig = dualRig();
  try {
    await rig.send(rig.podA, withVnet(udp6(POD_A6, REMOTE_POD6, MAC_A, GATEWAY_MAC)), withVnet(udp6(POD_A6, v6('fd00:10:244:1::99'), MAC_A, GATEWAY_MAC)));
    assert.equal(rig.underlay.sent.length, 1);
    const d = rig.underlay.sent[0]!;
    assert.equal(d.dst, REMOTE_NODE_IP);
    const inner = buildPacket(udp6(POD_A6, REMOTE_POD6, MAC_A, GATEWAY_MAC, { hopLimit: 63 }));
    assertSameBytes(d.bytes, vxlanPayload(inner), 'VXLAN datagram');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'no-such-pod': 1 });
    // Beyond the cluster: the node's stack.
    await rig.send(rig.podA, withVnet(udp6(POD_A6, v6('2001:db8::1'), MAC_A, GATEWAY_MAC)));
    assert.equal(rig.host.takeWritten().length, 1);
  } finally {
    rig.close();
  }
});

test('from the host TUN: IPv6 to a local pod gets Ethernet (ethertype 86dd) and to a remote pod goes over VXLAN', async () => {
  const rig = dualRig();
  try {
    const raw = (dst: Uint8Array) => withVnet({ ipv6: { src: GW6, dst, hopLimit: 64 }, udp: { srcPort: 1234, dstPort: 80 }, payload: pattern(60) });
    await rig.send(rig.host, raw(POD_A6), raw(REMOTE_POD6), raw(v6('fd00:10:244:1::99')), raw(v6('2001:db8::9')));
    assert.deepEqual(rig.podA.takeWritten(), [withVnet({ eth: { dst: MAC_A, src: GATEWAY_MAC }, ipv6: { src: GW6, dst: POD_A6, hopLimit: 63 }, udp: { srcPort: 1234, dstPort: 80 }, payload: pattern(60) })]);
    assert.equal(rig.underlay.sent.length, 1);
    const info = decode(rig.underlay.sent[0]!.bytes, 8, rig.underlay.sent[0]!.bytes.length - 8, LinkType.ETHERNET);
    assert.equal(bytesOf(rig.underlay.sent[0]!.bytes, info.dst6Offset), 'fd00:10:244:2::5');
    assert.deepEqual(rig.counters(rig.hostPort).drops, { 'no-such-pod': 1, 'no-route': 1 });
  } finally {
    rig.close();
  }
});

test('from the underlay: IPv6 from a remote pod is delivered; a source outside the sender node\'s range is underlay-spoofed', async () => {
  const rig = dualRig();
  try {
    const inner = (src: Uint8Array, dst: Uint8Array) => udp6(src, dst, REMOTE_POD6_MAC, GATEWAY_MAC, { hopLimit: 63 });
    rig.receiveUnderlay(vxlanPayload(inner(REMOTE_POD6, POD_A6)), vxlanPayload(inner(v6('fd00:10:244:1::2'), POD_B6)), vxlanPayload(inner(REMOTE_GW6, GW6)));
    const expected = udp6(REMOTE_POD6, POD_A6, GATEWAY_MAC, MAC_A, { hopLimit: 62 });
    assert.deepEqual(rig.podA.takeWritten(), [withVnet(expected)]);
    const [h] = rig.host.takeWritten();
    assert.equal(bytesOf(h!, decodeHostFrame(h!).src6Offset), 'fd00:10:244:2::1', "the remote node's stack reaches this node's gateway address");
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.datapath.underlayCounters.toJSON().drops, { 'underlay-spoofed': 1 });
  } finally {
    rig.close();
  }
});

test('over the MTU, IPv6 is answered with Packet Too Big from the gateway (never fragmented)', async () => {
  const rig = dualRig();
  try {
    await rig.send(rig.podA, withVnet(udp6(POD_A6, REMOTE_POD6, MAC_A, GATEWAY_MAC, { payload: pattern(MTU - 40 - 8 + 1) })));
    const [ptb] = rig.podA.takeWritten();
    const info = decodePodFrame(ptb!);
    assert.equal(info.icmpType, Icmpv6Type.PACKET_TOO_BIG);
    assert.equal(bytesOf(ptb!, info.src6Offset), 'fd00:10:244:1::1');
    assert.equal(bytesOf(ptb!, info.dst6Offset), 'fd00:10:244:1::2');
    assert.equal(new DataView(ptb!.buffer, ptb!.byteOffset).getUint32(info.l4Offset + 4), MTU);
    assert.ok(verifyChecksums(info, ptb!), 'a complete ICMPv6 checksum');
    assert.ok(ptb!.length - VIRTIO_NET_HEADER_LENGTH - 14 <= 1280, 'at most the minimum MTU');
    assert.equal(rig.underlay.sent.length, 0);
    assert.deepEqual(rig.counters(rig.portA).drops, { 'packet-too-big': 1 });
  } finally {
    rig.close();
  }
});

test('a TCPv6 TSO frame to a remote pod is cut into MSS segments with valid checksums; a train from the underlay is coalesced back into one TSO6 frame', async () => {
  const rig = dualRig();
  try {
    const mss = MTU - 40 - 20;
    const payload = pattern(mss * 3 + 100);
    const tso: PacketRepr = {
      eth: { dst: GATEWAY_MAC, src: MAC_A }, ipv6: { src: POD_A6, dst: REMOTE_POD6, hopLimit: 64 },
      tcp: { srcPort: 40000, dstPort: 5201, seq: 1000, ack: 77, flags: TcpFlags.ACK | TcpFlags.PSH, window: 500 }, payload, l4Checksum: 'partial',
    };
    await rig.send(rig.podA, withVnet(tso, { flags: VirtioNetFlags.NEEDS_CSUM, gsoType: VirtioNetGso.TCPV6, hdrLen: 14 + 40 + 20, gsoSize: mss, csumStart: 54, csumOffset: 16 }));
    const wire = rig.underlay.wireDatagrams();
    assert.equal(wire.length, 4);
    let seq = 1000;
    const got: Uint8Array[] = [];
    for (const [k, d] of wire.entries()) {
      const info = decode(d, 8, d.length - 8, LinkType.ETHERNET);
      assert.equal(info.ipVersion, 6);
      assert.equal(info.tcpSeq, seq);
      assert.ok(verifyChecksums(info, d, false), `segment ${k} TCP checksum`);
      assert.equal((info.tcpFlags & TcpFlags.PSH) !== 0, k === 3, 'PSH on the last segment only');
      assert.ok(info.ipLength <= MTU);
      got.push(d.subarray(info.payloadOffset, info.payloadOffset + info.payloadLength));
      seq += info.payloadLength;
    }
    assertSameBytes(Buffer.concat(got), payload, 'payload');

    // The same segments arriving from the remote pod's side coalesce for pod A.
    const segs = [0, 1, 2].map((k) => vxlanPayload({
      eth: { dst: GATEWAY_MAC, src: REMOTE_POD6_MAC }, ipv6: { src: REMOTE_POD6, dst: POD_A6, hopLimit: 63 },
      tcp: { srcPort: 5201, dstPort: 40000, seq: 5000 + k * mss, ack: 9, flags: TcpFlags.ACK, window: 500 }, payload: pattern(mss, k),
    }));
    rig.receiveUnderlay(...segs);
    const out = rig.podA.takeWritten();
    assert.equal(out.length, 1, 'one coalesced frame');
    const vn = readVnet(out[0]!);
    assert.equal(vn.gsoType, VirtioNetGso.TCPV6);
    assert.equal(vn.gsoSize, mss);
    assert.equal(vn.csumStart, 14 + 40);
    const info = decodePodFrame(out[0]!);
    assert.equal(info.payloadLength, 3 * mss);
    assert.equal(info.ttl, 62);
    assert.ok(verifyChecksums(info, out[0]!, true), 'partial checksum over the IPv6 pseudo-header');
    assert.equal(rig.datapath.coalescedSegments, 2);
  } finally {
    rig.close();
  }
});

test('a node with no IPv6 range drops IPv6 from pods, the host and the underlay as ipv6-unsupported', async () => {
  const rig = dualRig(false);
  try {
    await rig.send(rig.podA, neighborSolicit(LL_A, MAC_A, GW6));
    await rig.send(rig.host, withVnet({ ipv6: { src: GW6, dst: POD_A6, hopLimit: 64 }, udp: { srcPort: 1, dstPort: 2 }, payload: pattern(8) }));
    rig.receiveUnderlay(vxlanPayload(udp6(REMOTE_POD6, POD_A6, REMOTE_POD6_MAC, GATEWAY_MAC)));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'ipv6-unsupported': 1 });
    assert.deepEqual(rig.counters(rig.hostPort).drops, { 'ipv6-unsupported': 1 });
    assert.deepEqual(rig.datapath.underlayCounters.toJSON().drops, { 'ipv6-unsupported': 1 });
  } finally {
    rig.close();
  }
});

test('the forwarding table finds remote IPv6 ranges of mixed lengths, longest first, and pods by address', () => {
  const t = new ForwardingTable({
    podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR, underlayIP: UNDERLAY_IP, vni: VNI, mtu: MTU,
    podCIDR6: POD_CIDR6, clusterCIDR6: parseCidr6('fd00:10:244::/48')!,
    pods: [{ port: 3, ip: 0, mac: macForIpv6(POD_A6), ip6: POD_A6 }],
    remotes: [
      { name: 'a', underlayIP: 1, podCIDR: REMOTE_POD_CIDR, podCIDR6: parseCidr6('fd00:10:244:2::/64')! },
      { name: 'b', underlayIP: 2, podCIDR: POD_CIDR, podCIDR6: parseCidr6('fd00:10:244:2:1::/80')! },
      { name: 'c', underlayIP: 3, podCIDR: POD_CIDR, podCIDR6: null },
      { name: 'd', underlayIP: 4, podCIDR: POD_CIDR, podCIDR6: parseCidr6('fd00:10:244:8000::/49')! },
    ],
  });
  assert.equal(t.remoteNode6(v6('fd00:10:244:2::9'), 0), 0);
  assert.equal(t.remoteNode6(v6('fd00:10:244:2:1::9'), 0), 1);
  assert.equal(t.remoteNode6(v6('fd00:10:244:ffff::1'), 0), 3);
  assert.equal(t.remoteNode6(v6('fd00:10:244:3::1'), 0), -1);
  assert.equal(t.podPorts6.getAt(POD_A6, 0), 3);
  assert.equal(t.podPorts.size, 0, 'an IPv6-only pod has no IPv4 entry');
  assert.equal(ipv6ToString(t.gateway6), 'fd00:10:244:1::1');
  assert.equal(macToString(macForIpv6(v6('fd00::ab:cd:ef12:3456'))), '0a:5a:ef:12:34:56', 'an IPv6-only pod\'s MAC: 0a:5a and the last four bytes');
  assert.ok(t.isPodSource6(3, linkLocalForMac(macForIpv6(POD_A6)), 0));
  assert.ok(!t.isPodSource6(3, linkLocalForMac(macForIpv4(POD_A)), 0));
  // Not a pod port at all:
  assert.ok(!t.isPodSource6(1, new Uint8Array(16), 0));
  assert.ok(!t.isPodSource6(99, POD_A6, 0));
});
