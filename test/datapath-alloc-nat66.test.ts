// The allocation-free promise (STYLE.md rule 2) for NAT66: a child (`node --expose-gc
// --trace-gc <file> child N`) pushes N IPv6 frames through a dual-stack Datapath whose
// IPv6 service NAT serves two cluster IPs. Pod A sends UDP to a cluster IP whose endpoint
// is on the remote node (DNAT, VXLAN out) and TCP to one whose endpoint is pod B (DNAT,
// routed); pod B answers (reverse NAT); the node's stack sends to the remote endpoint's
// cluster IP (masqueraded); the remote endpoint answers pod A and the node over the
// overlay (reverse NAT on the way in). The parent counts garbage collections between the
// child's markers, as datapath-alloc-ipv6.test.ts does for the routed paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Datapath } from '../src/datapath/datapath.ts';
import { ForwardingTable, macForIpv6 } from '../src/datapath/forwarding.ts';
import { PortKind } from '../src/datapath/port.ts';
import { Verdict } from '../src/services/nat-codes.ts';
import { ServiceNat6 } from '../src/services/nat6.ts';
import { endpoint6, servicePort6, snapshot6 } from '../src/model/synthetic.ts';
import { buildServiceTable6 } from '../src/tables/service-table.ts';
import { TcpFlags, VIRTIO_NET_HEADER_LENGTH, buildPacket, parseCidr6, parseIpv6, type PacketRepr } from '../src/wire/index.ts';
import {
  CLUSTER_CIDR, GATEWAY_MAC, MAC_A, MAC_B, MTU, POD_A, POD_B, POD_CIDR, REMOTE_NODE_IP, REMOTE_POD_CIDR, ReplayDevice, ReplayUnderlay,
  UNDERLAY_IP, VNI, makeTable, pattern, vxlanPayload, withVnet, allocChildTests, measureAllocRun, replayRounds,
} from './helpers/datapath.ts';

const BATCH = 64;
const HOST_BATCH = 16;
const v6 = (s: string): Uint8Array => parseIpv6(s)!;
const GW6 = v6('fd00:10:244:1::1');
const A6 = v6('fd00:10:244:1::2');
const B6 = v6('fd00:10:244:1::3');
const R6 = v6('fd00:10:244:2::5');
const R6_MAC = macForIpv6(R6);
const VIP_UDP = v6('fd00:10:96::35');
const VIP_TCP = v6('fd00:10:96::50');

function udp(src: Uint8Array, sport: number, dst: Uint8Array, dport: number, ethSrc: number, hopLimit: number): PacketRepr {
  return { eth: { dst: GATEWAY_MAC, src: ethSrc }, ipv6: { src, dst, hopLimit }, udp: { srcPort: sport, dstPort: dport }, payload: pattern(200) };
}

function tcp(src: Uint8Array, sport: number, dst: Uint8Array, dport: number, ethSrc: number): PacketRepr {
  return {
    eth: { dst: GATEWAY_MAC, src: ethSrc }, ipv6: { src, dst, hopLimit: 64 },
    tcp: { srcPort: sport, dstPort: dport, seq: 1000, ack: 0x1000, flags: TcpFlags.ACK, window: 502 }, payload: pattern(600),
  };
}

function child(frames: number): void {
  const podA = new ReplayDevice([withVnet(udp(A6, 40000, VIP_UDP, 53, MAC_A, 64)), withVnet(tcp(A6, 41000, VIP_TCP, 80, MAC_A))]);
  const podB = new ReplayDevice([withVnet(tcp(B6, 8080, A6, 41000, MAC_B))]);
  const host = new ReplayDevice([withVnet(buildPacket({ ipv6: { src: GW6, dst: VIP_UDP, hopLimit: 64 }, udp: { srcPort: 7, dstPort: 53 }, payload: pattern(100) }))]);
  const underlay = new ReplayUnderlay([
    vxlanPayload(udp(R6, 5353, A6, 40000, R6_MAC, 63)),
    vxlanPayload(udp(R6, 5353, GW6, 7, R6_MAC, 63)),
  ]);
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
  const nat6 = new ServiceNat6(buildServiceTable6(snapshot6([
    servicePort6({ name: 'dns', protocol: 17, clusterIP: 'fd00:10:96::35', port: 53, allEndpoints: [endpoint6('fd00:10:244:2::5', 5353)] }),
    servicePort6({ name: 'web', clusterIP: 'fd00:10:96::50', port: 80, allEndpoints: [endpoint6('fd00:10:244:1::3', 8080, { local: true })] }),
  ])), { masqueradeIP: GW6, seed: 1, conntrack: { capacity: 1024, seed: 1 } });
  dp.setServiceNat6(nat6);
  dp.servicesSynced = true;

  const run = replayRounds([{ device: podA, batch: BATCH }, { device: podB, batch: BATCH }, { device: host, batch: HOST_BATCH }, { device: underlay, batch: BATCH }]);
  measureAllocRun(dp, { podA, podB, underlay }, run, frames);
  console.log(JSON.stringify({ nat6: { nated: nat6.verdicts[Verdict.NATED], passed: nat6.verdicts[Verdict.PASS], entries: nat6.conntrack.size } }));
}

if (process.argv[2] === 'child') {
  child(Number(process.argv[3] ?? 1_000_000));
} else {
  const measure = allocChildTests(fileURLToPath(import.meta.url), 'the NAT66 forwarding loop');

  test('1,000,000 IPv6 service frames (DNAT to a remote and a local endpoint, reverse NAT from both, the node masqueraded) are all delivered', () => {
    const r = measure();
    assert.ok(r.frames >= 1_000_000);
    assert.equal(r.drops, 0);
    const rounds = r.frames / (3 * BATCH + HOST_BATCH);
    // To the remote endpoint: pod A's UDP (half its frames) and the node's.
    assert.equal(r.underlaySent, rounds * (BATCH / 2 + HOST_BATCH));
    // Pod A: pod B's answers and the remote endpoint's (half the underlay's).
    assert.equal(r.podAWritten, rounds * (BATCH + BATCH / 2));
    assert.equal(r.podBWritten, rounds * (BATCH / 2), 'pod A\'s TCP, DNATed to pod B');
    assert.ok(r.heapGrowth < 1024 * 1024, `heap grew by ${r.heapGrowth} bytes after gc`);
  });

}
