// Packet-trace tests of the datapath's way in from the VXLAN overlay
// (src/datapath/datapath.ts #readUnderlay/#fromUnderlay, offload.ts TcpCoalescer):
// decapsulation to pods and the host port, drops by reason, TCP segments coalesced
// into one TSO frame for the pod (and the cases that must not be merged), and GRO
// trains from the socket split into their datagrams. The fake underlay socket hands
// in queued datagrams and the test runs the datapath's readiness callback itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  VirtioNetFlags, VirtioNetGso, TcpFlags, buildPacket, get32, verifyChecksums, type PacketRepr,
} from '../src/wire/index.ts';
import {
  GATEWAY_MAC, MAC_A, MAC_B, POD_A, POD_B, REMOTE_NODE_IP, REMOTE_POD, REMOTE_POD_MAC, Rig,
  assertSameBytes, concat, decodePodFrame, ip, pattern, readVnet, tcpRepr, timestampOption, vxlanPayload, withVnet, type TcpSegmentSpec,
} from './helpers/datapath.ts';

const NEEDS_CSUM = VirtioNetFlags.NEEDS_CSUM;

// ---- underlay -> pod -------------------------------------------------------------

/** What the remote node's datapath sends for remote pod -> `dst` (inner TTL already 63). */
function udpFromRemote(dst: number, payload = pattern(150, 2), ttl = 63): PacketRepr {
  return {
    eth: { dst: GATEWAY_MAC, src: REMOTE_POD_MAC },
    ipv4: { src: REMOTE_POD, dst, ttl, ident: 0x0bad },
    udp: { srcPort: 8080, dstPort: 40001 },
    payload,
  };
}

function delivered(r: PacketRepr, podMac: number): PacketRepr {
  return { ...r, eth: { dst: podMac, src: GATEWAY_MAC }, ipv4: { ...r.ipv4!, ttl: r.ipv4!.ttl! - 1 } };
}

test('underlay -> pod: the inner frame arrives with a zero virtio header, pod MAC <- gateway MAC, TTL - 1', () => {
  const rig = new Rig();
  try {
    rig.receiveUnderlay(vxlanPayload(udpFromRemote(POD_A)), vxlanPayload(udpFromRemote(POD_B)));
    assert.deepEqual(rig.podA.takeWritten(), [withVnet(delivered(udpFromRemote(POD_A), MAC_A))]);
    assert.deepEqual(rig.podB.takeWritten(), [withVnet(delivered(udpFromRemote(POD_B), MAC_B))]);
    // And to this node's own underlay address: the host port, Ethernet stripped.
    const toNode = udpFromRemote(ip('172.30.0.11'));
    rig.receiveUnderlay(vxlanPayload(toNode));
    const host = rig.host.takeWritten();
    assert.equal(host.length, 1);
    assert.deepEqual(host[0], withVnet(buildPacket({ ...toNode, eth: undefined, ipv4: { ...toNode.ipv4!, ttl: 62 } })));
    assert.deepEqual(rig.datapath.underlayCounters.toJSON().drops, {});
  } finally {
    rig.close();
  }
});

test('underlay: a wrong VNI, an unknown source node, a missing I flag are dropped and counted', () => {
  const rig = new Rig();
  try {
    rig.underlay.queue(vxlanPayload(udpFromRemote(POD_A), 4243));
    rig.underlay.queue(vxlanPayload(udpFromRemote(POD_A)), ip('172.30.0.99'));
    const noFlag = vxlanPayload(udpFromRemote(POD_A));
    noFlag[0] = 0;
    rig.underlay.queue(noFlag);
    rig.underlay.deliver();
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.datapath.underlayCounters.toJSON().drops, { 'wrong-vni': 1, 'unknown-peer': 1, 'bad-vxlan-flags': 1 });
  } finally {
    rig.close();
  }
});

test('underlay: a known node cannot speak for others: an inner source outside its pod CIDR and address is dropped (issue 8, finding 8)', () => {
  const rig = new Rig();
  try {
    // From node-2's address, an inner source of this node's own pod range, and one off the internet.
    rig.receiveUnderlay(vxlanPayload({ ...udpFromRemote(POD_A), ipv4: { src: POD_B, dst: POD_A, ttl: 63 } }));
    rig.receiveUnderlay(vxlanPayload({ ...udpFromRemote(POD_A), ipv4: { src: ip('8.8.8.8'), dst: POD_A, ttl: 63 } }));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.datapath.underlayCounters.toJSON().drops, { 'underlay-spoofed': 2 });
    // node-2's own address (its host) is its to use.
    rig.receiveUnderlay(vxlanPayload({ ...udpFromRemote(POD_A), ipv4: { src: REMOTE_NODE_IP, dst: POD_A, ttl: 63 } }));
    assert.equal(rig.podA.takeWritten().length, 1);
  } finally {
    rig.close();
  }
});

