// Packet-trace tests of the datapath's pod and host ports (src/datapath/datapath.ts):
// ARP answered locally, anti-spoofing, pod <-> pod (switched and routed), pod <-> host
// port with the virtio-net header moved, echo to the gateway, drops by reason, and a
// table swap. Every frame goes in through FakeDevice.inject, whose readiness callback
// runs the datapath, and is compared byte for byte with what should come out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ArpOp, IpProtocol, LinkType, MAC_BROADCAST, TcpFlags, VIRTIO_NET_HEADER_LENGTH, VirtioNetFlags, VirtioNetGso, buildPacket, verifyChecksums,
  type PacketRepr,
} from '../src/wire/index.ts';
import {
  GATEWAY, GATEWAY_MAC, HOST_DST, UNDERLAY_IP, MAC_A, MAC_B, POD_A, POD_B, REMOTE_POD, Rig, decode, decodeHostFrame, decodePodFrame,
  assertSameBytes, ip, makeTable, pattern, podEntry, readVnet, vxlanPayload, withVnet, REMOTE_POD_MAC,
} from './helpers/datapath.ts';

const NEEDS_CSUM = VirtioNetFlags.NEEDS_CSUM;

// DATA_VALID on the request: the reply is a new frame and must leave with a zero header.
function arpRequest(senderMac: number, senderIp: number, targetIp: number): Uint8Array {
  return withVnet({ eth: { dst: MAC_BROADCAST, src: senderMac }, arp: { op: ArpOp.REQUEST, senderMac, senderIp, targetMac: 0, targetIp } }, { flags: VirtioNetFlags.DATA_VALID });
}

function arpReply(requesterMac: number, requesterIp: number, answerMac: number, answerIp: number): Uint8Array {
  return withVnet({ eth: { dst: requesterMac, src: answerMac }, arp: { op: ArpOp.REPLY, senderMac: answerMac, senderIp: answerIp, targetMac: requesterMac, targetIp: requesterIp } });
}

/** UDP from pod A (its own MAC and address) to `dst` through `ethDst`. */
function udpFromA(dst: number, ethDst: number, opts: { ttl?: number; partial?: boolean; payload?: Uint8Array; srcMac?: number; src?: number } = {}): PacketRepr {
  return {
    eth: { dst: ethDst, src: opts.srcMac ?? MAC_A },
    ipv4: { src: opts.src ?? POD_A, dst, ttl: opts.ttl ?? 64, ident: 0x1234, dontFragment: true },
    udp: { srcPort: 33333, dstPort: 53 },
    payload: opts.payload ?? pattern(100),
    l4Checksum: opts.partial ? 'partial' : 'full',
  };
}

const udpPartialVnet = { flags: NEEDS_CSUM, csumStart: 34, csumOffset: 6 };

test('ARP for the gateway is answered on the same port with the gateway MAC 0a:58:0a:f4:01:01', async () => {
  const rig = new Rig();
  try {
    await rig.send(rig.podA, arpRequest(MAC_A, POD_A, GATEWAY));
    const out = rig.podA.takeWritten();
    assert.equal(out.length, 1);
    assert.deepEqual(out[0], arpReply(MAC_A, POD_A, GATEWAY_MAC, GATEWAY));
    // The MAC is 0a:58 followed by the gateway's address.
    assert.deepEqual([...out[0]!.subarray(10 + 6, 10 + 12)], [0x0a, 0x58, 10, 244, 1, 1]);
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, {});
  } finally {
    rig.close();
  }
});

test("ARP for another local pod is answered with that pod's MAC", async () => {
  const rig = new Rig();
  try {
    await rig.send(rig.podA, arpRequest(MAC_A, POD_A, POD_B));
    assert.deepEqual(rig.podA.takeWritten(), [arpReply(MAC_A, POD_A, MAC_B, POD_B)]);
    assert.equal(rig.nothingWritten(), '');
  } finally {
    rig.close();
  }
});

