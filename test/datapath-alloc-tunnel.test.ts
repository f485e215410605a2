// The UDP tunnel offload's paths allocate nothing per frame either (STYLE.md rule 2):
// pod A's TSO frames for the remote pod leave whole as super-frames on an egress device,
// (among frames routed to pod B), and the remote node's super-frames (one TCP packet
// past the overlay MTU, inner checksum partial) reach pod B as TSO frames. Run as a
// child as datapath-alloc.test.ts is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Datapath } from '../src/datapath/datapath.ts';
import { PortKind } from '../src/datapath/port.ts';
import { TunnelEgress } from '../src/datapath/tunnel-offload.ts';
import { VIRTIO_NET_HEADER_LENGTH, VirtioNetFlags, VirtioNetGso, buildPacket } from '../src/wire/index.ts';
import {
  MAC_A, POD_A, POD_B, REMOTE_POD, ReplayDevice, ReplayUnderlay, makeTable, pattern, podEntry, tcpRepr, vxlanPayload, withVnet,
  allocChildTests, measureAllocRun, replayRounds,
} from './helpers/datapath.ts';

const BATCH = 64;
const MSS = 1398;

function child(frames: number): void {
  const tso = buildPacket({ ...tcpRepr({ src: POD_A, dst: REMOTE_POD, ethSrc: MAC_A, ttl: 64, seq: 7, payload: pattern(2 * MSS) }), l4Checksum: 'partial' });
  const podA = new ReplayDevice([
    withVnet(buildPacket({ ...tcpRepr({ src: POD_A, dst: POD_B, ethSrc: MAC_A, ttl: 64, seq: 7, payload: pattern(200) }) })),
    withVnet(tso, { flags: VirtioNetFlags.NEEDS_CSUM, gsoType: VirtioNetGso.TCPV4, hdrLen: 54, gsoSize: MSS, csumStart: 34, csumOffset: 16 }),
  ]);
  const podB = new ReplayDevice([]);
  const host = new ReplayDevice([]);
  const egress = new ReplayDevice([]);
  const superFrame = vxlanPayload(buildPacket({ ...tcpRepr({ dst: POD_B, seq: 1000, payload: pattern(3 * MSS) }), l4Checksum: 'partial' }));
  const underlay = new ReplayUnderlay([superFrame]);
  const dp = new Datapath(makeTable([]), underlay);
  const a = dp.addPort(PortKind.POD, 'pod-a', podA, VIRTIO_NET_HEADER_LENGTH);
  const b = dp.addPort(PortKind.POD, 'pod-b', podB, VIRTIO_NET_HEADER_LENGTH);
  dp.addPort(PortKind.HOST, 'host', host, VIRTIO_NET_HEADER_LENGTH);
  dp.setTable(makeTable([podEntry(a, POD_A), podEntry(b, POD_B)]));
  dp.tunnelEgress = new TunnelEgress(egress, 0x02_00_00_00_00_ee);

  const run = replayRounds([{ device: podA, batch: BATCH }, { device: underlay, batch: BATCH }]);

  // Small super-frames (2 and 3 segments): a million of them copy little.
  measureAllocRun(dp, { podA, podB, underlay }, run, frames);
}

if (process.argv[2] === 'child') {
  child(Number(process.argv[3] ?? 1_000_000));
} else {
  const measure = allocChildTests(fileURLToPath(import.meta.url), 'the tunnel offload loop');

  test('1,000,000 frames (TSO frames out whole to the egress device, received ones to the pod) with < 1 MiB heap growth', () => {
    const r = measure();
    assert.ok(r.frames >= 1_000_000);
    assert.equal(r.drops, 0);
    const rounds = r.frames / (2 * BATCH);
    assert.equal(r.underlaySent, 0, 'nothing cut in software for the socket');
    assert.equal(r.podBWritten, rounds * BATCH + rounds * BATCH / 2, 'each received super-frame is one TSO frame for pod B, besides the routed frames');
    assert.equal(r.coalesced, 0);
    assert.ok(r.heapGrowth < 1024 * 1024, `heap grew by ${r.heapGrowth} bytes after gc`);
  });
}
