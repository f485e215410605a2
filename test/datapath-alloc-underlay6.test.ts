// The allocation-free promise (STYLE.md rule 2) over an IPv6 underlay: the same child
// scheme as datapath-alloc.test.ts (`node --expose-gc --trace-gc <file> child N`), with
// a dual-stack Datapath whose table says the underlay is IPv6 and a replay socket that
// reports the remote node's IPv6 address as four words. Pod A sends UDP to pod B (routed),
// UDP over IPv4 and over IPv6 to the remote node's pods and a 4-segment TSO frame to one
// of them (cut into one UDP GSO send), all to the remote node's IPv6 underlay address;
// the remote node sends UDP over IPv4 and IPv6 and TCP segments that the coalescer merges.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Datapath } from '../src/datapath/datapath.ts';
import { ForwardingTable, macForIpv6 } from '../src/datapath/forwarding.ts';
import { PortKind } from '../src/datapath/port.ts';
import { TcpFlags, VIRTIO_NET_HEADER_LENGTH, VirtioNetGso, buildPacket, parseCidr6, parseIpv6, type PacketRepr } from '../src/wire/index.ts';
import {
  CLUSTER_CIDR, GATEWAY_MAC, MAC_A, MAC_B, MTU, POD_A, POD_B, POD_CIDR, REMOTE_NODE_IP, REMOTE_POD, REMOTE_POD_CIDR, REMOTE_POD_MAC,
  ReplayDevice, ReplayUnderlay, UNDERLAY_IP, VNI, pattern, tcpRepr, timestampOption, vxlanPayload, withVnet,
  allocChildTests, measureAllocRun, replayRounds,
} from './helpers/datapath.ts';

const BATCH = 64;
const v6 = (s: string): Uint8Array => parseIpv6(s)!;
const A6 = v6('fd00:10:244:1::2');
const B6 = v6('fd00:10:244:1::3');
const R6 = v6('fd00:10:244:2::5');
const R6_MAC = macForIpv6(R6);
const LOCAL_UNDERLAY6 = v6('fd00:172:30::11');
const REMOTE_UNDERLAY6 = v6('fd00:172:30::12');
/** The remote node's IPv6 underlay address as the socket reports it: four host-order words. */
const REMOTE_WORDS = Uint32Array.from([0, 1, 2, 3], (w) => new DataView(REMOTE_UNDERLAY6.buffer).getUint32(4 * w));
// 20 + 20 + 1378 = 1418 bytes per segment: under the pod MTU over an IPv6 underlay (1430).
const TSO_MSS = 1378;

function udp4(src: number, dst: number, ethSrc: number, ttl: number, payload: number): PacketRepr {
  return { eth: { dst: GATEWAY_MAC, src: ethSrc }, ipv4: { src, dst, ttl, dontFragment: true }, udp: { srcPort: 40000, dstPort: 9000 }, payload: pattern(payload) };
}

function udp6(src: Uint8Array, dst: Uint8Array, ethSrc: number, hopLimit: number, payload: number): PacketRepr {
  return { eth: { dst: GATEWAY_MAC, src: ethSrc }, ipv6: { src, dst, hopLimit }, udp: { srcPort: 40000, dstPort: 9000 }, payload: pattern(payload) };
}

