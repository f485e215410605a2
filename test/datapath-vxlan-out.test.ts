// Packet-trace tests of the datapath's way out to the VXLAN overlay
// (src/datapath/datapath.ts #encapsulate, offload.ts segmentTcpToVxlan): one datagram
// per packet to the remote node, NEEDS_CSUM checksums completed, TSO frames cut into
// MSS segments (as UDP GSO sends or one by one), and the overlay MTU with ICMP
// fragmentation needed. Frames go in through FakeDevice.inject; the fake underlay
// socket records every sendBatch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  LinkType, VXLAN_PORT, VirtioNetFlags, VirtioNetGso, TcpFlags, get16, verifyChecksums, type PacketRepr,
} from '../src/wire/index.ts';
import {
  GATEWAY, GATEWAY_MAC, MAC_A, MTU, POD_A, REMOTE_NODE_IP, REMOTE_POD, Rig,
  assertSameBytes, concat, decodePodFrame, decode, ip, pattern, timestampOption, vxlanPayload, withVnet,
} from './helpers/datapath.ts';

const NEEDS_CSUM = VirtioNetFlags.NEEDS_CSUM;

/** pod A -> remote pod through the gateway MAC, as pod A's kernel hands it to the TAP. */
function udpToRemote(opts: { ttl?: number; partial?: boolean; payload?: Uint8Array; df?: boolean } = {}): PacketRepr {
  return {
    eth: { dst: GATEWAY_MAC, src: MAC_A },
    ipv4: { src: POD_A, dst: REMOTE_POD, ttl: opts.ttl ?? 64, ident: 0x2222, dontFragment: opts.df ?? true },
    udp: { srcPort: 40001, dstPort: 8080 },
    payload: opts.payload ?? pattern(200),
    l4Checksum: opts.partial ? 'partial' : 'full',
  };
}

test('pod -> remote node: one VXLAN datagram to 172.30.0.12:4789, VNI 4242, the inner frame with TTL - 1', async () => {
  const rig = new Rig();
  try {
    await rig.send(rig.podA, withVnet(udpToRemote()));
    assert.equal(rig.underlay.sent.length, 1);
    const d = rig.underlay.sent[0]!;
    assert.equal(d.dst, REMOTE_NODE_IP);
    assert.equal(d.port, VXLAN_PORT);
    assert.equal(d.gsoSize, 0);
    assert.deepEqual([...d.bytes.subarray(0, 8)], [0x08, 0, 0, 0, 0x00, 0x10, 0x92, 0], 'I flag, VNI 4242 = 0x001092');
    assert.deepEqual(d.bytes, vxlanPayload(udpToRemote({ ttl: 63 })));
    assert.equal(rig.nothingWritten(), 'written: pod-a 0, pod-b 0, host 0, underlay 1');
    assert.equal(rig.datapath.underlayCounters.txFrames, 1);
  } finally {
    rig.close();
  }
});

test('pod -> remote node with NEEDS_CSUM: the UDP and TCP checksums are completed before the underlay', async () => {
  const rig = new Rig();
  try {
    const tcp = (ttl: number, partial: boolean): PacketRepr => ({
      eth: { dst: GATEWAY_MAC, src: MAC_A },
      ipv4: { src: POD_A, dst: REMOTE_POD, ttl, ident: 5, dontFragment: true },
      tcp: { srcPort: 40002, dstPort: 80, seq: 0xfffffff0, ack: 77, flags: TcpFlags.ACK | TcpFlags.PSH, options: timestampOption(1, 2) },
      payload: pattern(333, 7),
      l4Checksum: partial ? 'partial' : 'full',
    });
    await rig.send(rig.podA,
      withVnet(udpToRemote({ partial: true }), { flags: NEEDS_CSUM, csumStart: 34, csumOffset: 6 }),
      withVnet(tcp(64, true), { flags: NEEDS_CSUM, csumStart: 34, csumOffset: 16 }));
    const sent = rig.underlay.sent.map((d) => d.bytes);
    assert.equal(sent.length, 2);
    assert.deepEqual(sent[0], vxlanPayload(udpToRemote({ ttl: 63 })));
    assert.deepEqual(sent[1], vxlanPayload(tcp(63, false)));
    for (const s of sent) assert.ok(verifyChecksums(decode(s, 8, s.length - 8, LinkType.ETHERNET), s), 'inner checksums');
  } finally {
    rig.close();
  }
});

