// The allocation-free promise (STYLE.md rule 2) for IPv6 frames, as datapath-alloc.test.ts
// checks it for IPv4: a child (`node --expose-gc --trace-gc <file> child N`) pushes N
// frames through a dual-stack Datapath on allocation-free replay devices. Pod A sends,
// in turn, UDP to pod B (routed), UDP to a remote pod (VXLAN), a neighbour solicitation
// for the gateway and an echo request to it (both answered in place); the remote node
// sends UDP to pod A and TCP segments to pod B that the coalescer merges into TSO6
// frames; the node's stack (the host TUN) sends to pod B and to the remote pod. The
// parent counts garbage collections between the child's markers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Datapath } from '../src/datapath/datapath.ts';
import { ForwardingTable, macForIpv6 } from '../src/datapath/forwarding.ts';
import { PortKind } from '../src/datapath/port.ts';
import { Icmpv6Type, TcpFlags, VIRTIO_NET_HEADER_LENGTH, buildPacket, linkLocalForMac, parseCidr6, parseIpv6, type PacketRepr } from '../src/wire/index.ts';
import {
  CLUSTER_CIDR, GATEWAY_MAC, MAC_A, MAC_B, MTU, POD_A, POD_B, POD_CIDR, REMOTE_NODE_IP, REMOTE_POD_CIDR, ReplayDevice, ReplayUnderlay,
  UNDERLAY_IP, VNI, makeTable, pattern, timestampOption, vxlanPayload, withVnet,
  allocChildTests, measureAllocRun, replayRounds,
} from './helpers/datapath.ts';

const BATCH = 64;
const HOST_BATCH = 16;
const v6 = (s: string): Uint8Array => parseIpv6(s)!;
const GW6 = v6('fd00:10:244:1::1');
const A6 = v6('fd00:10:244:1::2');
const B6 = v6('fd00:10:244:1::3');
const R6 = v6('fd00:10:244:2::5');
const R6_MAC = macForIpv6(R6);

function udp6(src: Uint8Array, dst: Uint8Array, ethSrc: number, hopLimit: number, payload: number): PacketRepr {
  return { eth: { dst: GATEWAY_MAC, src: ethSrc }, ipv6: { src, dst, hopLimit }, udp: { srcPort: 40000, dstPort: 9000 }, payload: pattern(payload) };
}

function solicitGateway(): Uint8Array {
  const body = new Uint8Array(24);
  body.set(GW6, 0);
  body.set([1, 1, 0x0a, 0x58, 10, 244, 1, 2], 16);
  return withVnet({
    eth: { dst: 0x3333_ff00_0001, src: MAC_A }, ipv6: { src: linkLocalForMac(MAC_A), dst: v6('ff02::1:ff00:1'), hopLimit: 255 },
    icmp: { type: Icmpv6Type.NEIGHBOR_SOLICIT, code: 0, restOfHeader: 0 }, payload: body,
  });
}

function child(frames: number): void {
  const podA = new ReplayDevice([
    withVnet(udp6(A6, B6, MAC_A, 64, 200)),
    withVnet(udp6(A6, R6, MAC_A, 64, 1000)),
    solicitGateway(),
    withVnet({ eth: { dst: GATEWAY_MAC, src: MAC_A }, ipv6: { src: A6, dst: GW6, hopLimit: 64 }, icmp: { type: Icmpv6Type.ECHO_REQUEST, code: 0, restOfHeader: 0x0001_0001 }, payload: pattern(56) }),
  ]);
  const podB = new ReplayDevice([]);
  // The node's stack sends to pod B and to the remote pod (raw IPv6 on the host TUN).
  const host = new ReplayDevice([
    withVnet(buildPacket({ ipv6: { src: GW6, dst: B6, hopLimit: 64 }, udp: { srcPort: 7, dstPort: 9000 }, payload: pattern(100) })),
    withVnet(buildPacket({ ipv6: { src: GW6, dst: R6, hopLimit: 64 }, udp: { srcPort: 7, dstPort: 9000 }, payload: pattern(100) })),
  ]);
  const opts = timestampOption(1, 2);
  const datagrams: Uint8Array[] = [vxlanPayload(udp6(R6, A6, R6_MAC, 63, 300))];
  for (let k = 0; k < 7; k++) {
    datagrams.push(vxlanPayload(buildPacket({
      eth: { dst: GATEWAY_MAC, src: R6_MAC }, ipv6: { src: R6, dst: B6, hopLimit: 63 },
      tcp: { srcPort: 5201, dstPort: 40000, seq: 1000 + k * 1378, ack: 0x1000, flags: TcpFlags.ACK, window: 502, options: opts }, payload: pattern(1378, k),
    })));
  }
  const underlay = new ReplayUnderlay(datagrams);
  const dp = new Datapath(makeTable([]), underlay);
  const a = dp.addPort(PortKind.POD, 'pod-a', podA, VIRTIO_NET_HEADER_LENGTH);
  const b = dp.addPort(PortKind.POD, 'pod-b', podB, VIRTIO_NET_HEADER_LENGTH);
  dp.addPort(PortKind.HOST, 'host', host, VIRTIO_NET_HEADER_LENGTH);
  dp.setTable(new ForwardingTable({
    podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR, underlayIP: UNDERLAY_IP, vni: VNI, mtu: MTU,
    podCIDR6: parseCidr6('fd00:10:244:1::/64')!, clusterCIDR6: parseCidr6('fd00:10:244::/56')!,
    pods: [{ port: a, ip: POD_A, mac: MAC_A, ip6: A6 }, { port: b, ip: POD_B, mac: MAC_B, ip6: B6 }],
    remotes: [{ name: 'node-2', underlayIP: REMOTE_NODE_IP, podCIDR: REMOTE_POD_CIDR, podCIDR6: parseCidr6('fd00:10:244:2::/64')! }],
  }));

  const run = replayRounds([{ device: podA, batch: BATCH }, { device: underlay, batch: BATCH }, { device: host, batch: HOST_BATCH }]);

  measureAllocRun(dp, { podA, podB, underlay }, run, frames);
}

if (process.argv[2] === 'child') {
  child(Number(process.argv[3] ?? 1_000_000));
} else {
  const measure = allocChildTests(fileURLToPath(import.meta.url), 'the IPv6 forwarding loop');

  test('1,000,000 IPv6 frames (routed, VXLAN out, NDP and echo answered, VXLAN in + coalescing, from the host TUN) with < 1 MiB heap growth', () => {
    const r = measure();
    assert.ok(r.frames >= 1_000_000);
    assert.equal(r.drops, 0);
    const rounds = r.frames / (2 * BATCH + HOST_BATCH);
    assert.equal(r.underlaySent, rounds * (16 + HOST_BATCH / 2), 'one VXLAN datagram per frame pod A and the host sent to the remote pod');
    assert.equal(r.podAWritten, rounds * (32 + 8), 'the advertisements, the echo replies, and the UDP from the remote pod');
    assert.ok(r.podBWritten > rounds * 16, 'pod B got the routed frames and the (coalesced) TCP segments');
    assert.ok(r.coalesced > rounds, 'the coalescer merged IPv6 segments');
    assert.ok(r.heapGrowth < 1024 * 1024, `heap grew by ${r.heapGrowth} bytes after gc`);
  });

}
