// The datapath's promise that forwarding allocates nothing per frame (STYLE.md rule 2).
// The test runs this same file as a child (`node --expose-gc --trace-gc <file> child N`)
// that pushes N frames through a Datapath wired to allocation-free replay devices
// (FakeDevice wakes its reader with a setImmediate closure, so it would measure itself
// too): pod -> pod routed, pod -> remote pod (VXLAN, TSO cut in software), and underlay -> pod
// (UDP, and TCP segments that the coalescer merges). The parent counts garbage
// collections between the child's markers and reads the heap growth it prints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Datapath } from '../src/datapath/datapath.ts';
import { PortKind } from '../src/datapath/port.ts';
import { VIRTIO_NET_HEADER_LENGTH, VirtioNetFlags, VirtioNetGso, buildPacket, type PacketRepr } from '../src/wire/index.ts';
import {
  GATEWAY_MAC, MAC_A, POD_A, POD_B, REMOTE_POD, REMOTE_POD_MAC, ReplayDevice, ReplayUnderlay, makeTable, pattern,
  podEntry, tcpRepr, timestampOption, vxlanPayload, withVnet,
  allocChildTests, measureAllocRun, replayRounds,
} from './helpers/datapath.ts';

const BATCH = 64;

function udp(src: number, dst: number, ethSrc: number, payload: number): PacketRepr {
  return {
    eth: { dst: GATEWAY_MAC, src: ethSrc },
    ipv4: { src, dst, ttl: 64, dontFragment: true },
    udp: { srcPort: 40000, dstPort: 9000 },
    payload: pattern(payload),
  };
}

function child(frames: number): void {
  // Pod A sends alternately to pod B (routed) and to the remote pod (VXLAN): a datagram,
  // then a TSO frame of two segments cut in software (the path without the kernel's
  // tunnel offload; one UDP GSO send).
  const tso = buildPacket({ ...tcpRepr({ src: POD_A, dst: REMOTE_POD, ethSrc: MAC_A, ttl: 64, seq: 7, payload: pattern(2 * 1398) }), l4Checksum: 'partial' });
  const podA = new ReplayDevice([
    withVnet(udp(POD_A, POD_B, MAC_A, 200)),
    withVnet(udp(POD_A, REMOTE_POD, MAC_A, 1000)),
    withVnet(udp(POD_A, POD_B, MAC_A, 200)),
    withVnet(tso, { flags: VirtioNetFlags.NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 54, gsoSize: 1398, csumStart: 34, csumOffset: 16 }),
  ]);
  const podB = new ReplayDevice([]);
  const host = new ReplayDevice([]);
  // The remote node sends a UDP datagram to pod A, then 7 TCP segments of one flow to
  // pod B: the coalescer opens, extends and closes a run every round.
  const opts = timestampOption(1, 2);
  const datagrams: Uint8Array[] = [vxlanPayload({ ...udp(REMOTE_POD, POD_A, REMOTE_POD_MAC, 300), ipv4: { src: REMOTE_POD, dst: POD_A, ttl: 63 } })];
  for (let k = 0; k < 7; k++) datagrams.push(vxlanPayload(buildPacket(tcpRepr({ dst: POD_B, seq: 1000 + k * 1398, options: opts, payload: pattern(1398, k) }))));
  const underlay = new ReplayUnderlay(datagrams);
  const dp = new Datapath(makeTable([]), underlay);
  const a = dp.addPort(PortKind.POD, 'pod-a', podA, VIRTIO_NET_HEADER_LENGTH);
  const b = dp.addPort(PortKind.POD, 'pod-b', podB, VIRTIO_NET_HEADER_LENGTH);
  dp.addPort(PortKind.HOST, 'host', host, VIRTIO_NET_HEADER_LENGTH);
  dp.setTable(makeTable([podEntry(a, POD_A), podEntry(b, POD_B)]));

  const run = replayRounds([{ device: podA, batch: BATCH }, { device: underlay, batch: BATCH }]);

  measureAllocRun(dp, { podA, podB, underlay }, run, frames);
}

if (process.argv[2] === 'child') {
  child(Number(process.argv[3] ?? 1_000_000));
} else {
  const measure = allocChildTests(fileURLToPath(import.meta.url), 'the forwarding loop');

  test('1,000,000 frames (routed, VXLAN out incl. TSO, VXLAN in + coalescing) are forwarded with < 1 MiB heap growth', () => {
    const r = measure();
    // The work was done: every frame went where it should, nothing was dropped.
    assert.ok(r.frames >= 1_000_000);
    assert.equal(r.drops, 0);
    const rounds = r.frames / (2 * BATCH);
    assert.equal(r.underlaySent, rounds * 32, 'one send per frame pod A sent to the remote pod (its TSO frames one UDP GSO send each)');
    assert.equal(r.podAWritten, rounds * 8, 'the UDP datagram from the remote pod in each group of 8');
    assert.ok(r.podBWritten > rounds * 32, 'pod B got the routed frames and the (coalesced) TCP segments');
    assert.ok(r.coalesced > rounds, 'the coalescer merged segments');
    assert.ok(r.heapGrowth < 1024 * 1024, `heap grew by ${r.heapGrowth} bytes after gc`);
  });

}