test('host -> remote pod: Ethernet added (gateway MAC both ways), TTL - 1, a NEEDS_CSUM checksum completed', async () => {
  const rig = new Rig();
  try {
    const udp = (ttl: number, eth: boolean, partial: boolean): PacketRepr => ({
      ...(eth ? { eth: { dst: GATEWAY_MAC, src: GATEWAY_MAC } } : {}),
      ipv4: { src: ip('172.30.0.11'), dst: REMOTE_POD, ttl, ident: 1 },
      udp: { srcPort: 5353, dstPort: 53 },
      payload: pattern(90, 4),
      l4Checksum: partial ? 'partial' : 'full',
    });
    await rig.send(rig.host, withVnet(udp(64, false, true), { flags: NEEDS_CSUM, csumStart: 20, csumOffset: 6 }));
    assert.equal(rig.underlay.sent.length, 1);
    assert.equal(rig.underlay.sent[0]!.dst, REMOTE_NODE_IP);
    assert.deepEqual(rig.underlay.sent[0]!.bytes, vxlanPayload(udp(63, true, false)));
  } finally {
    rig.close();
  }
});

// ---- TSO -------------------------------------------------------------------------

const TSO_PAYLOAD = 10_000;
const TSO_MSS = 1398;
const TSO_SEQ = 0xffff_f000; // wraps inside the frame
const TSO_ID = 0xfffd; // so does the IP ID

function tsoRepr(seq: number, ident: number, flags: number, payload: Uint8Array, ttl: number, partial: boolean): PacketRepr {
  return {
    eth: { dst: GATEWAY_MAC, src: MAC_A },
    ipv4: { src: POD_A, dst: REMOTE_POD, ttl, ident, dontFragment: true },
    tcp: { srcPort: 40003, dstPort: 5201, seq, ack: 0x0102_0304, flags, window: 1024 },
    payload,
    l4Checksum: partial ? 'partial' : 'full',
  };
}

/**
 * Sends a TSO frame of `size` payload bytes to the remote pod, from pod A or from the
 * host port (raw IP; the agent adds Ethernet with the gateway MAC on both sides).
 */
async function checkTso(gsoSupported: boolean, size = TSO_PAYLOAD, fromHost = false): Promise<void> {
  const rig = new Rig({ gsoSupported });
  try {
    const payload = pattern(size, 5);
    const flags = TcpFlags.ACK | TcpFlags.PSH | TcpFlags.FIN;
    const frame = tsoRepr(TSO_SEQ, TSO_ID, flags, payload, 64, true);
    const segment = (seq: number, ident: number, f: number, chunk: Uint8Array): PacketRepr => {
      const r = tsoRepr(seq, ident, f, chunk, 63, false);
      if (fromHost) r.eth = { dst: GATEWAY_MAC, src: GATEWAY_MAC };
      return r;
    };
    if (fromHost) {
      await rig.send(rig.host, withVnet({ ...frame, eth: undefined },
        { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 40, gsoSize: TSO_MSS, csumStart: 20, csumOffset: 16 }));
    } else {
      await rig.send(rig.podA, withVnet(frame,
        { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 54, gsoSize: TSO_MSS, csumStart: 34, csumOffset: 16 }));
    }
    const segments = Math.ceil(size / TSO_MSS);
    const sends = rig.underlay.sent;
    for (const s of sends) {
      assert.equal(s.dst, REMOTE_NODE_IP);
      assert.equal(s.port, VXLAN_PORT);
    }
    if (gsoSupported) {
      // UDP GSO sends of up to 44 datagrams (65,507 bytes): all but the last are 8 + 54 + mss bytes.
      assert.equal(sends.length, Math.ceil(segments / 44));
      for (const s of sends) assert.equal(s.gsoSize, s.bytes.length > 8 + 54 + TSO_MSS ? 8 + 54 + TSO_MSS : 0);
    } else {
      assert.equal(sends.length, segments);
      for (const s of sends) assert.equal(s.gsoSize, 0);
    }
    const wire = rig.underlay.wireDatagrams();
    assert.equal(wire.length, segments);
    const got: Uint8Array[] = [];
    for (let k = 0; k < segments; k++) {
      const d = wire[k]!;
      const chunk = payload.subarray(k * TSO_MSS, Math.min((k + 1) * TSO_MSS, size));
      const last = k === segments - 1;
      const expected = segment((TSO_SEQ + k * TSO_MSS) >>> 0, (TSO_ID + k) & 0xffff, last ? flags : TcpFlags.ACK, chunk);
      assertSameBytes(d, vxlanPayload(expected), `segment ${k}`);
      // The same facts read back field by field, so a failure says which one broke.
      const info = decode(d, 8, d.length - 8, LinkType.ETHERNET);
      assert.equal(info.dropReason, 0);
      assert.equal(info.ipLength, 20 + 20 + chunk.length);
      assert.equal(info.tcpSeq, (TSO_SEQ + k * TSO_MSS) >>> 0);
      assert.equal(get16(d, 8 + 14 + 4), (TSO_ID + k) & 0xffff);
      assert.equal(info.tcpFlags & (TcpFlags.FIN | TcpFlags.PSH), last ? TcpFlags.FIN | TcpFlags.PSH : 0);
      assert.ok(verifyChecksums(info, d), `segment ${k}: IPv4 and TCP checksums`);
      got.push(d.subarray(info.payloadOffset, info.payloadOffset + info.payloadLength));
    }
    assertSameBytes(concat(got), payload, 'segment payloads');
    assert.equal(rig.nothingWritten(), `written: pod-a 0, pod-b 0, host 0, underlay ${sends.length}`);
    assert.deepEqual(rig.counters(fromHost ? rig.hostPort : rig.portA).drops, {});
  } finally {
    rig.close();
  }
}

