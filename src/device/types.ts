// What the datapath sees of any frame device, real (TunDevice) or in memory
// (FakeDevice). The choice is made once when the pipeline is built, never per frame.

/**
 * Batched frame I/O over caller-owned memory (docs/ARCHITECTURE.md, "the slab").
 * readBatch places frame i at `i * slotSize + headroom` and its length in lengths[i];
 * writeBatch sends frames from absolute offsets. Both return a count, 0 meaning
 * "nothing now" (never an exception for a full or empty queue).
 */
export interface FrameDevice {
  readBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array, maxFrames: number): number;
  writeBatch(slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number;
  /** Called (from the event loop) whenever frames may be waiting; read until 0. */
  onReadable(cb: () => void): void;
  pause(): void;
  resume(): void;
  close(): void;
}

/** Per-device counters of frames that were dropped rather than thrown about. */
export interface DeviceStats {
  /** Received frames longer than their slot (slotSize - headroom), dropped. */
  rxTruncated: number;
  /** Frames not written because the kernel queue was full (EAGAIN), dropped. */
  txDroppedFull: number;
  /** Frames the kernel refused (EINVAL for a malformed frame, EIO when down, ...). */
  txErrors: number;
  /** errno of the most recent refused frame, 0 if none. */
  lastTxErrno: number;
}

/** This thread's busy polling so far (src/device/busy-poll.ts). */
export interface BusyPollStats {
  /** Busy polls entered (one at most per wakeup). */
  spins: number;
  /** Readiness callbacks run from them: each one a wakeup the data path did not wait for. */
  callbacks: number;
}