test('ARP for an unknown address is dropped and counted as arp-unknown-target', async () => {
  const rig = new Rig();
  try {
    await rig.send(rig.podA, arpRequest(MAC_A, POD_A, ip('10.244.1.50')), arpRequest(MAC_A, POD_A, REMOTE_POD));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'arp-unknown-target': 2 });
    assert.equal(rig.counters(rig.portA).rxFrames, 2);
  } finally {
    rig.close();
  }
});

test('anti-spoofing: a wrong source MAC, source IP or ARP sender IP is dropped, counted, and nothing is written', async () => {
  const rig = new Rig();
  try {
    await rig.send(rig.podA,
      withVnet(udpFromA(POD_B, GATEWAY_MAC, { srcMac: MAC_B })), // pod B's MAC on pod A's port
      withVnet(udpFromA(REMOTE_POD, GATEWAY_MAC, { src: POD_B })), // pod B's address
      withVnet(udpFromA(HOST_DST, GATEWAY_MAC, { src: ip('10.244.1.77') })), // an address nobody has
      arpRequest(MAC_A, POD_B, GATEWAY), // ARP claiming pod B's address
    );
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'spoofed-mac': 1, 'spoofed-ip': 3 });
  } finally {
    rig.close();
  }
});

test('pod -> pod via the gateway MAC is routed: MACs rewritten, TTL - 1, IPv4 checksum valid, virtio header kept', async () => {
  const rig = new Rig();
  try {
    await rig.send(rig.podA, withVnet(udpFromA(POD_B, GATEWAY_MAC, { partial: true }), udpPartialVnet));
    const out = rig.podB.takeWritten();
    assert.equal(out.length, 1);
    const expected = udpFromA(POD_B, GATEWAY_MAC, { partial: true, ttl: 63 });
    expected.eth = { dst: MAC_B, src: GATEWAY_MAC };
    assert.deepEqual(out[0], withVnet(expected, udpPartialVnet));
    const info = decodePodFrame(out[0]!);
    assert.equal(info.ttl, 63);
    assert.ok(verifyChecksums(info, out[0]!, true), 'IPv4 header checksum (and the partial UDP sum) valid');
    assert.equal(rig.nothingWritten(), '');
    assert.equal(rig.counters(rig.portB).txFrames, 1);
  } finally {
    rig.close();
  }
});

test("pod -> pod via the destination pod's MAC is switched: bytes and virtio header unchanged", async () => {
  const rig = new Rig();
  try {
    const frame = withVnet(udpFromA(POD_B, MAC_B, { partial: true }), udpPartialVnet);
    await rig.send(rig.podA, frame);
    assert.deepEqual(rig.podB.takeWritten(), [frame]);
    assert.equal(rig.nothingWritten(), '');
    // A local pod's MAC with someone else's address is neither switched nor routed.
    await rig.send(rig.podA, withVnet(udpFromA(HOST_DST, MAC_B)));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'not-for-us': 1 });
  } finally {
    rig.close();
  }
});

test('pod -> host port: Ethernet stripped, virtio header moved, csum_start and hdr_len - 14', async () => {
  const rig = new Rig();
  try {
    const tcp = (ttl: number, withEth: boolean, payload: Uint8Array): PacketRepr => ({
      ...(withEth ? { eth: { dst: GATEWAY_MAC, src: MAC_A } } : {}),
      ipv4: { src: POD_A, dst: HOST_DST, ttl, ident: 7, dontFragment: true },
      tcp: { srcPort: 40000, dstPort: 443, seq: 1000, ack: 2000, flags: TcpFlags.ACK | TcpFlags.PSH },
      payload,
      l4Checksum: 'partial',
    });
    const small = pattern(300);
    const big = pattern(5000, 3);
    await rig.send(rig.podA,
      withVnet(tcp(64, true, small), { flags: NEEDS_CSUM, csumStart: 34, csumOffset: 16 }),
      withVnet(tcp(64, true, big), { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 }));
    const out = rig.host.takeWritten();
    assert.equal(out.length, 2);
    assert.deepEqual(out[0], withVnet(tcp(63, false, small), { flags: NEEDS_CSUM, csumStart: 20, csumOffset: 16 }));
    assert.deepEqual(out[1], withVnet(tcp(63, false, big), { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 40, gsoSize: 1448, csumStart: 20, csumOffset: 16 }));
    assert.ok(verifyChecksums(decodeHostFrame(out[1]!), out[1]!, true));
    assert.equal(rig.nothingWritten(), '');
  } finally {
    rig.close();
  }
});