test('underlay: short datagrams are dropped with the wire reason (truncated VXLAN header, truncated inner frame)', () => {
  const rig = new Rig();
  try {
    const full = vxlanPayload(udpFromRemote(POD_A));
    rig.receiveUnderlay(full.slice(0, 6), full.slice(0, 8 + 10));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.datapath.underlayCounters.toJSON().drops, { 'truncated-vxlan': 1, 'truncated-ethernet': 1 });
  } finally {
    rig.close();
  }
});

// ---- TCP coalescing --------------------------------------------------------------

const MSS = 1398;
const SEQ0 = 0xffff_e000; // the run crosses 2^32
const OPTS = timestampOption(0x1234_5678, 0x9abc_def0);

function seg(k: number, extra: Partial<TcpSegmentSpec> = {}, payloadLength = MSS): PacketRepr {
  return tcpRepr({ seq: (SEQ0 + k * MSS) >>> 0, ident: 100 + k, options: OPTS, payload: pattern(payloadLength, k), ...extra });
}

function payloadOf(reprs: readonly PacketRepr[]): Uint8Array {
  return concat(reprs.map((r) => r.payload!));
}

/** The TSO frame a run of segments `first..` should become: headers of the first, payloads concatenated. */
function coalesced(reprs: readonly PacketRepr[], podMac: number): Uint8Array {
  const first = reprs[0]!;
  const r: PacketRepr = { ...delivered(first, podMac), payload: payloadOf(reprs), l4Checksum: 'partial' };
  return withVnet(r, { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 14 + 20 + 32, gsoSize: first.payload!.length, csumStart: 34, csumOffset: 16 });
}

function single(r: PacketRepr, podMac: number): Uint8Array {
  return withVnet(delivered(r, podMac));
}

test('a train of 10 full-size segments of one flow becomes ONE TSO frame for the pod', () => {
  const rig = new Rig();
  try {
    const train = Array.from({ length: 10 }, (_, k) => seg(k));
    rig.receiveUnderlay(...train.map((r) => vxlanPayload(r)));
    const out = rig.podA.takeWritten();
    assert.equal(out.length, 1);
    const f = out[0]!;
    assert.deepEqual(readVnet(f), { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 66, gsoSize: MSS, csumStart: 34, csumOffset: 16 });
    const info = decodePodFrame(f);
    assert.equal(info.ipLength, 20 + 32 + 10 * MSS);
    assert.equal(info.ttl, 62);
    assert.equal(info.tcpSeq, SEQ0);
    assert.ok(verifyChecksums(info, f, true), 'IPv4 checksum, and the TCP field holds the pseudo-header sum');
    assertSameBytes(f.subarray(info.payloadOffset), payloadOf(train), 'payload');
    assertSameBytes(f, coalesced(train, MAC_A), 'the whole frame');
    assert.equal(rig.datapath.coalescedSegments, 9);
    assert.equal(rig.nothingWritten(), '');
  } finally {
    rig.close();
  }
});

test('a sequence gap, another flow, another ACK or window, or a PSH ends the run; nothing is merged across', () => {
  const rig = new Rig();
  try {
    const ack = 0x2000;
    const win = 900;
    const s = [
      seg(0), seg(1),
      seg(2, { ack }) /* another ACK */,
      seg(3, { ack, window: win }) /* another window */, seg(4, { ack, window: win }), seg(5, { ack, window: win, flags: TcpFlags.ACK | TcpFlags.PSH }) /* PSH ends the run */,
      seg(6, { ack, window: win }), seg(7, { ack, window: win }),
      seg(9, { ack, window: win }) /* sequence gap */, seg(10, { ack, window: win }),
      seg(11, { ack, window: win, srcPort: 5202 }) /* another flow */,
    ];
    rig.receiveUnderlay(...s.map((r) => vxlanPayload(r)));
    const out = rig.podA.takeWritten();
    const withPsh = coalesced([s[3]!, s[4]!, s[5]!], MAC_A);
    withPsh[10 + 14 + 20 + 13]! |= TcpFlags.PSH;
    const expected = [
      coalesced([s[0]!, s[1]!], MAC_A),
      single(s[2]!, MAC_A),
      withPsh,
      coalesced([s[6]!, s[7]!], MAC_A),
      coalesced([s[8]!, s[9]!], MAC_A),
      single(s[10]!, MAC_A),
    ];
    assert.equal(out.length, expected.length, `frames: ${out.map((f) => readVnet(f).gsoType === 1 ? 'tso' : 'one').join(',')}`);
    for (let i = 0; i < expected.length; i++) assertSameBytes(out[i]!, expected[i]!, `frame ${i}`);
  } finally {
    rig.close();
  }
});

