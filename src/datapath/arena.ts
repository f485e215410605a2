// The datapath's one buffer. Every device reads into its receive slots and every
// transmit queue points into it, so a batch write is always (arena, offsets, lengths):
// frames forwarded as they are never move, and frames the datapath builds (segments,
// coalesced TCP, replies) go to the scratch area behind the slots.
//
// The agent is single-threaded and handles one receive batch to completion (process,
// then flush every queue) before the next read, so one set of slots serves all ports.
import { VIRTIO_NET_HEADER_LENGTH, VirtioNetHeader } from '../wire/index.ts';

/** A TSO/GRO frame is up to 64 KiB; plus the virtio-net header and the headroom. */
export const SLOT_SIZE = 65536 + 512;
/**
 * Room in front of every received frame: enough to prepend an Ethernet header and
 * move a virtio-net header in front of it (14 + 12), to write a VXLAN header (8), or
 * the outer headers and tunnel header of a UDP-tunnel super-frame in front of a frame
 * from either (74; tunnel-offload.ts).
 */
export const HEADROOM = 128;
/** Frames per read call: the batch that one JS<->C crossing moves. */
export const RX_BATCH = 64;
/** Batches read per readiness callback before yielding to the event loop (fairness). */
export const BATCHES_PER_WAKEUP = 4;
/** Scratch for built frames: 64 coalescing runs of 64 KiB, or ~2,800 MTU-size segments. */
export const SCRATCH_BYTES = 64 * 65 * 1024;

export class Arena {
  /** A Buffer (not a bare Uint8Array) for its allocation-free `copy`. */
  readonly buf: Buffer;
  readonly rxLengths = new Int32Array(RX_BATCH);
  // Underlay receive metadata (recvmmsg source and GRO segment size per datagram).
  readonly rxSrcAddrs = new Uint32Array(RX_BATCH);
  /** The same over an IPv6 underlay: four host-order words per datagram. */
  readonly rxSrcAddrs6 = new Uint32Array(4 * RX_BATCH);
  readonly rxSrcPorts = new Uint16Array(RX_BATCH);
  readonly rxSegSizes = new Int32Array(RX_BATCH);
  readonly scratchStart = RX_BATCH * SLOT_SIZE;
  readonly scratchEnd = RX_BATCH * SLOT_SIZE + SCRATCH_BYTES;
  scratchCursor = RX_BATCH * SLOT_SIZE;

  constructor() {
    // Buffer.alloc (not allocUnsafe): a buffer of its own at byteOffset 0, so the
    // checksum's 32-bit word view lines up with the frames.
    this.buf = Buffer.alloc(this.scratchEnd);
  }

  /** Offset of receive slot i's frame. */
  rxOffset(i: number): number {
    return i * SLOT_SIZE + HEADROOM;
  }

  /** Reserves n bytes of scratch, 8-byte aligned; -1 when the scratch is exhausted. */
  allocScratch(n: number): number {
    const at = this.scratchCursor;
    if (at + n > this.scratchEnd) return -1;
    this.scratchCursor = (at + n + 7) & ~7;
    return at;
  }

  /**
   * Reserves scratch for a frame of `n` bytes behind a zeroed virtio-net header (no
   * offload requested); returns the header's offset, or -1 when the scratch is exhausted.
   */
  allocFrame(n: number): number {
    const at = this.allocScratch(VIRTIO_NET_HEADER_LENGTH + n);
    if (at >= 0) VirtioNetHeader.clear(this.buf, at);
    return at;
  }

  /**
   * Puts a zeroed virtio-net header right in front of the `len`-byte frame at `frame`:
   * in place when the bytes in front of it are free (`inPlace`: headroom, or a VXLAN
   * header already read), else in scratch with a copy of the frame behind it. Returns
   * the header's offset, or -1 when the scratch is exhausted.
   */
  frameWithHeader(frame: number, len: number, inPlace: boolean): number {
    if (!inPlace) return this.#copyToScratch(frame, len);
    VirtioNetHeader.clear(this.buf, frame - VIRTIO_NET_HEADER_LENGTH);
    return frame - VIRTIO_NET_HEADER_LENGTH;
  }

  // Apart, so that the common in-place case stays small enough to be inlined.
  #copyToScratch(frame: number, len: number): number {
    const at = this.allocFrame(len);
    if (at >= 0) this.buf.copy(this.buf, at + VIRTIO_NET_HEADER_LENGTH, frame, frame + len);
    return at;
  }

  /** Gives back the tail of the most recent reservation (it was over-sized). */
  trimScratch(at: number, used: number): void {
    this.scratchCursor = (at + used + 7) & ~7;
  }

  get scratchFree(): number {
    return this.scratchEnd - this.scratchCursor;
  }

  resetScratch(): void {
    this.scratchCursor = this.scratchStart;
  }
}

/** Frames waiting to be written to one TUN/TAP device: offsets into the arena. */
export class TxQueue {
  readonly offsets: Int32Array;
  readonly lengths: Int32Array;
  readonly capacity: number;
  count = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.offsets = new Int32Array(capacity);
    this.lengths = new Int32Array(capacity);
  }

  get full(): boolean {
    return this.count === this.capacity;
  }

  push(offset: number, length: number): void {
    const i = this.count++;
    this.offsets[i] = offset;
    this.lengths[i] = length;
  }
}

/** Datagrams waiting for the underlay socket: offsets plus destination and GSO size. */
export class UnderlayTxQueue extends TxQueue {
  readonly dstAddrs: Uint32Array;
  /** Over an IPv6 underlay, datagram i's destination as four host-order words at [4i, 4i + 4) (dstAddrs unused). */
  readonly dstAddrs6: Uint32Array;
  readonly dstPorts: Uint16Array;
  readonly gsoSizes: Int32Array;

  constructor(capacity: number) {
    super(capacity);
    this.dstAddrs = new Uint32Array(capacity);
    this.dstAddrs6 = new Uint32Array(4 * capacity);
    this.dstPorts = new Uint16Array(capacity);
    this.gsoSizes = new Int32Array(capacity);
  }

  /**
   * A datagram to the IPv4 address at `addrs[at]` (the table's array, read here: an
   * address above 2^31 passed as a number to a call that is not inlined would be boxed,
   * once per datagram).
   */
  pushDatagram(offset: number, length: number, addrs: Uint32Array, at: number, dstPort: number, gsoSize: number): void {
    const i = this.count;
    this.push(offset, length);
    this.dstAddrs[i] = addrs[at]!;
    this.dstPorts[i] = dstPort;
    this.gsoSizes[i] = gsoSize;
  }

  /** pushDatagram to the IPv6 address whose four words are at `words[at]`. */
  pushDatagram6(offset: number, length: number, words: Uint32Array, at: number, dstPort: number, gsoSize: number): void {
    const i = this.count;
    this.push(offset, length);
    const d = this.dstAddrs6;
    d[4 * i] = words[at]!;
    d[4 * i + 1] = words[at + 1]!;
    d[4 * i + 2] = words[at + 2]!;
    d[4 * i + 3] = words[at + 3]!;
    this.dstPorts[i] = dstPort;
    this.gsoSizes[i] = gsoSize;
  }
}