test('host -> pod: Ethernet prepended (pod MAC <- gateway MAC), TTL - 1, csum_start + 14', async () => {
  const rig = new Rig();
  try {
    const udp = (ttl: number, eth: boolean): PacketRepr => ({
      ...(eth ? { eth: { dst: MAC_A, src: GATEWAY_MAC } } : {}),
      ipv4: { src: HOST_DST, dst: POD_A, ttl, ident: 99 },
      udp: { srcPort: 53, dstPort: 33333 },
      payload: pattern(64, 9),
      l4Checksum: 'partial',
    });
    await rig.send(rig.host, withVnet(udp(64, false), { flags: NEEDS_CSUM, csumStart: 20, csumOffset: 6 }));
    const out = rig.podA.takeWritten();
    assert.equal(out.length, 1);
    assert.deepEqual(out[0], withVnet(udp(63, true), { flags: NEEDS_CSUM, csumStart: 34, csumOffset: 6 }));
    assert.deepEqual(readVnet(out[0]!), { flags: NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 6 });
    // A TSO frame from the node's stack passes to the pod as TSO: hdr_len + 14 as well.
    const tso = (ttl: number, eth: boolean): PacketRepr => ({
      ...(eth ? { eth: { dst: MAC_A, src: GATEWAY_MAC } } : {}),
      ipv4: { src: HOST_DST, dst: POD_A, ttl, ident: 3, dontFragment: true },
      tcp: { srcPort: 443, dstPort: 40000, seq: 5, ack: 6, flags: TcpFlags.ACK },
      payload: pattern(20_000, 2),
      l4Checksum: 'partial',
    });
    await rig.send(rig.host, withVnet(tso(64, false), { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 40, gsoSize: 1448, csumStart: 20, csumOffset: 16 }));
    const big = rig.podA.takeWritten();
    assert.equal(big.length, 1);
    assert.deepEqual(readVnet(big[0]!), { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
    assertSameBytes(big[0]!, withVnet(tso(63, true), readVnet(big[0]!)), 'TSO frame');
    assert.equal(rig.nothingWritten(), '');
  } finally {
    rig.close();
  }
});

test('echo request to the gateway address: echo reply from the gateway with a valid checksum', async () => {
  const rig = new Rig();
  try {
    const echo = (type: number, src: number, dst: number, eth: { dst: number; src: number }): PacketRepr => ({
      eth, ipv4: { src, dst, ttl: 64, ident: 0x4242, dontFragment: true },
      icmp: { type, code: 0, restOfHeader: (0xbeef << 16) | 3 }, payload: pattern(56, 1),
    });
    await rig.send(rig.podA, withVnet(echo(8, POD_A, GATEWAY, { dst: GATEWAY_MAC, src: MAC_A }), { flags: VirtioNetFlags.DATA_VALID }));
    const out = rig.podA.takeWritten();
    assert.equal(out.length, 1);
    assert.deepEqual(out[0], withVnet(echo(0, GATEWAY, POD_A, { dst: MAC_A, src: GATEWAY_MAC })));
    const info = decodePodFrame(out[0]!);
    assert.equal(info.protocol, IpProtocol.ICMP);
    assert.ok(verifyChecksums(info, out[0]!), 'IPv4 and ICMP checksums');
    // Anything else for the gateway address is not forwarded.
    await rig.send(rig.podA, withVnet(udpFromA(GATEWAY, GATEWAY_MAC)));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'for-gateway': 1 });
  } finally {
    rig.close();
  }
});