test('TSO frame to a remote pod: cut into MSS segments in one UDP GSO send, each a valid VXLAN/IPv4/TCP packet', () => checkTso(true));

test('TSO frame to a remote pod without UDP GSO: one datagram per segment, same bytes', () => checkTso(false));

test('a 64,000-byte TSO frame (46 segments) needs two UDP GSO sends', () => checkTso(true, 64_000));

test('TSO frame from the host port to a remote pod: segmented the same way, gateway MAC both sides', () => checkTso(true, TSO_PAYLOAD, true));

// ---- overlay MTU -----------------------------------------------------------------

test('a 1500-byte DF packet to a remote pod: ICMP fragmentation needed (MTU 1450) from the gateway, nothing on the underlay', async () => {
  const rig = new Rig();
  try {
    const big = udpToRemote({ payload: pattern(1500 - 28) });
    const frame = withVnet(big);
    await rig.send(rig.podA, frame);
    assert.equal(rig.underlay.sent.length, 0);
    const out = rig.podA.takeWritten();
    assert.equal(out.length, 1);
    // RFC 1812 §4.3.2.3: quote as much of the packet (as received, TTL 64) as fits in 576 bytes.
    const quote = frame.subarray(10 + 14, 10 + 14 + 576 - 28);
    const expected: PacketRepr = {
      eth: { dst: MAC_A, src: GATEWAY_MAC },
      ipv4: { src: GATEWAY, dst: POD_A, ttl: 64 },
      icmp: { type: 3, code: 4, restOfHeader: MTU },
      payload: quote,
    };
    assert.deepEqual(out[0], withVnet(expected));
    const info = decodePodFrame(out[0]!);
    assert.equal(get16(out[0]!, info.l4Offset + 6), 1450, 'next-hop MTU');
    assert.ok(verifyChecksums(info, out[0]!));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'frag-needed': 1 });
  } finally {
    rig.close();
  }
});

test('a 1500-byte packet without DF to a remote pod is dropped as too-big; 1450 bytes passes', async () => {
  const rig = new Rig();
  try {
    await rig.send(rig.podA, withVnet(udpToRemote({ payload: pattern(1500 - 28), df: false })));
    assert.equal(rig.nothingWritten(), '');
    assert.deepEqual(rig.counters(rig.portA).drops, { 'too-big': 1 });
    await rig.send(rig.podA, withVnet(udpToRemote({ payload: pattern(MTU - 28), df: false })));
    assert.equal(rig.underlay.sent.length, 1);
    assert.equal(rig.underlay.sent[0]!.bytes.length, 8 + 14 + MTU);
  } finally {
    rig.close();
  }
});

test('a TSO frame whose segments would exceed the overlay MTU gets fragmentation needed, not segments', async () => {
  const rig = new Rig();
  try {
    await rig.send(rig.podA, withVnet(tsoRepr(1, 1, TcpFlags.ACK, pattern(4000), 64, true),
      { flags: NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 }));
    assert.equal(rig.underlay.sent.length, 0);
    const out = rig.podA.takeWritten();
    assert.equal(out.length, 1);
    const info = decodePodFrame(out[0]!);
    assert.deepEqual([info.icmpType, info.icmpCode, get16(out[0]!, info.l4Offset + 6)], [3, 4, MTU]);
  } finally {
    rig.close();
  }
});
