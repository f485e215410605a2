// Reading the answer that is already there (src/datapath/datapath.ts #chase): a TAP write
// runs the pod's stack in the writing thread, so an answer (a SYN-ACK, an ACK) is often
// queued on the port before the write returns. After a wakeup of a few frames the
// datapath reads the ports it wrote to, and an answer found there goes on in the same
// wakeup, without its own readiness callback. Here pod B's device answers every frame it
// is given on the spot and tells nobody: only that read can find the answer. A wakeup of
// bulk traffic (more than 16 frames) reads nothing more.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Datapath } from '../src/datapath/datapath.ts';
import { PortKind } from '../src/datapath/port.ts';
import type { FrameDevice } from '../src/device/types.ts';
import { VIRTIO_NET_HEADER_LENGTH, decodeFrame, LinkType, PacketInfo, type PacketRepr } from '../src/wire/index.ts';
import { FakeUnderlay, GATEWAY_MAC, MAC_A, MAC_B, POD_A, POD_B, makeTable, pattern, podEntry, withVnet } from './helpers/datapath.ts';

function udp(src: number, dst: number, srcMac: number, dstMac: number): PacketRepr {
  return { eth: { dst: dstMac, src: srcMac }, ipv4: { src, dst, ttl: 64 }, udp: { srcPort: 1000, dstPort: 2000 }, payload: pattern(64) };
}

/** A device read and fired by hand: `frames` to read, every write recorded, and (answering) a reply queued per write without a callback. */
class HandDevice implements FrameDevice {
  readonly pending: Uint8Array[] = [];
  readonly written: Uint8Array[] = [];
  reads = 0;
  readonly answer: Uint8Array | null;
  #cb: () => void = () => {};
  constructor(answer: Uint8Array | null = null) {
    this.answer = answer;
  }
  fire(): void { this.#cb(); }
  readBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array, maxFrames: number): number {
    this.reads++;
    let n = 0;
    while (n < maxFrames && this.pending.length > 0) {
      const f = this.pending.shift()!;
      slab.set(f, n * slotSize + headroom);
      lengths[n++] = f.length;
    }
    return n;
  }
  writeBatch(slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number {
    for (let i = 0; i < count; i++) {
      this.written.push(slab.slice(offsets[i]!, offsets[i]! + lengths[i]!));
      if (this.answer !== null) this.pending.push(this.answer);
    }
    return count;
  }
  onReadable(cb: () => void): void { this.#cb = cb; }
  pause(): void {}
  resume(): void {}
  close(): void {}
}

function rig(): { dp: Datapath; a: HandDevice; b: HandDevice } {
  const a = new HandDevice();
  const b = new HandDevice(withVnet(udp(POD_B, POD_A, MAC_B, GATEWAY_MAC)));
  const dp = new Datapath(makeTable([]), new FakeUnderlay());
  const pa = dp.addPort(PortKind.POD, 'pod-a', a, VIRTIO_NET_HEADER_LENGTH);
  const pb = dp.addPort(PortKind.POD, 'pod-b', b, VIRTIO_NET_HEADER_LENGTH);
  dp.setTable(makeTable([podEntry(pa, POD_A), podEntry(pb, POD_B)]));
  return { dp, a, b };
}

function dstOf(frame: Uint8Array): number {
  const info = new PacketInfo();
  decodeFrame(info, frame, VIRTIO_NET_HEADER_LENGTH, frame.length - VIRTIO_NET_HEADER_LENGTH, LinkType.ETHERNET);
  return info.dst4;
}

test('a request to pod B whose answer is waiting at once: the answer reaches pod A in the same wakeup', () => {
  const { dp, a, b } = rig();
  a.pending.push(withVnet(udp(POD_A, POD_B, MAC_A, GATEWAY_MAC)));
  a.fire(); // one wakeup of pod A's port; pod B's is never fired
  assert.equal(b.written.length, 1, 'the request reached pod B');
  assert.equal(a.written.length, 1, 'pod B\'s answer reached pod A without a wakeup of pod B\'s port');
  assert.equal(dstOf(a.written[0]!), POD_A);
  // Pod B read once (its answer), pod A read for its own answer in the second round and found nothing.
  assert.deepEqual([dp.chaseHits, dp.chaseMisses], [1, 1]);
  dp.close();
});

test('a wakeup of bulk traffic (17 frames) does not read the ports it wrote to', () => {
  const { dp, a, b } = rig();
  for (let i = 0; i < 17; i++) a.pending.push(withVnet(udp(POD_A, POD_B, MAC_A, GATEWAY_MAC)));
  a.fire();
  assert.equal(b.written.length, 17);
  assert.equal(b.reads, 0, 'pod B\'s port waits for its own wakeup');
  assert.equal(a.written.length, 0);
  assert.deepEqual([dp.chaseHits, dp.chaseMisses], [0, 0]);
  b.fire();
  assert.equal(a.written.length, 17, 'the answers go with pod B\'s wakeup');
  dp.close();
});