test('a pod address with no pod (10.244.1.99) is dropped as no-such-pod, from a pod, the host and the underlay', async () => {
  const rig = new Rig();
  try {
    const hole = ip('10.244.1.99');
    await rig.send(rig.podA, withVnet(udpFromA(hole, GATEWAY_MAC)));
    await rig.send(rig.host, withVnet({ ipv4: { src: HOST_DST, dst: hole }, udp: { srcPort: 1, dstPort: 2 }, payload: pattern(10) }));
    rig.receiveUnderlay(vxlanPayload({ eth: { dst: GATEWAY_MAC, src: REMOTE_POD_MAC }, ipv4: { src: REMOTE_POD, dst: hole, ttl: 63 }, udp: { srcPort: 1, dstPort: 2 }, payload: pattern(10) }));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'no-such-pod': 1 });
    assert.deepEqual(rig.counters(rig.hostPort).drops, { 'no-such-pod': 1 });
    assert.deepEqual(rig.datapath.underlayCounters.toJSON().drops, { 'no-such-pod': 1 });
  } finally {
    rig.close();
  }
});

test('a pod cannot reach 127.0.0.0/8 through the host port (its route_localnet is for the node\'s own flows)', async () => {
  const rig = new Rig();
  try {
    await rig.send(rig.podA, withVnet(udpFromA(ip('127.0.0.1'), GATEWAY_MAC)), withVnet(udpFromA(ip('127.1.2.3'), GATEWAY_MAC)));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'loopback-destination': 2 });
  } finally {
    rig.close();
  }
});

test('steered to the host port but no service\'s: a packet for the node\'s own address goes back to its stack, unchanged', async () => {
  const rig = new Rig();
  try {
    const toNode = withVnet({ ipv4: { src: HOST_DST, dst: UNDERLAY_IP, ttl: 1 }, tcp: { srcPort: 40000, dstPort: 30999, flags: TcpFlags.SYN, seq: 1, ack: 0 }, payload: new Uint8Array(0) });
    const toLocalhost = withVnet({ ipv4: { src: ip('127.0.0.1'), dst: ip('127.0.0.1') }, udp: { srcPort: 40000, dstPort: 30999 }, payload: pattern(8) });
    await rig.send(rig.host, toNode, toLocalhost);
    const back = rig.host.takeWritten();
    assert.equal(back.length, 2);
    assertSameBytes(back[0]!, toNode, 'to the node address');
    assertSameBytes(back[1]!, toLocalhost, 'to 127.0.0.1');
    // Anything else with no route is still dropped (the stack would route it back into the TUN).
    await rig.send(rig.host, withVnet({ ipv4: { src: HOST_DST, dst: ip('10.96.0.99') }, udp: { srcPort: 1, dstPort: 2 }, payload: pattern(8) }));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.hostPort).drops, { 'no-route': 1 });
  } finally {
    rig.close();
  }
});

test('malformed frames are dropped with the wire reason and nothing throws', async () => {
  const rig = new Rig();
  try {
    const good = withVnet(udpFromA(POD_B, GATEWAY_MAC));
    const truncatedHeader = good.slice(0, 10 + 14 + 12); // IPv4 header cut at 12 bytes
    const shortTotal = good.slice(0, good.length - 20); // total length says 20 more bytes
    const badIhl = good.slice(); badIhl[10 + 14] = 0x44; // IHL 4: a 16-byte header
    const vnetOnly = good.slice(0, 10);
    const truncatedEth = good.slice(0, 10 + 8);
    await rig.send(rig.podA, truncatedHeader, shortTotal, badIhl, vnetOnly, truncatedEth);
    await rig.send(rig.host, withVnet(new Uint8Array([0x45, 0, 0, 40, 0, 0])), withVnet(new Uint8Array([0x60, 0, 0, 0])));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, {
      'truncated-ipv4': 1, 'bad-ipv4-total-length': 1, 'bad-ipv4-ihl': 1, 'truncated-virtio-net-header': 1, 'truncated-ethernet': 1,
    });
    assert.deepEqual(rig.counters(rig.hostPort).drops, { 'truncated-ipv4': 1, 'truncated-ipv6': 1 });
    assert.equal(rig.counters(rig.portA).rxFrames, 5);
    // The port still works afterwards.
    await rig.send(rig.podA, good);
    assert.equal(rig.podB.takeWritten().length, 1);
  } finally {
    rig.close();
  }
});

