// The datapath fuzz (issue 8): random and mutated frames through the whole pipeline,
// every port kind (pod TAPs, the host TUN, the VXLAN underlay) with services programmed.
// Each frame must end in one of two ways: something leaves a port (forwarded, answered,
// rejected with a reset...), or a drop counter moves. Nothing may throw, and nothing may
// vanish silently. Used by test/datapath-fuzz.test.ts (a short run) and
// bench/datapath-fuzz.ts (millions of frames).
import { Datapath } from '../../src/datapath/datapath.ts';
import { PortKind } from '../../src/datapath/port.ts';
import type { FrameDevice } from '../../src/device/types.ts';
import { endpoint, servicePort, snapshot } from '../../src/model/synthetic.ts';
import { ServiceNat } from '../../src/services/nat.ts';
import { buildServiceTable } from '../../src/tables/service-table.ts';
import { ForwardingTable, macForIpv6 } from '../../src/datapath/forwarding.ts';
import {
  ArpOp, Icmpv6Type, MAC_BROADCAST, TcpFlags, VIRTIO_NET_HEADER_LENGTH, VirtioNetGso, buildPacket, linkLocalForMac, parseCidr6, parseIpv6,
  type PacketRepr,
} from '../../src/wire/index.ts';
import { Prng } from '../fixtures/wire/prng.ts';
import {
  CLUSTER_CIDR, FakeUnderlay, GATEWAY, GATEWAY_MAC, HOST_DST, MAC_A, MAC_B, MTU, POD_A, POD_B, POD_CIDR, REMOTE_NODE_IP, REMOTE_POD,
  REMOTE_POD_CIDR, REMOTE_POD_MAC, UNDERLAY_IP, VNI, ip, makeTable, pattern, vxlanPayload, withVnet,
} from './datapath.ts';

// The dual-stack half: pods A and B also have IPv6 addresses, the remote node a range.
const v6 = (s: string): Uint8Array => parseIpv6(s)!;
const GW6 = v6('fd00:10:244:1::1');
const A6 = v6('fd00:10:244:1::2');
const B6 = v6('fd00:10:244:1::3');
const R6 = v6('fd00:10:244:2::5');

/** A device that hands the datapath one frame per fire() and counts what it writes. */
class OneFrameDevice implements FrameDevice {
  frame: Uint8Array | null = null;
  written = 0;
  #callback: () => void = () => {};

  fire(frame: Uint8Array): void {
    this.frame = frame;
    this.#callback();
    this.frame = null;
  }

  readBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array): number {
    const f = this.frame;
    if (f === null) return 0;
    this.frame = null;
    // As the kernel device: a frame that does not fit its slot is lost, not split.
    if (f.length > slotSize - headroom) return 0;
    slab.set(f, headroom);
    lengths[0] = f.length;
    return 1;
  }

  writeBatch(_slab: Uint8Array, _offsets: Int32Array, _lengths: Int32Array, count: number): number {
    this.written += count;
    return count;
  }

  onReadable(cb: () => void): void { this.#callback = cb; }
  pause(): void {}
  resume(): void {}
  close(): void {}
}

const CLUSTER_IP = '10.96.0.10';