function child(frames: number): void {
  const tso = buildPacket(tcpRepr({ src: POD_A, dst: REMOTE_POD, ethSrc: MAC_A, ttl: 64, seq: 7, payload: pattern(4 * TSO_MSS) }));
  const podA = new ReplayDevice([
    withVnet(udp4(POD_A, POD_B, MAC_A, 64, 200)),
    withVnet(udp4(POD_A, REMOTE_POD, MAC_A, 64, 1000)),
    withVnet(udp6(A6, R6, MAC_A, 64, 1000)),
    withVnet(tso, { gsoType: VirtioNetGso.TCPV4, hdrLen: 54, gsoSize: TSO_MSS }),
  ]);
  const podB = new ReplayDevice([]);
  const host = new ReplayDevice([]);
  const opts = timestampOption(1, 2);
  const datagrams: Uint8Array[] = [
    vxlanPayload(udp4(REMOTE_POD, POD_A, REMOTE_POD_MAC, 63, 300)),
    vxlanPayload(udp6(R6, A6, R6_MAC, 63, 300)),
  ];
  // 40 + 32 + 1358 = 1430 bytes: IPv6 segments with timestamps that fill the pod MTU.
  for (let k = 0; k < 6; k++) {
    datagrams.push(vxlanPayload(buildPacket({
      eth: { dst: GATEWAY_MAC, src: R6_MAC }, ipv6: { src: R6, dst: B6, hopLimit: 63 },
      tcp: { srcPort: 5201, dstPort: 40000, seq: 1000 + k * 1358, ack: 0x1000, flags: TcpFlags.ACK, window: 502, options: opts }, payload: pattern(1358, k),
    })));
  }
  const underlay = new ReplayUnderlay(datagrams, REMOTE_WORDS);
  const table = (pods: { a: number; b: number } | null): ForwardingTable => new ForwardingTable({
    podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR, underlayIP: UNDERLAY_IP, underlayIP6: LOCAL_UNDERLAY6, underlayFamily: 6, vni: VNI, mtu: MTU - 20,
    podCIDR6: parseCidr6('fd00:10:244:1::/64')!, clusterCIDR6: parseCidr6('fd00:10:244::/56')!,
    pods: pods === null ? [] : [{ port: pods.a, ip: POD_A, mac: MAC_A, ip6: A6 }, { port: pods.b, ip: POD_B, mac: MAC_B, ip6: B6 }],
    remotes: [{ name: 'node-2', underlayIP: REMOTE_NODE_IP, underlayIP6: REMOTE_UNDERLAY6, podCIDR: REMOTE_POD_CIDR, podCIDR6: parseCidr6('fd00:10:244:2::/64')! }],
  });
  const dp = new Datapath(table(null), underlay);
  const a = dp.addPort(PortKind.POD, 'pod-a', podA, VIRTIO_NET_HEADER_LENGTH);
  const b = dp.addPort(PortKind.POD, 'pod-b', podB, VIRTIO_NET_HEADER_LENGTH);
  dp.addPort(PortKind.HOST, 'host', host, VIRTIO_NET_HEADER_LENGTH);
  dp.setTable(table({ a, b }));

  const run = replayRounds([{ device: podA, batch: BATCH }, { device: underlay, batch: BATCH }]);

  measureAllocRun(dp, { podA, podB, underlay }, run, frames);
}

if (process.argv[2] === 'child') {
  child(Number(process.argv[3] ?? 1_000_000));
} else {
  const measure = allocChildTests(fileURLToPath(import.meta.url), 'the IPv6-underlay forwarding loop');

  test('1,000,000 frames over an IPv6 underlay (IPv4 and IPv6 inside, VXLAN out incl. TSO, VXLAN in + coalescing) with < 1 MiB heap growth', () => {
    const r = measure();
    assert.ok(r.frames >= 1_000_000);
    assert.equal(r.drops, 0, 'nothing dropped: the IPv6 sender was recognised as the remote node');
    const rounds = r.frames / (2 * BATCH);
    // Per round pod A sends 16 of each of its 4 frames: two UDP datagrams, and a TSO
    // frame of 4 segments as one UDP GSO send.
    assert.equal(r.underlaySent, rounds * 16 * 3, 'VXLAN sends for the remote pods');
    assert.equal(r.sentElsewhere, 0, 'every datagram went to the remote node\'s IPv6 underlay address');
    assert.equal(r.podAWritten, rounds * 16, 'the IPv4 and the IPv6 UDP datagram from the remote node in each group of 8');
    assert.ok(r.podBWritten > rounds * 16, 'pod B got the routed frames and the (coalesced) TCP segments');
    assert.ok(r.coalesced > rounds, 'the coalescer merged segments');
    assert.ok(r.heapGrowth < 1024 * 1024, `heap grew by ${r.heapGrowth} bytes after gc`);
  });
}