test('frames the pod network does not carry: IPv6, 802.1Q, ARP replies and TTL 1 are dropped with their reason', async () => {
  const rig = new Rig();
  try {
    const v6 = new Uint8Array(16); v6[0] = 0xfe; v6[1] = 0x80; v6[15] = 2;
    const v6dst = new Uint8Array(16); v6dst[0] = 0xfe; v6dst[1] = 0x80; v6dst[15] = 1;
    await rig.send(rig.podA,
      withVnet({ eth: { dst: GATEWAY_MAC, src: MAC_A }, ipv6: { src: v6, dst: v6dst }, udp: { srcPort: 1, dstPort: 2 }, payload: pattern(8) }),
      withVnet({ ...udpFromA(POD_B, GATEWAY_MAC), eth: { dst: GATEWAY_MAC, src: MAC_A, vlan: 7 } }),
      withVnet({ eth: { dst: GATEWAY_MAC, src: MAC_A }, arp: { op: ArpOp.REPLY, senderMac: MAC_A, senderIp: POD_A, targetMac: GATEWAY_MAC, targetIp: GATEWAY } }),
      withVnet(udpFromA(POD_B, GATEWAY_MAC, { ttl: 1 })),
      withVnet(udpFromA(POD_B, MAC_B, { ttl: 1 })), // switched, not routed: TTL is not the agent's to check
    );
    assert.equal(rig.podB.takeWritten().length, 1);
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'ipv6-unsupported': 1, 'vlan-unsupported': 1, 'arp-ignored': 1, 'ttl-expired': 1 });
  } finally {
    rig.close();
  }
});

test('table swap: once a pod is gone from the table its traffic is dropped; back in, it flows again', async () => {
  const rig = new Rig();
  try {
    const toB = withVnet(udpFromA(POD_B, GATEWAY_MAC));
    const fromB: PacketRepr = { eth: { dst: GATEWAY_MAC, src: MAC_B }, ipv4: { src: POD_B, dst: POD_A }, udp: { srcPort: 9, dstPort: 9 }, payload: pattern(20) };
    const overlayToB = vxlanPayload({ eth: { dst: GATEWAY_MAC, src: REMOTE_POD_MAC }, ipv4: { src: REMOTE_POD, dst: POD_B, ttl: 63 }, udp: { srcPort: 1, dstPort: 2 }, payload: pattern(10) });
    const full = rig.datapath.table;
    rig.datapath.setTable(makeTable([podEntry(rig.portA, POD_A)]));
    await rig.send(rig.podA, toB, arpRequest(MAC_A, POD_A, POD_B));
    await rig.send(rig.podB, withVnet(fromB));
    rig.receiveUnderlay(overlayToB);
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'no-such-pod': 1, 'arp-unknown-target': 1 });
    assert.deepEqual(rig.counters(rig.portB).drops, { 'spoofed-mac': 1 });
    assert.deepEqual(rig.datapath.underlayCounters.toJSON().drops, { 'no-such-pod': 1 });

    rig.datapath.setTable(full);
    await rig.send(rig.podA, toB);
    await rig.send(rig.podB, withVnet(fromB));
    rig.receiveUnderlay(overlayToB);
    assert.equal(rig.podB.takeWritten().length, 2);
    assert.equal(rig.podA.takeWritten().length, 1);
  } finally {
    rig.close();
  }
});