/** Valid frames of every kind a port can receive; the fuzz mutates them. */
function templates(): { port: 'podA' | 'podB' | 'host' | 'underlay'; frame: Uint8Array }[] {
  const tcp = (src: number, dport: number, flags: number): PacketRepr['tcp'] & object =>
    ({ srcPort: 40000 + (src & 0xff), dstPort: dport, seq: 1, ack: 0, flags });
  const fromA = (dst: number, ethDst: number, l4: Partial<PacketRepr>, payload = pattern(64)): Uint8Array =>
    withVnet({ eth: { dst: ethDst, src: MAC_A }, ipv4: { src: POD_A, dst, ttl: 64, dontFragment: true }, ...l4, payload } as PacketRepr);
  const tso = withVnet(
    { eth: { dst: GATEWAY_MAC, src: MAC_A }, ipv4: { src: POD_A, dst: REMOTE_POD, ttl: 64, dontFragment: true }, tcp: tcp(POD_A, 8080, TcpFlags.ACK), payload: pattern(4000), l4Checksum: 'partial' },
    { flags: 1, gsoType: VirtioNetGso.TCPV4, hdrLen: 54, gsoSize: 1398, csumStart: 34, csumOffset: 16 },
  );
  return [
    { port: 'podA', frame: fromA(POD_B, GATEWAY_MAC, { udp: { srcPort: 33333, dstPort: 53 } }) },
    { port: 'podA', frame: fromA(POD_B, MAC_B, { udp: { srcPort: 33333, dstPort: 53 } }) },
    { port: 'podA', frame: fromA(ip(CLUSTER_IP), GATEWAY_MAC, { tcp: tcp(POD_A, 80, TcpFlags.SYN) }, new Uint8Array(0)) },
    { port: 'podA', frame: fromA(ip(CLUSTER_IP), GATEWAY_MAC, { udp: { srcPort: 5353, dstPort: 81 } }) },
    { port: 'podA', frame: fromA(REMOTE_POD, GATEWAY_MAC, { tcp: tcp(POD_A, 8080, TcpFlags.ACK) }) },
    { port: 'podA', frame: fromA(HOST_DST, GATEWAY_MAC, { udp: { srcPort: 1, dstPort: 2 } }) },
    { port: 'podA', frame: fromA(GATEWAY, GATEWAY_MAC, { icmp: { type: 8, code: 0, restOfHeader: (7 << 16) | 1 } }) },
    { port: 'podA', frame: tso },
    {
      port: 'podA',
      frame: withVnet({ eth: { dst: MAC_BROADCAST, src: MAC_A }, arp: { op: ArpOp.REQUEST, senderMac: MAC_A, senderIp: POD_A, targetMac: 0, targetIp: GATEWAY } }),
    },
    { port: 'podB', frame: withVnet({ eth: { dst: GATEWAY_MAC, src: MAC_B }, ipv4: { src: POD_B, dst: POD_A, ttl: 64 }, udp: { srcPort: 9, dstPort: 9 }, payload: pattern(30) }) },
    { port: 'host', frame: withVnet(buildPacket({ ipv4: { src: UNDERLAY_IP, dst: POD_B, ttl: 64 }, tcp: tcp(UNDERLAY_IP, 8080, TcpFlags.SYN) })) },
    { port: 'host', frame: withVnet(buildPacket({ ipv4: { src: ip('203.0.113.9'), dst: UNDERLAY_IP, ttl: 64 }, tcp: tcp(1, 30080, TcpFlags.SYN) })) },
    { port: 'host', frame: withVnet(buildPacket({ ipv4: { src: UNDERLAY_IP, dst: REMOTE_POD, ttl: 64 }, udp: { srcPort: 7, dstPort: 7 }, payload: pattern(100) })) },
    { port: 'underlay', frame: vxlanPayload({ eth: { dst: GATEWAY_MAC, src: REMOTE_POD_MAC }, ipv4: { src: REMOTE_POD, dst: POD_A, ttl: 63 }, udp: { srcPort: 8080, dstPort: 40001 }, payload: pattern(80) }) },
    { port: 'underlay', frame: vxlanPayload({ eth: { dst: GATEWAY_MAC, src: REMOTE_POD_MAC }, ipv4: { src: REMOTE_POD, dst: POD_A, ttl: 63 }, tcp: tcp(REMOTE_POD, 40002, TcpFlags.ACK), payload: pattern(1000) }) },
    { port: 'underlay', frame: vxlanPayload({ eth: { dst: GATEWAY_MAC, src: REMOTE_POD_MAC }, ipv4: { src: REMOTE_POD, dst: UNDERLAY_IP, ttl: 63 }, udp: { srcPort: 1, dstPort: 2 }, payload: pattern(20) }) },
    ...templates6(),
  ];
}