test('a GRO datagram (equal-size VXLAN packets back to back, groSegSize) is split into its packets', () => {
  const rig = new Rig();
  try {
    // 4 full 200-byte packets and a 130-byte tail, for pod A and pod B alternately.
    const reprs = [0, 1, 2, 3, 4].map((k) => udpFromRemote(k % 2 === 0 ? POD_A : POD_B, pattern(k === 4 ? 200 - 70 - 42 - 8 : 200 - 42 - 8, k)));
    const parts = reprs.map((r) => vxlanPayload(r));
    assert.deepEqual(parts.map((p) => p.length), [200, 200, 200, 200, 130]);
    rig.underlay.queue(concat(parts), REMOTE_NODE_IP, 200);
    rig.underlay.deliver();
    assert.deepEqual(rig.podA.takeWritten(), [0, 2, 4].map((k) => withVnet(delivered(reprs[k]!, MAC_A))));
    assert.deepEqual(rig.podB.takeWritten(), [1, 3].map((k) => withVnet(delivered(reprs[k]!, MAC_B))));
    assert.equal(rig.datapath.underlayCounters.rxFrames, 5);
  } finally {
    rig.close();
  }
});

test('a GRO datagram of TCP segments of one flow is split and coalesced into one TSO frame', () => {
  const rig = new Rig();
  try {
    const train = Array.from({ length: 8 }, (_, k) => seg(k));
    const parts = train.map((r) => vxlanPayload(r));
    rig.underlay.queue(concat(parts), REMOTE_NODE_IP, parts[0]!.length);
    rig.underlay.deliver();
    const out = rig.podA.takeWritten();
    assert.equal(out.length, 1);
    assertSameBytes(out[0]!, coalesced(train, MAC_A), 'the TSO frame');
  } finally {
    rig.close();
  }
});

test('GRO trains of interleaved TCP flows to one pod are all delivered (no scratch exhaustion)', () => {
  const rig = new Rig();
  try {
    // Two flows alternating segment by segment: each segment closes the other flow's
    // run and opens its own. 44 segments of 1472 bytes fill one 64 KiB GRO datagram.
    const perDatagram = 44;
    const datagrams = 3;
    const reprs: PacketRepr[] = [];
    for (let k = 0; k < perDatagram * datagrams; k++) {
      const flow = k % 2;
      reprs.push(seg(k >> 1, { srcPort: 6000 + flow }));
    }
    for (let d = 0; d < datagrams; d++) {
      const parts = reprs.slice(d * perDatagram, (d + 1) * perDatagram).map((r) => vxlanPayload(r));
      rig.underlay.queue(concat(parts), REMOTE_NODE_IP, parts[0]!.length);
    }
    rig.underlay.deliver();
    const out = rig.podA.takeWritten();
    assert.deepEqual(rig.datapath.underlayCounters.toJSON().drops, {});
    assert.deepEqual(rig.counters(rig.portA).drops, {});
    // However the runs are cut, every segment's payload arrives, in order within its flow.
    const byFlow = new Map<number, Uint8Array[]>();
    for (const f of out) {
      const info = decodePodFrame(f);
      const list = byFlow.get(info.srcPort) ?? [];
      list.push(f.subarray(info.payloadOffset, info.payloadOffset + info.payloadLength));
      byFlow.set(info.srcPort, list);
    }
    for (const flow of [0, 1]) {
      const want = concat(reprs.filter((_, k) => k % 2 === flow).map((r) => r.payload!));
      assertSameBytes(concat(byFlow.get(6000 + flow) ?? []), want, `flow ${flow}`);
    }
  } finally {
    rig.close();
  }
});

test('remote -> host train is not coalesced: each segment reaches the host port with Ethernet stripped', () => {
  const rig = new Rig();
  try {
    const node = ip('172.30.0.11');
    const train = [0, 1, 2].map((k) => seg(k, { dst: node }));
    rig.receiveUnderlay(...train.map((r) => vxlanPayload(r)));
    const out = rig.host.takeWritten();
    assert.equal(out.length, 3);
    for (let k = 0; k < 3; k++) {
      const r = train[k]!;
      assert.deepEqual(out[k], withVnet(buildPacket({ ...r, eth: undefined, ipv4: { ...r.ipv4!, ttl: 62 } })));
    }
    assert.equal(get32(out[0]!, 10 + 16), node);
  } finally {
    rig.close();
  }
});