test('a pod port that the table does not know (MAC 0) cannot send with an all-zero MAC and address', async () => {
  // Port B stays attached while the table lists only a pod on a higher port index, so
  // portMacs[B] reads 0 ("not a pod"): a frame from 00:00:00:00:00:00 / 0.0.0.0 must
  // not pass anti-spoofing as if those were the pod's own.
  const rig = new Rig();
  try {
    rig.datapath.setTable(makeTable([podEntry(rig.portA, POD_A), podEntry(5, ip('10.244.1.9'))]));
    const zero: PacketRepr = { eth: { dst: GATEWAY_MAC, src: 0 }, ipv4: { src: 0, dst: POD_A }, udp: { srcPort: 68, dstPort: 67 }, payload: pattern(20) };
    await rig.send(rig.podB, withVnet(zero));
    assert.equal(rig.nothingWritten(), '');
    assert.equal(Object.keys(rig.counters(rig.portB).drops).length, 1);
  } finally {
    rig.close();
  }
});

test('decode helper sanity: an expected frame built here decodes as the datapath sees it', () => {
  // Guards the fixtures themselves: a pod frame must decode cleanly or every test above
  // would be comparing against garbage.
  const f = buildPacket(udpFromA(POD_B, GATEWAY_MAC));
  const info = decode(f, 0, f.length, LinkType.ETHERNET);
  assert.equal(info.dropReason, 0);
  assert.equal(info.src4, POD_A);
  assert.equal(info.dst4, POD_B);
  assert.ok(verifyChecksums(info, f));
});

test('a pod port whose device fails (its namespace is gone) leaves the datapath alone: removed, counted, reported; the others forward', async () => {
  const rig = new Rig();
  const failed: string[] = [];
  rig.datapath.onPortFailed = (port, err) => failed.push(`${port.name}: ${err.message}`);
  try {
    rig.podB.fail();
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(failed, ['pod-b: read pod-b: File descriptor in bad state (EBADFD)']);
    assert.equal(rig.datapath.portFailures, 1);
    assert.equal(rig.datapath.ports[rig.portB], undefined, 'the failed port is out of the datapath');
    // pod-a still reaches the host through the gateway.
    await rig.send(rig.podA, withVnet(udpFromA(HOST_DST, GATEWAY_MAC)));
    assert.equal(rig.host.takeWritten().length, 1);
  } finally {
    rig.close();
  }
});

test('an IPv4 header whose checksum fails is not forwarded (RFC 1812 §5.2.2), counted as bad-ipv4-checksum', async () => {
  const rig = new Rig();
  try {
    const frame = withVnet(udpFromA(POD_B, GATEWAY_MAC));
    frame[VIRTIO_NET_HEADER_LENGTH + 14 + 10]! ^= 0x40; // a bit of the header checksum
    await rig.send(rig.podA, frame);
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'bad-ipv4-checksum': 1 });
  } finally {
    rig.close();
  }
});

test('a frame past the pod MTU without TSO metadata is not delivered to a local pod: DF gets fragmentation needed', async () => {
  const rig = new Rig();
  try {
    // 8 KiB in one frame, no GSO type: a pod with MTU 1450 would never accept it.
    await rig.send(rig.podA, withVnet(udpFromA(POD_B, GATEWAY_MAC, { payload: pattern(8192) })));
    assert.equal(rig.podB.takeWritten().length, 0);
    assert.deepEqual(rig.counters(rig.portA).drops, { 'frag-needed': 1 });
    assert.equal(rig.podA.takeWritten().length, 1, 'ICMP fragmentation needed back to the sender');
    // Switched at layer 2 (to the pod's own MAC) the same holds.
    await rig.send(rig.podA, withVnet(udpFromA(POD_B, MAC_B, { payload: pattern(8192) })));
    assert.equal(rig.podB.takeWritten().length, 0);
  } finally {
    rig.close();
  }
});