/** IPv6 frames: NDP, echo to the gateway, routed, switched, TSO6, from the host and the underlay. */
function templates6(): { port: 'podA' | 'podB' | 'host' | 'underlay'; frame: Uint8Array }[] {
  const from6 = (src: Uint8Array, dst: Uint8Array, ethDst: number, l4: Partial<PacketRepr>, payload = pattern(64)): Uint8Array =>
    withVnet({ eth: { dst: ethDst, src: MAC_A }, ipv6: { src, dst, hopLimit: 64 }, ...l4, payload } as PacketRepr);
  const ns = new Uint8Array(24);
  ns.set(GW6, 0);
  ns.set([1, 1, 0x0a, 0x58, 10, 244, 1, 2], 16);
  const tso6 = withVnet(
    { eth: { dst: GATEWAY_MAC, src: MAC_A }, ipv6: { src: A6, dst: R6, hopLimit: 64 }, tcp: { srcPort: 40000, dstPort: 8080, seq: 1, ack: 0, flags: TcpFlags.ACK }, payload: pattern(4000), l4Checksum: 'partial' },
    { flags: 1, gsoType: VirtioNetGso.TCPV6, hdrLen: 74, gsoSize: 1378, csumStart: 54, csumOffset: 16 },
  );
  const r6mac = macForIpv6(R6);
  return [
    { port: 'podA', frame: from6(linkLocalForMac(MAC_A), v6('ff02::1:ff00:1'), 0x3333_ff00_0001, { icmp: { type: Icmpv6Type.NEIGHBOR_SOLICIT, code: 0, restOfHeader: 0 } }, ns) },
    { port: 'podA', frame: from6(A6, GW6, GATEWAY_MAC, { icmp: { type: Icmpv6Type.ECHO_REQUEST, code: 0, restOfHeader: 0x10001 } }) },
    { port: 'podA', frame: from6(A6, B6, GATEWAY_MAC, { udp: { srcPort: 1, dstPort: 2 } }) },
    { port: 'podA', frame: from6(A6, B6, MAC_B, { tcp: { srcPort: 1, dstPort: 2, seq: 1, ack: 0, flags: TcpFlags.SYN } }) },
    { port: 'podA', frame: from6(A6, R6, GATEWAY_MAC, { udp: { srcPort: 1, dstPort: 2 } }, pattern(1400)) },
    { port: 'podA', frame: from6(A6, v6('2001:db8::1'), GATEWAY_MAC, { udp: { srcPort: 1, dstPort: 2 } }) },
    { port: 'podA', frame: tso6 },
    { port: 'host', frame: withVnet(buildPacket({ ipv6: { src: GW6, dst: B6, hopLimit: 64 }, tcp: { srcPort: 5, dstPort: 80, seq: 1, ack: 0, flags: TcpFlags.SYN } })) },
    { port: 'host', frame: withVnet(buildPacket({ ipv6: { src: GW6, dst: R6, hopLimit: 64 }, udp: { srcPort: 5, dstPort: 80 }, payload: pattern(1500) })) },
    { port: 'underlay', frame: vxlanPayload({ eth: { dst: GATEWAY_MAC, src: r6mac }, ipv6: { src: R6, dst: A6, hopLimit: 63 }, tcp: { srcPort: 8080, dstPort: 40002, seq: 9, ack: 1, flags: TcpFlags.ACK }, payload: pattern(1000) }) },
    { port: 'underlay', frame: vxlanPayload({ eth: { dst: GATEWAY_MAC, src: r6mac }, ipv6: { src: v6('fd00:10:244:2::1'), dst: GW6, hopLimit: 63 }, icmp: { type: Icmpv6Type.ECHO_REQUEST, code: 0, restOfHeader: 1 }, payload: pattern(20) }) },
  ];
}

/** One mutation of a copy of `frame`: nothing, bit flips, truncation, extension, random bytes, a lying length field. */
function mutate(rng: Prng, frame: Uint8Array): Uint8Array {
  const kind = rng.below(7);
  if (kind === 0) return frame.slice();
  if (kind === 1) {
    const out = frame.slice();
    for (let k = 1 + rng.below(8); k > 0; k--) out[rng.below(out.length)]! ^= 1 << rng.below(8);
    return out;
  }
  if (kind === 2) return frame.slice(0, rng.below(frame.length + 1));
  if (kind === 3) {
    const out = new Uint8Array(frame.length + 1 + rng.below(200));
    out.set(frame);
    rng.fill(out, frame.length);
    return out;
  }
  if (kind === 4) {
    const out = new Uint8Array(rng.below(1600));
    rng.fill(out);
    return out;
  }
  if (kind === 5) {
    // The virtio-net header (pod and host ports) or the VXLAN header (underlay) in disarray.
    const out = frame.slice();
    rng.fill(out, 0, Math.min(VIRTIO_NET_HEADER_LENGTH, out.length));
    return out;
  }
  // A 16-bit field somewhere in the first 64 bytes set to an extreme.
  const out = frame.slice();
  const at = rng.below(Math.min(63, Math.max(1, out.length - 1)));
  const v = [0, 1, 0xffff, out.length, out.length + 1, 0x7fff][rng.below(6)]!;
  if (at + 1 < out.length) { out[at] = v >>> 8; out[at + 1] = v & 0xff; }
  return out;
}

