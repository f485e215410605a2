// Moves frames unchanged between two frame devices, both ways, a batch at a time: the
// simplest datapath there is. The device benchmark measures the addon with it, the
// tests pass iperf3 through it, and a pipeline can be checked against it.
import type { FrameDevice } from './types.ts';

export interface RelayOptions {
  /** Frames per readBatch/writeBatch call. */
  batchFrames?: number;
  /** Bytes per slot: 2048 fits a 1500-byte MTU; with TSO offloads use 65536 + the vnet header. */
  slotSize?: number;
  /**
   * Called once per batch before it is written (tests use it to look at frames).
   * Chosen at construction; frames are at offsets[i], lengths[i] in slab.
   */
  inspect?: (slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number, fromA: boolean) => void;
}

/** One direction: its own slab, so the two directions never share buffers. */
class RelayLane {
  readonly from: FrameDevice;
  readonly to: FrameDevice;
  readonly fromA: boolean;
  readonly slab: Uint8Array;
  readonly lengths: Int32Array;
  readonly offsets: Int32Array;
  readonly batchFrames: number;
  readonly slotSize: number;
  frames = 0;
  batches = 0;
  dropped = 0; // read but not taken by the other device

  constructor(from: FrameDevice, to: FrameDevice, fromA: boolean, batchFrames: number, slotSize: number) {
    this.from = from;
    this.to = to;
    this.fromA = fromA;
    this.batchFrames = batchFrames;
    this.slotSize = slotSize;
    this.slab = new Uint8Array(batchFrames * slotSize);
    this.lengths = new Int32Array(batchFrames);
    // Frames are written from where they were read: the offsets never change.
    this.offsets = new Int32Array(batchFrames);
    for (let i = 0; i < batchFrames; i++) this.offsets[i] = i * slotSize;
  }
}

// A readiness callback drains at most this many full batches before yielding, so one
// busy direction cannot starve the other (uv_poll calls back again while data waits).
const BATCHES_PER_WAKEUP = 8;

export class FrameRelay {
  readonly #ab: RelayLane;
  readonly #ba: RelayLane;
  readonly #inspect: RelayOptions['inspect'];

  constructor(a: FrameDevice, b: FrameDevice, opts: RelayOptions = {}) {
    const batchFrames = opts.batchFrames ?? 64;
    const slotSize = opts.slotSize ?? 2048;
    this.#ab = new RelayLane(a, b, true, batchFrames, slotSize);
    this.#ba = new RelayLane(b, a, false, batchFrames, slotSize);
    this.#inspect = opts.inspect;
    const ab = this.#ab, ba = this.#ba;
    a.onReadable(() => this.#pump(ab));
    b.onReadable(() => this.#pump(ba));
  }

  #pump(lane: RelayLane): void {
    for (let round = 0; round < BATCHES_PER_WAKEUP; round++) {
      const n = lane.from.readBatch(lane.slab, lane.slotSize, 0, lane.lengths, lane.batchFrames);
      if (n === 0) return;
      if (this.#inspect !== undefined) this.#inspect(lane.slab, lane.offsets, lane.lengths, n, lane.fromA);
      const written = lane.to.writeBatch(lane.slab, lane.offsets, lane.lengths, n);
      lane.frames += written;
      lane.dropped += n - written;
      lane.batches++;
      if (n < lane.batchFrames) return; // drained
    }
  }

  /** Frames moved, batches and drops per direction. */
  get counts(): { aToB: number; bToA: number; batches: number; dropped: number } {
    return { aToB: this.#ab.frames, bToA: this.#ba.frames, batches: this.#ab.batches + this.#ba.batches, dropped: this.#ab.dropped + this.#ba.dropped };
  }

  /** Stops watching both devices; closing them stays with their owner. */
  stop(): void {
    this.#ab.from.pause();
    this.#ba.from.pause();
  }
}
