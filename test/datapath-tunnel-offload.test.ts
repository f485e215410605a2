// Packet-trace tests of the UDP tunnel segmentation offload (src/datapath/tunnel-offload.ts):
// with an egress device set, a TSO frame for a remote node leaves whole as one VXLAN
// super-frame behind a virtio_net_hdr_v1_hash_tunnel (the kernel segments it); frames
// that cannot go that way still take the software path; and a super-frame received whole
// reaches the pod (or the host port) as one TSO frame. The end-to-end check, a real
// kernel segmenting and a real TCP receiving, is test/agent-lab.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeDevice } from '../src/device/fake.ts';
import { TunnelEgress } from '../src/datapath/tunnel-offload.ts';
import {
  Ipv4Packet, LinkType, TcpFlags, VXLAN_PORT, VirtioNetFlags, VirtioNetGso, buildPacket, get16, get16le, get32, get48, type PacketRepr,
} from '../src/wire/index.ts';
import {
  GATEWAY_MAC, MAC_A, MTU, POD_A, REMOTE_NODE_IP, REMOTE_POD, REMOTE_POD_MAC, Rig, UNDERLAY_IP, VNI,
  assertSameBytes, decode, pattern, readVnet, vxlanPayload, withVnet,
} from './helpers/datapath.ts';

const NEEDS_CSUM = VirtioNetFlags.NEEDS_CSUM;
const EGRESS_MAC = 0x02_00_00_00_00_ee;
const MSS = 1398;

function tso(opts: { ttl?: number; payload?: number; src?: number; dst?: number; eth?: boolean } = {}): PacketRepr {
  return {
    ...(opts.eth === false ? {} : { eth: { dst: GATEWAY_MAC, src: MAC_A } }),
    ipv4: { src: opts.src ?? POD_A, dst: opts.dst ?? REMOTE_POD, ttl: opts.ttl ?? 64, ident: 7, dontFragment: true },
    tcp: { srcPort: 40003, dstPort: 5201, seq: 1000, ack: 2000, flags: TcpFlags.ACK | TcpFlags.PSH, window: 1024 },
    payload: pattern(opts.payload ?? 10_000, 3),
    l4Checksum: 'partial',
  };
}

const TSO_VNET = { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 54, gsoSize: MSS, csumStart: 34, csumOffset: 16 };

function rigWithEgress(): { rig: Rig; egress: FakeDevice } {
  const rig = new Rig();
  const egress = new FakeDevice('egress', { queueFrames: 64 });
  rig.datapath.tunnelEgress = new TunnelEgress(egress, EGRESS_MAC);
  return { rig, egress };
}

/** The parts of one super-frame written to the egress device, checked field by field. */
function checkSuperFrame(frame: Uint8Array, inner: Uint8Array): void {
  // virtio_net_hdr_v1_hash_tunnel: NEEDS_CSUM, TCPV4|UDP_TUNNEL_IPV4, offsets from the outer Ethernet header.
  assert.equal(frame[0], NEEDS_CSUM);
  assert.equal(frame[1], VirtioNetGso.TCPV4 | VirtioNetGso.UDP_TUNNEL_IPV4);
  assert.equal(get16le(frame, 2), 50 + 34 + 20, 'hdr_len: outer 50 + inner Ethernet/IPv4 34 + TCP 20');
  assert.equal(get16le(frame, 4), MSS, 'gso_size: the pod\'s MSS');
  assert.equal(get16le(frame, 6), 50 + 34, 'csum_start: the inner TCP header');
  assert.equal(get16le(frame, 8), 16);
  assert.deepEqual([...frame.subarray(10, 20)], new Array(10).fill(0), 'num_buffers and the hash report zero');
  assert.equal(get16le(frame, 20), 34, 'outer_th_offset');
  assert.equal(get16le(frame, 22), 64, 'inner_nh_offset');
  const f = frame.subarray(24);
  assert.equal(get48(f, 0), EGRESS_MAC, 'to the egress TAP itself');
  assert.equal(get48(f, 6), GATEWAY_MAC);
  assert.equal(get16(f, 12), 0x0800);
  const info = decode(f, 0, f.length, LinkType.ETHERNET);
  assert.equal(info.dropReason, 0);
  assert.equal(info.ipLength, f.length - 14);
  assert.equal(info.ttl, 64);
  assert.equal(get32(f, 14 + 12), UNDERLAY_IP);
  assert.equal(get32(f, 14 + 16), REMOTE_NODE_IP);
  assert.equal(get16(f, 14 + 6), 0x4000, 'DF');
  assert.ok(Ipv4Packet.headerChecksumOk(f, 14), 'outer IPv4 header checksum');
  assert.deepEqual([info.srcPort, info.dstPort], [VXLAN_PORT, VXLAN_PORT]);
  assert.equal(get16(f, 34 + 4), f.length - 34, 'UDP length');
  assert.equal(get16(f, 34 + 6), 0, 'no outer UDP checksum');
  assertSameBytes(f.subarray(42), vxlanPayload(inner, VNI), 'VXLAN header and the inner frame');
}