export interface FuzzResult {
  frames: number;
  /** Frames after which something left a port. */
  forwarded: number;
  /** Frames after which a drop counter moved (and nothing left). */
  dropped: number;
  /** Frames that left no trace: a bug (the first few are described in `silentExamples`). */
  silent: number;
  silentExamples: string[];
  seconds: number;
}

/** Runs `frames` fuzzed frames (or until `seconds` pass); throws whatever the datapath throws. */
export function runDatapathFuzz(seed: number, frames: number, seconds = Infinity): FuzzResult {
  const rng = new Prng(seed);
  const underlay = new FakeUnderlay(true);
  const dp = new Datapath(makeTable([]), underlay);
  const devices = { podA: new OneFrameDevice(), podB: new OneFrameDevice(), host: new OneFrameDevice() };
  const portA = dp.addPort(PortKind.POD, 'pod-a', devices.podA, VIRTIO_NET_HEADER_LENGTH);
  const portB = dp.addPort(PortKind.POD, 'pod-b', devices.podB, VIRTIO_NET_HEADER_LENGTH);
  dp.addPort(PortKind.HOST, 'host', devices.host, VIRTIO_NET_HEADER_LENGTH);
  dp.setTable(new ForwardingTable({
    podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR, underlayIP: UNDERLAY_IP, vni: VNI, mtu: MTU,
    podCIDR6: parseCidr6('fd00:10:244:1::/64')!, clusterCIDR6: parseCidr6('fd00:10:244::/56')!,
    pods: [{ port: portA, ip: POD_A, mac: MAC_A, ip6: A6 }, { port: portB, ip: POD_B, mac: MAC_B, ip6: B6 }],
    remotes: [{ name: 'node-2', underlayIP: REMOTE_NODE_IP, podCIDR: REMOTE_POD_CIDR, podCIDR6: parseCidr6('fd00:10:244:2::/64')! }],
  }));
  const snap = snapshot([
    servicePort({ name: 'web', clusterIP: CLUSTER_IP, port: 80, nodePort: 30080, allEndpoints: [endpoint('10.244.1.3', 8080, { local: true }), endpoint('10.244.2.5', 8080)] }),
    servicePort({ name: 'empty', clusterIP: CLUSTER_IP, port: 81, protocol: 17, allEndpoints: [] }),
  ], [UNDERLAY_IP]);
  dp.setServiceNat(new ServiceNat(buildServiceTable(snap), { masqueradeIP: UNDERLAY_IP, hairpinIP: GATEWAY, seed }));
  const all = templates();
  const drops = (): number => {
    let n = 0;
    for (const p of dp.ports) if (p !== undefined) for (const d of p.counters.drops) n += d;
    for (const d of dp.underlayCounters.drops) n += d;
    return n;
  };
  const outputs = (): number => devices.podA.written + devices.podB.written + devices.host.written + underlay.sent.length;
  const result: FuzzResult = { frames: 0, forwarded: 0, dropped: 0, silent: 0, silentExamples: [], seconds: 0 };
  const started = performance.now();
  const deadline = started + seconds * 1000;
  for (let i = 0; i < frames; i++) {
    if ((i & 1023) === 0 && performance.now() > deadline) break;
    const t = all[rng.below(all.length)]!;
    const frame = mutate(rng, t.frame);
    const out0 = outputs(); // underlay.sent is emptied after every frame
    const drop0 = drops();
    if (t.port === 'underlay') {
      underlay.queue(frame);
      underlay.deliver();
    } else {
      devices[t.port].fire(frame);
    }
    const out1 = outputs();
    underlay.sent.length = 0;
    result.frames++;
    if (out1 > out0) result.forwarded++;
    else if (drops() > drop0) result.dropped++;
    else if (frame.length > 65536 + 512 - 64 && t.port !== 'underlay') result.dropped++; // lost by the device, as the kernel's would be
    else {
      result.silent++;
      if (result.silentExamples.length < 5) result.silentExamples.push(`${t.port}: ${frame.length} bytes ${Buffer.from(frame.subarray(0, 80)).toString('hex')}`);
    }
  }
  result.seconds = (performance.now() - started) / 1000;
  dp.close();
  return result;
}