test('a TSO frame from a pod to a remote pod leaves whole: one super-frame to the egress device, nothing on the socket', async () => {
  const { rig, egress } = rigWithEgress();
  try {
    await rig.send(rig.podA, withVnet(tso(), TSO_VNET));
    const out = egress.takeWritten();
    assert.equal(out.length, 1);
    checkSuperFrame(out[0]!, buildPacket(tso({ ttl: 63 })));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.datapath.superFrames, { sent: 1, received: 0 });
    assert.equal(rig.datapath.underlayCounters.txFrames, 1);
  } finally {
    rig.close();
  }
});

test('a TSO frame from the host port takes the same way (the headroom holds Ethernet and the outer headers)', async () => {
  const { rig, egress } = rigWithEgress();
  try {
    const vnet = { ...TSO_VNET, hdrLen: 40, csumStart: 20 };
    await rig.send(rig.host, withVnet(tso({ eth: false, src: UNDERLAY_IP }), vnet));
    const out = egress.takeWritten();
    assert.equal(out.length, 1);
    const inner = tso({ ttl: 63, src: UNDERLAY_IP });
    inner.eth = { dst: GATEWAY_MAC, src: GATEWAY_MAC };
    checkSuperFrame(out[0]!, buildPacket(inner));
  } finally {
    rig.close();
  }
});

test('with the offload on, a plain packet still goes to the socket, and a TSO frame without NEEDS_CSUM is cut in software', async () => {
  const { rig, egress } = rigWithEgress();
  try {
    const small = tso({ payload: 100 });
    await rig.send(rig.podA, withVnet(small, { flags: NEEDS_CSUM, csumStart: 34, csumOffset: 16 }));
    assert.equal(egress.takeWritten().length, 0);
    assert.equal(rig.underlay.sent.length, 1);
    rig.underlay.sent.length = 0;
    await rig.send(rig.podA, withVnet({ ...tso(), l4Checksum: 'full' }, { ...TSO_VNET, flags: 0 }));
    assert.equal(egress.takeWritten().length, 0);
    assert.equal(rig.underlay.wireDatagrams().length, Math.ceil(10_000 / MSS));
  } finally {
    rig.close();
  }
});

/** What a peer's super-frame looks like on arrival: one VXLAN datagram, the inner TCP checksum partial. */
function superDatagram(dst: number, payload = 20_000): { datagram: Uint8Array; inner: PacketRepr } {
  const inner: PacketRepr = {
    eth: { dst: GATEWAY_MAC, src: REMOTE_POD_MAC },
    ipv4: { src: REMOTE_POD, dst, ttl: 63, ident: 9, dontFragment: true },
    tcp: { srcPort: 5201, dstPort: 40003, seq: 77, ack: 88, flags: TcpFlags.ACK, window: 512 },
    payload: pattern(payload, 4),
    l4Checksum: 'partial',
  };
  return { datagram: vxlanPayload(inner), inner };
}

test('a super-frame received whole reaches the pod as one TSO frame (segments filling the overlay MTU), TTL - 1', () => {
  const rig = new Rig();
  try {
    const { datagram, inner } = superDatagram(POD_A);
    rig.receiveUnderlay(datagram);
    const out = rig.podA.takeWritten();
    assert.equal(out.length, 1);
    const vnet = readVnet(out[0]!);
    assert.deepEqual(vnet, { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 54, gsoSize: MTU - 40, csumStart: 34, csumOffset: 16 });
    const expected = buildPacket({ ...inner, eth: { dst: MAC_A, src: GATEWAY_MAC }, ipv4: { ...inner.ipv4!, ttl: 62 } });
    assertSameBytes(out[0]!.subarray(10), expected, 'the inner frame');
    assert.deepEqual(rig.datapath.superFrames, { sent: 0, received: 1 });
  } finally {
    rig.close();
  }
});

test('a super-frame for the node itself reaches the host port as a TSO packet without Ethernet', () => {
  const rig = new Rig();
  try {
    const { datagram } = superDatagram(UNDERLAY_IP);
    rig.receiveUnderlay(datagram);
    const out = rig.host.takeWritten();
    assert.equal(out.length, 1);
    assert.deepEqual(readVnet(out[0]!), { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 40, gsoSize: MTU - 40, csumStart: 20, csumOffset: 16 });
    assert.equal(out[0]!.length, 10 + 20 + 20 + 20_000);
  } finally {
    rig.close();
  }
});

test('a datagram past the overlay MTU that is not one TCP packet is no super-frame: dropped and counted', () => {
  const rig = new Rig();
  try {
    const udp: PacketRepr = {
      eth: { dst: GATEWAY_MAC, src: REMOTE_POD_MAC },
      ipv4: { src: REMOTE_POD, dst: POD_A, ttl: 63, ident: 1 },
      udp: { srcPort: 1, dstPort: 2 },
      payload: pattern(5000),
    };
    rig.receiveUnderlay(vxlanPayload(udp));
    assert.equal(rig.podA.takeWritten().length, 0);
    assert.equal(rig.datapath.underlayCounters.toJSON().drops['unsupported-gso'], 1);
    assert.equal(rig.datapath.superFrames.received, 1, 'taken for one by its size, then refused');
  } finally {
    rig.close();
  }
});
